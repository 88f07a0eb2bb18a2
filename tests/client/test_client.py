"""Every SDK method and result helper over real HTTP, with the sync and the async client.

The ``api`` fixture is a :class:`Client`, or an :class:`AsyncClient` whose coroutines run on an
event loop in a helper thread (so one test body checks both).
"""

from __future__ import annotations

import functools
import inspect
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from PIL import Image

from convserve_client import (
    AsyncClient,
    Channel,
    Client,
    ConvolveResult,
    Cost,
    EnginesInfo,
    ExplainResult,
    LayersResult,
    PresetInfo,
    ResolvedPreset,
)
from tests.client.conftest import D2L_K, D2L_X, D2L_Y

pytestmark = pytest.mark.e2e  # a real uvicorn process over loopback


class Blocking:
    """An AsyncClient whose coroutine methods are called like the sync client's."""

    def __init__(self, portal: BlockingPortal, client: AsyncClient) -> None:
        self._portal = portal
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name == "with_options":
            return lambda **kw: Blocking(self._portal, attr(**kw))
        if inspect.iscoroutinefunction(attr):
            return lambda *a, **kw: self._portal.call(functools.partial(attr, *a, **kw))
        return attr


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest, server_url: str) -> Iterator[Any]:
    if request.param == "sync":
        with Client(server_url, max_retries=0) as cs:
            yield cs
        return
    with start_blocking_portal() as portal:
        acs = AsyncClient(server_url, max_retries=0)
        try:
            yield Blocking(portal, acs)
        finally:
            portal.call(acs.close)


# --- operations ------------------------------------------------------------------------------


def test_health_and_ready(api: Any) -> None:
    assert api.health().status == "ok"
    ready = api.ready()
    assert ready.ready is True
    assert (ready.engine, ready.device) == ("auto", "cpu")


def test_engines_lists_both_engines_with_cpu_available(api: Any) -> None:
    info = api.engines()
    assert isinstance(info, EnginesInfo)
    assert (info.default_engine, info.default_device) == ("auto", "cpu")
    assert {e.name for e in info.engines} == {"auto", "numpy", "onnxruntime"}
    assert "cpu" in info["numpy"].available_devices()
    cuda = next(d for d in info["numpy"].devices if d.device == "cuda")
    assert cuda.available is False and cuda.reason
    with pytest.raises(KeyError, match="no engine 'torch'"):
        info["torch"]


def test_openapi_document_lists_the_convolve_endpoint(api: Any) -> None:
    assert "/v1/convolve" in api.openapi()["paths"]


# --- presets ---------------------------------------------------------------------------------


def test_presets_are_typed_with_their_parameters(api: Any) -> None:
    presets = {p.name: p for p in api.presets()}
    assert isinstance(presets["sobel"], PresetInfo)
    assert presets["sobel"].rule == "luminance"
    assert presets["gaussian_blur"].range_preserving is True
    params = {p.name: p for p in presets["gaussian_blur"].parameters}
    assert {"size", "sigma"} <= set(params)
    assert params["size"].type == "int"


def test_preset_resolved_for_three_channels(api: Any) -> None:
    sobel = api.preset("sobel", channels=3)
    assert isinstance(sobel, ResolvedPreset)
    assert sobel.weight.shape == (2, 3, 3, 3)
    assert sobel.weight.dtype == np.float32
    assert sobel.groups == 1
    assert sobel.output_names == ("x", "y")
    assert sobel.info is not None and sobel.info.name == "sobel"


def test_preset_parameters_travel_as_query(api: Any) -> None:
    blur = api.preset("gaussian_blur", channels=3, params={"size": 5, "sigma": 1.5})
    assert blur.weight.shape == (3, 1, 5, 5)
    assert blur.groups == 3
    np.testing.assert_allclose(blur.weight.sum(axis=(1, 2, 3)), 1.0, rtol=1e-5)


