"""A large input convolved in bands of rows, each made float32 from the decoded samples.

An 8-bit RGB image takes 3 bytes per pixel as decoded and 12 as float32; ONNX Runtime then
adds a padded copy of its input (reflect, replicate and circular padding are a ``Pad`` node).
Above :data:`WHOLE_BYTES` of float32 input, :func:`convolve_in_bands` therefore never makes the
whole float32 input: for output rows ``[r0, r1)`` it makes only the input rows they read
(``[r0*s_h, (r1 - 1)*s_h + d_h*(k_h - 1) + 1)`` of the vertically padded image, each pad row a
copy of the row ``padding_mode`` names, or zeros), and runs the layer on them with no vertical
pads and the original horizontal ones. Every output element sums the same products as in the
whole-image layer. A request then holds the decoded samples, the float32 output and one band.

The bands are :func:`convserve.conv.tiling.cut_bands`, the engines' own: this module only fills
each from the decoded samples instead of a float32 array.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from convserve.admission import BANDED_ABOVE_BYTES
from convserve.conv.spec import ConvSpec
from convserve.conv.tiling import cut_bands
from convserve.imaging import DecodedInput

__all__ = ["BAND_BYTES", "WHOLE_BYTES", "convolve_in_bands", "needs_bands"]

WHOLE_BYTES = BANDED_ABOVE_BYTES
"""Largest float32 input convolved whole (5.6 MP of RGB); larger images go in bands."""
BAND_BYTES = 2 << 20
"""float32 input bytes of one band: small enough that what the allocator and ONNX Runtime keep
of it stays a fraction of a byte per pixel of a large image, large enough to cost no speed."""


def needs_bands(decoded: DecodedInput, whole_bytes: int | None = None) -> bool:
    """Whether ``decoded`` is an image larger than ``whole_bytes`` (:data:`WHOLE_BYTES`) of
    float32, to be convolved band by band."""
    channels, height, width = decoded.shape
    limit = WHOLE_BYTES if whole_bytes is None else whole_bytes
    return not decoded.planar and 4 * channels * height * width > limit


def convolve_in_bands(
    decoded: DecodedInput,
    spec: ConvSpec,
    run: Callable[[np.ndarray, ConvSpec], np.ndarray],
    band_bytes: int | None = None,
) -> np.ndarray:
    """Convolve ``decoded`` band by band with ``run(band_x, band_spec) -> band_y``.

    Parameters
    ----------
    decoded : DecodedInput
        The input, of shape ``spec.input_shape[1:]``; its float32 ``array`` is never made.
    spec : ConvSpec
        The whole layer (batch 1).
    run : callable
        Convolves one band: float32 ``band_x`` of shape ``band_spec.input_shape`` to float32
        of shape ``band_spec.output_shape`` (an engine with the weight and bias bound).
    band_bytes : int, optional
        Most float32 input bytes of one band (:data:`BAND_BYTES`; at least one output row's
        worth is used).

    Returns
    -------
    ndarray of float32, shape ``spec.output_shape``
    """
    channels, _, width = decoded.shape
    stride, reach = spec.stride[0], spec.dilation[0] * (spec.kernel_h - 1) + 1
    row_bytes = 4 * channels * width
    budget = BAND_BYTES if band_bytes is None else band_bytes
    out_rows = max(1, (budget // row_bytes - reach) // stride + 1)
    y = np.empty(spec.output_shape, dtype=np.float32)
    # One buffer for every band's input: a fresh one per band would leave the allocator
    # holding freed bands (RSS that outlives the request).
    buffer = np.empty(channels * ((out_rows - 1) * stride + reach) * width, dtype=np.float32)
    for band in cut_bands(spec, out_rows):
        rows = band.rows
        band_x = buffer[: channels * len(rows) * width].reshape(1, channels, len(rows), width)
        _fill(decoded, rows, band_x[0])
        y[:, :, band.out_start : band.out_stop] = run(band_x, band.spec)
    return y


def _fill(decoded: DecodedInput, rows: np.ndarray, out: np.ndarray) -> None:
    """``out[:, i] = decoded.array[:, rows[i]]`` (zeros where ``rows[i]`` is -1), by runs."""
    i = 0
    while i < len(rows):
        j = i + 1
        while j < len(rows) and rows[j] == rows[j - 1] + 1 and rows[i] >= 0:
            j += 1
        if rows[i] < 0:
            out[:, i] = 0.0
        else:
            decoded.rows(int(rows[i]), int(rows[i]) + j - i, out=out[:, i:j])
        i = j
