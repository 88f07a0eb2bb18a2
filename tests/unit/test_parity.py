"""Every engine against the float64 reference: the parity grid is the specification.

One parametrized test runs each case on each engine through ``convserve.conv2d``. Case ids
read ``s2-d2-g3-reflect-even``: ``s`` stride, ``d`` dilation, ``g`` groups, ``k`` kernel,
``p`` padding, ``n`` batch. Besides the semantics (odd and even kernels, 1x1, stride, dilation,
groups, every padding form and mode, bias, batch, non-square and 3-D input) the grid crosses the
NumPy engine's strategy boundaries: rank-1 kernels (separable passes), wide layers (im2col),
few channels with large kernels or many groups (Toeplitz), and images taller than one band.
``engine="auto"`` runs as a third engine, and every path it can take (each engine's strategies,
OpenCV's, with and without the subsample transform) runs on every case where it applies.
ONNX Runtime's ``packed`` strategy, which ``auto`` takes only on layers of 8 output channels or
more, runs on every case with that rule lifted. A property-based test then draws random small
layers.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypedDict, Unpack
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convserve import conv2d
from convserve.conv import ENGINE_CHOICES, EngineChoice, packing
from convserve.conv.auto import AutoEngine, Plan, applicable_paths, path_engine
from convserve.conv.onnx_engine import OnnxRuntimeEngine
from convserve.conv.spec import ConvSpec, conv_spec
from tests.reference import ConvOptions, conv2d_reference

RTOL = 1e-4


@dataclass(frozen=True)
class Layer:
    """One convolution to run: shapes, options and how to fill the kernel."""

    x: tuple[int, ...]
    weight: tuple[int, int, int, int]
    bias: bool = True
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, ...] | str = 0
    dilation: int | tuple[int, int] = 1
    groups: int = 1
    padding_mode: str = "zeros"
    kernel: str = "random"  # or "gaussian", "box", "sobel", "outer", "near-rank1"


class LayerOptions(TypedDict, total=False):
    """The optional fields of :class:`Layer`, as keyword arguments of :func:`case`."""

    bias: bool
    stride: int | tuple[int, int]
    padding: int | tuple[int, ...] | str
    dilation: int | tuple[int, int]
    groups: int
    padding_mode: str
    kernel: str


def gaussian(size: int, sigma: float) -> np.ndarray:
    a = np.arange(size) - (size - 1) / 2
    g = np.exp(-(a**2) / (2 * sigma**2))
    kernel: np.ndarray = np.outer(g, g) / g.sum() ** 2
    return kernel


def make_weight(layer: Layer, rng: np.random.Generator) -> np.ndarray:
    c_out, c_in_g, k_h, k_w = layer.weight
    if layer.kernel == "random":
        return rng.standard_normal(layer.weight).astype(np.float32)
    if layer.kernel == "gaussian":
        base = gaussian(k_h, 1.1)
    elif layer.kernel == "box":
        base = np.full((k_h, k_w), 1.0 / (k_h * k_w))
    elif layer.kernel == "sobel":
        base = np.outer([1.0, 2.0, 1.0], [1.0, 0.0, -1.0])
    elif layer.kernel == "outer":  # a different rank-1 kernel per output channel
        cols = rng.standard_normal((c_out, c_in_g, k_h, 1))
        rows = rng.standard_normal((c_out, c_in_g, 1, k_w))
        return (cols * rows).astype(np.float32)
    elif layer.kernel == "near-rank1":  # rank 1 plus a 1e-3 perturbation: not separable
        base = gaussian(k_h, 1.1) + 1e-3 * rng.standard_normal((k_h, k_w))
    else:
        raise ValueError(layer.kernel)
    scales = rng.uniform(0.5, 2.0, size=(c_out, c_in_g, 1, 1))
    weight: np.ndarray = (scales * base).astype(np.float32)
    return weight


def make_arrays(
    case_id: str, layer: Layer
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    rng = np.random.default_rng(zlib.crc32(case_id.encode()))
    x = rng.standard_normal(layer.x).astype(np.float32)
    w = make_weight(layer, rng)
    b = rng.standard_normal(layer.weight[0]).astype(np.float32) if layer.bias else None
    return x, w, b


def assert_matches(y: np.ndarray, expected: np.ndarray) -> None:
    assert y.dtype == np.float32
    assert y.shape == expected.shape
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(y, expected, rtol=RTOL, atol=1e-5 * scale)


def case(
    case_id: str, *x: int, w: tuple[int, int, int, int], **kw: Unpack[LayerOptions]
) -> pytest.ParameterSet:
    return pytest.param(case_id, Layer(x=x, weight=w, **kw), id=case_id)


CASES = [
    # kernels: odd, even, 1x1, non-square
    case("k3-p1", 1, 3, 8, 9, w=(2, 3, 3, 3), padding=1),
    case("k2-even", 1, 2, 7, 6, w=(3, 2, 2, 2)),
    case("k4-even-p2-nobias", 1, 3, 9, 8, w=(2, 3, 4, 4), padding=2, bias=False),
    case("k1x1", 1, 5, 6, 7, w=(4, 5, 1, 1)),
    case("k1x1-nobias-n3", 3, 4, 5, 3, w=(2, 4, 1, 1), bias=False),
    case("k1x1-p1-reflect", 1, 3, 5, 6, w=(2, 3, 1, 1), padding=1, padding_mode="reflect"),
    case("k1x1-s2", 1, 3, 7, 8, w=(2, 3, 1, 1), stride=2),
    case("k3x5-p1x2", 1, 3, 9, 11, w=(2, 3, 3, 5), padding=(1, 2)),
    case("k5x2-valid", 1, 2, 10, 6, w=(3, 2, 5, 2), padding="valid"),
    case("k-larger-than-image-p2", 1, 1, 2, 3, w=(1, 1, 5, 5), padding=2),
    case("k-equals-image", 1, 2, 4, 5, w=(3, 2, 4, 5)),
    # stride and dilation
    case("s2", 1, 3, 9, 10, w=(2, 3, 3, 3), stride=2, padding=1),
    case("s3x1", 1, 2, 11, 7, w=(2, 2, 3, 3), stride=(3, 1)),
    case("s1x3-p1", 1, 2, 7, 11, w=(2, 2, 3, 3), stride=(1, 3), padding=1),
    case("d2", 1, 2, 9, 9, w=(2, 2, 3, 3), dilation=2),
    case("d2x3-p2", 1, 2, 10, 12, w=(3, 2, 3, 3), dilation=(2, 3), padding=2),
    case("s2-d2-p2", 1, 3, 12, 11, w=(4, 3, 3, 3), stride=2, dilation=2, padding=2),
    case("s2-d4-p3-odd-phase", 1, 3, 13, 14, w=(2, 3, 3, 3), stride=2, dilation=4, padding=3),
    case("s2x3-d4x3-asym", 2, 2, 17, 19, w=(3, 2, 3, 2), stride=(2, 3), dilation=(4, 3),
         padding=(1, 2, 0, 3)),
    case("s2-d2-pad-past-phase", 1, 1, 5, 5, w=(1, 1, 2, 2), stride=2, dilation=2,
         padding=(4, 0, 3, 1)),
    case("s3-d3-depthwise-nobias", 1, 2, 16, 11, w=(2, 1, 3, 3), groups=2, stride=3,
         dilation=3, padding=2, bias=False),
    case("s2-d2-g3-reflect-even", 1, 3, 11, 12, w=(6, 1, 2, 2), stride=2, dilation=2,
         groups=3, padding=2, padding_mode="reflect"),
    # groups
    case("g2", 1, 4, 7, 8, w=(6, 2, 3, 3), groups=2, padding=1),
    case("g2-s2-circular", 2, 4, 8, 7, w=(4, 2, 3, 3), groups=2, stride=2, padding=1,
         padding_mode="circular"),
    case("depthwise", 1, 3, 8, 9, w=(3, 1, 3, 3), groups=3, padding=1),
    case("depthwise-m2", 1, 3, 8, 7, w=(6, 1, 3, 3), groups=3, padding=1),
    case("depthwise-m2-nobias-replicate", 1, 2, 6, 9, w=(4, 1, 3, 2), groups=2,
         padding=(1, 1, 0, 1), padding_mode="replicate", bias=False),
    case("g4-k5-p2", 1, 8, 9, 10, w=(4, 2, 5, 5), groups=4, padding=2),
    # padding forms
    case("p-int-2", 1, 2, 5, 6, w=(2, 2, 3, 3), padding=2),
    case("p-pair-1x2", 1, 2, 5, 6, w=(2, 2, 3, 3), padding=(1, 2)),
    case("p-0-2-1-3-asym", 1, 2, 6, 5, w=(2, 2, 3, 3), padding=(0, 2, 1, 3)),
    case("p-3-0-0-1-asym-k2", 1, 2, 6, 5, w=(2, 2, 2, 2), padding=(3, 0, 0, 1)),
    case("valid", 1, 2, 6, 7, w=(2, 2, 3, 3), padding="valid"),
    case("same-k3", 1, 2, 6, 7, w=(2, 2, 3, 3), padding="same"),
    case("same-k5-reflect", 1, 2, 7, 6, w=(2, 2, 5, 5), padding="same", padding_mode="reflect"),
    case("same-k4-even", 1, 2, 6, 7, w=(2, 2, 4, 4), padding="same"),
    case("same-k2x4-even-replicate", 1, 2, 5, 6, w=(2, 2, 2, 4), padding="same",
         padding_mode="replicate"),
    case("same-k3-d2", 1, 2, 8, 7, w=(2, 2, 3, 3), padding="same", dilation=2),
    case("same-k4-d3-even-circular", 1, 2, 9, 10, w=(2, 2, 4, 4), padding="same", dilation=3,
         padding_mode="circular"),
    # padding modes with asymmetric pads, and at their limits
    case("zeros-asym", 1, 2, 6, 5, w=(2, 2, 3, 3), padding=(1, 2, 2, 1)),
    case("reflect-asym", 1, 2, 6, 5, w=(2, 2, 3, 3), padding=(1, 2, 2, 1),
         padding_mode="reflect"),
    case("replicate-asym", 1, 2, 6, 5, w=(2, 2, 3, 3), padding=(1, 2, 2, 1),
         padding_mode="replicate"),
    case("circular-asym", 1, 2, 6, 5, w=(2, 2, 3, 3), padding=(1, 2, 2, 1),
         padding_mode="circular"),
    case("reflect-pad-size-minus-1", 1, 1, 4, 3, w=(1, 1, 3, 3), padding=(3, 3, 2, 2),
         padding_mode="reflect"),
    case("circular-pad-equals-size", 1, 1, 3, 2, w=(2, 1, 3, 3), padding=(3, 3, 2, 2),
         padding_mode="circular"),
    case("replicate-pad-past-size", 1, 1, 2, 3, w=(1, 1, 3, 3), padding=4,
         padding_mode="replicate"),
    case("k1x1-p2-circular", 1, 2, 3, 4, w=(2, 2, 1, 1), padding=2, padding_mode="circular"),
    # batch, non-square, 3-D input
    case("n3", 3, 3, 7, 5, w=(2, 3, 3, 3), padding=1),
    case("n3-tall-2x13", 3, 2, 13, 2, w=(2, 2, 3, 1), padding=(1, 0)),
    case("wide-1x17", 1, 2, 1, 17, w=(3, 2, 1, 4)),
    case("x3d", 3, 7, 8, w=(2, 3, 3, 3), padding=1),
    case("x3d-depthwise-reflect", 2, 6, 9, w=(2, 1, 3, 3), groups=2, padding=1,
         padding_mode="reflect"),
    # rank-1 kernels: separable passes
    case("rank1-gaussian5-depthwise-reflect", 1, 3, 12, 11, w=(3, 1, 5, 5), groups=3,
         padding="same", padding_mode="reflect", kernel="gaussian"),
    case("rank1-sobel-1ch", 1, 1, 9, 10, w=(1, 1, 3, 3), padding=1, kernel="sobel"),
    case("rank1-box-m2-replicate", 1, 2, 8, 9, w=(4, 1, 3, 3), groups=2, padding=1,
         padding_mode="replicate", kernel="box"),
    case("rank1-outer-s2-d2", 2, 2, 13, 12, w=(2, 1, 3, 4), groups=2, stride=2, dilation=2,
         padding=(1, 2, 3, 0), kernel="outer"),
    case("rank1-gaussian-3in", 1, 3, 9, 8, w=(2, 3, 5, 5), padding=2, kernel="gaussian"),
    case("rank1-near-not-separable", 1, 1, 10, 9, w=(1, 1, 5, 5), padding=2,
         kernel="near-rank1"),
    case("rank1-tall-gaussian7", 1, 1, 61, 7, w=(1, 1, 7, 7), padding=3, kernel="gaussian",
         padding_mode="circular"),
    # wide layers: im2col
    case("wide-32to24", 1, 32, 10, 12, w=(24, 32, 3, 3), padding=1),
    case("wide-24to16-s2-nobias", 1, 24, 11, 9, w=(16, 24, 3, 3), stride=2, bias=False),
    case("wide-64to4-tall", 1, 64, 44, 64, w=(4, 64, 3, 3), padding=1),
    # few channels, large kernels or many groups: Toeplitz
    case("k7-1ch-tall", 1, 1, 30, 13, w=(1, 1, 7, 7), padding=3),
    case("k5-rgb-to-2-tall", 1, 3, 45, 8, w=(2, 3, 5, 5), padding=2),
    case("k5-depthwise-d2-reflect", 1, 3, 14, 12, w=(3, 1, 5, 5), groups=3, dilation=2,
         padding=4, padding_mode="reflect"),
    case("depthwise-12ch-k3", 1, 12, 9, 8, w=(12, 1, 3, 3), groups=12, padding=1),
    case("depthwise-16ch-m2-tall", 2, 16, 33, 6, w=(32, 1, 3, 3), groups=16, padding=1,
         bias=False),
    # OpenCV (depthwise, stride 1, pads no wider than the kernel): cropped and mirrored borders
    case("depthwise-valid-k3x4", 1, 2, 7, 9, w=(2, 1, 3, 4), groups=2, padding="valid"),
    case("depthwise-reflect-asym-k5", 1, 2, 9, 8, w=(4, 1, 5, 5), groups=2,
         padding=(0, 3, 2, 1), padding_mode="reflect"),
    case("1ch-replicate-k2x3-top-only", 1, 1, 6, 7, w=(3, 1, 2, 3), padding=(1, 0, 0, 1),
         padding_mode="replicate"),
]


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    """Reference outputs, computed once per case and shared by every engine."""
    return {}


def layer_options(layer: Layer) -> ConvOptions:
    return {
        "stride": layer.stride, "padding": layer.padding, "dilation": layer.dilation,
        "groups": layer.groups, "padding_mode": layer.padding_mode,
    }


@pytest.mark.parametrize("engine", ENGINE_CHOICES)
@pytest.mark.parametrize(("case_id", "layer"), CASES)
def test_engine_matches_reference(
    engine: EngineChoice, case_id: str, layer: Layer, expected: dict[str, np.ndarray]
) -> None:
    x, w, b = make_arrays(case_id, layer)
    options = layer_options(layer)
    if case_id not in expected:
        expected[case_id] = conv2d_reference(x, w, b, **options)
    y = conv2d(x, w, b, engine=engine, **options)
    assert_matches(y, expected[case_id])


@pytest.mark.parametrize(("case_id", "layer"), CASES)
def test_every_auto_path_matches_reference(
    case_id: str, layer: Layer, expected: dict[str, np.ndarray]
) -> None:
    x4, w, b, spec, want = four_d_case(case_id, layer, expected)
    auto = AutoEngine()
    paths = applicable_paths(spec, w)
    assert "onnxruntime" in paths and "numpy:im2col" in paths
    for path in paths:
        plan = Plan(path, path_engine(path))
        y = auto.run(plan, x4, w, b, spec)
        assert_matches(y.reshape(want.shape), want)


def four_d_case(
    case_id: str, layer: Layer, expected: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, ConvSpec, np.ndarray]:
    """A case's arrays with a 4-D input, its spec, and its reference output (computed once)."""
    x, w, b = make_arrays(case_id, layer)
    options = layer_options(layer)
    if case_id not in expected:
        expected[case_id] = conv2d_reference(x, w, b, **options)
    x4 = x.reshape((1, *x.shape)) if x.ndim == 3 else x
    spec = conv_spec(x4.shape, w.shape, None if b is None else b.shape, **options)
    return x4, w, b, spec, expected[case_id]


