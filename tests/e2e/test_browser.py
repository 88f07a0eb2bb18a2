"""The demo page at ``/`` in a real browser: Debian's Chromium driven by playwright.

The page talks to a real uvicorn process (``tests.server.run_server``) over loopback, exactly as
any frontend would; every number the page shows is checked against the HTTP API called from
the test for the same input.

Needs ``/usr/bin/chromium`` (``apt-get install chromium`` as root); playwright's own browser
download is not used. Without it these tests skip. ``CONVSERVE_UPDATE_SCREENSHOT=1`` makes
:func:`test_screenshot_of_a_photo_and_an_explained_pixel` also refresh ``docs/screenshot.png``.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.server import run_server

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        f"browser tests need Debian's Chromium at {CHROMIUM}; enable them with "
        "`apt-get install -y chromium` (as root)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="needs playwright (the dev extras: pip install -e 'service[dev]')"
)

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(90)]

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS_SCREENSHOT = REPO_ROOT / "docs" / "screenshot.png"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 20_000
DESKTOP = {"width": 1280, "height": 900}
# Colours of the page's markers and buttons, kept exact when the docs screenshot is quantized.
SCREENSHOT_COLOURS = [(255, 204, 0), (0, 0, 0), (255, 255, 255), (10, 92, 194), (179, 38, 30)]

# Two output channels over RGB: a horizontal gradient of the mean colour and a sharpen-like
# centre-surround of the green channel (OIHW, 2x3x3x3).
CUSTOM_WEIGHT = [
    [[[-1 / 3, 0, 1 / 3]] * 3] * 3,
    [
        [[0, 0, 0], [0, 0, 0], [0, 0, 0]],
        [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
        [[0, 0, 0], [0, 0, 0], [0, 0, 0]],
    ],
]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with run_server() as base_url:
        yield base_url


@pytest.fixture(scope="module")
def api(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, timeout=WAIT_MS
        )
        yield chromium
        chromium.close()


class PageErrors(list[str]):
    """Uncaught exceptions of the page's scripts, collected while a test runs."""


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    """A fresh desktop-sized page on ``/``, its scripts started and the first sample loaded."""
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors = PageErrors()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    open_page(page, server)
    yield page
    context.close()
    assert not errors, f"the page's scripts raised: {errors}"


def open_page(page: Any, server: str) -> None:
    page.goto(server + "/")
    page.wait_for_selector("body[data-ready='true']")
    page.wait_for_selector("#preview-shape")


def sample_bytes(api: httpx.Client, name: str) -> bytes:
    response = api.get(f"/static/samples/{name}")
    assert response.status_code == 200
    return response.content


def convolve(api: httpx.Client, image: bytes, name: str, **fields: str) -> httpx.Response:
    return api.post("/v1/convolve", files={"image": (name, image)}, data=fields)


def run_and_wait(page: Any, maps: int) -> None:
    page.click("#run-button")
    page.wait_for_selector(f".map[data-channel='{maps - 1}']")
    page.wait_for_function("!document.querySelector('#run-button').disabled")
    assert page.locator(".map[data-channel]").count() == maps


def map_size(page: Any, channel: int) -> tuple[int, int]:
    """(height, width) of feature map ``channel`` as decoded by the browser."""
    size = page.eval_on_selector(
        f".map[data-channel='{channel}'] img", "img => [img.naturalHeight, img.naturalWidth]"
    )
    return size[0], size[1]


def load_custom_kernel(page: Any, kernel: dict[str, Any]) -> None:
    page.click("label[for='source-custom']")
    page.click("#json-box summary")
    page.fill("#kernel-json", json.dumps(kernel))
    page.click("#apply-json")


def test_page_loads_presets_engines_and_a_sample_preview(page: Any, api: httpx.Client) -> None:
    assert page.title().startswith("convserve")
    presets = [p["name"] for p in api.get("/v1/presets").json()["presets"]]
    options = page.eval_on_selector_all("#preset option", "os => os.map(o => o.value)")
    assert options == presets
    assert page.input_value("#preset") == "sobel"

    engines = api.get("/v1/engines").json()
    assert page.input_value("#engine") == engines["default_engine"]
    default = next(e for e in engines["engines"] if e["name"] == engines["default_engine"])
    devices = page.eval_on_selector_all(
        "#device option", "os => os.map(o => [o.value, o.disabled])"
    )
    assert devices == [[d["device"], not d["available"]] for d in default["devices"]]
    for engine in engines["engines"]:
        for device in engine["devices"]:
            if not device["available"]:
                assert device["reason"] in page.text_content("#device-notes")

    # The preview is the API's dry run for the first sample with sobel.
    dry = convolve(api, sample_bytes(api, "chelsea.jpg"), "chelsea.jpg", preset="sobel",
                   dry_run="true").json()
    assert page.inner_text("#preview-shape") == "(" + ", ".join(map(str, dry["shape"])) + ")"
    assert page.inner_text("#preview-params") == str(dry["cost"]["params"])
    assert f"{dry['cost']['macs']:,}" in page.inner_text("#preview-macs")
    # The resolved tensor is drawn as c_out x c_in small matrices.
    assert page.locator("#preset-tensor table.matrix").count() == 2 * 3


