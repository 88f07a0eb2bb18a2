"""``POST /v1/explain``: :class:`ExplainResult` and its :class:`ExplainTerm`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from convserve_client._models._shared import Cost, FloatArray, float32, ints, pads, real

__all__ = ["ExplainResult", "ExplainTerm"]

@dataclass(frozen=True, slots=True, eq=False)
class ExplainTerm:
    """The contribution of one input channel to the explained output element.

    Attributes
    ----------
    input_channel : int
    window : ndarray of shape (k_h, k_w)
        The input values the kernel multiplies (dilation applied, padding values included).
    kernel : ndarray of shape (k_h, k_w)
    products : ndarray of shape (k_h, k_w)
        ``window * kernel``.
    sum : float
        Sum of ``products``.
    padded : ndarray of bool, shape (k_h, k_w), or None
        True where the window value lies in the padding (when the server marks it).
    """

    input_channel: int
    window: FloatArray
    kernel: FloatArray
    products: FloatArray
    sum: float
    padded: npt.NDArray[np.bool_] | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExplainTerm:
        padded = data.get("in_padding")
        return cls(
            input_channel=int(data["input_channel"]),
            window=float32(data["window"]),
            kernel=float32(data["kernel"]),
            products=float32(data["products"]),
            sum=real(data["sum"]),
            padded=None if padded is None else np.asarray(padded, dtype=bool),
            raw=data,
        )


def _position(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        keys = ("channel", "y", "x") if "channel" in value else ("y", "x")
        return tuple(int(value[k]) for k in keys)
    return ints(value)


@dataclass(frozen=True, slots=True, eq=False)
class ExplainResult:
    """``POST /v1/explain``: the arithmetic behind one output element.

    ``value`` equals the convolution's output at ``at`` = ``(channel, y, x)``; it is
    ``bias + sum(t.sum for t in terms)``. ``expression`` is the whole computation as one line,
    e.g. ``(0×0 + 1×1 + 3×2 + 4×3) + (1×1 + 2×2 + 4×3 + 5×4) = 56``.

    ``window_origin`` ``(y, x)`` is the input coordinate of the window's top-left tap (negative
    inside the padding); ``rows`` and ``cols`` are the input coordinates each kernel row and
    column reads (dilation applied); ``padding`` is ``(top, bottom, left, right)``.
    """

    value: float
    bias: float
    at: tuple[int, int, int]
    output_shape: tuple[int, ...]
    window_origin: tuple[int, ...]
    terms: tuple[ExplainTerm, ...] = field(repr=False)
    expression: str
    padding: tuple[int, int, int, int] | None = None
    rows: tuple[int, ...] = ()
    cols: tuple[int, ...] = ()
    cost: Cost | None = None
    request_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], at: tuple[int, int, int], request_id: str | None = None
    ) -> ExplainResult:
        position = _position(data.get("at"))
        channel, y, x = position if position is not None and len(position) == 3 else at
        return cls(
            value=real(data["value"]),
            bias=float(data.get("bias") or 0.0),
            at=(channel, y, x),
            output_shape=ints(data["output_shape"]),
            window_origin=_position(data.get("window_origin")) or (),
            terms=tuple(ExplainTerm.from_dict(t) for t in data["terms"]),
            expression=str(data["expression"]),
            padding=None if data.get("padding") is None else pads(data["padding"]),
            rows=ints(data.get("rows") or ()),
            cols=ints(data.get("cols") or ()),
            cost=None if data.get("cost") is None else Cost.from_dict(data["cost"]),
            request_id=request_id,
            raw=data,
        )


