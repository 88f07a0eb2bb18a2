"""convserve.flows.layers, called directly: stacks without HTTP."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np
import pytest

from convserve import flows
from convserve.errors import ConvServeError
from convserve.flows import FlowContext, Source
from convserve.settings import Settings


def conv(**fields: Any) -> dict[str, Any]:
    """A conv2d entry as the request schema dumps it."""
    return {"type": "conv2d", "kernel": None, "preset": None, "preset_params": {},
            "filters": None, "kernel_size": None, "init": "he_normal", "seed": None,
            "stride": 1, "padding": None, "dilation": 1, "groups": None, "padding_mode": None,
            "bias": True, "activation": None, **fields}


def test_sobel_relu_pool_stack_reports_every_layer(ctx: FlowContext) -> None:
    x = np.random.default_rng(1).random((3, 16, 16)).tolist()
    layers = [conv(preset="sobel", activation="relu"),
              {"type": "maxpool2d", "kernel_size": [2, 2], "stride": None, "padding": 0}]
    outcome = flows.run_layers(ctx, Source(array=x), layers, return_="all")
    body = json.loads(outcome.result.body)
    assert outcome.shape == (2, 8, 8)
    assert outcome.padding is None
    assert [entry["output_shape"] for entry in body["layers"]] == [[2, 16, 16], [2, 8, 8]]
    assert body["layers"][0]["cost"]["weight_bytes"] == 4 * body["layers"][0]["params"]
    assert all(len(entry["channels"]) == 2 for entry in body["layers"])


def test_numpy_and_onnxruntime_stacks_agree(ctx: FlowContext) -> None:
    x = np.random.default_rng(2).random((1, 12, 12)).tolist()
    layers = [conv(filters=4, kernel_size=3, seed=3, padding=1, activation="relu"),
              conv(filters=2, kernel_size=3, seed=4)]
    maps = [np.load(io.BytesIO(flows.run_layers(ctx, Source(array=x), layers, engine=engine,
                                                fmt="npy").result.body))
            for engine in ("numpy", "onnxruntime")]
    np.testing.assert_allclose(maps[0], maps[1], rtol=1e-4, atol=1e-5)


def test_zip_holds_every_layer_and_a_manifest(ctx: FlowContext) -> None:
    layers = [conv(preset="sobel_x"), {"type": "relu"}]
    outcome = flows.run_layers(ctx, Source(array=np.ones((1, 6, 6)).tolist()), layers,
                               fmt="zip")
    with zipfile.ZipFile(io.BytesIO(outcome.result.body)) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("manifest.json"))
    assert names == ["layer_00_conv2d/channel_000.png", "layer_01_relu/channel_000.png",
                     "manifest.json"]
    assert manifest["layers"][1]["channels"][0]["file"] == "layer_01_relu/channel_000.png"


def test_a_problem_of_layer_i_names_layers_i() -> None:
    ctx = FlowContext.local(Settings(warmup=False, max_kernel_size=3))
    with pytest.raises(ConvServeError) as info:
        flows.run_layers(ctx, Source(array=np.ones((1, 8, 8)).tolist()),
                         [{"type": "relu"}, conv(filters=1, kernel_size=5)])
    assert info.value.field == "layers.1.kernel"
    assert "CONVSERVE_MAX_KERNEL_SIZE" in str(info.value)


def test_layer_count_is_limited() -> None:
    ctx = FlowContext.local(Settings(warmup=False, max_layers=2))
    with pytest.raises(ConvServeError) as info:
        flows.run_layers(ctx, Source(array=np.ones((1, 4, 4)).tolist()), [{"type": "relu"}] * 3)
    assert str(info.value) == "3 layers is more than the limit of 2 (CONVSERVE_MAX_LAYERS)"
