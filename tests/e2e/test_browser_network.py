"""The page's Network mode in Chromium: the sample network and layer stacks, their tables, maps,
explained pixels (by click and by keyboard), problems shown as such, and unique ids."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
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


def explained(page: Any) -> dict[str, Any]:
    """What the Network mode's explain panel shows: the element, its value and the sum."""
    page.wait_for_selector("#net-explain-body .explain-output")
    shown: dict[str, Any] = page.eval_on_selector("#net-explain-body .explain-output",
                                                  "el => ({...el.dataset})")
    shown["sum"] = float(page.get_attribute("#net-explain-body .explain-sum", "data-sum"))
    return shown


def click_pixel(page: Any, channel: int, y: int, x: int, height: int, width: int) -> None:
    image = page.locator(f".net-map[data-channel='{channel}']")
    box = image.bounding_box()
    image.click(position={"x": (x + 0.5) * box["width"] / width,
                          "y": (y + 0.5) * box["height"] / height})


def layers_npy(api: httpx.Client, photo: bytes, stack: list[dict[str, Any]]) -> np.ndarray:
    response = api.post("/v1/layers", files={"image": ("chelsea.jpg", photo)},
                        data={"layers": json.dumps(stack), "format": "npy"})
    assert response.status_code == 200, response.text
    array: np.ndarray = np.load(io.BytesIO(response.content), allow_pickle=False)
    return array


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

    click_pixel(page, 3, 60, 40, 148, 148)
    shown = explained(page)
    total = shown["sum"]
    assert shown["channel"] == "3"
    assert abs(int(shown["y"]) - 60) <= 2 and abs(int(shown["x"]) - 40) <= 2
    assert math.isclose(total, float(shown["value"]), rel_tol=1e-5, abs_tol=1e-6)
    assert page.locator("#net-explain-body .term").count() == 3  # conv1 reads R, G and B

    # The same value from the API, for the pixel the page shows.
    with httpx.Client(base_url=server, timeout=60) as api:
        ident = api.post("/v1/models/sample").json()["id"]
        photo = api.get("/static/samples/chelsea.jpg").content
        answer = api.post(f"/v1/models/{ident}/explain", files={"image": ("c.jpg", photo)}, data={
            "layer": "conv1", "preprocess": '{"resize": "stretch"}',
            "at": f'{{"channel": 3, "y": {shown["y"]}, "x": {shown["x"]}}}'}).json()
    assert float(shown["value"]) == pytest.approx(answer["value"], rel=1e-6)


