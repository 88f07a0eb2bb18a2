"""convserve.flows.convolve and explain, called directly: what the routes call, without HTTP."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest

from convserve import flows
from convserve.errors import InvalidArgumentError, LimitExceededError, PayloadTooLargeError
from convserve.flows import FlowContext, Source
from convserve.limits import Limits
from convserve.settings import Settings

D2L_X = [[[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[1, 2, 3], [4, 5, 6], [7, 8, 9]]]
D2L_K = [[[0, 1], [2, 3]], [[1, 2], [3, 4]]]


def layer(**fields: Any) -> dict[str, Any]:
    """The layer options a route passes, with the request schema's defaults."""
    return {"kernel": None, "preset": None, "preset_params": {}, "stride": 1, "padding": None,
            "dilation": 1, "groups": None, "padding_mode": None, "engine": None,
            "device": None, **fields}


def test_d2l_through_the_convolve_flow_gives_the_book_numbers(ctx: FlowContext) -> None:
    outcome = flows.convolve(ctx, Source(array=D2L_X),
                             layer(kernel={"weight": [D2L_K]}, engine="onnxruntime"), fmt="array")
    body = json.loads(outcome.result.body)
    assert body["data"] == [[[56.0, 72.0], [104.0, 120.0]]]
    assert outcome.shape == (1, 2, 2)
    assert outcome.padding == (0, 0, 0, 0)
    assert (outcome.engine, outcome.device) == ("onnxruntime", "cpu")
    assert set(outcome.timing_ms) == {"decode", "convolve", "encode", "total"}
    assert body["timing_ms"] == outcome.timing_ms


def test_preset_defaults_to_same_reflect_and_kernel_to_zero_zeros(ctx: FlowContext) -> None:
    x = np.random.default_rng(0).random((3, 8, 8)).tolist()
    preset = flows.convolve(ctx, Source(array=x), layer(preset="sobel"), dry_run=True)
    kernel = flows.convolve(ctx, Source(array=x), layer(kernel={"weight": [[[[1.0] * 3] * 3]] * 3},
                                                        groups=3), dry_run=True)
    assert (preset.shape, preset.padding) == ((2, 8, 8), (1, 1, 1, 1))
    assert json.loads(preset.result.body)["padding_mode"] == "reflect"
    assert (kernel.shape, kernel.padding) == ((3, 6, 6), (0, 0, 0, 0))
    assert json.loads(kernel.result.body)["padding_mode"] == "zeros"


def test_explicit_padding_wins_over_the_preset_default(ctx: FlowContext) -> None:
    x = np.ones((1, 8, 8)).tolist()
    outcome = flows.convolve(ctx, Source(array=x),
                             layer(preset="box_blur", padding=0, padding_mode="zeros"),
                             dry_run=True)
    assert outcome.shape == (1, 6, 6)
    assert outcome.padding == (0, 0, 0, 0)


def test_groups_that_conflict_with_a_preset_name_both(ctx: FlowContext) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        flows.convolve(ctx, Source(array=np.ones((3, 5, 5)).tolist()),
                       layer(preset="gaussian_blur", groups=1))
    assert info.value.field == "groups"
    assert str(info.value) == (
        "groups=1 conflicts with preset 'gaussian_blur', which needs groups=3 for 3 input "
        "channels (depthwise rule); leave groups out or send an explicit kernel")


def test_hwio_kernels_become_oihw(ctx: FlowContext) -> None:
    hwio = np.transpose(np.array([D2L_K], dtype=np.float32), (2, 3, 1, 0)).tolist()
    outcome = flows.convolve(ctx, Source(array=D2L_X),
                             layer(kernel={"weight": hwio, "layout": "HWIO"}), fmt="array")
    assert json.loads(outcome.result.body)["data"] == [[[56.0, 72.0], [104.0, 120.0]]]


def test_npy_answer_is_the_float32_output(ctx: FlowContext) -> None:
    outcome = flows.convolve(ctx, Source(array=D2L_X), layer(kernel={"weight": [D2L_K]}),
                             fmt="npy")
    assert outcome.result.media_type == "application/octet-stream"
    y = np.load(io.BytesIO(outcome.result.body), allow_pickle=False)
    np.testing.assert_array_equal(y, [[[56, 72], [104, 120]]])


def test_output_over_max_output_bytes_is_refused_before_computing() -> None:
    ctx = FlowContext.local(Settings(warmup=False, max_output_bytes=100))
    with pytest.raises(LimitExceededError) as info:
        flows.convolve(ctx, Source(array=np.ones((1, 6, 6)).tolist()),
                       layer(kernel={"weight": [[[[1.0]]]]}))
    assert "CONVSERVE_MAX_OUTPUT_BYTES" in str(info.value)
    assert info.value.field == "kernel"


def test_json_arrays_obey_max_pixels() -> None:
    ctx = FlowContext.local(Settings(warmup=False, max_pixels=20))
    with pytest.raises(PayloadTooLargeError) as info:
        flows.convolve(ctx, Source(array=np.ones((1, 5, 5)).tolist()),
                       layer(kernel={"weight": [[[[1.0]]]]}))
    assert info.value.field == "input.array"
    assert str(info.value) == (
        "input.array of shape (1, 5, 5) is 5x5 = 25 pixels; the limit is 20 pixels. Send a "
        "smaller image or raise CONVSERVE_MAX_PIXELS.")


def test_explain_flow_shows_the_d2l_sum(ctx: FlowContext) -> None:
    outcome = flows.explain(ctx, Source(array=D2L_X), layer(kernel={"weight": [D2L_K]}),
                            (0, 0, 0))
    body = json.loads(outcome.result.body)
    assert body["value"] == 56.0
    assert [term["sum"] for term in body["terms"]] == [19.0, 37.0]
    assert "shape" not in body and "normalize" not in body
    assert set(outcome.timing_ms) == {"decode", "convolve", "explain", "total"}


def test_metric_callbacks_see_each_stage() -> None:
    seen: list[tuple[str, ...]] = []
    base = FlowContext.local(Settings(warmup=False))
    ctx = FlowContext(base.settings, base.limits, base.engines, base.layers,
                      observe_convolution=lambda e, d, s: seen.append(("conv", e, d)),
                      observe_stage=lambda stage, s: seen.append(("stage", stage)))
    flows.convolve(ctx, Source(array=D2L_X), layer(kernel={"weight": [D2L_K]}, engine="numpy"))
    assert seen == [("stage", "decode"), ("conv", "numpy", "cpu"), ("stage", "convolve"),
                    ("stage", "encode")]


def test_limits_come_from_the_settings() -> None:
    limits = Limits.from_settings(Settings(max_kernel_size=5, max_output_bytes=1_000))
    assert (limits.max_kernel_size, limits.max_output_bytes) == (5, 1_000)
    published = limits.published()
    assert published["env"]["max_kernel_size"] == "CONVSERVE_MAX_KERNEL_SIZE"
    assert "max_preset_channels" not in published["env"]  # a bound of the core, no setting
    assert set(published["env"]) | {"max_preset_channels", "max_explain_products", "env"} == \
        set(published)
