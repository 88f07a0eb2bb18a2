"""The page's Network mode in Chromium: the sample network, its table, maps and a pixel's sum."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.onnx_models import dynamic_cnn, serialize
from tests.server import run_server

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"browser tests need Debian's Chromium at {CHROMIUM}", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (dev extras)")

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(120)]

WAIT_MS = 60_000
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store = tmp_path_factory.mktemp("store")
    with run_server({"CONVSERVE_MODEL_DIR": str(store)}) as url:
        yield url


@pytest.fixture
def page(server: str) -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=ARGS, timeout=WAIT_MS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(WAIT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server + "/")
        page.wait_for_selector("body[data-ready='true']")
        yield page
        browser.close()
        assert not errors, f"the page's scripts raised: {errors}"


def test_sample_network_table_maps_and_a_pixel_sum(page: Any, server: str) -> None:
    page.click("label[for='mode-network']")
    assert page.is_visible("#network") and not page.is_visible("main.layout")
    page.click("#net-use-sample")
    page.wait_for_selector("#net-layers .layer-pick[data-name='conv1']")
    assert page.locator("#net-layers tr").count() == 14
    assert "9,494,561" in page.inner_text("#net-summary")

    page.click("#net-layers .layer-pick[data-name='conv1']")
    page.wait_for_selector(".net-map[data-channel='15']")
    assert page.locator(".net-map").count() == 16
    size = page.eval_on_selector(".net-map[data-channel='3']",
                                 "img => [img.naturalHeight, img.naturalWidth]")
    assert size == [148, 148]

    image = page.locator(".net-map[data-channel='3']")
    box = image.bounding_box()
    image.click(position={"x": 40.5 * box["width"] / 148, "y": 60.5 * box["height"] / 148})
    page.wait_for_selector("#net-explain-body #explain-value")
    shown = page.eval_on_selector("#net-explain-body #explain-value", "el => ({...el.dataset})")
    total = float(page.get_attribute("#net-explain-body #explain-sum", "data-sum"))
    assert shown["channel"] == "3"
    assert abs(int(shown["y"]) - 60) <= 2 and abs(int(shown["x"]) - 40) <= 2
    assert math.isclose(total, float(shown["value"]), rel_tol=1e-5, abs_tol=1e-6)
    assert page.locator("#net-explain-body .term").count() == 3  # conv1 reads R, G and B

    # The same value from the API, for the pixel the page shows.
    with httpx.Client(base_url=server, timeout=60) as api:
        ident = api.get("/v1/models").json()["models"][0]["id"]
        photo = api.get("/static/samples/chelsea.jpg").content
        answer = api.post(f"/v1/models/{ident}/explain", files={"image": ("c.jpg", photo)}, data={
            "layer": "conv1", "preprocess": '{"resize": "stretch"}',
            "at": f'{{"channel": 3, "y": {shown["y"]}, "x": {shown["x"]}}}'}).json()
    assert float(shown["value"]) == pytest.approx(answer["value"], rel=1e-6)


def test_a_layers_stack_shows_its_table_and_maps(page: Any) -> None:
    page.click("label[for='mode-network']")
    page.click("#network details.json-box summary")
    page.click("#net-show-stack")
    page.wait_for_selector("#net-layers .layer-pick[data-index='3']")
    assert page.locator("#net-layers tr").count() == 4
    assert page.inner_text("#net-layers tr:first-child td:nth-child(3)") == "conv2d"
    page.click("#net-layers .layer-pick[data-index='0']")
    page.wait_for_selector(".net-map[data-channel='15']")
    assert page.locator(".net-map").count() == 16
    assert "uploaded model" in page.inner_text("#net-maps-hint")


def test_an_uploaded_model_with_a_dynamic_input_and_the_errors_it_shows(
        page: Any, server: str) -> None:
    """Uploads go through the page's client: an input size as "HxW", the server's 422 detail for
    a file that is not ONNX, and the client's own refusal of a malformed input size."""
    page.click("label[for='mode-network']")
    not_onnx = b"these bytes are not an ONNX model"
    page.set_input_files("#net-model-file", files=[
        {"name": "notes.onnx", "mimeType": "application/octet-stream", "buffer": not_onnx}])
    page.wait_for_selector("#net-error:not([hidden])")
    with httpx.Client(base_url=server, timeout=60) as api:
        refused = api.post("/v1/models", files={"model": ("notes.onnx", not_onnx)})
    assert refused.status_code == 422
    assert page.inner_text("#net-error") == refused.json()["detail"]

    page.fill("#net-input-size", "0x9")
    page.set_input_files("#net-model-file", files=[
        {"name": "dynamic.onnx", "mimeType": "application/octet-stream",
         "buffer": serialize(dynamic_cnn())}])
    page.wait_for_function(
        "() => document.querySelector('#net-error').textContent.includes('inputSize')")
    assert "[0, 9]" in page.inner_text("#net-error")

    page.fill("#net-input-size", "12x10")
    # A different file name so that the input's change event fires again.
    page.set_input_files("#net-model-file", files=[
        {"name": "dynamic2.onnx", "mimeType": "application/octet-stream",
         "buffer": serialize(dynamic_cnn())}])
    page.wait_for_selector("#net-layers .layer-pick[data-name='gap']")
    assert page.is_hidden("#net-error")
    assert page.locator("#net-layers tr").count() == 3
    assert page.inner_text("#net-layers tr:first-child td:nth-child(4)") == "(2, 12, 10)"
