"""The NumPy engine: ``conv2d`` on the CPU with NumPy and its BLAS, fast rather than textbook.

Past 500 lines on purpose: one engine's strategies share its band buffers, thread pool and
padding, and read best side by side (the slow oracle is ``tests/reference.py``).

Every strategy works on *bands* of output rows, so working memory stays bounded whatever the
image size (a few MB per thread besides ``x`` and ``y``), and the bands run on ``threads``
threads (NumPy releases the GIL in ufuncs and matmul). Each band first copies the input rows it
reads into a padded buffer ``(C_in, R_p, W_p)``, applying ``padding_mode`` on the way, so the
input is never padded as a whole.

Strategies, picked by :func:`choose_strategy` from the shapes and the weights
(``g`` = groups, ``R`` = output rows in a band):

``direct``
    1x1 kernel, stride 1, no padding: a matrix product over channels per group,
    ``(C_out/g, C_in/g) @ (C_in/g, pixels)``, straight from ``x`` into ``y``.
``im2col``
    The general case and wide layers: the patches of a part of a band are copied into columns
    ``(C_in/g * k_h * k_w, R * W_out)`` (one core's L2 cache, so they stay there) and one
    matrix product per group writes those rows of ``y``, the bias folded in as a column of the
    weight times a row of ones (with one group of at most 3 outputs, one matrix-vector product
    per output). The BLAS does exactly the useful work; the price is copying the input
    ``k_h * k_w`` times.
``toeplitz``
    One or two outputs per group with large kernels, or many groups (depthwise blurs, 5x5 and
    up, or 8 groups and more): for each kernel column ``v`` the band is ``T_v @ X_v``, where
    ``X_v`` is the padded band *viewed* (not copied) ``v * d_w`` columns to the right, shape
    ``(C_in/g * R_p, W_out)``, and ``T_v`` ``(C_out/g * R, C_in/g * R_p)`` is a banded Toeplitz
    matrix holding kernel column ``v`` along the rows. One batched matmul over groups and
    ``v``, then a sum over ``v``; with one input channel per group the ``X_v`` are copied side
    by side first and one matmul does the sum. It multiplies zeros (``C_out/g * R_p / k_h``
    times the useful work), which the BLAS does faster than the memory traffic of im2col or of
    per-tap accumulation (``y += w[u, v] * view``, 3-4x slower than Toeplitz on a 7x7 depthwise
    layer, so used only for separable kernels below).
``separable``
    One input channel per group and every kernel of rank 1 and larger than 11x11 (box and
    Gaussian blurs): ``w[o] = outer(col_o, row_o)``, found by SVD and kept only when both the
    second singular value and the reconstruction error are below ``1e-6`` of the kernel's
    scale. A vertical pass (a Toeplitz matmul with ``col_o``) then a horizontal pass (``k_w``
    in-place multiply-adds of shifted views with ``row_o``) do ``k_h + k_w`` instead of
    ``k_h * k_w`` multiply-adds per output. Its many short passes lost to Toeplitz or im2col
    on every smaller rank-1 kernel measured (3x3 to 11x11 Gaussians, Sobel: 0.69-0.95x of its
    time for Toeplitz, 0.58x for im2col on Sobel).

Accumulation is in float32, as in any float32 convolution library; results match a float64
reference to ``1e-4`` relative.

OpenBLAS called from several threads at once, each call asking for all cores, oversubscribes
the CPU and can run tens of times slower. While a convolution runs, this engine therefore pins
OpenBLAS to one thread (reference-counted, restored afterwards) and does its own threading.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

import numpy as np
from numpy.lib.stride_tricks import as_strided

from convserve.conv.buffers import OUTPUTS
from convserve.conv.engine import Device, DeviceStatus, EngineName
from convserve.conv.spec import ConvSpec, PaddingMode, padding_source
from convserve.conv.threads import HelperThreads
from convserve.conv.tiling import DEFAULT_BAND_BYTES, BandPlan, plan_bands, run_in_bands
from convserve.cores import available_cores, l2_cache_bytes
from convserve.errors import EngineUnavailableError

__all__ = [
    "CUDA_UNAVAILABLE_REASON",
    "RANK1_RTOL",
    "STRATEGIES",
    "NumpyEngine",
    "Strategy",
    "choose_strategy",
    "rank1_factors",
]

CUDA_UNAVAILABLE_REASON = (
    "the NumPy engine runs on the CPU only; use engine=onnxruntime with onnxruntime-gpu for CUDA"
)

Strategy: TypeAlias = Literal["direct", "im2col", "toeplitz", "separable"]
STRATEGIES: tuple[Strategy, ...] = ("direct", "im2col", "toeplitz", "separable")

_ITEM = np.dtype(np.float32).itemsize

# A kernel is rank 1 when its second singular value and its reconstruction error are both below
# this fraction of its scale (float32 rounding of a float64 outer product is about 1e-7).
RANK1_RTOL = 1e-6

# Band heights in output rows, tuned on 2-core AVX-512 machines. Toeplitz bands stay short
# because the zeros they multiply grow with the band. im2col unfolds parts whose columns fill
# one core's L2 cache, clamped to 256 KiB-2 MiB (paired runs on a 1 MiB L2, 2 threads, against
# 256 KiB parts: W1 1.52-1.80 against 2.41 ms, P5 4.4-5.2 against 7.1, W7 3.3 against 3.8, a
# 96x96 3->8 layer 0.18 against 0.41, 3->16 layers even; 2 MiB parts, past that L2, took W1 to
# 3.2 ms) but are at least 768 pixels wide (wide matmuls want long rows), from bands padded 32
# rows or more at a time while the padded band fits that L2 too, so rows two bands share are
# copied rarely and the threads take few, large items (paired runs against 16 rows and 4 MB:
# W1 1.69 against 2.25 ms, P8 0.94x, W2, W4, W7 and P1 even; 2 MB bands took W4 from 32 to
# 38 ms). Direct bands hold about 16k pixels.
_TOEPLITZ_ROWS = 8
_SEPARABLE_ROWS = 16
_IM2COL_BYTES = min(max(l2_cache_bytes(), 256 << 10), 2 << 20)
_IM2COL_MIN_PIXELS = 768
_IM2COL_BAND_ROWS = 32
_IM2COL_BAND_BYTES = _IM2COL_BYTES
# Up to this many outputs (one group), im2col multiplies each output's weights with the columns
# (a matrix-vector product) instead of all at once: OpenBLAS's GEMM with 2 or 3 rows took 98
# and 66 us on 28 x 18432 and 28 x 9216 columns, against 67 and 40 us for the products one by
# one (W1 on one thread: 2.15 against 2.99 ms; even on two, where other limits bind); from 4
# rows GEMM is faster (48 against 56 us). With several groups the batched matmul stays (a
# 32-group depthwise layer took 5.1 ms as 32 products per part, 2.1 ms batched).
_IM2COL_GEMV_OUTPUTS = 3
_DIRECT_PIXELS = 1 << 14

# Toeplitz against im2col (measured on 512x512 inputs): Toeplitz multiplies
# C_out/g * R_p / k_h times the useful work per input channel, im2col copies the input k_h*k_w
# times. Toeplitz wins while that waste stays under 4 (one output per group and a 5x5 kernel or
# larger, two outputs per group from 7x7) and there are at least 25 taps*channels to copy.
_TOEPLITZ_MAX_WASTE = 4.0
_TOEPLITZ_MIN_COPIES = 25
# With one input channel per group, a 3x3 kernel over a few channels runs faster as im2col
# (2048x2048 grey Gaussian: 5.5 against 8.4 ms; 512x512 RGB: 1.7 against 2.7), over 8 groups or
# more as Toeplitz (32 channels: 2.9 against 5.0 ms), and 5x5 and larger as Toeplitz (W3 8.9
# against 12.1 ms, 5x5 RGB depthwise 7.3 against 11.0). Rank-1 kernels of more taps than
# this keep the separable strategy; it was slower on every smaller one measured.
_TOEPLITZ_DEPTHWISE_MIN_TAPS = 25
_TOEPLITZ_DEPTHWISE_MIN_GROUPS = 8
_SEPARABLE_MIN_TAPS = 121


# -- padding -------------------------------------------------------------------------------


def _source_index(size: int, before: int, after: int, mode: PaddingMode) -> np.ndarray:
    """For each position of an axis padded by ``(before, after)``, its source index or -1 (zero).

    Returns
    -------
    ndarray of int64, shape (before + size + after,)
    """
    return padding_source(np.arange(-before, size + after), size, mode)


def _row_runs(source_rows: np.ndarray) -> tuple[tuple[int, int, int], ...]:
    """Split source row indices into runs ``(dest, source, count)`` of consecutive rows or zeros.

    A zero run has ``source == -1``.
    """
    runs: list[tuple[int, int, int]] = []
    start, total = 0, len(source_rows)
    while start < total:
        first = int(source_rows[start])
        end = start + 1
        if first < 0:
            while end < total and source_rows[end] < 0:
                end += 1
        else:
            while end < total and source_rows[end] == source_rows[end - 1] + 1:
                end += 1
        runs.append((start, first, end - start))
        start = end
    return tuple(runs)


@dataclass(frozen=True)
class _Band:
    """Output rows ``[row0, row0 + rows)`` of image ``n``, and how to fill their padded input."""

    n: int
    row0: int
    rows: int
    runs: tuple[tuple[int, int, int], ...]


class _BandPadder:
    """Copies the input rows a band reads into a padded buffer ``(C_in, R_p, W_p)``."""

    def __init__(self, spec: ConvSpec) -> None:
        top, bottom, left, right = spec.pads
        self.stride_h = spec.stride[0]
        self.rows = _source_index(spec.height, top, bottom, spec.padding_mode)
        cols = _source_index(spec.width, left, right, spec.padding_mode)
        self.left, self.right, self.width = left, right, spec.width
        self.zeros = spec.padding_mode == "zeros"
        # Pad columns are copied from inside the buffer, where column = source column + left.
        self.left_from = cols[:left] + left
        self.right_from = cols[left + spec.width :] + left

    def runs(self, row0: int, padded_rows: int) -> tuple[tuple[int, int, int], ...]:
        """Row runs of the band whose first output row is ``row0``."""
        start = row0 * self.stride_h
        return _row_runs(self.rows[start : start + padded_rows])

    def fill(self, image: np.ndarray, band: _Band, buf: np.ndarray) -> None:
        """Fill ``buf`` (C_in, R_p, W_p) with the padded rows of ``image`` (C_in, H, W).

        ``buf`` must have been allocated with zeros: pad columns of zeros are not rewritten.
        """
        left, width = self.left, self.width
        for dest, source, count in band.runs:
            if source < 0:
                buf[:, dest : dest + count, :] = 0.0
            else:
                buf[:, dest : dest + count, left : left + width] = image[
                    :, source : source + count
                ]
        # With zeros, the pad columns of a buffer stay as allocated: zero.
        if not self.zeros:
            if left:
                buf[:, :, :left] = buf[:, :, self.left_from]
            if self.right:
                buf[:, :, left + width :] = buf[:, :, self.right_from]


# -- weights -------------------------------------------------------------------------------


def rank1_factors(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Column and row factors of every 2-D kernel if each has rank 1, else None.

    Parameters
    ----------
    weight : ndarray of shape (C_out, 1, k_h, k_w)

    Returns
    -------
    (col, row) : float32 ndarrays of shapes (C_out, k_h) and (C_out, k_w) with
        ``weight[o, 0] ~= outer(col[o], row[o])`` to ``RANK1_RTOL`` of ``max |weight[o]|``,
        or None when some kernel is not of rank 1.
    """
    kernels = weight[:, 0].astype(np.float64)
    u, s, vt = np.linalg.svd(kernels)
    if s.shape[1] > 1 and np.any(s[:, 1] > RANK1_RTOL * s[:, 0]):
        return None
    root = np.sqrt(s[:, 0])
    col = u[:, :, 0] * root[:, None]
    row = vt[:, 0, :] * root[:, None]
    error = np.abs(col[:, :, None] * row[:, None, :] - kernels).max(axis=(1, 2))
    if np.any(error > RANK1_RTOL * np.abs(kernels).max(axis=(1, 2))):
        return None
    return col.astype(np.float32), row.astype(np.float32)


