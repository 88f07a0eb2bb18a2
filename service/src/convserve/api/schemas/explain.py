"""Schemas of ``POST /v1/explain``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from convserve.api.schemas.common import (
    InputSpec,
    JsonInt,
    RunOptions,
    Strict,
)
from convserve.api.schemas.convolve import (
    ConvLayerOptions,
    Cost,
)

__all__ = [
    "ExplainAt",
    "ExplainOptions",
    "ExplainRequest",
    "ExplainResponse",
    "ExplainTerm",
]


class ExplainAt(Strict):
    """An output position (channel, row, column); each index starts at 0."""

    channel: JsonInt = 0
    """Output channel o, in [0, c_out)."""
    y: JsonInt
    """Output row r, in [0, h_out)."""
    x: JsonInt
    """Output column c, in [0, w_out)."""


class ExplainOptions(RunOptions, ConvLayerOptions):
    """Every option of /v1/explain except the input: a /v1/convolve layer plus ``at``."""

    at: ExplainAt = Field(examples=[{"channel": 0, "y": 0, "x": 0}])
    """The output element to explain; in multipart, a JSON string."""


class ExplainRequest(ExplainOptions):
    """A JSON body for /v1/explain: the options plus the input."""

    input: InputSpec
    """The image or array the layer runs over."""


class ExplainTerm(BaseModel):
    """What one input channel contributes: window x kernel, element by element."""

    input_channel: int
    """Index of the input channel (within the whole input, respecting groups)."""
    window: list[list[float]]
    """The k_h x k_w input values multiplied (dilation applied; padding values included)."""
    in_padding: list[list[bool]]
    """True where the window value lies in the padding, not in the input."""
    kernel: list[list[float]]
    """The k_h x k_w weights for this input channel."""
    products: list[list[float]]
    """window * kernel, element by element (exact, float64)."""
    sum: float
    """The sum of the products (float64)."""


class ExplainResponse(BaseModel):
    """The answer of /v1/explain: every product behind one output element."""

    at: ExplainAt
    value: float | None
    """The output at ``at`` as the engine computes it: exactly what /v1/convolve returns there
    (null where it overflowed float32; ``total`` then still has the float64 sum)."""
    total: float
    """sum of the terms' sums plus the bias, in float64; equals value up to float32 rounding."""
    bias: float | None
    output_shape: list[int]
    """[c_out, h_out, w_out] of the whole layer."""
    window_origin: dict[str, int]
    """Input coordinate {y, x} of the window's top-left tap; negative or past the input's
    size when it lies in the padding."""
    rows: list[int]
    """Input rows the window reads (dilation applied)."""
    cols: list[int]
    """Input columns the window reads (dilation applied)."""
    terms: list[ExplainTerm]
    """One per input channel the output channel reads, in input-channel order."""
    expression: str
    """The whole sum on one line, channel by channel, e.g.
    (0×0 + 1×1 + 3×2 + 4×3) + (1×1 + 2×2 + 4×3 + 5×4) = 56; a bias is appended as + b."""
    engine: str
    device: str
    padding: list[int]
    """Resolved padding [top, bottom, left, right]."""
    padding_mode: str
    stride: list[int]
    dilation: list[int]
    groups: int
    input: dict[str, Any]
    kernel: dict[str, Any]
    cost: Cost
    timing_ms: dict[str, float]
