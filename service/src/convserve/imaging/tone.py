"""Tone mapping: float feature maps to 8-bit pixels (``to_pixels``)."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Literal, TypeAlias, cast, get_args

import numpy as np

from convserve.errors import InvalidArgumentError

__all__ = ["NORMALIZE_MODES", "ChannelTone", "NormalizeMode", "float_maps", "resolved_normalize",
           "to_pixels"]

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
    values = float_maps(maps, "to_pixels", allow_empty=True)
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
    """One channel (H, W) of float32 into its 8-bit pixels ``out`` (H, W), band by band."""
    tone = ChannelTone.of(v, mode)
    bands = _bands(v)
    scratch = np.empty(bands.step * v.shape[1], np.float32)
    for top in bands:
        stop = min(top + bands.step, v.shape[0])
        tone.rows(top, stop, out[top:stop], scratch)


class ChannelTone:
    """How one channel (H, W) of float32 becomes 8-bit pixels, a band of rows at a time.

    :meth:`of` reads the channel's range once (one pass of min and max, in which NaN and
    infinities show; only then is the range of the finite values searched, band by band);
    :meth:`rows` then scales, rounds and writes any band of rows with the same arithmetic as
    :func:`to_pixels`, so a PNG writer can make its rows where it needs them and no full-size
    pixel array exists.
    """

    def __init__(self, values: np.ndarray, mode: str, lo: float, hi: float, finite: bool):
        self.values, self.mode, self.finite = values, mode, finite
        self._transform = _transform(mode, lo, hi)

    @classmethod
    def of(cls, values: np.ndarray, mode: str,
           value_range: tuple[float, float] | None = None) -> ChannelTone:
        """The tone of ``values`` (H, W) float32 under a resolved ``mode``.

        ``value_range`` is ``(values.min(), values.max())`` when the caller has it already
        (NaN when the channel holds one), so it is not computed again.
        """
        if mode == "clip":  # needs no range; _clip_into maps non-finite values band by band
            return cls(values, mode, 0.0, 1.0, True)
        lo, hi = value_range if value_range is not None else (float(values.min()),
                                                               float(values.max()))
        finite = math.isfinite(lo) and math.isfinite(hi)
        if not finite:
            lo, hi = math.inf, -math.inf  # the range of the finite values only
            bands = _bands(values)
            for top in bands:
                band = values[top : top + bands.step]
                mask = np.isfinite(band)
                if mask.any():
                    lo = min(lo, float(np.min(band, where=mask, initial=np.inf)))
                    hi = max(hi, float(np.max(band, where=mask, initial=-np.inf)))
        return cls(values, mode, lo, hi, finite)

    def rows(self, top: int, stop: int, out: np.ndarray, scratch: np.ndarray) -> None:
        """Write the pixels of rows ``[top, stop)`` into ``out`` (uint8, stop - top by W, any
        strides), using ``scratch`` (float32, at least (stop - top) * W values)."""
        band = self.values[top:stop]
        work = scratch[: band.size].reshape(band.shape)
        if self.mode == "clip":
            _clip_into(band, work)
            _store(work, out)
            return
        if self.finite:
            _store(self._transform(band, work), out)
            return
        # Masks first: with to_pixels' overwrite, writing out may overwrite this very band.
        finite, high = np.isfinite(band), np.isposinf(band)
        low = ~finite & ~high
        _store(self._transform(np.where(finite, band, np.float32(0)), work), out)
        out[high] = 255
        out[low] = 0


Transform = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _transform(mode: str, lo: float, hi: float) -> Transform:
    """Values (float32, finite) to pixel values in [0, 255], not yet rounded (:func:`_store`
    rounds), for a channel whose finite values span ``[lo, hi]`` (``lo > hi`` when it has
    none). The transform may use its second argument (float32, the band's shape) as working
    memory; it returns a C-contiguous float32 array."""
    if lo > hi:
        return _fill(0)
    if mode == "minmax":
        if not hi > lo:
            return _fill(0)
        return lambda band, work: _clipped(_affine(band, -lo, 255.0 / (hi - lo), 0.0,
                                                   bound=hi - lo, work=work))
    peak = max(abs(lo), abs(hi))
    if peak == 0.0:
        return _fill(128 if mode == "symmetric" else 0)
    if mode == "abs":
        return lambda band, work: _clipped(_affine(np.abs(band, out=work), 0.0, 255.0 / peak,
                                                   0.0, bound=peak, work=work))
    return lambda band, work: _clipped(_affine(band, 0.0, 127.5 / peak, 127.5, bound=peak,
                                               work=work))


def _fill(value: int) -> Transform:
    def fill(band: np.ndarray, work: np.ndarray) -> np.ndarray:
        work.fill(value)
        return work

    return fill


def _clip_into(band: np.ndarray, work: np.ndarray) -> None:
    """``255 * clip(v, 0, 1)`` into ``work``, computed as ``clip(255 * v, 0, 255)`` (equal,
    and rounding, by :func:`_store`, commutes with clipping to integers). Infinities clip to
    255 and 0 as they are, and so do values beyond float32 / 255 (they become infinite); NaN,
    the one value left that is not a pixel, shows in the band's sum and is then set to 0."""
    with np.errstate(over="ignore"):
        np.multiply(band, np.float32(255), out=work)
    np.clip(work, 0, 255, out=work)
    if math.isnan(float(np.add.reduce(work, axis=None))):
        np.copyto(work, np.float32(0), where=np.isnan(work))


def _clipped(scaled: np.ndarray) -> np.ndarray:
    np.clip(scaled, 0, 255, out=scaled)
    return scaled


# Adding 1.5 * 2**23 to a float32 in [0, 255] rounds it to an integer k, half to even (the
# rounding of every float addition, and of np.rint), and leaves k in the low byte of the
# sum's bits (the sum is 2**23 + 2**22 + k, whose mantissa is 2**22 + k). Reading that byte
# replaces a rounding pass and a float-to-integer conversion.
_ROUNDER = np.float32(3 << 22)
_LOW_BYTE = 0 if sys.byteorder == "little" else 3


def _store(values: np.ndarray, out: np.ndarray) -> None:
    """Round ``values`` (float32 in [0, 255], C-contiguous, overwritten) half to even and
    write them into ``out`` (uint8, the same shape, any strides)."""
    np.add(values, _ROUNDER, out=values)
    out[...] = values.view(np.uint8).reshape(*values.shape, 4)[..., _LOW_BYTE]


def _affine(
    v: np.ndarray, shift: float, scale: float, offset: float, *, bound: float, work: np.ndarray
) -> np.ndarray:
    """``(v + shift) * scale + offset`` as float32 (in ``work`` where float32 suffices);
    ``bound`` >= ``max|v + shift|``.

    Shifting first keeps a narrow range far from zero precise; float64 is used only where
    float32 would overflow.
    """
    if bound < 1e38:
        np.add(v, np.float32(shift), out=work)
        work *= np.float32(scale)
        if offset:
            work += np.float32(offset)
        return work
    result: np.ndarray = np.add(v, np.float64(shift), dtype=np.float64)
    result *= np.float64(scale)
    if offset:
        result += np.float64(offset)
    return result.astype(np.float32)


def float_maps(maps: np.ndarray, what: str, *, allow_empty: bool = False) -> np.ndarray:
    """``maps`` as float32 (C, H, W) (as it is when it already is), or an InvalidArgumentError
    naming ``what`` for any other shape or a dtype that is not a real number (or, unless
    ``allow_empty``, an empty axis)."""
    values = np.asarray(maps)
    if (values.ndim != 3 or values.dtype.kind not in "biuf"
            or (not allow_empty and min(values.shape) < 1)):
        raise InvalidArgumentError(
            f"{what} needs real maps of shape (C, H, W), got shape {values.shape} of "
            f"{values.dtype}"
        )
    if values.dtype != np.float32:
        with np.errstate(over="ignore"):  # beyond float32's range: inf, mapped like inf
            values = values.astype(np.float32)
    return values
