"""Tone mapping: float feature maps to 8-bit pixels (``to_pixels``)."""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

import numpy as np

from convserve.errors import InvalidArgumentError

__all__ = ["NORMALIZE_MODES", "NormalizeMode", "to_pixels"]

NormalizeMode: TypeAlias = Literal["auto", "clip", "minmax", "abs", "symmetric"]
NORMALIZE_MODES: tuple[NormalizeMode, ...] = ("auto", "clip", "minmax", "abs", "symmetric")


def to_pixels(maps: np.ndarray, mode: NormalizeMode, *, range_preserving: bool) -> np.ndarray:
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

    Returns
    -------
    ndarray of uint8, shape (C, H, W)
    """
    if mode not in NORMALIZE_MODES:
        raise InvalidArgumentError(
            f"normalize={mode!r} is not one of {', '.join(NORMALIZE_MODES)}", field="normalize"
        )
    values = np.asarray(maps)
    if values.ndim != 3 or values.dtype.kind not in "biuf":
        raise InvalidArgumentError(
            f"to_pixels needs real maps of shape (C, H, W), got shape {values.shape} of "
            f"{values.dtype}"
        )
    if values.dtype != np.float32:
        with np.errstate(over="ignore"):  # beyond float32's range: inf, mapped like inf
            values = values.astype(np.float32)
    if mode == "auto":
        mode = "clip" if range_preserving else "minmax"
    finite = np.isfinite(values)
    all_finite = bool(finite.all())
    where = None if all_finite else finite
    out = np.empty(values.shape, dtype=np.uint8)
    for c in range(values.shape[0]):
        out[c] = _channel_pixels(values[c], mode, None if where is None else where[c])
    if not all_finite:
        out[np.isposinf(values)] = 255
        out[np.isneginf(values) | np.isnan(values)] = 0
    return out


def _channel_pixels(v: np.ndarray, mode: str, finite: np.ndarray | None) -> np.ndarray:
    """One channel (H, W) of float32 to rounded pixel values in [0, 255] (float32)."""
    scaled: np.ndarray
    if finite is not None:
        v = np.where(finite, v, np.float32(0))
    if mode == "clip":
        scaled = np.clip(v, 0, 1) * np.float32(255)
    elif finite is not None and not finite.any():
        return np.zeros(v.shape, np.float32)
    elif mode == "minmax":
        lo = float(np.min(v, where=finite, initial=np.inf) if finite is not None else v.min())
        hi = float(np.max(v, where=finite, initial=-np.inf) if finite is not None else v.max())
        if not hi > lo:
            return np.zeros(v.shape, np.float32)
        scaled = _affine(v, -lo, 255.0 / (hi - lo), 0.0, bound=hi - lo)
    else:
        peak = float(np.max(np.abs(v)))  # non-finite values were zeroed above
        if peak == 0.0:
            return np.full(v.shape, 128 if mode == "symmetric" else 0, np.float32)
        if mode == "abs":
            scaled = _affine(np.abs(v), 0.0, 255.0 / peak, 0.0, bound=peak)
        else:
            scaled = _affine(v, 0.0, 127.5 / peak, 127.5, bound=peak)
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