def test_preset_kernel_applied_explicitly_equals_the_preset(api: Any, cat_png: Path) -> None:
    sobel = api.preset("sobel", channels=3)
    by_name = api.convolve(cat_png, preset="sobel", format="npy")
    explicit = api.convolve(cat_png, kernel=sobel.kernel(), groups=sobel.groups,
                            padding="same", padding_mode="reflect", format="npy")
    np.testing.assert_allclose(explicit.array, by_name.array, rtol=1e-5, atol=1e-6)


# --- convolve: the D2L reference numbers -----------------------------------------------------


@pytest.mark.parametrize("fmt", ["npy", "array"])
@pytest.mark.parametrize("transport", ["multipart", "json"])
def test_d2l_multi_input_channels(api: Any, fmt: str, transport: str) -> None:
    res = api.convolve(D2L_X, kernel=D2L_K[np.newaxis], format=fmt, transport=transport)
    assert res.shape == (1, 2, 2)
    assert res.padding == (0, 0, 0, 0)
    assert res.array.dtype == np.float32
    np.testing.assert_array_equal(res.array, D2L_Y[np.newaxis])


def test_d2l_multi_output_channels_and_per_kernel_stacking(api: Any) -> None:
    bank = np.stack([D2L_K, D2L_K + 1, D2L_K + 2])
    full = api.convolve(D2L_X, kernel=bank, format="npy").array
    np.testing.assert_array_equal(full, [
        [[56, 72], [104, 120]], [[76, 100], [148, 172]], [[96, 128], [192, 224]]])
    one_by_one = np.concatenate([
        api.convolve(D2L_X, kernel=bank[o:o + 1], format="npy").array for o in range(3)])
    np.testing.assert_array_equal(one_by_one, full)


def test_array_format_carries_metadata_and_cost(api: Any) -> None:
    res = api.convolve(D2L_X, kernel=np.stack([D2L_K, D2L_K + 1, D2L_K + 2]), format="array")
    assert isinstance(res, ConvolveResult)
    assert res.cost is not None
    assert res.cost == Cost(params=24, macs=96, flops=res.cost.flops, input_bytes=72,
                            weight_bytes=96, output_bytes=48,
                            output_size=res.cost.output_size)
    assert res.cost.output_size["h_out"].endswith("= 2")
    assert (res.stride, res.dilation, res.groups) == ((1, 1), (1, 1), 1)
    assert res.padding_mode == "zeros"
    assert res.kernel is not None and res.kernel["weight_shape"] == [3, 2, 2, 2]
    assert res.request_id


def test_options_bias_stride_dilation_padding(api: Any) -> None:
    x = np.arange(2 * 7 * 9, dtype=np.float32).reshape(2, 7, 9)
    w = np.random.default_rng(0).standard_normal((4, 2, 3, 3)).astype(np.float32)
    res = api.convolve(x, kernel=w, bias=[1, 2, 3, 4], stride=(2, 1), dilation=2,
                       padding=(1, 0, 2, 1), padding_mode="replicate", format="npy")
    assert res.padding == (1, 0, 2, 1)
    # H_out = floor((7 + 1 - 2*2 - 1) / 2) + 1 = 2; W_out = floor((9 + 3 - 4 - 1) / 1) + 1 = 8
    assert res.shape == (4, 2, 8)
    xp = np.pad(x, ((0, 0), (1, 0), (2, 1)), mode="edge").astype(np.float64)
    expected = np.empty((4, 2, 8))
    for o in range(4):
        for r in range(2):
            for c in range(8):
                window = xp[:, 2 * r:2 * r + 5:2, c:c + 5:2]
                expected[o, r, c] = (window * w[o]).sum() + o + 1
    np.testing.assert_allclose(res.array, expected, rtol=1e-4)


def test_hwio_layout_is_converted(api: Any) -> None:
    hwio = D2L_K[np.newaxis].transpose(2, 3, 1, 0)  # (k_h, k_w, c_in, c_out)
    res = api.convolve(D2L_X, kernel=hwio, layout="HWIO", format="npy")
    np.testing.assert_array_equal(res.array, D2L_Y[np.newaxis])


