"""A slow, obviously correct ``conv2d`` in float64: the oracle every engine is tested against.

It shares no code with convserve: it resolves the padding argument, pads with its own index
arithmetic and loops over every output element, so a mistake in the engines or in
``convserve.conv.spec`` cannot hide in it. Only the innermost kernel-window dot product is
vectorised.

Semantics (PyTorch ``torch.nn.functional.conv2d``, cross-correlation without kernel flip)::

    y[n, o, r, c] = bias[o] + sum_{i < C_in/g} sum_{u < k_h} sum_{v < k_w}
                    w[o, i, u, v] * xp[n, g(o)*C_in/g + i, r*s_h + u*d_h, c*s_w + v*d_w]

with ``g(o) = o // (C_out/g)`` and ``xp`` the input padded by (top, bottom, left, right).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import numpy as np

__all__ = ["ConvOptions", "conv2d_reference", "pad_reference", "source_index"]


class ConvOptions(TypedDict, total=False):
    """Keyword options of ``conv2d``, so that ``**options`` type-checks for both the engines
    and :func:`conv2d_reference`."""

    stride: int | Sequence[int]
    padding: int | Sequence[int] | str
    dilation: int | Sequence[int]
    groups: int
    padding_mode: str


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    first, second = value
    return int(first), int(second)


def _pads(
    padding: int | Sequence[int] | str,
    kernel: tuple[int, int],
    dilation: tuple[int, int],
) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) for any padding form; "same" puts an odd remainder last."""
    if padding == "valid":
        return 0, 0, 0, 0
    if padding == "same":
        total_h = dilation[0] * (kernel[0] - 1)
        total_w = dilation[1] * (kernel[1] - 1)
        top, left = total_h // 2, total_w // 2
        return top, total_h - top, left, total_w - left
    if isinstance(padding, int):
        return padding, padding, padding, padding
    values = [int(p) for p in padding]
    if len(values) == 2:
        return values[0], values[0], values[1], values[1]
    top, bottom, left, right = values
    return top, bottom, left, right


def source_index(position: int, size: int, mode: str) -> int | None:
    """The source index of padded ``position`` (negative = before the start), None for a zero."""
    if 0 <= position < size:
        return position
    if mode == "zeros":
        return None
    if mode == "replicate":
        return 0 if position < 0 else size - 1
    if mode == "circular":
        return position % size
    if mode == "reflect":  # mirror about the edge sample without repeating it
        if position < 0:
            return -position
        return 2 * (size - 1) - position
    raise ValueError(f"unknown padding mode {mode!r}")


def pad_reference(
    x: np.ndarray, pads: tuple[int, int, int, int], mode: str
) -> np.ndarray:
    """Pad ``x`` of shape (N, C, H, W) by (top, bottom, left, right), element by element."""
    n, c, h, w = x.shape
    top, bottom, left, right = pads
    out = np.zeros((n, c, h + top + bottom, w + left + right), dtype=np.float64)
    for row in range(out.shape[2]):
        source_row = source_index(row - top, h, mode)
        if source_row is None:
            continue
        for col in range(out.shape[3]):
            source_col = source_index(col - left, w, mode)
            if source_col is None:
                continue
            out[:, :, row, col] = x[:, :, source_row, source_col]
    return out


def conv2d_reference(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] | str = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> np.ndarray:
    """PyTorch ``conv2d`` in float64 with explicit loops.

    Parameters
    ----------
    x : array_like of shape (N, C_in, H, W) or (C_in, H, W)
    weight : array_like of shape (C_out, C_in // groups, k_h, k_w)
    bias : array_like of shape (C_out,), optional
    stride, dilation : int or (h, w)
    padding : int, (p_h, p_w), (top, bottom, left, right), "valid" or "same"
    groups : int
    padding_mode : "zeros", "reflect", "replicate" or "circular"

    Returns
    -------
    ndarray of float64, shape (N, C_out, H_out, W_out), or (C_out, H_out, W_out) for 3-D ``x``
    """
    x = np.asarray(x, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    squeeze = x.ndim == 3
    if squeeze:
        x = x[None]
    n, c_in, _, _ = x.shape
    c_out, c_in_g, k_h, k_w = weight.shape
    assert c_in == c_in_g * groups and c_out % groups == 0
    s_h, s_w = _pair(stride)
    d_h, d_w = _pair(dilation)
    xp = pad_reference(x, _pads(padding, (k_h, k_w), (d_h, d_w)), padding_mode)
    h_out = (xp.shape[2] - d_h * (k_h - 1) - 1) // s_h + 1
    w_out = (xp.shape[3] - d_w * (k_w - 1) - 1) // s_w + 1
    out_per_group = c_out // groups
    y = np.zeros((n, c_out, h_out, w_out), dtype=np.float64)
    for batch in range(n):
        for o in range(c_out):
            first = (o // out_per_group) * c_in_g
            for r in range(h_out):
                for c in range(w_out):
                    window = xp[
                        batch,
                        first : first + c_in_g,
                        r * s_h : r * s_h + d_h * (k_h - 1) + 1 : d_h,
                        c * s_w : c * s_w + d_w * (k_w - 1) + 1 : d_w,
                    ]
                    y[batch, o, r, c] = np.sum(window * weight[o])
            if bias is not None:
                y[batch, o] += float(np.asarray(bias, dtype=np.float64)[o])
    return y[0] if squeeze else y
