"""OpenCV's paths of ``engine="auto"``: against the reference in bands (depthwise, single
channel, several channels per group), where they apply, and the finiteness check they make as
they go."""

from __future__ import annotations

import numpy as np
import pytest

from convserve import InvalidArgumentError, conv2d
from convserve.conv.auto import AutoEngine, AutoTable, Plan, applicable_paths, family, features
from convserve.conv.opencv_engine import (
    OpenCvEngine,
    OpenCvStrategy,
    applies,
    rank1,
    weights_apply,
)
from convserve.conv.spec import conv_spec
from tests.reference import ConvOptions, conv2d_reference

pytest.importorskip("cv2")  # a dependency of the service; the check keeps the message clear

STRATEGIES: list[OpenCvStrategy] = ["filter2d", "sepfilter2d"]


def _weights(shape: tuple[int, int, int, int], rank1: bool,
             rng: np.random.Generator) -> np.ndarray:
    c_out, c_in_g, k_h, k_w = shape
    if rank1:
        col_shape = (c_out, c_in_g, k_h, 1)
        cols = rng.uniform(0.2, 1.0, col_shape) * rng.choice([-1, 1], col_shape)
        rows = rng.uniform(0.2, 1.0, (c_out, c_in_g, 1, k_w))
        weight: np.ndarray = (cols * rows).astype(np.float32)
    else:
        signs = rng.choice([-1, 1], shape)
        weight = (rng.uniform(0.1, 1.0, shape) * signs).astype(np.float32)
    return weight


LAYERS = [
    # (x shape, weight shape, options): depthwise, multiplier 2, single channel, batch 2
    pytest.param((1, 3, 70, 41), (3, 1, 3, 3), {"padding": 1, "groups": 3}, id="dw-k3-zeros"),
    pytest.param((2, 2, 53, 17), (4, 1, 5, 5), {"padding": 2, "groups": 2,
                                                "padding_mode": "reflect"}, id="m2-k5-reflect"),
    pytest.param((1, 1, 64, 30), (1, 1, 7, 7), {"padding": 3, "padding_mode": "replicate"},
                 id="1ch-k7-replicate"),
    pytest.param((1, 2, 45, 23), (2, 1, 4, 2), {"padding": (2, 1, 0, 1), "groups": 2},
                 id="dw-even-asym"),
    pytest.param((1, 2, 40, 19), (2, 1, 3, 5), {"padding": "valid", "groups": 2,
                                                "padding_mode": "reflect"}, id="dw-valid-cropped"),
    pytest.param((1, 1, 37, 12), (1, 1, 5, 3), {"padding": (0, 4, 1, 0),
                                                "padding_mode": "reflect"}, id="1ch-bottom-only"),
    # a last band of one row whose mirrored border reaches 4 rows up
    pytest.param((1, 2, 41, 16), (2, 1, 5, 5), {"padding": (0, 4, 2, 2), "groups": 2,
                                                "padding_mode": "reflect"}, id="short-last-band"),
    # several input channels per group: one filter per pair, summed
    pytest.param((2, 3, 41, 29), (4, 3, 3, 3), {"padding": 1}, id="rgb-to-4-k3"),
    pytest.param((1, 4, 33, 20), (6, 2, 5, 4), {"padding": (2, 2, 1, 2), "groups": 2,
                                                "padding_mode": "replicate"}, id="g2-k5x4"),
    pytest.param((1, 3, 30, 26), (2, 3, 3, 3), {"padding": "valid",
                                                "padding_mode": "reflect"}, id="rgb-valid"),
]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(("x_shape", "w_shape", "options"), LAYERS)
def test_opencv_matches_reference_across_bands(
    x_shape: tuple[int, int, int, int], w_shape: tuple[int, int, int, int],
    options: ConvOptions, strategy: OpenCvStrategy, bias: bool,
) -> None:
    rng = np.random.default_rng(sum(x_shape) + sum(w_shape))
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = _weights(w_shape, strategy == "sepfilter2d", rng)
    b = rng.standard_normal(w_shape[0]).astype(np.float32) if bias else None
    spec = conv_spec(x.shape, w.shape, None if b is None else b.shape, **options)
    assert applies(spec) and weights_apply(strategy, w)
    expected = conv2d_reference(x, w, b, **options)
    # Bands of 4 kernel heights: many bands per plane, on 1 and 3 threads.
    for threads in (1, 3):
        engine = OpenCvEngine(threads, band_bytes=1)
        y, finite = engine.conv2d_checked(x, w, b, spec, strategy=strategy)
        assert finite
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5 * scale)
        np.testing.assert_array_equal(engine.conv2d(x, w, b, spec, strategy=strategy), y)
    # Whole planes give the very same numbers as bands.
    whole = OpenCvEngine(2).conv2d(x, w, b, spec, strategy=strategy)
    np.testing.assert_array_equal(whole, y)