def test_every_control_has_a_label_and_every_image_alt_text(page: Any) -> None:
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button')]
              .filter(el => el.offsetParent !== null || el.type === 'radio')
              .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                            && !(el.tagName === 'BUTTON' && el.textContent.trim()))
              .map(el => el.outerHTML.slice(0, 80))"""
    )
    assert unlabelled == []
    assert page.evaluate("[...document.images].filter(i => !i.hasAttribute('alt')).length") == 0
    assert page.get_attribute("#status", "aria-live") == "polite"


def test_sample_and_sobel_show_two_feature_maps(page: Any, api: httpx.Client) -> None:
    page.click("label[for='sample-coffee']")
    page.wait_for_function("document.querySelector('#image-name').textContent.includes('Coffee')")
    page.select_option("#preset", "sobel")
    # The run button is disabled and the progress bar shown as soon as the run starts.
    busy = page.evaluate(
        """() => { document.querySelector('#run-button').click();
                   return [document.querySelector('#run-button').disabled,
                           document.querySelector('#progress').hidden]; }"""
    )
    assert busy == [True, False]
    page.wait_for_selector(".map[data-channel='1']")
    page.wait_for_function("!document.querySelector('#run-button').disabled")
    assert page.locator(".map[data-channel]").count() == 2
    assert page.is_hidden("#progress")

    expected = convolve(api, sample_bytes(api, "coffee.jpg"), "coffee.jpg", preset="sobel").json()
    c_out, h_out, w_out = expected["shape"]
    assert c_out == 2
    for channel in expected["channels"]:
        figure = page.locator(f".map[data-channel='{channel['index']}']")
        assert map_size(page, channel["index"]) == (h_out, w_out)
        for stat in ("min", "max", "mean"):
            assert float(figure.get_attribute(f"data-{stat}")) == pytest.approx(channel[stat])
        assert figure.locator("img").get_attribute("alt").startswith(
            f"Feature map {channel['index']}"
        )
    assert page.locator("#composed").count() == 0  # c_out = 2 is not a picture
    assert "Done: 2 feature maps" in page.inner_text("#status")
    assert "convolve" in page.inner_text("#timings")


def test_custom_2x3x3x3_kernel_shows_two_maps(page: Any, api: httpx.Client) -> None:
    load_custom_kernel(page, {"weight": CUSTOM_WEIGHT, "layout": "OIHW"})
    dims = [page.input_value(f"#dim-{d}") for d in ("cout", "cin", "kh", "kw")]
    assert dims == ["2", "3", "3", "3"]
    # One weight typed into the grid: w[1, 0, 1, 1] = 0.5.
    page.fill("input[aria-label='w[1, 0, 1, 1]']", "0.5")
    run_and_wait(page, maps=2)

    weight = json.loads(json.dumps(CUSTOM_WEIGHT))
    weight[1][0][1][1] = 0.5
    kernel = json.dumps({"weight": weight, "bias": None, "layout": "OIHW"})
    expected = convolve(api, sample_bytes(api, "chelsea.jpg"), "chelsea.jpg",
                        kernel=kernel).json()
    assert expected["shape"] == [2, 298, 449]  # padding 0 by default with a kernel
    for channel in expected["channels"]:
        figure = page.locator(f".map[data-channel='{channel['index']}']")
        assert map_size(page, channel["index"]) == (298, 449)
        assert float(figure.get_attribute("data-max")) == pytest.approx(channel["max"])
        assert float(figure.get_attribute("data-mean")) == pytest.approx(channel["mean"])
    assert page.inner_text("#preview-kernel").startswith("(2, 3, 3, 3)")


def test_three_channel_output_is_also_shown_composed(page: Any, api: httpx.Client) -> None:
    page.select_option("#preset", "box_blur")  # depthwise: c_out = C = 3
    run_and_wait(page, maps=3)
    page.wait_for_selector("#composed img")
    composed = page.evaluate(
        """async () => {
            const blob = await (await fetch(document.querySelector('#composed img').src)).blob();
            const bytes = new Uint8Array(await blob.arrayBuffer());
            return btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join(''));
        }"""
    )
    expected = convolve(api, sample_bytes(api, "chelsea.jpg"), "chelsea.jpg", preset="box_blur",
                        format="image")
    assert expected.status_code == 200
    assert base64.b64decode(composed) == expected.content
    assert "RGB" in page.inner_text("#composed figcaption")


def test_downloads_give_the_npy_array_and_the_zip_of_pngs(page: Any, api: httpx.Client) -> None:
    run_and_wait(page, maps=2)
    with page.expect_download() as npy_download:
        page.click("#download-npy")
    array = np.load(io.BytesIO(Path(npy_download.value.path()).read_bytes()), allow_pickle=False)
    expected = convolve(api, sample_bytes(api, "chelsea.jpg"), "chelsea.jpg", preset="sobel",
                        format="npy")
    np.testing.assert_array_equal(array, np.load(io.BytesIO(expected.content)))
    assert array.shape == (2, 300, 451) and array.dtype == np.float32
    assert npy_download.value.suggested_filename.endswith(".npy")

    with page.expect_download() as zip_download:
        page.click("#download-zip")
    with zipfile.ZipFile(zip_download.value.path()) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["shape"] == [2, 300, 451]
    assert [c["file"] for c in manifest["channels"]] == [
        name for name in names if name.endswith(".png")
    ]
    assert page.is_enabled("#download-zip") and page.is_enabled("#download-npy")


def test_hwio_json_is_converted_to_the_oihw_grid(page: Any) -> None:
    # HWIO (k_h=1, k_w=2, c_in=3, c_out=1): w[o, i, 0, v] = 10 * i + v.
    hwio = [[[[10 * i + v] for i in range(3)] for v in range(2)]]
    page.click("label[for='source-custom']")
    page.click("#json-box summary")
    page.select_option("#json-layout", "HWIO")
    page.fill("#kernel-json", json.dumps(hwio))
    page.click("#apply-json")
    dims = [page.input_value(f"#dim-{d}") for d in ("cout", "cin", "kh", "kw")]
    assert dims == ["1", "3", "1", "2"]
    assert page.input_value("input[aria-label='w[0, 2, 0, 1]']") == "21"


def test_kernel_editor_takes_its_bounds_from_v1_limits(browser: Any, server: str) -> None:
    limits = httpx.get(server + "/v1/limits", timeout=10).json()
    with run_server({"CONVSERVE_MAX_KERNEL_SIZE": "5", "CONVSERVE_MAX_OUT_CHANNELS": "8"}) as small:
        pages = {}
        context = browser.new_context(viewport=DESKTOP)
        try:
            for name, url in (("default", server), ("small", small)):
                page = context.new_page()
                page.set_default_timeout(WAIT_MS)
                open_page(page, url)
                page.click("label[for='source-custom']")
                pages[name] = page
            maxes = {name: [page.get_attribute(f"#dim-{d}", "max")
                            for d in ("cout", "cin", "kh", "kw")] for name, page in pages.items()}
            channels, side = str(limits["max_preset_channels"]), str(limits["max_kernel_size"])
            assert maxes["default"] == [str(limits["max_out_channels"]), channels, side, side]
            assert maxes["small"] == ["8", channels, "5", "5"]
            # A side over the limit is brought back to it, and the grid follows.
            page = pages["small"]
            page.fill("#dim-kh", "9")
            page.dispatch_event("#dim-kh", "change")
            assert page.input_value("#dim-kh") == "5"
            assert page.locator("input[aria-label='w[0, 0, 4, 2]']").count() == 1
            assert page.locator("input[aria-label='w[0, 0, 5, 2]']").count() == 0
        finally:
            context.close()


def test_only_the_latest_request_counts_and_replaced_object_urls_are_revoked(page: Any) -> None:
    outcome = page.evaluate(
        """async () => {
            const { LatestRequest, ObjectUrls } = await import('./static/js/lifetimes.js');
            const latest = new LatestRequest();
            const slow = (value) => (signal) => new Promise((resolve, reject) => {
                const timer = setTimeout(() => resolve(value), 50);
                signal.addEventListener('abort', () => {
                    clearTimeout(timer);
                    reject(signal.reason);
                });
            });
            const first = latest.run(slow('first'));
            const second = latest.run(slow('second'));
            const [older, newer] = await Promise.all([first, second]);
            const pending = latest.run(slow('third'));
            latest.abort();
            const cancelled = await pending;
            const failed = await latest.run(async () => { throw new Error('boom'); });

            const urls = new ObjectUrls();
            const before = urls.set('slot', new Blob(['a']));
            const after = urls.set('slot', new Blob(['b']));
            const read = async (url) => {
                try { return await (await fetch(url)).text(); } catch { return null; }
            };
            return { older, newer, cancelled, failed: failed.error.message,
                     before: await read(before), after: await read(after) };
        }"""
    )
    assert outcome == {"older": {"stale": True}, "newer": {"value": "second"},
                       "cancelled": {"aborted": True}, "failed": "boom",
                       "before": None, "after": "b"}


def test_kernel_with_wrong_c_in_shows_the_api_detail_next_to_the_kernel(
    page: Any, api: httpx.Client
) -> None:
    weight = [[[[0.0, 1.0, 0.0]] * 3] * 2] * 2  # (2, 2, 3, 3) for an RGB input
    load_custom_kernel(page, {"weight": weight})
    page.click("#run-button")
    message = page.locator("#custom-panel .field-error[data-slot]")
    message.wait_for()

    kernel = json.dumps({"weight": weight, "bias": None, "layout": "OIHW"})
    problem = convolve(api, sample_bytes(api, "chelsea.jpg"), "chelsea.jpg", kernel=kernel)
    assert problem.status_code == 422
    assert problem.headers["content-type"] == "application/problem+json"
    detail = problem.json()["detail"]
    assert "C_in" in detail
    assert message.inner_text() == detail
    assert page.locator("#weight-grid input[aria-invalid='true']").count() == 2 * 2 * 9
    assert "422" in page.inner_text("#status")
    assert page.locator(".map[data-channel]").count() == 0


def test_preset_parameter_out_of_range_is_shown_next_to_that_parameter(
    page: Any, api: httpx.Client
) -> None:
    page.select_option("#preset", "gaussian_blur")
    page.fill("#param-sigma", "500")
    message = page.locator("[data-field='preset_params.sigma'] .field-error")
    message.wait_for()
    problem = convolve(api, sample_bytes(api, "chelsea.jpg"), "chelsea.jpg",
                       preset="gaussian_blur", preset_params='{"sigma": 500}', dry_run="true")
    assert problem.status_code == 422
    assert message.inner_text() == problem.json()["detail"]
    assert page.get_attribute("#param-sigma", "aria-invalid") == "true"


def explained(page: Any) -> dict[str, float]:
    page.wait_for_selector("#explain .explain-output")
    value = page.locator("#explain .explain-output")
    return {
        "channel": int(value.get_attribute("data-channel")),
        "y": int(value.get_attribute("data-y")),
        "x": int(value.get_attribute("data-x")),
        "value": float(value.get_attribute("data-value")),
        "sum": float(page.get_attribute("#explain .explain-sum", "data-sum")),
    }


def explain(api: httpx.Client, image: bytes, at: dict[str, int], **fields: str) -> Any:
    response = api.post("/v1/explain", files={"image": ("chelsea.jpg", image)},
                        data={**fields, "at": json.dumps(at)})
    assert response.status_code == 200, response.text
    return response.json()


def test_clicking_a_map_pixel_explains_its_sum(page: Any, api: httpx.Client) -> None:
    run_and_wait(page, maps=2)
    h_out, w_out = map_size(page, 1)
    target_y, target_x = 97, 203
    image = page.locator(".map[data-channel='1'] img")
    box = image.bounding_box()
    image.click(position={"x": (target_x + 0.5) * box["width"] / w_out,
                          "y": (target_y + 0.5) * box["height"] / h_out})
    shown = explained(page)
    # The map is drawn smaller than its pixels and a click lands on a whole CSS pixel, so the
    # page may pick a neighbour of the target; the API is asked about the pixel the page shows.
    assert shown["channel"] == 1
    assert abs(shown["y"] - target_y) <= 2 and abs(shown["x"] - target_x) <= 2
    at = {"channel": 1, "y": int(shown["y"]), "x": int(shown["x"])}
    answer = explain(api, sample_bytes(api, "chelsea.jpg"), at, preset="sobel")
    assert shown["value"] == answer["value"]
    assert math.isclose(shown["sum"], answer["value"], rel_tol=1e-5, abs_tol=1e-6)
    terms = page.locator("#explain .term")
    assert terms.count() == len(answer["terms"]) == 3  # sobel reads the luminance of R, G, B
    for index, term in enumerate(answer["terms"]):
        text = terms.nth(index).locator("[data-sum]").get_attribute("data-sum")
        assert float(text) == pytest.approx(term["sum"], rel=1e-12, abs=1e-12)
    assert page.locator("#explain table.matrix").count() == 3 * 3  # window, kernel, products
    assert page.is_visible(".receptive-field")

    # The keyboard does the same: one step right, Enter.
    page.focus(".map[data-channel='0'] .map-button")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    page.wait_for_function(
        f"document.querySelector('#explain .explain-output')?.dataset.x === '{at['x'] + 1}'"
        " && document.querySelector('#explain .explain-output')?.dataset.channel === '0'"
    )
    shown = explained(page)
    assert shown["y"] == at["y"]
    answer = explain(api, sample_bytes(api, "chelsea.jpg"),
                     {"channel": 0, "y": at["y"], "x": at["x"] + 1}, preset="sobel")
    assert shown["value"] == answer["value"]


def test_phone_sized_layout_does_not_scroll_sideways(browser: Any, server: str) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                  has_touch=True, device_scale_factor=2)
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        open_page(page, server)
        run_and_wait(page, maps=2)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390
        box = page.locator(".map[data-channel='0'] img").bounding_box()
        assert 200 <= box["width"] <= 390
    finally:
        context.close()


def box_of(page: Any, selector: str) -> tuple[int, int, int, int]:
    """(left, top, width, height) of ``selector`` in viewport pixels, rounded inwards."""
    box = page.locator(selector).bounding_box()
    assert box is not None, f"{selector} is not displayed"
    left, top = math.ceil(box["x"]), math.ceil(box["y"])
    return left, top, math.floor(box["x"] + box["width"]) - left, \
        math.floor(box["y"] + box["height"]) - top


def test_screenshot_of_a_photo_and_an_explained_pixel(
    page: Any, api: httpx.Client, tmp_path: Path
) -> None:
    page.click("label[for='sample-coffee']")
    page.wait_for_function("document.querySelector('#image-name').textContent.includes('Coffee')")
    run_and_wait(page, maps=2)
    image = page.locator(".map[data-channel='0'] img")
    box = image.bounding_box()
    image.click(position={"x": box["width"] * 0.42, "y": box["height"] * 0.37})
    explained(page)
    page.evaluate("window.scrollTo(0, 0)")
    path = tmp_path / "page.png"
    page.screenshot(path=str(path))
    data = path.read_bytes()
    shot = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float64)
    assert shot.shape == (DESKTOP["height"], DESKTOP["width"], 3)

    # The photo: the input figure shows the coffee sample (dimmed outside the explained
    # window, so compared by correlation rather than by value).
    left, top, width, height = box_of(page, ".map--input img")
    photo = Image.open(io.BytesIO(sample_bytes(api, "coffee.jpg"))).convert("L")
    expected = np.asarray(photo.resize((width, height), Image.Resampling.BILINEAR), np.float64)
    shown = shot[top:top + height, left:left + width].mean(axis=2)
    assert np.corrcoef(expected.ravel(), shown.ravel())[0, 1] > 0.9

    # The explained pixel: the cursor ring on the clicked map and the outlined window on the
    # input, both in the marker colour, and the explanation's panel begun on screen.
    marker = np.array(SCREENSHOT_COLOURS[0], np.float64)
    for selector in (".map[data-channel='0'] .cursor", ".map--input .receptive-field"):
        left, top, width, height = box_of(page, selector)
        region = shot[max(0, top - 2):top + height + 2, max(0, left - 2):left + width + 2]
        assert (np.abs(region - marker).max(axis=2) < 40).sum() >= 8, selector
    left, top, width, height = box_of(page, "#explain-heading")
    assert 0 <= top and top + height <= DESKTOP["height"] and 0 <= left < DESKTOP["width"]
    if os.environ.get("CONVSERVE_UPDATE_SCREENSHOT") == "1":
        small = small_png(data)
        assert len(small) < 400_000
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        DOCS_SCREENSHOT.write_bytes(small)


def small_png(data: bytes) -> bytes:
    """The screenshot as a dithered 256-colour PNG (a third of the bytes), UI colours exact."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    free = 256 - len(SCREENSHOT_COLOURS)
    adaptive = image.quantize(colors=free, method=Image.Quantize.MEDIANCUT)
    adaptive_palette = adaptive.getpalette()
    assert adaptive_palette is not None  # a "P" image from quantize() always has one
    palette = Image.new("P", (1, 1))
    palette.putpalette(
        adaptive_palette[: 3 * free] + [c for rgb in SCREENSHOT_COLOURS for c in rgb]
    )
    out = io.BytesIO()
    image.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(
        out, "PNG", optimize=True
    )
    return out.getvalue()