def test_kernel_mapping_as_in_a_kernel_json(api: Any) -> None:
    spec = json.loads(json.dumps({"weight": D2L_K[np.newaxis].tolist(), "bias": [0.5]}))
    res = api.convolve(D2L_X, kernel=spec, format="npy")
    np.testing.assert_array_equal(res.array, D2L_Y[np.newaxis] + 0.5)


@pytest.mark.parametrize("engine", ["numpy", "onnxruntime"])
def test_both_engines_are_reachable(api: Any, engine: str) -> None:
    res = api.convolve(D2L_X, kernel=D2L_K[np.newaxis], engine=engine, format="npy")
    assert (res.engine, res.device) == (engine, "cpu")
    np.testing.assert_array_equal(res.array, D2L_Y[np.newaxis])


# --- convolve: inputs ------------------------------------------------------------------------


def test_every_input_kind_gives_the_same_output(api: Any, cat_png: Path) -> None:
    with Image.open(cat_png) as opened:
        pil = opened.convert("RGB")
    pixels = np.asarray(pil, dtype=np.float32).transpose(2, 0, 1) / 255
    results = {
        "path": api.convolve(cat_png, preset="box_blur", format="npy").array,
        "str": api.convolve(str(cat_png), preset="box_blur", format="npy").array,
        "bytes": api.convolve(cat_png.read_bytes(), preset="box_blur", format="npy").array,
        "pil": api.convolve(pil, preset="box_blur", format="npy").array,
        "array": api.convolve(pixels, preset="box_blur", format="npy").array,
        "base64": api.convolve(cat_png, preset="box_blur", format="npy",
                               transport="json").array,
    }
    for kind, array in results.items():
        assert array.shape == (3, 300, 451), kind
        np.testing.assert_allclose(array, results["path"], rtol=1e-5, atol=1e-6, err_msg=kind)


def test_nested_lists_are_an_array_input(api: Any) -> None:
    res = api.convolve(D2L_X.tolist(), kernel=D2L_K[np.newaxis].tolist(), format="npy")
    np.testing.assert_array_equal(res.array, D2L_Y[np.newaxis])


def test_color_mode_gray_gives_one_input_channel(api: Any, cat_png: Path) -> None:
    res = api.convolve(cat_png, preset="identity", color_mode="gray", format="array",
                       timeout=30)
    assert res.shape == (1, 300, 451)
    assert res.input is not None and res.input["shape"][0] == 1


# --- convolve: result helpers ----------------------------------------------------------------


def test_json_result_channels_stats_images_and_save(api: Any, cat_png: Path,
                                                    tmp_path: Path) -> None:
    res = api.convolve(cat_png, preset="sobel")
    values = api.convolve(cat_png, preset="sobel", format="npy").array
    assert res.shape == (2, 300, 451) == values.shape
    assert res.padding == (1, 1, 1, 1) and res.padding_mode == "reflect"
    assert res.normalize == "minmax"
    assert [c.name for c in res.channels] == ["x", "y"]
    for channel, plane in zip(res.channels, values, strict=True):
        assert isinstance(channel, Channel)
        assert channel.stats.min == pytest.approx(float(plane.min()), rel=1e-5, abs=1e-6)
        assert channel.stats.max == pytest.approx(float(plane.max()), rel=1e-5, abs=1e-6)
        assert channel.stats.mean == pytest.approx(float(plane.mean(dtype=np.float64)),
                                                   rel=1e-4, abs=1e-6)
    images = res.images()
    assert [(im.size, im.mode) for im in images] == [((451, 300), "L")] * 2
    assert res.channels[1].image().size == (451, 300)
    written = res.save(tmp_path / "out")
    assert [p.name for p in written] == ["channel_000.png", "channel_001.png"]
    assert written[0].read_bytes() == res.channels[0].png
    assert res.cost is not None and res.cost.params == 2 * 3 * 3 * 3  # no bias
    assert set(res.timing_ms) >= {"decode", "convolve", "encode", "total"}
    with pytest.raises(ValueError, match="format='json' answer carries no array"):
        _ = res.array


