"""``conv_spec`` and ``conv2d`` validation: every invalid argument is a convserve error whose
message names the numbers involved, plus the resolved sizes, pads and costs of valid layers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from convserve import (
    ConvServeError,
    EngineUnavailableError,
    InvalidArgumentError,
    ShapeError,
    conv2d,
    conv_spec,
)
from convserve.conv.spec import resolve_padding

X = np.ones((1, 3, 8, 8), np.float32)
W = np.ones((4, 3, 3, 3), np.float32)


def weight_with(value: float) -> np.ndarray:
    w = W.copy()
    w[1, 2, 0, 1] = value
    w[3, 0, 2, 2] = value
    return w


INVALID: list[object] = [
    pytest.param(
        lambda: conv_spec((1, 3, 8, 8), (4, 2, 3, 3)), ShapeError, "weight",
        "weight.shape=(4, 2, 3, 3) needs C_in//groups=3 for x.shape=(1, 3, 8, 8), groups=1",
        id="wrong-c-in",
    ),
    pytest.param(
        lambda: conv_spec((1, 3, 8, 8), (4, 1, 3, 3), groups=2), ShapeError, "groups",
        "groups=2 must divide both C_in=3 and C_out=4", id="groups-not-dividing-c-in",
    ),
    pytest.param(
        lambda: conv_spec((1, 4, 8, 8), (3, 2, 3, 3), groups=2), ShapeError, "groups",
        "groups=2 must divide both C_in=4 and C_out=3", id="groups-not-dividing-c-out",
    ),
    pytest.param(
        lambda: conv_spec((1, 3, 8, 8), (4, 3, 3, 3), groups=0), InvalidArgumentError, "groups",
        "groups=0 must be an int >= 1", id="groups-0",
    ),
    pytest.param(
        lambda: conv_spec((1, 3, 8, 8), (4, 3, 3, 3), stride=-1), InvalidArgumentError,
        "stride", "stride=-1 must be >= 1 and <= 2147483647 on each axis", id="stride-negative",
    ),
    pytest.param(
        lambda: conv_spec((1, 3, 8, 8), (4, 3, 3, 3), stride=(1, 0)), InvalidArgumentError,
        "stride", "stride=(1, 0) must be >= 1 and <= 2147483647 on each axis", id="stride-0-on-w",
    ),
    pytest.param(
        lambda: conv_spec((1, 3, 8, 8), (4, 3, 3, 3), padding=-1), InvalidArgumentError,
        "padding", "padding=-1 must be >= 0 and <= 2147483647 on every side", id="padding-negative",
    ),
    pytest.param(
        lambda: conv_spec((1, 3, 8, 8), (4, 3, 3, 3), padding=(0, 1, -2, 0)),
        InvalidArgumentError, "padding",
        "padding=(0, 1, -2, 0) must be >= 0 and <= 2147483647 on every side",
        id="padding-negative-left",
    ),
    pytest.param(
        lambda: conv_spec((1, 3, 8, 8), (4, 3, 3, 3), stride=(1, 10**30)), InvalidArgumentError,
        "stride", f"stride=(1, {10**30}) must be >= 1 and <= 2147483647 on each axis",
        id="stride-beyond-int64",
    ),
    pytest.param(
        lambda: conv_spec((1, 3, 8, 8), (4, 3, 3, 3), dilation=2**31), InvalidArgumentError,
        "dilation", "dilation=2147483648 must be >= 1 and <= 2147483647 on each axis",
        id="dilation-too-large",
    ),
    pytest.param(
        lambda: conv_spec((1, 3, 8, 8), (4, 3, 3, 3), padding=(0, 10**30)), InvalidArgumentError,
        "padding", f"padding=(0, {10**30}) must be >= 0 and <= 2147483647 on every side",
        id="padding-beyond-int64",
    ),
    pytest.param(
        lambda: conv_spec((1, 3, 8, 8), (4, 3, 3, 3), dilation=-2), InvalidArgumentError,
        "dilation", "dilation=-2 must be >= 1 and <= 2147483647 on each axis",
        id="dilation-negative",
    ),
    pytest.param(
        lambda: conv_spec((1, 3, 3, 8), (4, 3, 3, 3), padding=3, padding_mode="reflect"),
        InvalidArgumentError, "padding",
        "padding_mode='reflect' needs each pad < the size of its axis; got pads "
        "(top, bottom, left, right)=(3, 3, 3, 3) for H=3, W=8",
        id="reflect-pad-equals-size",
    ),
    pytest.param(
        lambda: conv_spec((1, 3, 8, 2), (4, 3, 3, 3), padding=(1, 3), padding_mode="circular"),
        InvalidArgumentError, "padding",
        "padding_mode='circular' needs each pad <= the size of its axis; got pads "
        "(top, bottom, left, right)=(1, 1, 3, 3) for H=8, W=2",
        id="circular-pad-over-size",
    ),
    pytest.param(
        lambda: conv_spec((1, 3, 8, 8), (4, 3, 3, 3), padding="same", stride=2),
        InvalidArgumentError, "padding",
        "padding='same' needs stride 1, got stride=(2, 2); use an explicit padding with a "
        "larger stride",
        id="same-with-stride-2",
    ),
    pytest.param(
        lambda: conv_spec((1, 3, 4, 8), (4, 3, 5, 5)), ShapeError, "weight",
        "output would be 0x4: input 4x8 padded by (top, bottom, left, right)=(0, 0, 0, 0) is "
        "4x8, smaller than the dilated kernel 5x5 (kernel 5x5, dilation (1, 1)); pad more or "
        "use a smaller kernel",
        id="output-0-rows",
    ),
    pytest.param(
        lambda: conv_spec((1, 3, 9, 9), (4, 3, 3, 3), dilation=(1, 5)), ShapeError, "weight",
        "output would be 7x0: input 9x9 padded by (top, bottom, left, right)=(0, 0, 0, 0) is "
        "9x9, smaller than the dilated kernel 3x11 (kernel 3x3, dilation (1, 5)); pad more or "
        "use a smaller kernel",
        id="output-0-cols-dilated",
    ),
    pytest.param(
        lambda: conv_spec((1, 3, 8, 8), (4, 3, 3, 3), (3,)), ShapeError, "bias",
        "bias.shape=(3,) must be (C_out,)=(4,) for weight.shape=(4, 3, 3, 3)",
        id="bias-wrong-length",
    ),
    pytest.param(
        lambda: conv2d(X, W, np.ones((2, 2))), ShapeError, "bias",
        "bias.shape=(2, 2) must be 1-D (C_out,)", id="bias-2d",
    ),
    pytest.param(
        lambda: conv2d(X, weight_with(np.nan)), InvalidArgumentError, "weight",
        "weight holds 2 NaN or infinite value(s); only finite numbers are allowed",
        id="weight-nan",
    ),
    pytest.param(
        lambda: conv2d(X, weight_with(-np.inf)), InvalidArgumentError, "weight",
        "weight holds 2 NaN or infinite value(s); only finite numbers are allowed",
        id="weight-inf",
    ),
    pytest.param(
        lambda: conv2d(X, W, [0.0, 1.0, np.inf, 0.0]), InvalidArgumentError, "bias",
        "bias holds 1 NaN or infinite value(s); only finite numbers are allowed",
        id="bias-inf",
    ),
    pytest.param(
        lambda: conv_spec((1, 3, 8, 8), (4, 3, 3, 3), padding_mode="mirror"),
        InvalidArgumentError, "padding_mode",
        "padding_mode='mirror' is not one of zeros, reflect, replicate, circular (NumPy's "
        "constant, reflect, edge, wrap and OpenCV's BORDER_* names are accepted too)",
        id="padding-mode-unknown",
    ),
    pytest.param(
        lambda: conv_spec((1, 3, 8, 8), (4, 3, 3, 3), padding=(1, 1, 1, 1, 1)),
        InvalidArgumentError, "padding",
        "padding=[1, 1, 1, 1, 1] has 5 numbers; give an int, 2 numbers (p_h, p_w) or 4 "
        "(top, bottom, left, right)",
        id="padding-5-numbers",
    ),
    pytest.param(
        lambda: conv_spec((1, 3, 8, 8), (4, 3, 3, 3), padding="full"), InvalidArgumentError,
        "padding",
        "padding='full' must be an int, (p_h, p_w), (top, bottom, left, right), 'valid' or "
        "'same'",
        id="padding-word-unknown",
    ),
    pytest.param(
        lambda: conv2d(X, W, engine="torch"),  # type: ignore[arg-type]
        InvalidArgumentError, "engine",
        "engine='torch' is not one of auto, numpy, onnxruntime", id="engine-unknown",
    ),
    pytest.param(
        lambda: conv2d(X, W, device="tpu"),  # type: ignore[arg-type]
        InvalidArgumentError, "device",
        "device='tpu' is not one of cpu, cuda", id="device-unknown",
    ),
    pytest.param(
        lambda: conv2d(X, W, engine="numpy", device="cuda"), EngineUnavailableError, "device",
        "device='cuda': the NumPy engine runs on the CPU only; use engine=onnxruntime with "
        "onnxruntime-gpu for CUDA",
        id="cuda-on-numpy-engine",
    ),
    pytest.param(
        lambda: conv2d(np.ones((8, 8)), W), ShapeError, "input",
        "x.shape=(8, 8) must be (N, C_in, H, W) or (C_in, H, W)", id="x-2d",
    ),
    pytest.param(
        lambda: conv2d(np.ones((1, 0, 8, 8)), W), ShapeError, "input",
        "x.shape=(1, 0, 8, 8) has an empty axis; C_in, H and W must be >= 1", id="x-empty-axis",
    ),
    pytest.param(
        lambda: conv2d(X, np.ones((3, 3, 3))), ShapeError, "weight",
        "weight.shape=(3, 3, 3) must be 4-D (C_out, C_in // groups, k_h, k_w)", id="weight-3d",
    ),
    pytest.param(
        lambda: conv_spec((1, 3, 8, 8), (3, 3, 3, 3), stride=1.5),  # type: ignore[arg-type]
        InvalidArgumentError, "stride", "stride=1.5 must be an int or a pair of ints (h, w)",
        id="stride-float",
    ),
]


@pytest.mark.parametrize(("call", "error", "field", "message"), INVALID)
def test_invalid_argument_raises_convserve_error_naming_the_numbers(
    call: Callable[[], object], error: type[ConvServeError], field: str, message: str
) -> None:
    with pytest.raises(error) as info:
        call()
    assert type(info.value) is error
    assert isinstance(info.value, ConvServeError)
    assert info.value.detail == message
    assert str(info.value) == message
    assert info.value.errors == [{"field": field, "message": message}]
    assert info.value.status == 422


def test_shape_and_engine_errors_are_invalid_argument_errors() -> None:
    assert issubclass(ShapeError, InvalidArgumentError)
    assert issubclass(EngineUnavailableError, InvalidArgumentError)
    assert issubclass(InvalidArgumentError, ConvServeError)
    assert issubclass(InvalidArgumentError, ValueError)


def test_spec_counts_params_macs_and_flops() -> None:
    spec = conv_spec((2, 6, 10, 12), (8, 3, 3, 5), (8,), stride=(2, 1), padding=(1, 2),
                     groups=2)
    assert spec.output_shape == (2, 8, 5, 12)  # floor((10+2-3)/2)+1, floor((12+4-5)/1)+1
    assert spec.params == 8 * 3 * 3 * 5 + 8
    assert spec.macs == 2 * 8 * 3 * 3 * 5 * 5 * 12
    assert spec.flops == 2 * spec.macs + 2 * 8 * 5 * 12
    no_bias = conv_spec((1, 6, 10, 12), (8, 3, 3, 5), stride=(2, 1), padding=(1, 2), groups=2)
    assert no_bias.params == 8 * 3 * 3 * 5
    assert no_bias.macs == 8 * 3 * 3 * 5 * 5 * 12
    assert no_bias.flops == 2 * no_bias.macs
    assert no_bias.output_size_formula() == {
        "h_out": "floor((10 + 1 + 1 - 1*(3-1) - 1) / 2) + 1 = 5",
        "w_out": "floor((12 + 2 + 2 - 1*(5-1) - 1) / 1) + 1 = 12",
    }


def test_d2l_spec_is_two_by_two_with_the_default_padding() -> None:
    spec = conv_spec((2, 3, 3), (1, 2, 2, 2))
    assert (spec.batch, spec.pads, spec.output_shape) == (1, (0, 0, 0, 0), (1, 1, 2, 2))
    assert (spec.params, spec.macs) == (8, 32)


@pytest.mark.parametrize(
    ("kernel", "dilation", "pads"),
    [
        pytest.param((3, 3), (1, 1), (1, 1, 1, 1), id="k3-even-total"),
        pytest.param((4, 4), (1, 1), (1, 2, 1, 2), id="k4-odd-total-goes-bottom-right"),
        pytest.param((2, 5), (1, 1), (0, 1, 2, 2), id="k2x5"),
        pytest.param((3, 3), (2, 2), (2, 2, 2, 2), id="k3-d2"),
        pytest.param((4, 2), (3, 3), (4, 5, 1, 2), id="k4x2-d3-odd-totals"),
        pytest.param((1, 1), (1, 1), (0, 0, 0, 0), id="k1"),
    ],
)
def test_same_padding_puts_an_odd_remainder_bottom_right(
    kernel: tuple[int, int], dilation: tuple[int, int], pads: tuple[int, int, int, int]
) -> None:
    assert resolve_padding("same", kernel, dilation, (1, 1)) == pads
    spec = conv_spec((1, 1, 9, 11), (1, 1, *kernel), padding="same", dilation=dilation)
    assert spec.pads == pads
    assert (spec.out_height, spec.out_width) == (9, 11)


@pytest.mark.parametrize(
    ("padding", "pads"),
    [
        pytest.param(2, (2, 2, 2, 2), id="int"),
        pytest.param((1, 3), (1, 1, 3, 3), id="pair-is-h-then-w"),
        pytest.param([0, 1, 2, 3], (0, 1, 2, 3), id="four-top-bottom-left-right"),
        pytest.param("valid", (0, 0, 0, 0), id="valid"),
        pytest.param(" SAME ", (1, 1, 1, 1), id="same-any-case"),
    ],
)
def test_padding_forms_resolve_to_top_bottom_left_right(
    padding: int | Sequence[int] | str, pads: tuple[int, int, int, int]
) -> None:
    assert conv_spec((1, 1, 6, 6), (1, 1, 3, 3), padding=padding).pads == pads


@pytest.mark.parametrize(
    ("alias", "mode"),
    [("constant", "zeros"), ("edge", "replicate"), ("wrap", "circular"),
     ("BORDER_REFLECT_101", "reflect"), ("Reflect", "reflect")],
)
def test_numpy_and_opencv_mode_names_are_accepted(alias: str, mode: str) -> None:
    assert conv_spec((1, 1, 6, 6), (1, 1, 3, 3), padding=1, padding_mode=alias).padding_mode \
        == mode


def test_one_list_of_padding_mode_spellings_feeds_the_spec_and_the_api() -> None:
    from convserve.api.schemas import ConvLayerOptions
    from convserve.conv.spec import PADDING_MODE_NAMES, PADDING_MODES, normalize_padding_mode

    assert {normalize_padding_mode(name) for name in PADDING_MODE_NAMES} == set(PADDING_MODES)
    for name in PADDING_MODE_NAMES:
        assert normalize_padding_mode(name.lower()) == normalize_padding_mode(name)
    schema = ConvLayerOptions.model_json_schema()["properties"]["padding_mode"]
    assert tuple(schema["anyOf"][0]["enum"]) == PADDING_MODE_NAMES