def _toeplitz(columns: np.ndarray, rows: int, padded_rows: int, s_h: int, d_h: int) -> np.ndarray:
    """Banded matrices that apply kernel columns down the rows of a band.

    Parameters
    ----------
    columns : ndarray of shape (G, V, O, I, k_h)
        Kernel column ``v`` of output ``o`` and input ``i`` in group ``g``.

    Returns
    -------
    ndarray of float32, shape (G, V, O * rows, I * padded_rows), with
    ``T[g, v, o*rows + r, i*padded_rows + r*s_h + u*d_h] = columns[g, v, o, i, u]``.
    """
    g, v, o, i, k_h = columns.shape
    t = np.zeros((g, v, o, rows, i, padded_rows), dtype=np.float32)
    for r in range(rows):
        for u in range(k_h):
            t[:, :, :, r, :, r * s_h + u * d_h] = columns[..., u]
    return t.reshape(g, v, o * rows, i * padded_rows)


# -- BLAS threads ----------------------------------------------------------------------------


class _BlasThreads:
    """Keeps OpenBLAS on one thread while any convolution of this engine runs.

    OpenBLAS's thread count is process-wide; this finds its setter in the loaded libraries
    (NumPy wheels ship it as ``scipy_openblas*``), pins it to 1 on the first entry and restores
    it on the last exit. Where no OpenBLAS setter is found (MKL, Accelerate) it does nothing.
    """

    _PREFIXES = ("scipy_openblas", "openblas")
    _SUFFIXES = ("64_", "")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved = 1
        self._get: Callable[[], int] | None = None
        self._set: Callable[[int], None] | None = None
        self._find()

    def _find(self) -> None:
        try:
            maps = Path("/proc/self/maps").read_text()
        except OSError:
            return
        paths = sorted({
            line.split()[-1] for line in maps.splitlines()
            if "openblas" in line.rsplit("/", 1)[-1].lower() and line.split()[-1].startswith("/")
        })
        for path in paths:
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for prefix in self._PREFIXES:
                for suffix in self._SUFFIXES:
                    setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                    getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                    if setter is not None and getter is not None:
                        setter.argtypes, setter.restype = [ctypes.c_int], None
                        getter.argtypes, getter.restype = [], ctypes.c_int
                        self._set, self._get = setter, getter
                        return

    def threads(self) -> int | None:
        """OpenBLAS's current thread count, or None where it cannot be controlled."""
        return None if self._get is None else int(self._get())

    @contextmanager
    def single(self) -> Iterator[None]:
        if self._set is None or self._get is None:
            yield
            return
        with self._lock:
            if self._users == 0:
                self._saved = self._get()
                self._set(1)
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    self._set(self._saved)