@pytest.fixture(scope="module")
def packed_engine() -> Iterator[OnnxRuntimeEngine]:
    """An ONNX Runtime engine whose ``packed`` strategy runs every layer: the output-channel
    rule is about speed, not results, so the grid lifts it."""
    with mock.patch.object(packing, "PACKED_MIN_OUT_CHANNELS", 1):
        yield OnnxRuntimeEngine(intra_op_threads=2)


@pytest.mark.parametrize(("case_id", "layer"), CASES)
def test_packed_onnxruntime_matches_reference(
    case_id: str, layer: Layer, expected: dict[str, np.ndarray],
    packed_engine: OnnxRuntimeEngine,
) -> None:
    x4, w, b, spec, want = four_d_case(case_id, layer, expected)
    assert packing.packed_applies(spec)
    misses = packed_engine.packed_cache_stats().misses
    y = packed_engine.conv2d(x4, w, b, spec, strategy="packed")
    if packed_engine.band_plan(spec) is None:
        assert packed_engine.packed_cache_stats().misses == misses + 1  # it ran packed
    assert_matches(y.reshape(want.shape), want)


@st.composite
def layers(draw: st.DrawFn) -> tuple[ConvOptions, tuple[int, ...], tuple[int, ...], bool]:
    """A random valid small layer: options, x shape, weight shape, bias."""
    groups = draw(st.integers(1, 3))
    c_in_g, c_out_g = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    k_h, k_w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    s_h, s_w = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    d_h, d_w = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    form = draw(st.sampled_from(["int", "pair", "four", "valid", "same"]))
    if form == "same" and (s_h, s_w) != (1, 1):
        form = "four"
    pads = draw(st.lists(st.integers(0, 2), min_size=4, max_size=4))
    paddings: dict[str, int | tuple[int, ...] | str] = {
        "int": pads[0], "pair": (pads[0], pads[2]), "four": tuple(pads), "valid": "valid",
        "same": "same",
    }
    padding = paddings[form]
    # Big enough for the dilated kernel after padding, and > every pad (reflect needs pad < size).
    h = draw(st.integers(max(3, d_h * (k_h - 1) + 1), 9))
    w = draw(st.integers(max(3, d_w * (k_w - 1) + 1), 9))
    n = draw(st.integers(1, 2))
    options: ConvOptions = {"stride": (s_h, s_w), "padding": padding, "dilation": (d_h, d_w),
               "groups": groups, "padding_mode": mode}
    return options, (n, groups * c_in_g, h, w), (groups * c_out_g, c_in_g, k_h, k_w), \
        draw(st.booleans())