@pytest.mark.parametrize(("options", "w_shape", "why"), [
    ({"padding": 1, "padding_mode": "circular"}, (1, 1, 3, 3), "no wrap border"),
    ({"padding": 1, "stride": 2}, (1, 1, 3, 3), "stride"),
    ({"padding": 2, "dilation": 2}, (1, 1, 3, 3), "dilation"),
    ({"padding": 2}, (1, 1, 3, 3), "output larger than the input"),
    ({"padding": 5}, (1, 1, 11, 11), "121 taps: OpenCV would filter through a DFT"),
])
def test_opencv_does_not_apply_where_it_would_differ(
    options: ConvOptions, w_shape: tuple[int, int, int, int], why: str
) -> None:
    spec = conv_spec((1, w_shape[1], 16, 16), w_shape, **options)
    assert not applies(spec), why
    assert not any(p.startswith("opencv:") for p in applicable_paths(spec, np.ones(w_shape,
                                                                                     np.float32)))


def test_kernels_with_a_zero_weight_never_take_opencv() -> None:
    """OpenCV skips zero taps: a NaN under one would not reach the output."""
    spec = conv_spec((1, 1, 16, 16), (1, 1, 3, 3), padding=1)
    laplace = np.array([[[[0, 1, 0], [1, -4, 1], [0, 1, 0]]]], np.float32)
    outer_with_zero = np.outer([1, 2, 1], [1, 0, -1]).astype(np.float32)[None, None]
    assert not weights_apply("filter2d", laplace)
    assert not weights_apply("sepfilter2d", outer_with_zero)
    assert not any(p.startswith("opencv:") for p in applicable_paths(spec, laplace))
    with pytest.raises(ValueError, match="opencv:filter2d"):
        OpenCvEngine(1).conv2d(np.ones((1, 1, 16, 16), np.float32), laplace, None, spec)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(("x_shape", "w_shape", "options"), LAYERS)
def test_zero_weights_run_on_opencv_for_a_finite_input(
    x_shape: tuple[int, int, int, int], w_shape: tuple[int, int, int, int],
    options: ConvOptions, strategy: OpenCvStrategy,
) -> None:
    """Skipped zero taps change nothing when every input is finite: the reference's numbers."""
    rng = np.random.default_rng(sum(x_shape) * 7 + sum(w_shape))
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = _weights(w_shape, strategy == "sepfilter2d", rng)
    if strategy == "sepfilter2d":  # a zero in a factor zeroes a whole row of the kernel
        w[:, :, 0, :] = 0.0
    else:
        w.reshape(-1)[::3] = 0.0
    spec = conv_spec(x.shape, w.shape, **options)
    assert not weights_apply(strategy, w)
    assert weights_apply(strategy, w, finite_input=True)
    y = OpenCvEngine(3, band_bytes=1).conv2d(x, w, None, spec, strategy=strategy,
                                             finite_input=True)
    expected = conv2d_reference(x, w, None, **options)
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5 * scale)


def _opencv_first() -> AutoEngine:
    x_shape, w_shape = (1, 3, 256, 256), (3, 1, 5, 5)
    spec = conv_spec(x_shape, w_shape, groups=3)
    table = AutoTable([{"family": family(spec), "features": list(features(spec)),
                        "order": ["opencv:filter2d", "numpy:toeplitz", "onnxruntime"]}])
    return AutoEngine(table=table)


