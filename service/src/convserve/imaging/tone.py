"""Tone mapping: float feature maps to 8-bit pixels (``to_pixels``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, TypeAlias, cast, get_args

import numpy as np

from convserve.errors import InvalidArgumentError

__all__ = ["NORMALIZE_MODES", "NormalizeMode", "resolved_normalize", "to_pixels"]

NormalizeMode: TypeAlias = Literal["auto", "clip", "minmax", "abs", "symmetric"]
NORMALIZE_MODES: tuple[NormalizeMode, ...] = get_args(NormalizeMode)

# Values scaled at a time: the float32 working memory of to_pixels (1 MiB), whatever the size
# of the maps.
_BAND_VALUES = 1 << 18


def resolved_normalize(mode: str, range_preserving: bool) -> NormalizeMode:
    """The mode ``mode`` stands for: ``auto`` is ``clip`` for range-preserving layers (their
    outputs stay in ``[0, 1]``), else ``minmax``; any other mode is itself.

    Raises
    ------
    InvalidArgumentError
        ``mode`` is not one of :data:`NORMALIZE_MODES`.
    """
    if mode not in NORMALIZE_MODES:
        raise InvalidArgumentError(
            f"normalize={mode!r} is not one of {', '.join(NORMALIZE_MODES)}", field="normalize"
        )
    if mode == "auto":
        return "clip" if range_preserving else "minmax"
    return cast(NormalizeMode, mode)


def to_pixels(
    maps: np.ndarray, mode: NormalizeMode, *, range_preserving: bool, overwrite: bool = False
) -> np.ndarray:
    """Map float feature maps to 8-bit pixels, channel by channel.

    Parameters
    ----------
    maps : ndarray of shape (C, H, W)
        Real values (float32 from the engines).
    mode : {"auto", "clip", "minmax", "abs", "symmetric"}
        - ``clip``: ``round(255 * clip(v, 0, 1))``; a pixel ``k / 255`` maps back to ``k``.
        - ``minmax``: ``[min, max]`` of each channel to ``[0, 255]``; a constant channel is 0.
        - ``abs``: ``|v| / max|v|`` of each channel to ``[0, 255]``; an all-zero channel is 0.
        - ``symmetric``: ``127.5 + 127.5 * v / max|v|``: 0 is mid-grey 128, ``+max|v|`` is
          255 and ``-max|v|`` is 0; an all-zero channel is 128.
        - ``auto``: ``clip`` when ``range_preserving`` else ``minmax``.
        Rounding is to nearest, halves to even. Non-finite values: NaN is 0, +inf is 255 and
        -inf is 0; the ranges of ``minmax``, ``abs`` and ``symmetric`` use finite values only.
    range_preserving : bool
        Whether the layer maps ``[0, 1]`` inputs into ``[0, 1]`` (non-negative weights summing
        to 1 per output channel).
    overwrite : bool
        The caller gives ``maps`` up: when it is C-contiguous float32, each channel's pixels
        are written over the start of that channel's own memory (``maps`` is garbage after),
        so quantising needs no new full-size array.

    Returns
    -------
    ndarray of uint8, shape (C, H, W)
        With ``overwrite``, a view into ``maps``' memory (each plane C-contiguous).
    """
    resolved = resolved_normalize(mode, range_preserving)
    values = np.asarray(maps)
    if values.ndim != 3 or values.dtype.kind not in "biuf":
        raise InvalidArgumentError(
            f"to_pixels needs real maps of shape (C, H, W), got shape {values.shape} of "
            f"{values.dtype}"
        )
    if values.dtype != np.float32:
        with np.errstate(over="ignore"):  # beyond float32's range: inf, mapped like inf
            values = values.astype(np.float32)
    channels, height, width = values.shape
    out: np.ndarray
    if (overwrite and values is maps and values.flags.c_contiguous and values.flags.writeable
            and values.size):
        # Plane c's pixels go to the first H*W bytes of plane c. Bands are written in order,
        # and byte i only overlaps value i // 4, which an earlier band (or this one, scaled
        # before it is written) has already read.
        out = values.view(np.uint8).reshape(channels, 4 * height * width)[:, : height * width]
        out = out.reshape(channels, height, width)
    else:
        out = np.empty(values.shape, dtype=np.uint8)
    for c in range(values.shape[0]):
        _channel_pixels(values[c], resolved, out[c])
    return out


def _bands(v: np.ndarray) -> range:
    """Row starts of bands of about :data:`_BAND_VALUES` values of ``v`` (H, W)."""
    return range(0, v.shape[0], max(1, _BAND_VALUES // max(1, v.shape[1])))


def _channel_pixels(v: np.ndarray, mode: str, out: np.ndarray) -> None:
    """One channel (H, W) of float32 into its 8-bit pixels ``out`` (H, W), band by band.

    The range comes from one pass of min and max over ``v`` (NaN and infinities show there,
    and only then is finiteness checked, band by band); then each band of rows is scaled,
    rounded and written, so the working memory is a band, not a channel.
    """
    step = _bands(v).step
    lo, hi = float(v.min()), float(v.max())
    all_finite = math.isfinite(lo) and math.isfinite(hi)
    if not all_finite:
        lo, hi = math.inf, -math.inf  # the range of the finite values only
        for top in range(0, v.shape[0], step):
            band = v[top : top + step]
            finite = np.isfinite(band)
            if finite.any():
                lo = min(lo, float(np.min(band, where=finite, initial=np.inf)))
                hi = max(hi, float(np.max(band, where=finite, initial=-np.inf)))
    transform = _transform(mode, lo, hi)
    for top in range(0, v.shape[0], step):
        band, target = v[top : top + step], out[top : top + step]
        if all_finite:
            target[...] = transform(band)
            continue
        # Masks first: with overwrite, writing target may overwrite this very band.
        finite, high = np.isfinite(band), np.isposinf(band)
        low = ~finite & ~high
        target[...] = transform(np.where(finite, band, np.float32(0)))
        target[high] = 255
        target[low] = 0


def _transform(mode: str, lo: float, hi: float) -> Callable[[np.ndarray], np.ndarray]:
    """Values (float32, finite) to rounded pixel values in [0, 255] (float32), for a channel
    whose finite values span ``[lo, hi]`` (``lo > hi`` when it has none)."""
    if mode == "clip":
        return _clip_pixels
    if lo > hi:
        return lambda band: np.zeros(band.shape, np.float32)
    if mode == "minmax":
        if not hi > lo:
            return lambda band: np.zeros(band.shape, np.float32)
        return lambda band: _rounded(_affine(band, -lo, 255.0 / (hi - lo), 0.0, bound=hi - lo))
    peak = max(abs(lo), abs(hi))
    if peak == 0.0:
        fill = 128 if mode == "symmetric" else 0
        return lambda band: np.full(band.shape, fill, np.float32)
    if mode == "abs":
        return lambda band: _rounded(_affine(np.abs(band), 0.0, 255.0 / peak, 0.0, bound=peak))
    return lambda band: _rounded(_affine(band, 0.0, 127.5 / peak, 127.5, bound=peak))


def _clip_pixels(band: np.ndarray) -> np.ndarray:
    """``round(255 * clip(v, 0, 1))``, computed as ``clip(round(255 * v), 0, 255)`` (equal, and
    one pass fewer); values beyond float32 / 255 overflow to infinity and clip to 0 or 255."""
    with np.errstate(over="ignore"):
        return _rounded(np.multiply(band, np.float32(255)))


def _rounded(scaled: np.ndarray) -> np.ndarray:
    np.rint(scaled, out=scaled)
    np.clip(scaled, 0, 255, out=scaled)
    return scaled


def _affine(
    v: np.ndarray, shift: float, scale: float, offset: float, *, bound: float
) -> np.ndarray:
    """``(v + shift) * scale + offset`` as float32; ``bound`` >= ``max|v + shift|``.

    Shifting first keeps a narrow range far from zero precise; float64 is used only where
    float32 would overflow.
    """
    work: type[np.floating[Any]] = np.float32 if bound < 1e38 else np.float64
    result: np.ndarray = np.add(v, work(shift), dtype=work)
    result *= work(scale)
    if offset:
        result += work(offset)
    return result.astype(np.float32, copy=False)