def test_a_layers_stack_shows_its_maps_and_explains_a_conv2d_pixel(page: Any, server: str) -> None:
    """The default example stack: the table, a pooling layer's maps (not clickable), and a pixel
    of each conv2d layer explained with the value /v1/layers computes there (before and after
    the layer's ReLU)."""
    uploads: list[str] = []
    page.on("request", lambda r: uploads.append(r.url)
            if r.method == "POST" and r.url.endswith("/v1/models") else None)
    page.click("label[for='mode-network']")
    page.click("#network details.json-box summary")
    assert page.input_value("#net-stack-example") == "gabor"
    stack = json.loads(page.input_value("#net-stack"))
    page.click("#net-show-stack")
    page.wait_for_selector("#net-layers .layer-pick[data-index='3']")
    assert page.locator("#net-layers tr").count() == 4
    assert page.inner_text("#net-layers tr:first-child td:nth-child(3)") == "conv2d"
    assert page.inner_text("#net-layers .layer-pick[data-index='0']") == "0: conv2d 16×3×3×3 + relu"
    assert page.is_disabled("#net-resize") and page.is_visible("#net-preprocess-hint")

    page.click("#net-layers .layer-pick[data-index='1']")
    page.wait_for_selector(".net-map[data-channel='15']")
    assert page.locator(".net-map").count() == 16
    assert page.locator("#net-maps .map-button").count() == 0
    assert "conv2d layer" in page.inner_text("#net-maps-hint")
    assert page.inner_text("#net-layer-info") == (
        "maxpool2d (16, 300, 451) → (16, 150, 225): window 2 × 2, stride 2 × 2, padding 0 × 0: "
        "the largest value of each window.")

    with httpx.Client(base_url=server, timeout=60) as api:
        photo = api.get("/static/samples/chelsea.jpg").content
        for index, channel, (y, x) in [(0, 5, (120, 200)), (2, 7, (40, 61))]:
            page.click(f"#net-layers .layer-pick[data-index='{index}']")
            page.wait_for_selector(f"#net-maps .map-button .net-map[data-channel='{channel}']")
            info = page.inner_text("#net-layer-info")
            assert info.endswith("then relu.")
            assert ("from the preset gabor (luminance)" in info) == (index == 0)
            assert ("from seeded he_normal weights (seed 1) with a bias" in info) == (index == 2)
            height, width = page.eval_on_selector(f".net-map[data-channel='{channel}']",
                                                  "img => [img.naturalHeight, img.naturalWidth]")
            click_pixel(page, channel, y, x, height, width)
            page.wait_for_function(
                "() => document.querySelector('#net-explain-body .explain-output')?.dataset"
                f".channel === '{channel}' && !document.querySelector('#net-explain').hidden")
            shown = explained(page)
            at = (channel, int(shown["y"]), int(shown["x"]))
            assert abs(at[1] - y) <= 2 and abs(at[2] - x) <= 2
            before = layers_npy(api, photo, [*stack[:index], {**stack[index], "activation": None}])
            after = layers_npy(api, photo, stack[:index + 1])
            assert float(shown["value"]) == pytest.approx(float(before[at]), rel=1e-5, abs=1e-6)
            assert shown["sum"] == pytest.approx(float(shown["value"]), rel=1e-5, abs=1e-6)
            activated = float(page.get_attribute("#net-explain-body .activated-output",
                                                 "data-value"))
            assert activated == pytest.approx(float(after[at]), rel=1e-5, abs=1e-6)
            assert page.locator("#net-explain-body .term").count() == (3 if index == 0 else 16)
            # Layer 0 pads by reflection before its Conv: the note says where its rows count.
            note = page.locator("#net-explain-body .explain-note")
            assert note.count() == (1 if index == 0 else 0)
            if index == 0:
                assert "pads its input with reflect (top 1" in note.inner_text()
    # The stack was exported and stored once, for both layers' pixels.
    assert uploads == [f"{server}/v1/models"]


def test_the_keyboard_explains_the_cursor_pixel_of_a_stack_layer(page: Any) -> None:
    page.click("label[for='mode-network']")
    page.click("#network details.json-box summary")
    page.select_option("#net-stack-example", "handwritten")
    assert json.loads(page.input_value("#net-stack"))[0]["kernel"]["weight"] == [
        [[[1, -1]], [[1, -1]], [[1, -1]]]]
    assert "[1, −1]" in page.inner_text("#net-stack-description")
    page.click("#net-show-stack")
    page.click("#net-layers .layer-pick[data-index='0']")
    page.focus("#net-maps .map-button[data-channel='0']")
    assert "row 150, column 225" in page.get_attribute("#net-maps .map-button", "aria-label")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Shift+ArrowLeft")
    page.keyboard.press("Enter")
    shown = explained(page)
    assert (shown["channel"], shown["y"], shown["x"]) == ("0", "149", "215")
    # The D2L edge kernel: each term is one window of 1 x 2 pixels times [1, -1].
    assert page.locator("#net-explain-body .term").count() == 3
    windows = page.locator("#net-explain-body .term table.matrix")
    assert windows.count() == 9
    terms = page.eval_on_selector_all("#net-explain-body .term .term-sum [data-sum]",
                                      "els => els.map(el => Number(el.dataset.sum))")
    assert shown["sum"] == pytest.approx(sum(terms), rel=1e-6, abs=1e-7)


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
    problem = refused.json()
    assert page.inner_text("#net-error .problem-title") == f"422 {problem['title']}"
    assert page.inner_text("#net-error .problem-detail") == problem["detail"]

    page.fill("#net-input-size", "0x9")
    page.set_input_files("#net-model-file", files=[
        {"name": "dynamic.onnx", "mimeType": "application/octet-stream",
         "buffer": serialize(dynamic_cnn())}])
    page.wait_for_function(
        "() => document.querySelector('#net-error').textContent.includes('inputSize')")
    assert "[0, 9]" in page.inner_text("#net-error .problem-detail")
    assert page.locator("#net-error .problem-title").count() == 0  # refused before sending

    page.fill("#net-input-size", "12x10")
    # A different file name so that the input's change event fires again.
    page.set_input_files("#net-model-file", files=[
        {"name": "dynamic2.onnx", "mimeType": "application/octet-stream",
         "buffer": serialize(dynamic_cnn())}])
    page.wait_for_selector("#net-layers .layer-pick[data-name='gap']")
    assert page.is_hidden("#net-error")
    assert page.locator("#net-layers tr").count() == 3
    assert page.inner_text("#net-layers tr:first-child td:nth-child(4)") == "(2, 12, 10)"


