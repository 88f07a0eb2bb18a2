"""How a filter bank is spread over an image's channels: the ``depthwise``, ``luminance`` and
``full`` rules, channel names, and whether a layer is range-preserving (see the package
docstring of :mod:`convserve.conv.presets`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from convserve.conv.presets.kernels import BT601_LUMA, FloatArray

__all__ = [
    "CHANNEL_ADVICE",
    "ChannelRule",
    "default_channel_names",
    "is_range_preserving",
    "luminance_weights",
    "spread_bank",
]

ChannelRule: TypeAlias = Literal["depthwise", "luminance", "full"]

_RANGE_TOLERANCE = 1e-5


_DEFAULT_NAMES: dict[int, tuple[str, ...]] = {
    1: ("L",),
    2: ("L", "A"),
    3: ("R", "G", "B"),
    4: ("R", "G", "B", "A"),
}

# What each "full" channel count is and how a caller gets it.
CHANNEL_ADVICE: dict[int, tuple[str, str]] = {
    1: ("grey", "use color_mode=gray"),
    2: ("e.g. D2L's two-channel X", "send a (2, H, W) array, or an LA image with color_mode=keep"),
    3: ("RGB", "use color_mode=rgb"),
    4: ("RGBA", "use color_mode=rgba"),
}


def default_channel_names(channels: int) -> tuple[str, ...]:
    """The names convserve assumes for ``channels`` unnamed channels.

    1, 2, 3 and 4 channels are taken as the image modes the decoder produces (L, LA, RGB,
    RGBA); any other count gives ``("c0", "c1", ...)``.
    """
    return _DEFAULT_NAMES.get(channels, tuple(f"c{i}" for i in range(channels)))


def luminance_weights(channels: int, channel_names: Sequence[str] | None = None) -> FloatArray:
    """How much each input channel contributes to the luminance.

    Parameters
    ----------
    channels : int
        Number of input channels ``C``.
    channel_names : sequence of str, optional
        One name per channel (case-insensitive); None means :func:`default_channel_names`.

    Returns
    -------
    ndarray of shape (C,)
        Summing to 1. Channels named ``A`` (alpha) weigh 0. The others weigh BT.601
        (0.299, 0.587, 0.114) when they are exactly ``R``, ``G`` and ``B`` in any order, 1 when
        they are a single ``L``, and equal shares otherwise (1/C each when none is alpha).
    """
    names = default_channel_names(channels) if channel_names is None else channel_names
    upper = [name.upper() for name in names]
    colour = [i for i, name in enumerate(upper) if name != "A"]
    weights = np.zeros(channels)
    if not colour:  # nothing but alpha: it is all there is to look at
        weights[:] = 1.0 / channels
    elif sorted(upper[i] for i in colour) == ["B", "G", "R"]:
        for i in colour:
            weights[i] = BT601_LUMA["RGB".index(upper[i])]
    else:
        weights[colour] = 1.0 / len(colour)
    return weights


def spread_bank(bank: FloatArray, rule: Literal["depthwise", "luminance"],
                lum: FloatArray) -> tuple[FloatArray, int]:
    """Spread a filter bank over ``C`` input channels.

    Parameters
    ----------
    bank : ndarray of shape (F, k_h, k_w)
    rule : "depthwise" or "luminance"
    lum : ndarray of shape (C,)
        Luminance weights (:func:`luminance_weights`); only their count matters to depthwise.

    Returns
    -------
    weight : ndarray of shape (C * F, 1, k_h, k_w) (depthwise) or (F, C, k_h, k_w) (luminance)
    groups : int
        ``C`` (depthwise) or 1 (luminance).
    """
    channels = lum.shape[0]
    if rule == "depthwise":
        return np.tile(bank, (channels, 1, 1))[:, np.newaxis], channels
    return bank[:, np.newaxis] * lum[np.newaxis, :, np.newaxis, np.newaxis], 1


def is_range_preserving(
    weight: npt.ArrayLike,
    bias: npt.ArrayLike | None = None,
    tolerance: float = _RANGE_TOLERANCE,
) -> bool:
    """Whether every output channel's weights are non-negative and sum to 1, without a bias.

    Parameters
    ----------
    weight : array_like of shape (C_out, C_in // groups, k_h, k_w)
    bias : array_like of shape (C_out,), optional
        A bias with any non-zero value makes the layer not range-preserving.
    tolerance : float
        Allowed deviation of each sum from 1 (float32 weights rarely sum to exactly 1).

    Returns
    -------
    bool
        True when inputs in [0, 1] always give outputs in [0, 1]; what ``normalize=auto``
        clips instead of stretching.
    """
    if bias is not None and np.any(np.asarray(bias) != 0):
        return False
    w = np.asarray(weight, dtype=np.float64)
    sums = w.reshape(w.shape[0], -1).sum(axis=1)
    return bool((w >= 0).all() and np.allclose(sums, 1.0, rtol=0.0, atol=tolerance))
