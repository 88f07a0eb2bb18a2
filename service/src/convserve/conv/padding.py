"""Padding modes: the one list of their spellings and the one definition of what each puts in the
padding (:func:`padding_source`), for the spec, the engines, the bands and explain.

PyTorch names them ``zeros``, ``reflect``, ``replicate`` and ``circular``; NumPy ``constant``,
``reflect``, ``edge`` and ``wrap``; OpenCV ``BORDER_CONSTANT``, ``BORDER_REFLECT_101``,
``BORDER_REPLICATE`` and ``BORDER_WRAP``. Every spelling is accepted; the spec keeps PyTorch's.
"""

from __future__ import annotations

from typing import Literal, TypeAlias, get_args

import numpy as np

from convserve.errors import InvalidArgumentError

__all__ = [
    "PADDING_MODES",
    "PADDING_MODE_NAMES",
    "PaddingMode",
    "PaddingModeName",
    "normalize_padding_mode",
    "padding_source",
]

PaddingMode: TypeAlias = Literal["zeros", "reflect", "replicate", "circular"]
PADDING_MODES: tuple[PaddingMode, ...] = ("zeros", "reflect", "replicate", "circular")

PaddingModeName: TypeAlias = Literal[
    "zeros", "reflect", "replicate", "circular",
    "constant", "edge", "wrap",
    "BORDER_CONSTANT", "BORDER_REFLECT_101", "BORDER_REFLECT101", "BORDER_REPLICATE",
    "BORDER_WRAP",
]
"""Every accepted spelling of a padding mode: PyTorch's, NumPy's and OpenCV's (the one list;
the API's enum and the clients' types are this). Matched case-insensitively."""
PADDING_MODE_NAMES: tuple[PaddingModeName, ...] = get_args(PaddingModeName)

_PADDING_MODE_OF: dict[PaddingModeName, PaddingMode] = {
    "zeros": "zeros", "constant": "zeros", "BORDER_CONSTANT": "zeros",
    "reflect": "reflect", "BORDER_REFLECT_101": "reflect", "BORDER_REFLECT101": "reflect",
    "replicate": "replicate", "edge": "replicate", "BORDER_REPLICATE": "replicate",
    "circular": "circular", "wrap": "circular", "BORDER_WRAP": "circular",
}
_PADDING_MODE_ALIASES = {name.lower(): mode for name, mode in _PADDING_MODE_OF.items()}


def normalize_padding_mode(mode: str) -> PaddingMode:
    """PyTorch's name for ``mode``, accepting NumPy and OpenCV spellings."""
    if isinstance(mode, str) and mode.lower() in _PADDING_MODE_ALIASES:
        return _PADDING_MODE_ALIASES[mode.lower()]
    raise InvalidArgumentError(
        f"padding_mode={mode!r} is not one of zeros, reflect, replicate, circular "
        "(NumPy's constant, reflect, edge, wrap and OpenCV's BORDER_* names are accepted too)",
        field="padding_mode",
    )


def padding_source(positions: np.ndarray, size: int, mode: PaddingMode) -> np.ndarray:
    """Where each coordinate of an axis of ``size`` samples reads from under ``mode``.

    The one definition of the padding modes, used by the engines and by explain.

    Parameters
    ----------
    positions : ndarray of int, any shape
        Coordinates along the axis, possibly outside ``[0, size)`` (in the padding).
    size : int
        Samples of the axis (>= 1).
    mode : {"zeros", "reflect", "replicate", "circular"}
        ``reflect`` mirrors about the edge sample (PyTorch, NumPy ``reflect``, OpenCV
        ``BORDER_REFLECT_101``), repeating with period ``2 * (size - 1)``.

    Returns
    -------
    ndarray of int64, the shape of ``positions``
        The index of the sample the mode puts there; -1 where ``zeros`` puts a zero.
    """
    i = np.asarray(positions, dtype=np.int64)
    if mode == "zeros":
        return np.where((i >= 0) & (i < size), i, -1)
    if mode == "replicate":
        return np.clip(i, 0, size - 1)
    if mode == "circular":
        return i % size
    if size == 1:  # reflecting a single sample gives that sample
        return np.zeros_like(i)
    period = 2 * (size - 1)
    j = np.abs(i) % period
    return np.where(j < size, j, period - j)