@pytest.mark.parametrize("engine", ENGINE_CHOICES)
@settings(max_examples=60, deadline=None)
@given(layer=layers(), seed=st.integers(0, 2**32 - 1), rank1=st.booleans())
def test_engine_matches_reference_on_random_layers(
    engine: EngineChoice,
    layer: tuple[ConvOptions, tuple[int, ...], tuple[int, ...], bool],
    seed: int,
    rank1: bool,
) -> None:
    options, x_shape, w_shape, has_bias = layer
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(np.float32)
    c_out, c_in_g, k_h, k_w = w_shape
    if rank1:
        w = (rng.standard_normal((c_out, c_in_g, k_h, 1))
             * rng.standard_normal((c_out, c_in_g, 1, k_w))).astype(np.float32)
    else:
        w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32) if has_bias else None
    y = conv2d(x, w, b, engine=engine, **options)
    assert_matches(y, conv2d_reference(x, w, b, **options))


@settings(max_examples=60, deadline=None)
@given(layer=layers(), seed=st.integers(0, 2**32 - 1))
def test_every_auto_path_matches_reference_on_random_layers(
    layer: tuple[ConvOptions, tuple[int, ...], tuple[int, ...], bool], seed: int
) -> None:
    options, x_shape, w_shape, has_bias = layer
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32) if has_bias else None
    expected = conv2d_reference(x, w, b, **options)
    spec = conv_spec(x.shape, w.shape, None if b is None else b.shape, **options)
    auto = AutoEngine()
    for path in applicable_paths(spec, w):
        plan = Plan(path, path_engine(path))
        assert_matches(auto.run(plan, x, w, b, spec), expected)
    ort = auto.engine("onnxruntime")
    assert isinstance(ort, OnnxRuntimeEngine)
    with mock.patch.object(packing, "PACKED_MIN_OUT_CHANNELS", 1):
        packed = ort.conv2d(x, w, b, spec, strategy="packed")
    assert_matches(packed, expected)