def test_a_refused_stack_shows_the_problem_and_marks_the_json(page: Any, server: str) -> None:
    page.click("label[for='mode-network']")
    page.click("#network details.json-box summary")
    page.fill("#net-stack", "[{\"type\": \"conv2d\", \"preset\": \"sobel\"},")
    page.click("#net-show-stack")
    page.wait_for_selector("#net-error:not([hidden])")
    assert "not valid JSON" in page.inner_text("#net-error .problem-detail")
    assert page.get_attribute("#net-stack", "aria-invalid") == "true"

    stack = [{"type": "conv2d", "filters": 4, "kernel_size": 3},
             {"type": "maxpool2d", "kernel_size": 400}]
    page.fill("#net-stack", json.dumps(stack))
    page.click("#net-show-stack")
    page.wait_for_function(
        "() => document.querySelector('#net-error .problem-title') !== null")
    with httpx.Client(base_url=server, timeout=60) as api:
        photo = api.get("/static/samples/chelsea.jpg").content
        refused = api.post("/v1/layers", files={"image": ("chelsea.jpg", photo)},
                           data={"layers": json.dumps(stack)})
    problem = refused.json()
    assert refused.status_code == 422 and problem["errors"][0]["field"].startswith("layers")
    assert page.inner_text("#net-error .problem-title") == f"422 {problem['title']}"
    assert page.inner_text("#net-error .problem-detail") == problem["detail"]
    assert page.get_attribute("#net-stack", "aria-invalid") == "true"
    assert page.is_hidden("#net-table-card")

    # A stack that runs clears the error and the mark.
    page.select_option("#net-stack-example", "sobel")
    page.click("#net-show-stack")
    page.wait_for_selector("#net-layers .layer-pick[data-index='1']")
    assert page.is_hidden("#net-error")
    assert page.get_attribute("#net-stack", "aria-invalid") is None


DUPLICATE_IDS = """() => {
  const seen = new Map();
  for (const el of document.querySelectorAll('[id]')) seen.set(el.id, (seen.get(el.id) || 0) + 1);
  return [...seen].filter(([, n]) => n > 1).map(([id]) => id);
}"""


def test_no_id_is_used_twice_after_explaining_in_both_modes(page: Any) -> None:
    """Both explain panels hold an explanation at once; ids stay unique (labels, ARIA)."""
    page.wait_for_selector("#preview-shape")
    page.click("#run-button")
    page.wait_for_selector(".map[data-channel='0'] .map-button")
    page.click(".map[data-channel='0'] .map-button")
    page.wait_for_selector("#explain .explain-output")

    page.click("label[for='mode-network']")
    page.click("#network details.json-box summary")
    page.select_option("#net-stack-example", "sobel")
    page.click("#net-show-stack")
    page.click("#net-layers .layer-pick[data-index='0']")
    page.focus("#net-maps .map-button[data-channel='1']")
    page.keyboard.press("Enter")
    explained(page)
    assert page.locator(".explain-output").count() == 2
    assert page.evaluate(DUPLICATE_IDS) == []
    page.click("label[for='mode-layer']")
    assert page.is_visible("#explain .explain-output")


def test_a_phone_sized_network_mode_does_not_scroll_sideways(page: Any) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.click("label[for='mode-network']")
    page.click("#network details.json-box summary")
    page.click("#net-show-stack")
    page.click("#net-layers .layer-pick[data-index='2']")
    page.focus("#net-maps .map-button[data-channel='0']")
    page.keyboard.press("Enter")
    page.wait_for_selector("#net-explain-body .activated-output")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
