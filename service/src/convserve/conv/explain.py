"""The arithmetic behind one output element of a convolution layer, term by term.

For output position ``(o, r, c)`` of a layer described by a :class:`ConvSpec`::

    y[o, r, c] = bias[o] + sum_{j < C_in/groups} sum_{u < k_h} sum_{v < k_w}
                 w[o, j, u, v] * xp[g*C_in/groups + j, r*s_h + u*d_h, c*s_w + v*d_w]

with ``g = o // (C_out/groups)`` the group of ``o`` and ``xp`` the input padded by
``(top, bottom, left, right)`` with the layer's ``padding_mode``. :func:`explain_position`
returns one :class:`Term` per input channel ``o`` reads (its ``C_in/groups`` channels, in
input-channel order), each holding the ``k_h x k_w`` window of input values (padding values
included, and marked), the ``k_h x k_w`` kernel, their products and the sum.

The window of row ``u`` and column ``v`` sits at input coordinates
``(r*s_h - top + u*d_h, c*s_w - left + v*d_w)``; coordinates outside ``[0, H) x [0, W)`` lie in
the padding and read what the padding mode puts there: 0 (zeros), the mirrored sample without
repeating the edge (reflect), the nearest edge sample (replicate) or the sample from the other
side (circular).

Numbers: the window and kernel are the float32 values the engines read. Products and sums are
computed here in float64, where a product of two float32 numbers is exact, so
``Explanation.total`` (the sum of the term sums plus the bias) differs from an engine's float32
result only by the engine's float32 rounding: at most about ``1e-6 * (sum |products| + |bias|)``.

This module is a teaching oracle, not an engine: it loops over ``C_in/groups`` channels and
refuses layers whose element reads more than :data:`MAX_EXPLAIN_PRODUCTS` products.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from convserve.conv.spec import ConvSpec, PaddingMode, padding_source
from convserve.errors import InvalidArgumentError, LimitExceededError, ShapeError

__all__ = [
    "MAX_EXPLAIN_PRODUCTS",
    "Explanation",
    "Term",
    "check_explainable",
    "check_position",
    "explain_position",
    "format_number",
]

MAX_EXPLAIN_PRODUCTS = 4096
"""Most products (``C_in/groups * k_h * k_w``) one explained element may have; this keeps the
answer (every window, kernel and product, and the expression) below a few hundred kilobytes."""


def format_number(value: float) -> str:
    """A compact decimal for the expression: integers without ``.0``, else 6 significant digits.

    >>> [format_number(v) for v in (56.0, -0.0, 0.1, 1 / 3, 2.5e-9, 12345678.0)]
    ['56', '0', '0.1', '0.333333', '2.5e-09', '12345678']
    """
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def _factor(value: float) -> str:
    """A factor of a product; negative numbers in parentheses so ``×`` never meets ``-``."""
    text = format_number(value)
    return f"({text})" if text.startswith("-") else text


def _source_index(
    positions: np.ndarray, size: int, mode: PaddingMode
) -> tuple[np.ndarray, np.ndarray]:
    """Where each input coordinate reads from, for an axis of ``size`` samples.

    Parameters
    ----------
    positions : ndarray of int, shape (k,)
        Input coordinates, possibly outside ``[0, size)`` (in the padding).

    Returns
    -------
    source : ndarray of int, shape (k,)
        The index of the sample the padding mode puts there (0 for a zero of ``zeros``).
    inside : ndarray of bool, shape (k,)
        Whether the coordinate lies inside the input.
    """
    inside = (positions >= 0) & (positions < size)
    return np.maximum(padding_source(positions, size, mode), 0), inside


@dataclass(frozen=True)
class Term:
    """What one input channel contributes to the explained element.

    Attributes
    ----------
    input_channel : int
        Index of the channel in the layer's input.
    window : ndarray of float32, shape (k_h, k_w)
        The input values the kernel multiplies (dilation applied, padding values included).
    in_padding : ndarray of bool, shape (k_h, k_w)
        True where the value lies in the padding rather than in the input.
    kernel : ndarray of float32, shape (k_h, k_w)
        ``weight[o, j]``, the weights for this channel.
    products : ndarray of float64, shape (k_h, k_w)
        ``window * kernel``, exact.
    sum : float
        The sum of ``products`` (float64).
    """

    input_channel: int
    window: np.ndarray
    in_padding: np.ndarray
    kernel: np.ndarray
    products: np.ndarray
    sum: float

    def expression(self) -> str:
        """``(x×w + x×w + ...)`` in row-major order."""
        pairs = zip(self.window.ravel().tolist(), self.kernel.ravel().tolist(), strict=True)
        return "(" + " + ".join(f"{_factor(x)}×{_factor(w)}" for x, w in pairs) + ")"

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_channel": self.input_channel,
            "window": self.window.tolist(),
            "in_padding": self.in_padding.tolist(),
            "kernel": self.kernel.tolist(),
            "products": self.products.tolist(),
            "sum": self.sum,
        }


@dataclass(frozen=True)
class Explanation:
    """Every term of output element ``(channel, y, x)`` of one layer.

    Attributes
    ----------
    channel, y, x : int
        The output position.
    output_shape : (C_out, H_out, W_out)
    window_origin : (row, col)
        Input coordinate of the window's top-left tap; negative or past the input's size when
        it lies in the padding.
    rows, cols : tuple of int
        Input coordinates of the window's ``k_h`` rows and ``k_w`` columns (dilation applied).
    terms : tuple of Term
        One per input channel read by ``channel``, in input-channel order.
    bias : float or None
        ``bias[channel]`` when the layer has a bias.
    total : float
        ``sum(term.sum) + bias`` in float64.
    """

    channel: int
    y: int
    x: int
    output_shape: tuple[int, int, int]
    window_origin: tuple[int, int]
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    terms: tuple[Term, ...]
    bias: float | None
    total: float

    def expression(self, value: float | None = None) -> str:
        """The whole computation on one line, ending ``= value`` (default: :attr:`total`).

        The D2L example at (0, 0, 0) reads
        ``(0×0 + 1×1 + 3×2 + 4×3) + (1×1 + 2×2 + 4×3 + 5×4) = 56``.
        """
        text = " + ".join(term.expression() for term in self.terms)
        if self.bias is not None:
            sign = "-" if format_number(self.bias).startswith("-") else "+"
            text += f" {sign} {format_number(abs(self.bias))}"
        result = self.total if value is None else value
        return f"{text} = {format_number(result)}"

    def to_dict(self, value: float | None = None) -> dict[str, Any]:
        """JSON-ready fields; ``value`` (an engine's result) ends the expression when given."""
        return {
            "at": {"channel": self.channel, "y": self.y, "x": self.x},
            "output_shape": list(self.output_shape),
            "window_origin": {"y": self.window_origin[0], "x": self.window_origin[1]},
            "rows": list(self.rows),
            "cols": list(self.cols),
            "bias": self.bias,
            "total": self.total,
            "terms": [term.to_dict() for term in self.terms],
            "expression": self.expression(value),
        }


def check_position(spec: ConvSpec, channel: int, y: int, x: int) -> None:
    """Raise InvalidArgumentError (field ``at``) unless ``(channel, y, x)`` is in the output."""
    c_out, h_out, w_out = spec.out_channels, spec.out_height, spec.out_width
    if 0 <= channel < c_out and 0 <= y < h_out and 0 <= x < w_out:
        return
    raise InvalidArgumentError(
        f"at=(channel={channel}, y={y}, x={x}) is outside the output of shape "
        f"(c_out, h_out, w_out)=({c_out}, {h_out}, {w_out}): channel must be in [0, {c_out}), "
        f"y in [0, {h_out}) and x in [0, {w_out})",
        field="at",
    )


def check_explainable(spec: ConvSpec) -> None:
    """Raise LimitExceededError when one element reads more than MAX_EXPLAIN_PRODUCTS products."""
    products = spec.in_per_group * spec.kernel_h * spec.kernel_w
    if products > MAX_EXPLAIN_PRODUCTS:
        raise LimitExceededError(
            f"one output element of this layer is a sum of C_in/groups * k_h * k_w = "
            f"{spec.in_per_group} * {spec.kernel_h} * {spec.kernel_w} = {products} products, "
            f"more than the {MAX_EXPLAIN_PRODUCTS} /v1/explain shows; explain a layer with "
            "fewer input channels per group or a smaller kernel",
            field="kernel",
        )


def explain_position(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    spec: ConvSpec,
    channel: int,
    y: int,
    x_pos: int,
) -> Explanation:
    """Explain output element ``(channel, y, x_pos)`` of the layer ``spec`` over ``x``.

    Parameters
    ----------
    x : ndarray of float32, shape (C_in, H, W) or (1, C_in, H, W)
    weight : ndarray of float32, shape (C_out, C_in // groups, k_h, k_w)
    bias : ndarray of float32, shape (C_out,), or None
    spec : ConvSpec
        Built by :func:`~convserve.conv.spec.conv_spec` for these shapes, batch 1.
    channel, y, x_pos : int
        The output position.

    Returns
    -------
    Explanation

    Raises
    ------
    InvalidArgumentError
        The position lies outside the output (the message gives the valid ranges).
    LimitExceededError
        The element has more than :data:`MAX_EXPLAIN_PRODUCTS` products.
    ShapeError
        The arrays do not have the shapes ``spec`` describes.
    """
    image = x[0] if x.ndim == 4 else x
    if (
        spec.batch != 1
        or (1, *image.shape) != spec.input_shape
        or weight.shape != spec.weight_shape
        or (bias is not None) != spec.bias
    ):
        raise ShapeError(
            f"x.shape={x.shape}, weight.shape={weight.shape} and bias "
            f"{'given' if bias is not None else 'absent'} do not match the layer "
            f"{spec.input_shape}, {spec.weight_shape}, bias={spec.bias} (batch must be 1)"
        )
    check_position(spec, channel, y, x_pos)
    check_explainable(spec)
    top, _, left, _ = spec.pads
    (s_h, s_w), (d_h, d_w) = spec.stride, spec.dilation
    origin = (y * s_h - top, x_pos * s_w - left)
    rows = origin[0] + d_h * np.arange(spec.kernel_h)
    cols = origin[1] + d_w * np.arange(spec.kernel_w)
    src_rows, rows_inside = _source_index(rows, spec.height, spec.padding_mode)
    src_cols, cols_inside = _source_index(cols, spec.width, spec.padding_mode)
    inside = rows_inside[:, None] & cols_inside[None, :]
    zeros_outside = spec.padding_mode == "zeros"

    first = (channel // spec.out_per_group) * spec.in_per_group
    terms = []
    for j in range(spec.in_per_group):
        window = np.asarray(image[first + j][np.ix_(src_rows, src_cols)], dtype=np.float32)
        if zeros_outside:
            window = np.where(inside, window, np.float32(0))
        kernel = np.asarray(weight[channel, j], dtype=np.float32)
        products = window.astype(np.float64) * kernel.astype(np.float64)
        terms.append(Term(first + j, window, ~inside, kernel, products, float(products.sum())))
    bias_value = None if bias is None else float(bias[channel])
    total = math.fsum(t.sum for t in terms) + (bias_value or 0.0)
    return Explanation(
        channel=channel, y=y, x=x_pos,
        output_shape=(spec.out_channels, spec.out_height, spec.out_width),
        window_origin=(int(origin[0]), int(origin[1])),
        rows=tuple(int(r) for r in rows), cols=tuple(int(c) for c in cols),
        terms=tuple(terms), bias=bias_value, total=total,
    )