def test_auto_reports_opencv_and_falls_back_for_zero_weights() -> None:
    auto = _opencv_first()
    spec = conv_spec((1, 3, 200, 90), (3, 1, 5, 5), groups=3, padding=2)
    rng = np.random.default_rng(5)
    w = rng.uniform(0.5, 1.0, (3, 1, 5, 5)).astype(np.float32)
    assert auto.plan(spec, w) == Plan("opencv:filter2d", "opencv")
    w[1, 0, 2, 2] = 0.0
    assert auto.plan(spec, w) == Plan("numpy:toeplitz", "numpy")
    # An input known to be finite (every request's) may run the zero on OpenCV; a checked
    # call (conv2d's check_finite) never plans that way.
    finite = auto.plan(spec, w, finite_input=True)
    assert finite == Plan("opencv:filter2d", "opencv", finite_input=True)
    x = rng.standard_normal((1, 3, 200, 90)).astype(np.float32)
    expected = conv2d_reference(x, w, None, groups=3, padding=2)
    np.testing.assert_allclose(auto.run(finite, x, w, None, spec), expected,
                               rtol=1e-4, atol=1e-5)
    # The checked call runs numpy:toeplitz: as exact, but not bit for bit OpenCV's sums (on
    # AVX-512 the two differ by 1.4e-6 where 25 terms of about 1 cancel to -0.006).
    y, finite_output = auto.conv2d_checked(x, w, None, spec)
    assert finite_output
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("row", "col"), [(0, 0), (39, 44), (41, 3), (199, 89)])
def test_a_non_finite_input_under_opencv_is_the_same_error(row: int, col: int) -> None:
    """The output, checked band by band, stands in for the input: corners and band seams."""
    auto = _opencv_first()
    engine = auto.engine("opencv")
    assert isinstance(engine, OpenCvEngine)
    engine.band_bytes = 1  # bands of 20 rows: seams at rows 40 to 60, among others
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 200, 90)).astype(np.float32)
    w = rng.uniform(0.5, 1.0, (3, 1, 5, 5)).astype(np.float32)
    spec = conv_spec((1, *x.shape), w.shape, groups=3, padding=2)
    assert auto.plan(spec, w).engine == "opencv"
    clean = conv2d(x, w, groups=3, padding=2, engine=auto)
    np.testing.assert_allclose(clean, conv2d_reference(x, w, None, groups=3, padding=2),
                               rtol=1e-4, atol=1e-5 * float(np.abs(clean).max()))
    x[2, row, col] = np.inf
    with pytest.raises(InvalidArgumentError) as error:
        conv2d(x, w, groups=3, padding=2, engine=auto)
    assert error.value.detail == (
        "input holds 1 NaN or infinite value(s); only finite numbers are allowed"
    )
    y = conv2d(x, w, groups=3, padding=2, engine=auto, check_finite=False)
    assert not np.isfinite(y[2, max(0, row - 2): row + 3, max(0, col - 2): col + 3]).any()
    assert np.isfinite(y[:2]).all()


def test_subsampled_opencv_checks_its_output_too() -> None:
    """Stride 2, dilation 2: OpenCV on every other row and column, the same error."""
    spec = conv_spec((1, 3, 64, 60), (4, 3, 3, 3), stride=2, dilation=2, padding=2)
    table = AutoTable([{"family": family(spec), "features": list(features(spec)),
                        "order": ["subsample+opencv:filter2d", "onnxruntime"]}])
    auto = AutoEngine(table=table)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 3, 64, 60)).astype(np.float32)
    w = rng.uniform(0.5, 1.0, (4, 3, 3, 3)).astype(np.float32)
    assert auto.plan(spec, w) == Plan("subsample+opencv:filter2d", "opencv")
    options: ConvOptions = {"stride": 2, "dilation": 2, "padding": 2}
    y = conv2d(x, w, engine=auto, **options)
    np.testing.assert_allclose(y, conv2d_reference(x, w, None, **options), rtol=1e-4,
                               atol=1e-5 * float(np.abs(y).max()))
    x[0, 1, 10, 20] = np.nan  # even row and column: read by the layer
    with pytest.raises(InvalidArgumentError, match="input holds 1 NaN"):
        conv2d(x, w, engine=auto, **options)


def test_rank1_factors_are_remembered_by_the_weights_bytes() -> None:
    col, row = np.array([1.0, 2.0, 1.0]), np.array([1.0, -1.0, 3.0])
    weight = np.outer(col, row).astype(np.float32)[None, None]
    factors = rank1(weight)
    assert factors is not None
    np.testing.assert_allclose(np.outer(factors[0][0], factors[1][0]), weight[0, 0], rtol=1e-6)
    assert rank1(weight.copy()) is factors  # the same bytes: no second SVD
    assert rank1(weight + np.eye(3, dtype=np.float32)) is None  # rank 3, told apart