def test_npy_result_is_float32_and_saves_output_npy(api: Any, cat_png: Path,
                                                    tmp_path: Path) -> None:
    res = api.convolve(cat_png, preset="gaussian_blur", format="npy")
    assert res.array.dtype == np.float32 and res.array.shape == (3, 300, 451)
    assert res.timing_ms["convolve"] >= 0
    assert res.cost is None and res.channels == ()
    [path] = res.save(tmp_path)
    assert path.name == "output.npy"
    np.testing.assert_array_equal(np.load(path), res.array)
    with pytest.raises(ValueError, match="carries no images"):
        res.images()


@pytest.mark.parametrize("fmt, size, mode, name", [
    ("png", (451, 300), "L", "channel_001.png"),
    ("image", (451, 300), "RGB", "image.png"),
])
def test_single_png_formats(api: Any, cat_png: Path, tmp_path: Path, fmt: str,
                            size: tuple[int, int], mode: str, name: str) -> None:
    res = api.convolve(cat_png, preset="box_blur", format=fmt, channel=1
                       if fmt == "png" else None)
    assert res.shape == (3, 300, 451)
    assert res.padding == (1, 1, 1, 1)
    assert res.engine in ("numpy", "onnxruntime", "opencv") and res.device == "cpu"  # auto ran it
    [image] = res.images()
    assert (image.size, image.mode) == (size, mode)
    [path] = res.save(tmp_path)
    assert path.name == name and path.read_bytes() == res.content


def test_grid_format_is_one_montage(api: Any, cat_png: Path) -> None:
    res = api.convolve(cat_png, preset="kirsch", format="grid")
    assert res.shape == (8, 300, 451)
    [grid] = res.images()
    assert grid.size[0] > 451 and grid.size[1] > 300


def test_zip_format_unpacks_manifest_and_pngs(api: Any, cat_png: Path, tmp_path: Path) -> None:
    res = api.convolve(cat_png, preset="sobel", format="zip")
    assert res.shape == (2, 300, 451)
    assert res.cost is not None and res.padding_mode == "reflect"
    assert [c.name for c in res.channels] == ["x", "y"]
    assert all(c.png is not None for c in res.channels)
    assert len(res.images()) == 2
    assert [p.name for p in res.save(tmp_path)] == ["channel_000.png", "channel_001.png"]
    assert res.content is not None
    with zipfile.ZipFile(io.BytesIO(res.content)) as archive:
        assert "manifest.json" in archive.namelist()


def test_dry_run_reports_shape_and_cost_without_maps(api: Any, cat_png: Path) -> None:
    res = api.convolve(cat_png, preset="gabor", dry_run=True, format="npy")
    assert res.dry_run is True
    assert res.channels == ()
    assert res.cost is not None and res.cost.macs > 0
    assert res.shape[1:] == (300, 451)
    with pytest.raises(ValueError, match="carries no images"):
        res.images()


def test_with_options_and_per_call_timeout(api: Any) -> None:
    patient = api.with_options(timeout=120.0, max_retries=1,
                               headers={"X-Request-ID": "client-test-123"})
    res = patient.convolve(D2L_X, kernel=D2L_K[np.newaxis], format="array", timeout=30)
    assert res.request_id == "client-test-123"
    np.testing.assert_array_equal(res.array, D2L_Y[np.newaxis])


# --- insight endpoints -----------------------------------------------------------------------