_BLAS = _BlasThreads()


# -- strategies ------------------------------------------------------------------------------


class _Slot:
    """One thread's buffers for bands of one height, with the strided views built once.

    ``padded`` is the band's padded input ``(C_in, R_p, W_p)``; it starts as zeros, so with
    ``padding_mode="zeros"`` its pad columns never need writing again.
    """

    def __init__(self, padded: np.ndarray) -> None:
        self.padded = padded
        self.views: dict[str, np.ndarray] = {}
        # im2col: (first row, rows, patches view, its columns, columns with the bias row).
        self.parts: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]] = []


class _BandKernel:
    """What one strategy does to one band of output rows.

    Subclasses set ``band_rows`` and ``padded`` (whether ``run`` reads a padded band) and
    implement ``add_views`` (the per-slot buffers and views) and ``run``.
    """

    band_rows: int
    padded: bool = True

    def __init__(self, spec: ConvSpec, bias: np.ndarray | None) -> None:
        self.spec = spec
        self.bias = (
            None if bias is None else bias.reshape(spec.groups, spec.out_per_group, 1, 1)
        )

    def padded_rows(self, rows: int) -> int:
        """Padded input rows that ``rows`` output rows read."""
        return _padded_rows(self.spec, rows)

    def slot(self, rows: int) -> _Slot:
        spec = self.spec
        shape = (spec.in_channels, self.padded_rows(rows), spec.padded_width)
        slot = _Slot(np.zeros(shape if self.padded else (0, 0, 0), dtype=np.float32))
        self.add_views(slot, rows)
        return slot

    def add_views(self, slot: _Slot, rows: int) -> None:
        """Allocate the strategy's buffers for bands of ``rows`` rows and its views on them."""

    def output(self, y: np.ndarray, band: _Band) -> np.ndarray:
        """The band's rows of ``y`` as a ``(G, C_out/g, rows, W_out)`` view."""
        spec = self.spec
        image = y[band.n].reshape(
            spec.groups, spec.out_per_group, spec.out_height, spec.out_width
        )
        band_rows: np.ndarray = image[:, :, band.row0 : band.row0 + band.rows]
        return band_rows

    def flat_output(self, y: np.ndarray, band: _Band) -> np.ndarray:
        """The band's rows of ``y`` as a ``(G, C_out/g, rows * W_out)`` view."""
        spec = self.spec
        image = y[band.n].reshape(
            spec.groups, spec.out_per_group, spec.out_height * spec.out_width
        )
        w_out = spec.out_width
        band_pixels: np.ndarray = image[:, :, band.row0 * w_out : (band.row0 + band.rows) * w_out]
        return band_pixels

    def run(self, slot: _Slot, x: np.ndarray, band: _Band, y: np.ndarray) -> None:
        """Write ``band`` of ``y`` (N, C_out, H_out, W_out) from ``x`` or ``slot.padded``."""
        raise NotImplementedError


