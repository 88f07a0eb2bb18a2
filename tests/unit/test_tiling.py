"""Convolution in horizontal bands (convserve.conv.tiling): exact, and bounded in memory.

The grid crosses padding modes, strides, dilations and groups with band budgets that cut the
output into bands of one row, of a few rows (the last one shorter) and of whole engine blocks.
Case ids read ``reflect-s2-d2-g3-rows1``: padding mode, stride, dilation, groups, then the band
height the budget allows. The NumPy engine in bands must equal the whole-image NumPy engine bit
for bit; ONNX Runtime in bands must agree with its whole-image run to 1e-6 of the output's
scale; both must match the float64 reference of ``tests/reference.py``.
"""

from __future__ import annotations

import tracemalloc
from dataclasses import dataclass

import numpy as np
import pytest

from convserve.conv import numpy_engine
from convserve.conv.numpy_engine import NumpyEngine, choose_strategy
from convserve.conv.onnx_engine import OnnxRuntimeEngine
from convserve.conv.spec import PADDING_MODES, ConvSpec, PaddingMode, conv_spec
from convserve.conv.tiling import (
    band_bytes,
    band_input,
    plan_bands,
    run_in_bands,
    source_rows,
    whole_image_bytes,
)
from tests.reference import conv2d_reference, pad_reference, source_index

ORT_RTOL = 1e-6


