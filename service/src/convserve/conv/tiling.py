"""Large images in bounded memory: a convolution run as horizontal bands of output rows.

An engine that convolves a whole image at once may allocate, besides ``x`` and ``y``, a padded
copy of the input (ONNX Runtime's ``Pad`` node for reflect, replicate and circular padding) and
an unfolded ``im2col`` matrix (``C_in/g * k_h * k_w`` floats per output pixel): for a 50 MP RGB
photo and a 3x3 kernel that is 0.6 GB and 5.4 GB. Above a budget of working bytes the engines
therefore run the layer band by band (:func:`run_in_bands`); each band is an ordinary, smaller
convolution whose result is copied into its rows of ``y``, so working memory is bounded by ``x``,
``y`` and one band.

How a band is cut, for output rows ``[r0, r1)``: it reads padded input rows
``[r0*s_h, (r1 - 1)*s_h + d_h*(k_h - 1) + 1)`` (its halo included). Each of those rows is produced
from the unpadded input without padding the whole image (:func:`source_rows`): a row inside the
image is copied, a pad row is a copy of the row ``padding_mode`` names (reflect, replicate,
circular) or zeros. The band's layer then has the original kernel, stride, dilation, groups and
horizontal pads, no vertical pads, and exactly ``r1 - r0`` output rows. Every output element
sums the same products as in the whole-image layer, so the NumPy engine gives identical results
(it runs each band with the strategy it chose for the whole layer) and ONNX Runtime agrees to
float32 rounding.

Bands of one plan share their height except the last, so an engine that caches per shape (ONNX
Runtime sessions) builds at most two layers per image size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from convserve.conv.buffers import OUTPUTS
from convserve.conv.spec import ConvSpec, PaddingMode, padding_source

__all__ = [
    "DEFAULT_BAND_BYTES",
    "Band",
    "BandPlan",
    "band_bytes",
    "band_input",
    "cut_bands",
    "plan_bands",
    "run_in_bands",
    "source_rows",
    "whole_image_bytes",
]

DEFAULT_BAND_BYTES = 64 << 20
"""Working bytes (besides input and output) above which a layer runs in bands, and the size of
one band: a few percent of a 50 MP request, a few dozen rows of a 4K photo."""

_ITEM = np.dtype(np.float32).itemsize


def source_rows(size: int, before: int, after: int, mode: PaddingMode) -> np.ndarray:
    """For each row of an axis padded by ``(before, after)``, the input row it copies, or -1.

    Parameters
    ----------
    size : int
        Rows of the unpadded input.
    before, after : int
        Pad rows above and below, within the limits the spec enforces (reflect: < ``size``,
        circular: <= ``size``).
    mode : "zeros", "reflect", "replicate" or "circular"

    Returns
    -------
    ndarray of int64, shape (before + size + after,)
        -1 marks a row of zeros (``mode="zeros"``); :func:`~convserve.conv.spec.padding_source`
        is the one definition of the modes.
    """
    return padding_source(np.arange(-before, size + after), size, mode)


def _unfolded_depth(spec: ConvSpec) -> int:
    """Floats an im2col engine unfolds per output pixel (0 for a 1x1, stride-1, unpadded layer,
    which is a plain matrix product)."""
    if (spec.kernel_h, spec.kernel_w) == (1, 1) and spec.stride == (1, 1) and not any(spec.pads):
        return 0
    return spec.in_per_group * spec.kernel_h * spec.kernel_w


def whole_image_bytes(spec: ConvSpec) -> int:
    """Working bytes an engine may need, besides ``x`` and ``y``, to run ``spec`` in one go.

    A padded copy of the input (every mode but zeros, which engines pad on the fly) plus an
    im2col matrix of the whole output, per image of the batch: the most a whole-image engine
    allocates, whatever its strategy.
    """
    padded = 0
    if spec.padding_mode != "zeros" and any(spec.pads):
        padded = spec.in_channels * spec.padded_height * spec.padded_width
    unfolded = _unfolded_depth(spec) * spec.out_height * spec.out_width
    return _ITEM * spec.batch * (padded + unfolded)


def _input_rows(spec: ConvSpec, out_rows: int) -> int:
    """Padded input rows that ``out_rows`` consecutive output rows read (their halo included)."""
    return (out_rows - 1) * spec.stride[0] + spec.dilation[0] * (spec.kernel_h - 1) + 1


def band_bytes(spec: ConvSpec, out_rows: int) -> int:
    """Working bytes of one band of ``out_rows`` output rows of ``spec``.

    Its input rows (halo included) copied out of ``x``, the engine's padded copy and im2col
    matrix of those rows, and the band's output before it is copied into ``y``.
    """
    rows_in = _input_rows(spec, out_rows)
    per_image = (
        spec.in_channels * rows_in * (spec.width + spec.padded_width)
        + (_unfolded_depth(spec) + spec.out_channels) * out_rows * spec.out_width
    )
    return _ITEM * spec.batch * per_image


@dataclass(frozen=True)
class Band:
    """Output rows ``[out_start, out_stop)`` of a layer, and the smaller layer that makes them.

    Attributes
    ----------
    out_start, out_stop : int
    rows : ndarray of int64, shape (spec.height,)
        For each input row of the band, the row of ``x`` it copies, or -1 for zeros.
    spec : ConvSpec
        The band's layer: input ``(N, C_in, len(rows), W)``, no vertical pads, the original
        horizontal pads, kernel, stride, dilation, groups and padding mode; output
        ``(N, C_out, out_stop - out_start, W_out)``.
    """

    out_start: int
    out_stop: int
    rows: np.ndarray
    spec: ConvSpec


@dataclass(frozen=True)
class BandPlan:
    """How one layer runs in bands: ``rows_per_band`` output rows each (the last may be fewer)."""

    spec: ConvSpec
    rows_per_band: int
    bands: tuple[Band, ...]


def plan_bands(spec: ConvSpec, budget: int | None, align: int = 1,
               whole_bytes: int | None = None) -> BandPlan | None:
    """Bands of at most ``budget`` working bytes each, or None when ``spec`` runs whole.

    Parameters
    ----------
    spec : ConvSpec
    budget : int or None
        Working bytes (besides ``x`` and ``y``) above which the layer is cut into bands, each
        within it. None or 0 means never. A budget smaller than ``align`` output rows' band
        still gives bands of ``align`` rows.
    align : int
        Every band but the last has a multiple of ``align`` rows: an engine that works in
        blocks of ``align`` rows itself then splits a band into the very blocks it would cut
        from the whole image (the NumPy engine's results depend on how its matrix products are
        blocked, so this keeps them identical).
    whole_bytes : int, optional
        The engine's own working bytes for the whole layer, when it knows them better than
        :func:`whole_image_bytes` (the NumPy engine already works in small blocks of rows).

    Returns
    -------
    BandPlan with at least two bands, or None when ``whole_bytes`` (by default
    :func:`whole_image_bytes`) fits the budget, or a band could not be smaller than the layer.
    """
    if whole_bytes is None:
        whole_bytes = whole_image_bytes(spec)
    if not budget or whole_bytes <= budget:
        return None
    # band_bytes grows with the rows: bisect for the most rows within the budget.
    low, high = 1, spec.out_height
    while low < high:
        middle = (low + high + 1) // 2
        if band_bytes(spec, middle) <= budget:
            low = middle
        else:
            high = middle - 1
    rows_per_band = max(align, low - low % align)
    if rows_per_band >= spec.out_height:
        return None
    return BandPlan(spec, rows_per_band, cut_bands(spec, rows_per_band))


def cut_bands(spec: ConvSpec, rows_per_band: int) -> tuple[Band, ...]:
    """The bands of ``rows_per_band`` output rows each (the last may be fewer) of ``spec``."""
    top, bottom, left, right = spec.pads
    padded_rows = source_rows(spec.height, top, bottom, spec.padding_mode)
    bands = []
    for start in range(0, spec.out_height, rows_per_band):
        stop = min(start + rows_per_band, spec.out_height)
        first = start * spec.stride[0]
        rows = padded_rows[first : first + _input_rows(spec, stop - start)]
        band_spec = dataclasses.replace(spec, height=len(rows), pads=(0, 0, left, right))
        bands.append(Band(start, stop, rows, band_spec))
    return tuple(bands)


def band_input(x: np.ndarray, band: Band) -> np.ndarray:
    """The input rows of ``band``, halo and vertical padding included.

    Parameters
    ----------
    x : ndarray of float32, shape (N, C_in, H, W)

    Returns
    -------
    ndarray of float32, C-contiguous, shape (N, C_in, len(band.rows), W)
    """
    rows = band.rows
    zeros = rows < 0
    out = np.empty((x.shape[0], x.shape[1], len(rows), x.shape[3]), dtype=np.float32)
    if not zeros.any() and bool(np.all(np.diff(rows) == 1)):
        np.copyto(out, x[:, :, rows[0] : rows[-1] + 1])  # an interior band: one slice
        return out
    np.take(x, np.where(zeros, 0, rows), axis=2, out=out)
    out[:, :, zeros] = 0.0
    return out


def run_in_bands(
    x: np.ndarray,
    plan: BandPlan,
    run: Callable[[np.ndarray, ConvSpec], np.ndarray],
) -> np.ndarray:
    """Run ``plan`` band by band with ``run(band_x, band_spec) -> band_y``.

    Parameters
    ----------
    x : ndarray of float32, shape ``plan.spec.input_shape``
    run : callable
        Convolves one band: ``band_x`` of shape ``band_spec.input_shape`` to float32 of shape
        ``band_spec.output_shape`` (the engine, with the weight and bias bound).

    Returns
    -------
    ndarray of float32, shape ``plan.spec.output_shape``
    """
    y = OUTPUTS.empty(plan.spec.output_shape)
    for band in plan.bands:
        y[:, :, band.out_start : band.out_stop] = run(band_input(x, band), band.spec)
    return y