def _padded_rows(spec: ConvSpec, rows: int) -> int:
    """Padded input rows that ``rows`` output rows of ``spec`` read."""
    return (rows - 1) * spec.stride[0] + spec.dilation[0] * (spec.kernel_h - 1) + 1


def _rows(spec: ConvSpec, requested: int | None, preferred: int) -> int:
    return max(1, min(preferred if requested is None else requested, spec.out_height))


class _Direct(_BandKernel):
    """1x1, stride 1, unpadded: ``y[g] = w[g] @ x[g]`` over the band's pixels."""

    padded = False

    def __init__(self, spec: ConvSpec, weight: np.ndarray, bias: np.ndarray | None,
                 band_rows: int | None) -> None:
        super().__init__(spec, bias)
        self.weight = weight.reshape(spec.groups, spec.out_per_group, spec.in_per_group)
        self.band_rows = _rows(spec, band_rows, max(1, _DIRECT_PIXELS // spec.width))

    def run(self, slot: _Slot, x: np.ndarray, band: _Band, y: np.ndarray) -> None:
        spec = self.spec
        image = x[band.n].reshape(spec.groups, spec.in_per_group, spec.height * spec.width)
        first = band.row0 * spec.width
        out = self.flat_output(y, band)
        np.matmul(self.weight, image[:, :, first : first + band.rows * spec.width], out=out)
        if self.bias is not None:
            out += self.bias[..., 0]


class _Im2col(_BandKernel):
    """Patches as columns ``(G, C_in/g * k_h * k_w, R * W_out)``, one matmul per group.

    A band is padded once and unfolded in parts of ``part_rows`` rows, so the padded band is
    tall (its overlap with the next band is copied once, not once per part) while the columns
    of one part stay in the L2 cache. With a bias the columns get a last row of ones and the
    weight a last column holding the bias, so the matmul adds it.
    """

    def __init__(self, spec: ConvSpec, weight: np.ndarray, bias: np.ndarray | None,
                 band_rows: int | None) -> None:
        super().__init__(spec, bias)
        g, c_out_g = spec.groups, spec.out_per_group
        self.depth = spec.in_per_group * spec.kernel_h * spec.kernel_w
        w = weight.reshape(g, c_out_g, self.depth)
        if bias is not None:
            w = np.concatenate([w, bias.reshape(g, c_out_g, 1)], axis=2)
        self.weight = np.ascontiguousarray(w)
        # One group of few outputs: a matrix-vector product per output (_IM2COL_GEMV_OUTPUTS).
        self.per_output = g == 1 and c_out_g <= _IM2COL_GEMV_OUTPUTS
        row_bytes = spec.in_channels * spec.kernel_h * spec.kernel_w * spec.out_width * _ITEM
        part = max(_IM2COL_BYTES // row_bytes, -(-_IM2COL_MIN_PIXELS // spec.out_width))
        self.part_rows = _rows(spec, band_rows, max(1, part))
        padded_row_bytes = spec.in_channels * spec.padded_width * spec.stride[0] * _ITEM
        parts = max(1, min(-(-_IM2COL_BAND_ROWS // self.part_rows),
                           _IM2COL_BAND_BYTES // (padded_row_bytes * self.part_rows)))
        self.band_rows = self.part_rows if band_rows else _rows(spec, None,
                                                                 self.part_rows * parts)

    def add_views(self, slot: _Slot, rows: int) -> None:
        spec = self.spec
        g, c_in_g, w_out = spec.groups, spec.in_per_group, spec.out_width
        (s_h, s_w), (d_h, d_w) = spec.stride, spec.dilation
        _, r_p, w_p = slot.padded.shape
        steps = (c_in_g * r_p * w_p, r_p * w_p, d_h * w_p, d_w, s_h * w_p, s_w)
        strides = tuple(_ITEM * step for step in steps)
        columns: dict[int, np.ndarray] = {}
        parts = []
        for first in range(0, rows, self.part_rows):
            part = min(self.part_rows, rows - first)
            shape = (g, c_in_g, spec.kernel_h, spec.kernel_w, part, w_out)
            patches = as_strided(slot.padded[:, first * s_h :], shape=shape, strides=strides,
                                 writeable=False)
            if part not in columns:
                cols = np.empty((g, self.weight.shape[2], part * w_out), dtype=np.float32)
                cols[:, self.depth :] = 1.0  # the bias row, if any
                columns[part] = cols
            cols = columns[part]
            parts.append((first, part, patches, cols[:, : self.depth].reshape(shape), cols))
        slot.parts = parts

    def run(self, slot: _Slot, x: np.ndarray, band: _Band, y: np.ndarray) -> None:
        spec = self.spec
        w_out = spec.out_width
        image = y[band.n].reshape(spec.groups, spec.out_per_group, spec.out_height * w_out)
        for first, rows, patches, patch_cols, cols in slot.parts:
            np.copyto(patch_cols, patches)
            start = (band.row0 + first) * w_out
            out = image[:, :, start : start + rows * w_out]
            if self.per_output:  # the BLAS's GEMM is slower here
                for o in range(spec.out_per_group):
                    np.dot(self.weight[0, o], cols[0], out=out[0, o])
            else:
                np.matmul(self.weight, cols, out=out)


class _Toeplitz(_BandKernel):
    """``sum_v T_v @ X_v``: banded ``T_v`` times ``X_v``, a shifted view of the padded band.

    With one input channel per group (depthwise layers, where the products are small) the
    shifted views are first copied into one matrix per group, ``(R_p * k_w, W_out)``, so that
    one matrix product with the ``T_v`` side by side does the whole sum: no products to add up
    afterwards (paired runs against the sum: 0.94x on W5, 0.78-0.84x on 3x3 and 5x5 depthwise
    layers). With more input channels per group each ``X_v`` is already a long matrix, and that
    copy would grow with them.
    """

    def __init__(self, spec: ConvSpec, weight: np.ndarray, bias: np.ndarray | None,
                 band_rows: int | None) -> None:
        super().__init__(spec, bias)
        self.band_rows = _rows(spec, band_rows, _TOEPLITZ_ROWS)
        g, o, i = spec.groups, spec.out_per_group, spec.in_per_group
        # (G, k_w, C_out/g, C_in/g, k_h): kernel column v of every (o, i) pair.
        self.columns = weight.reshape(g, o, i, spec.kernel_h, spec.kernel_w).transpose(
            0, 4, 1, 2, 3
        )
        self.stacked = i == 1

    def add_views(self, slot: _Slot, rows: int) -> None:
        spec = self.spec
        g, o, i = spec.groups, spec.out_per_group, spec.in_per_group
        k_w, w_out = spec.kernel_w, spec.out_width
        _, r_p, w_p = slot.padded.shape
        matrices = _toeplitz(self.columns, rows, r_p, spec.stride[0], spec.dilation[0])
        if self.stacked:
            # T[g, v, o*rows + r, p] side by side: (G, O, rows, R_p * k_w), column p*k_w + v.
            slot.views["matrices"] = np.ascontiguousarray(
                matrices.transpose(0, 2, 3, 1)).reshape(g, o, rows, r_p * k_w)
            slot.views["shifted"] = as_strided(
                slot.padded, shape=(g, r_p, k_w, w_out),
                strides=(r_p * w_p * _ITEM, w_p * _ITEM, spec.dilation[1] * _ITEM,
                         spec.stride[1] * _ITEM),
                writeable=False,
            )
            stack = np.empty((g, 1, r_p * k_w, w_out), dtype=np.float32)
            slot.views["stack"] = stack
            slot.views["stack_rows"] = stack.reshape(g, r_p, k_w, w_out)
            return
        slot.views["matrices"] = matrices
        slot.views["shifted"] = as_strided(
            slot.padded, shape=(g, k_w, i * r_p, w_out),
            strides=(i * r_p * w_p * _ITEM, spec.dilation[1] * _ITEM, w_p * _ITEM,
                     spec.stride[1] * _ITEM),
            writeable=False,
        )
        products = np.empty((g, k_w, o * rows, w_out), dtype=np.float32)
        slot.views["products"] = products
        slot.views["terms"] = products.reshape(g, k_w, o, rows, w_out)

    def run(self, slot: _Slot, x: np.ndarray, band: _Band, y: np.ndarray) -> None:
        views = slot.views
        out = self.output(y, band)
        if self.stacked:
            np.copyto(views["stack_rows"], views["shifted"])
            np.matmul(views["matrices"], views["stack"], out=out)
        else:
            np.matmul(views["matrices"], views["shifted"], out=views["products"])
            np.sum(views["terms"], axis=1, out=out)
        if self.bias is not None:
            out += self.bias


class _Separable(_BandKernel):
    """Rank-1 kernels, one input channel per group: a vertical then a horizontal 1-D pass."""

    def __init__(self, spec: ConvSpec, factors: tuple[np.ndarray, np.ndarray],
                 bias: np.ndarray | None, band_rows: int | None) -> None:
        super().__init__(spec, bias)
        self.band_rows = _rows(spec, band_rows, _SEPARABLE_ROWS)
        g, o = spec.groups, spec.out_per_group
        col, row = factors
        self.row = row.reshape(g, o, spec.kernel_w, 1, 1)
        self.columns = col.reshape(g, 1, o, 1, spec.kernel_h)

    def add_views(self, slot: _Slot, rows: int) -> None:
        spec = self.spec
        g, o, w_out = spec.groups, spec.out_per_group, spec.out_width
        _, r_p, w_p = slot.padded.shape
        (_, s_w), (_, d_w) = spec.stride, spec.dilation
        slot.views["matrices"] = _toeplitz(self.columns, rows, r_p, spec.stride[0],
                                           spec.dilation[0])[:, 0]
        vertical = np.empty((g, o * rows, w_p), dtype=np.float32)
        slot.views["vertical"] = vertical
        span = (w_out - 1) * s_w + 1
        for v in range(spec.kernel_w):
            slot.views[f"tap{v}"] = vertical.reshape(g, o, rows, w_p)[
                ..., v * d_w : v * d_w + span : s_w
            ]
        slot.views["product"] = np.empty((g, o, rows, w_out), dtype=np.float32)

    def run(self, slot: _Slot, x: np.ndarray, band: _Band, y: np.ndarray) -> None:
        views = slot.views
        np.matmul(views["matrices"], slot.padded, out=views["vertical"])
        out, product = self.output(y, band), views["product"]
        np.multiply(views["tap0"], self.row[:, :, 0], out=out)
        for v in range(1, self.spec.kernel_w):
            np.multiply(views[f"tap{v}"], self.row[:, :, v], out=product)
            out += product
        if self.bias is not None:
            out += self.bias


def choose_strategy(spec: ConvSpec, weight: np.ndarray) -> Strategy:
    """The strategy :class:`NumpyEngine` uses for this layer by default.

    Parameters
    ----------
    spec : ConvSpec
    weight : ndarray of shape (C_out, C_in // groups, k_h, k_w)
    """
    k_h, k_w = spec.kernel_h, spec.kernel_w
    if (k_h, k_w) == (1, 1) and spec.stride == (1, 1) and spec.pads == (0, 0, 0, 0):
        return "direct"
    depthwise = spec.in_per_group == 1
    if (depthwise and k_h * k_w > _SEPARABLE_MIN_TAPS and k_h > 1 and k_w > 1
            and rank1_factors(weight) is not None):
        return "separable"
    s_h, d_h = spec.stride[0], spec.dilation[0]
    padded_rows = (_TOEPLITZ_ROWS - 1) * s_h + (k_h - 1) * d_h + 1
    waste = spec.out_per_group * padded_rows / k_h
    copies = spec.in_channels * k_h * k_w
    suits_depthwise = (k_h * k_w >= _TOEPLITZ_DEPTHWISE_MIN_TAPS
                       or spec.groups >= _TOEPLITZ_DEPTHWISE_MIN_GROUPS)
    if (spec.stride[1] == 1 and waste <= _TOEPLITZ_MAX_WASTE and copies >= _TOEPLITZ_MIN_COPIES
            and (suits_depthwise or not depthwise)):
        return "toeplitz"
    return "im2col"


def _kernel(strategy: Strategy, spec: ConvSpec, weight: np.ndarray, bias: np.ndarray | None,
            band_rows: int | None) -> _BandKernel:
    if strategy == "direct":
        if (spec.kernel_h, spec.kernel_w) != (1, 1) or spec.stride != (1, 1) or any(spec.pads):
            raise ValueError("strategy='direct' needs a 1x1 kernel, stride 1 and no padding")
        return _Direct(spec, weight, bias, band_rows)
    if strategy == "im2col":
        return _Im2col(spec, weight, bias, band_rows)
    if strategy == "toeplitz":
        return _Toeplitz(spec, weight, bias, band_rows)
    if strategy == "separable":
        factors = rank1_factors(weight) if spec.in_per_group == 1 else None
        if factors is None:
            raise ValueError("strategy='separable' needs C_in/groups == 1 and rank-1 kernels")
        return _Separable(spec, factors, bias, band_rows)
    raise ValueError(f"strategy={strategy!r} is not one of {', '.join(STRATEGIES)}")


@functools.lru_cache(maxsize=64)
def _band_layout(spec: ConvSpec, band_rows: int,
                 padded: bool) -> tuple[_BandPadder | None, tuple[_Band, ...]]:
    """The padder and the bands of ``band_rows`` rows of ``spec``, made once per layout (a
    512x512 layer's 29 bands took 0.17 ms to lay out, a tenth of its convolution)."""
    padder = _BandPadder(spec) if padded else None
    bands: list[_Band] = []
    for n in range(spec.batch):
        for row0 in range(0, spec.out_height, band_rows):
            rows = min(band_rows, spec.out_height - row0)
            runs = () if padder is None else padder.runs(row0, _padded_rows(spec, rows))
            bands.append(_Band(n, row0, rows, runs))
    return padder, tuple(bands)


# -- the engine ------------------------------------------------------------------------------


class NumpyEngine:
    """Convolution with NumPy on the CPU, in bands of output rows on ``threads`` threads.

    Parameters
    ----------
    threads : int, optional
        Threads one convolution may use (the calling thread included); None means the cores
        this process may run on.
    band_bytes : int or None
        Working bytes above which a layer runs in horizontal bands of that size
        (:mod:`convserve.conv.tiling`; identical results); None or 0: always whole.
    """

    name: EngineName = "numpy"
    propagates_non_finite = True
    """Every strategy multiplies every value it reads (BLAS and ufuncs skip no zero weight), so
    a non-finite input inside a receptive field reaches the output (see ``conv2d``)."""

    def __init__(self, threads: int | None = None,
                 band_bytes: int | None = DEFAULT_BAND_BYTES) -> None:
        self.threads = max(1, available_cores() if threads is None else int(threads))
        self.band_bytes = band_bytes
        self._helpers = HelperThreads(self.threads, "convserve-numpy")

    def version(self) -> str:
        """NumPy's version."""
        return np.__version__

    def devices(self) -> list[DeviceStatus]:
        """The CPU (always available) and CUDA (never, with the reason)."""
        return [
            DeviceStatus("cpu", True, details={"threads": self.threads}),
            DeviceStatus("cuda", False, reason=CUDA_UNAVAILABLE_REASON),
        ]

    def conv2d(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None,
        spec: ConvSpec,
        device: Device = "cpu",
        *,
        strategy: Strategy | None = None,
        band_rows: int | None = None,
    ) -> np.ndarray:
        """Run ``spec`` on the CPU.

        Parameters
        ----------
        x : ndarray of float32, shape (N, C_in, H, W)
        weight : ndarray of float32, shape (C_out, C_in // groups, k_h, k_w)
        bias : ndarray of float32, shape (C_out,), or None
        spec : ConvSpec
            Validated by :func:`convserve.conv.spec.conv_spec` for exactly these shapes.
        device : "cpu"
            "cuda" raises :class:`~convserve.errors.EngineUnavailableError`.
        strategy : "direct", "im2col", "toeplitz" or "separable", optional
            Force a strategy (tests, benchmarks); by default :func:`choose_strategy` picks.
        band_rows : int, optional
            Force the output rows per band (tests, benchmarks).

        Returns
        -------
        ndarray of float32, shape (N, C_out, H_out, W_out)

        Raises
        ------
        EngineUnavailableError
            ``device`` is not "cpu".
        ShapeError
            The arrays do not have the shapes ``spec`` describes.
        """
        if device != "cpu":
            raise EngineUnavailableError(
                f"device={device!r}: {CUDA_UNAVAILABLE_REASON}", field="device"
            )
        # The strategies read x through strided views: shapes must be exactly the spec's.
        spec.check_arrays(x, weight, bias)
        x = np.ascontiguousarray(x, dtype=np.float32)
        weight = np.ascontiguousarray(weight, dtype=np.float32)
        b = None if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
        chosen = choose_strategy(spec, weight) if strategy is None else strategy
        kernel = _kernel(chosen, spec, weight, b, band_rows)
        plan = self._plan(spec, kernel)
        if plan is not None:
            # Bands of whole blocks of kernel.band_rows rows, each run with the strategy chosen
            # for the whole layer, do the very same matrix products: identical results.
            return run_in_bands(x, plan, lambda xb, sb: self._run(
                xb, sb, _kernel(chosen, sb, weight, b, band_rows)))
        return self._run(x, spec, kernel)

    def band_plan(self, spec: ConvSpec, weight: np.ndarray, *, strategy: Strategy | None = None,
                  band_rows: int | None = None) -> BandPlan | None:
        """The bands :meth:`conv2d` cuts ``spec`` into at the entry, or None when it runs whole.

        Parameters as for :meth:`conv2d` (``weight`` decides the strategy).
        """
        chosen = choose_strategy(spec, weight) if strategy is None else strategy
        return self._plan(spec, _kernel(chosen, spec, weight, None, band_rows))

    def _plan(self, spec: ConvSpec, kernel: _BandKernel) -> BandPlan | None:
        # The engine's own blocks need one padded block of rows per thread: bands at the entry
        # only matter when that is beyond the budget. They are whole blocks (see plan_bands).
        padded_block = spec.in_channels * kernel.padded_rows(kernel.band_rows) * spec.padded_width
        return plan_bands(spec, self.band_bytes, align=kernel.band_rows,
                          whole_bytes=self.threads * _ITEM * padded_block)

    def _run(self, x: np.ndarray, spec: ConvSpec, kernel: _BandKernel) -> np.ndarray:
        y = OUTPUTS.empty(spec.output_shape)
        with _BLAS.single():
            self._run_bands(x, y, spec, kernel)
        return y

    def _run_bands(self, x: np.ndarray, y: np.ndarray, spec: ConvSpec,
                   kernel: _BandKernel) -> None:
        padder, bands = _band_layout(spec, kernel.band_rows, kernel.padded)

        def worker() -> Callable[[_Band], None]:
            slots: dict[int, _Slot] = {}  # this thread's scratch, per band height

            def run(band: _Band) -> None:
                slot = slots.get(band.rows) or slots.setdefault(band.rows,
                                                                kernel.slot(band.rows))
                if padder is not None:
                    padder.fill(x[band.n], band, slot.padded)
                kernel.run(slot, x, band, y)
            return run

        self._helpers.share(bands, worker)