@dataclass(frozen=True)
class Case:
    """A layer over a random input, and the band height its budget gives."""

    mode: str
    stride: int | tuple[int, int] = 1
    dilation: int | tuple[int, int] = 1
    groups: int = 1
    kernel: tuple[int, int] = (3, 3)
    padding: int | tuple[int, ...] | str = "same"
    channels: tuple[int, int] = (6, 6)
    size: tuple[int, int] = (61, 19)
    band_rows: int = 2
    bias: bool = True

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        rng = np.random.default_rng(sum(map(ord, repr(self))))
        c_in, c_out = self.channels
        x = rng.standard_normal((1, c_in, *self.size)).astype(np.float32)
        w = rng.standard_normal((c_out, c_in // self.groups, *self.kernel)).astype(np.float32)
        b = rng.standard_normal(c_out).astype(np.float32) if self.bias else None
        return x, w, b

    def spec(self) -> ConvSpec:
        x, w, b = self.arrays()
        return conv_spec(x.shape, w.shape, None if b is None else b.shape, stride=self.stride,
                         padding=self.padding, dilation=self.dilation, groups=self.groups,
                         padding_mode=self.mode)

    def budget(self) -> int:
        """The most working bytes a band of ``band_rows`` rows needs: bands of that height."""
        return band_bytes(self.spec(), self.band_rows)


def case(c: Case) -> object:
    stride = c.stride if isinstance(c.stride, int) else "x".join(map(str, c.stride))
    dilation = c.dilation if isinstance(c.dilation, int) else "x".join(map(str, c.dilation))
    parts = [c.mode, f"s{stride}", f"d{dilation}", f"g{c.groups}",
             f"k{c.kernel[0]}x{c.kernel[1]}", f"rows{c.band_rows}"]
    if c.padding != "same":
        parts.append("p" + "-".join(map(str, np.atleast_1d(c.padding))))
    if not c.bias:
        parts.append("nobias")
    return pytest.param(c, id="-".join(parts))


CASES = [
    *(case(Case(mode, band_rows=rows)) for mode in PADDING_MODES for rows in (1, 4)),
    *(case(Case(mode, stride=2, padding=2, band_rows=3)) for mode in PADDING_MODES),
    *(case(Case(mode, dilation=2, band_rows=2)) for mode in PADDING_MODES),
    *(case(Case(mode, groups=3, band_rows=5)) for mode in PADDING_MODES),
    case(Case("reflect", groups=6, kernel=(5, 5), band_rows=3)),  # depthwise
    case(Case("circular", stride=(3, 1), dilation=(2, 1), padding=(4, 1, 2, 0), band_rows=2)),
    case(Case("zeros", stride=(2, 3), dilation=(1, 2), kernel=(4, 2), padding=(0, 3, 1, 1),
              band_rows=1)),
    case(Case("replicate", kernel=(1, 1), padding=(2, 1, 0, 0), band_rows=2, bias=False)),
    case(Case("zeros", padding=0, kernel=(2, 3), band_rows=7)),
    case(Case("reflect", kernel=(7, 7), padding=3, size=(9, 8), channels=(2, 3), band_rows=1)),
    case(Case("circular", kernel=(5, 3), padding=(5, 5, 1, 1), size=(5, 6), band_rows=2)),
    case(Case("reflect", channels=(3, 2), size=(2, 7), kernel=(1, 3), band_rows=1)),
]


@pytest.mark.parametrize("c", CASES)
def test_bands_give_the_whole_image_result(c: Case) -> None:
    x, w, b = c.arrays()
    spec = c.spec()
    plan = plan_bands(spec, c.budget())
    assert plan is not None and len(plan.bands) >= 2
    assert plan.rows_per_band == c.band_rows

    expected = conv2d_reference(x, w, b, c.stride, c.padding, c.dilation, c.groups, c.mode)
    # The NumPy engine works in blocks of rows itself (a few MB) and cuts bands of whole
    # blocks, so it bands only below one block per thread (a budget of 1 here): with blocks of
    # band_rows rows (forced) its bands are the plan's; with its own blocks (8 to 63 rows
    # here) they are larger, and a small image is one block.
    numpy_banded = NumpyEngine(threads=2, band_bytes=1)
    numpy_whole = NumpyEngine(threads=2, band_bytes=None)
    for block_rows in (c.band_rows, None):
        numpy_plan = numpy_banded.band_plan(spec, w, band_rows=block_rows)
        if block_rows is not None:
            assert numpy_plan is not None
            assert [band.out_start for band in numpy_plan.bands] == [
                band.out_start for band in plan.bands
            ]
        elif numpy_plan is None:  # one block covers the image (wide images: the test below)
            continue
        banded = numpy_banded.conv2d(x, w, b, spec, band_rows=block_rows)
        np.testing.assert_array_equal(banded,
                                      numpy_whole.conv2d(x, w, b, spec, band_rows=block_rows))
        np.testing.assert_allclose(banded, expected, rtol=1e-4, atol=1e-4)

    ort = OnnxRuntimeEngine(band_bytes=None)
    ort_whole = ort.conv2d(x, w, b, spec)
    # The engine cuts the plan's bands only for a padded copy over its budget (below); the
    # bands themselves must give the whole image's result either way.
    ort_banded = run_in_bands(x, plan, lambda xb, sb: ort.conv2d(xb, w, b, sb))
    scale = float(np.abs(ort_whole).max())
    np.testing.assert_allclose(ort_banded, ort_whole, rtol=ORT_RTOL, atol=ORT_RTOL * scale)
    ort_plan = OnnxRuntimeEngine(band_bytes=c.budget()).band_plan(spec)
    padded = 4 * spec.in_channels * spec.padded_height * spec.padded_width
    if spec.padding_mode == "zeros" or not any(spec.pads) or padded <= c.budget():
        assert ort_plan is None  # ONNX Runtime pads zeros on the fly: nothing to band
    else:
        assert ort_plan is not None and ort_plan.rows_per_band == c.band_rows


# Wide images: the NumPy engine splits bands into several matrix products per row block, whose
# rounding depends on their sizes; bands must be cut on its block boundaries to stay exact.
WIDE = [
    pytest.param(channels, groups, kernel, mode, stride, id=f"{channels[0]}to{channels[1]}-"
                 f"g{groups}-k{kernel}-{mode}-s{stride}")
    for channels, groups, kernel in [((3, 2), 1, 3), ((3, 16), 1, 3), ((8, 8), 1, 3),
                                     ((4, 4), 4, 7), ((3, 3), 3, 5), ((1, 1), 1, 9)]
    for mode in ("zeros", "reflect")
    for stride in (1, 2)
]


@pytest.mark.parametrize(("channels", "groups", "kernel", "mode", "stride"), WIDE)
def test_numpy_bands_are_exact_on_wide_images_for_every_strategy(
    channels: tuple[int, int], groups: int, kernel: int, mode: str, stride: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # im2col parts of the smallest size the engine takes (they fill one core's L2 cache,
    # 256 KiB at least), so that this image makes several blocks on any machine
    monkeypatch.setattr(numpy_engine, "_IM2COL_BYTES", 256 << 10)
    rng = np.random.default_rng(kernel * 10 + stride)
    c_in, c_out = channels
    x = rng.standard_normal((1, c_in, 97, 301)).astype(np.float32)
    w = rng.standard_normal((c_out, c_in // groups, kernel, kernel)).astype(np.float32)
    if (c_in, c_out, kernel) == (3, 3, 5):  # rank-1 kernels: the separable strategy
        w = np.outer(np.arange(1, 6), np.arange(5, 0, -1))[None, None].repeat(3, 0).astype(
            np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    spec = conv_spec(x.shape, w.shape, b.shape, stride=stride, padding=kernel // 2,
                     groups=groups, padding_mode=mode)
    whole = NumpyEngine(threads=2, band_bytes=None).conv2d(x, w, b, spec)
    for threads in (1, 2):
        engine = NumpyEngine(threads=threads, band_bytes=1)  # bands of one engine block
        plan = engine.band_plan(spec, w)
        assert plan is not None and len(plan.bands) >= 2
        banded = engine.conv2d(x, w, b, spec)
        np.testing.assert_array_equal(banded, whole, err_msg=choose_strategy(spec, w))


# (size, before, after) within each mode's limits (reflect: pads < size, circular: <= size).
PADS = [
    pytest.param(mode, size, before, after, id=f"{mode}-{size}-{before}-{after}")
    for mode in PADDING_MODES
    for size, before, after in [(7, 3, 2), (4, 3, 3), (1, 0, 0), (2, 1, 1), (5, 5, 4)]
    if not (mode == "reflect" and max(before, after) >= size)
]


@pytest.mark.parametrize(("mode", "size", "before", "after"), PADS)
def test_source_rows_match_the_reference_padding(mode: PaddingMode, size: int, before: int,
                                                 after: int) -> None:
    expected = [source_index(p - before, size, mode) for p in range(before + size + after)]
    assert source_rows(size, before, after, mode).tolist() == [
        -1 if e is None else e for e in expected
    ]


@pytest.mark.parametrize("mode", PADDING_MODES)
def test_band_inputs_are_the_rows_of_the_padded_image(mode: str) -> None:
    x = np.random.default_rng(1).standard_normal((2, 3, 11, 5)).astype(np.float32)
    spec = conv_spec(x.shape, (4, 3, 5, 3), padding=(4, 3, 1, 1), stride=2, padding_mode=mode)
    plan = plan_bands(spec, band_bytes(spec, 2))
    assert plan is not None
    padded = pad_reference(x, (4, 3, 0, 0), mode)  # vertical pads only: bands pad W themselves
    for band in plan.bands:
        first = band.out_start * 2
        np.testing.assert_array_equal(band_input(x, band),
                                      padded[:, :, first : first + band.spec.height])
        assert band.spec.pads == (0, 0, 1, 1)
        assert band.spec.out_height == band.out_stop - band.out_start


def test_plan_covers_every_row_once_within_the_budget() -> None:
    spec = conv_spec((1, 3, 1000, 700), (2, 3, 3, 3), padding="same", padding_mode="reflect")
    budget = 4 << 20
    plan = plan_bands(spec, budget)
    assert plan is not None
    rows = [(band.out_start, band.out_stop) for band in plan.bands]
    assert rows[0][0] == 0 and rows[-1][1] == spec.out_height
    assert all(stop == start for (_, stop), (start, _) in zip(rows, rows[1:], strict=False))
    heights = {stop - start for start, stop in rows[:-1]}
    assert heights == {plan.rows_per_band}
    assert band_bytes(spec, plan.rows_per_band) <= budget < band_bytes(spec,
                                                                       plan.rows_per_band + 1)
    # Bands of one height share one layer: an engine caching per shape builds two at most.
    assert len({band.spec for band in plan.bands}) <= 2


def test_small_layers_run_whole() -> None:
    spec = conv_spec((1, 3, 64, 64), (2, 3, 3, 3), padding=1, padding_mode="reflect")
    # 3 x 66 x 66 padded copy plus 27 x 64 x 64 unfolded floats.
    assert whole_image_bytes(spec) == 4 * (3 * 66 * 66 + 27 * 64 * 64)
    assert plan_bands(spec, whole_image_bytes(spec)) is None
    assert plan_bands(spec, None) is None
    assert plan_bands(spec, 0) is None
    assert plan_bands(spec, whole_image_bytes(spec) - 1) is not None
    # A 1x1 layer without padding is a matrix product: nothing to pad or unfold.
    assert whole_image_bytes(conv_spec((1, 3, 4000, 4000), (8, 3, 1, 1))) == 0


def test_a_budget_below_one_row_still_gives_one_row_bands() -> None:
    spec = conv_spec((1, 3, 10, 10), (2, 3, 3, 3), padding=1)
    plan = plan_bands(spec, 1)
    assert plan is not None
    assert [band.out_stop - band.out_start for band in plan.bands] == [1] * 10


def test_run_in_bands_calls_the_engine_per_band_only() -> None:
    x = np.random.default_rng(2).standard_normal((1, 2, 30, 8)).astype(np.float32)
    w = np.ones((1, 2, 3, 3), np.float32)
    spec = conv_spec(x.shape, w.shape, padding=1, padding_mode="replicate")
    plan = plan_bands(spec, band_bytes(spec, 8))
    assert plan is not None
    engine = NumpyEngine(threads=1, band_bytes=None)
    seen: list[tuple[int, ...]] = []

    def run(xb: np.ndarray, sb: ConvSpec) -> np.ndarray:
        seen.append(xb.shape)
        return engine.conv2d(xb, w, None, sb)

    y = run_in_bands(x, plan, run)
    assert seen == [(1, 2, 10, 8)] * 3 + [(1, 2, 8, 8)]
    np.testing.assert_array_equal(y, engine.conv2d(x, w, None, spec))


def test_onnxruntime_builds_sessions_for_bands_only() -> None:
    x = np.random.default_rng(3).standard_normal((1, 3, 120, 50)).astype(np.float32)
    w = np.random.default_rng(4).standard_normal((2, 3, 3, 3)).astype(np.float32)
    spec = conv_spec(x.shape, w.shape, padding="same", padding_mode="reflect")
    budget = band_bytes(spec, 7)
    assert budget < 4 * 3 * spec.padded_height * spec.padded_width  # the padded copy is over
    engine = OnnxRuntimeEngine(band_bytes=budget)
    y = engine.conv2d(x, w, None, spec)
    # 17 bands of 7 rows and one of 1: one session for the full bands, one for the last.
    assert engine.cache_stats().misses == 2
    assert OnnxRuntimeEngine(band_bytes=budget).band_plan(
        conv_spec(x.shape, w.shape, padding="same")) is None  # zeros: never banded
    np.testing.assert_allclose(y, conv2d_reference(x, w, None, 1, "same", 1, 1, "reflect"),
                               rtol=1e-4, atol=1e-4)


def test_numpy_bands_add_one_band_of_working_memory() -> None:
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 3, 1024, 512)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    spec = conv_spec(x.shape, w.shape, padding=1, padding_mode="circular")
    engine = NumpyEngine(threads=2, band_bytes=1)  # bands of one engine block
    plan = engine.band_plan(spec, w)
    assert plan is not None and len(plan.bands) > 8
    tracemalloc.start()
    try:
        y = engine.conv2d(x, w, None, spec)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # One band's rows (well under 1 MB) besides the engine's per-thread buffers, never a padded
    # copy (6 MB) or an unfolded image (57 MB).
    assert peak - y.nbytes < 3_000_000, peak - y.nbytes