def test_explain_the_d2l_element(api: Any) -> None:
    res = api.explain(D2L_X, kernel=D2L_K[np.newaxis], at=(0, 0, 0))
    assert isinstance(res, ExplainResult)
    assert res.value == 56
    assert res.at == (0, 0, 0)
    assert [t.sum for t in res.terms] == [19, 37]
    assert res.expression == "(0×0 + 1×1 + 3×2 + 4×3) + (1×1 + 2×2 + 4×3 + 5×4) = 56"
    np.testing.assert_array_equal(res.terms[1].window, [[1, 2], [4, 5]])
    np.testing.assert_array_equal(res.terms[1].kernel, D2L_K[1])
    np.testing.assert_array_equal(res.terms[1].products, [[1, 4], [12, 20]])
    assert tuple(res.output_shape) == (1, 2, 2)


def test_explain_matches_convolve_in_the_padding(api: Any) -> None:
    x = np.random.default_rng(1).standard_normal((3, 5, 6)).astype(np.float32)
    w = np.random.default_rng(2).standard_normal((2, 3, 3, 3)).astype(np.float32)
    full = api.convolve(x, kernel=w, padding=1, padding_mode="reflect", format="npy").array
    res = api.explain(x, kernel=w, padding=1, padding_mode="reflect", at=(1, 0, 5))
    assert res.value == pytest.approx(float(full[1, 0, 5]), rel=1e-5, abs=1e-5)
    assert tuple(res.window_origin) == (-1, 4)
    assert res.terms[0].padded is not None and res.terms[0].padded[0].all()


def test_float32_overflow_reads_as_nan_in_json_and_inf_in_npy(api: Any) -> None:
    x = np.array([[[3e38, 1.0], [2.0, 3.0]]], np.float32)
    w = np.full((1, 1, 1, 1), 10.0, np.float32)
    res = api.convolve(x, kernel=w)  # JSON: the server writes the infinite maximum as null
    assert np.isnan(res.channels[0].stats.max) and res.channels[0].stats.min == 10.0
    assert np.isposinf(api.convolve(x, kernel=w, format="npy").array[0, 0, 0])
    array = api.convolve(x, kernel=w, format="array").array
    assert np.isnan(array[0, 0, 0]) and array[0, 1, 1] == 30.0
    assert np.isnan(api.explain(x, kernel=w, at=(0, 0, 0)).value)


def test_layers_stack_shapes_params_and_formats(api: Any, cat_png: Path,
                                                tmp_path: Path) -> None:
    stack = [
        {"type": "conv2d", "filters": 4, "kernel_size": 3, "padding": "same", "seed": 0,
         "activation": "relu"},
        {"type": "maxpool2d", "kernel_size": 2},
    ]
    res = api.layers(cat_png, layers=stack, return_="all")
    assert isinstance(res, LayersResult)
    assert [(layer.type, layer.output_shape) for layer in res.layers] == [
        ("conv2d", (4, 300, 451)), ("maxpool2d", (4, 150, 225))]
    assert res.layers[0].input_shape == (3, 300, 451)
    assert res.layers[0].params == 4 * 3 * 3 * 3 + 4
    assert res.total_params == 112
    assert res.cost is not None and res.cost.params == 112
    assert res.cost.feature_map_bytes == 4 * (4 * 300 * 451 + 4 * 150 * 225)
    assert (res.engine, res.device) == ("onnxruntime", "cpu")
    assert len(res.layers[1].images()) == 4
    assert len(res.save(tmp_path / "maps")) == 8
    last = api.layers(cat_png, layers=stack, format="npy")
    assert last.array.shape == (4, 150, 225) == last.output_shape
    np.testing.assert_allclose(last.array.max(axis=(1, 2)),
                               [c.stats.max for c in res.layers[1].channels], rtol=1e-5)
    archive = api.layers(cat_png, layers=stack, format="zip")
    assert [len(layer.channels) for layer in archive.layers] == [4, 4]
    assert len(archive.save(tmp_path / "zip")) == 8
    onnx = api.layers(cat_png, layers=stack, format="onnx")
    [model] = onnx.save(tmp_path)
    assert model.name == "model.onnx" and model.read_bytes() == onnx.content
    planned = api.layers(cat_png, layers=stack, dry_run=True)
    assert planned.dry_run and planned.total_macs == res.total_macs
