"""Schemas of ``POST /v1/convolve``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from convserve.api.schemas.common import (
    ColorMode,
    DeviceName,
    EngineName,
    Format,
    InputSpec,
    IntPair,
    JsonBool,
    JsonFloat,
    JsonInt,
    KernelSpec,
    Normalize,
    PaddingValue,
    Strict,
    exactly_one,
    json_typed,
)
from convserve.conv.spec import PaddingModeName

__all__ = [
    "ChannelResult",
    "ConvLayerOptions",
    "ConvolveOptions",
    "ConvolveRequest",
    "ConvolveResponse",
    "Cost",
]


class ConvLayerOptions(Strict):
    """One convolution layer: its kernel (explicit or a preset) and its options."""

    model_config = ConfigDict(json_schema_extra=exactly_one(
        {"kernel": {"type": "object"}}, {"preset": {"type": "string"}},
    ))

    kernel: KernelSpec | None = None
    """An explicit kernel; give exactly one of kernel and preset."""
    preset: str | None = Field(default=None, examples=["sobel"])
    """A named kernel from GET /v1/presets, resolved for the input's channels."""
    preset_params: dict[str, JsonFloat] = Field(default_factory=dict,
                                                examples=[{"sigma": 2.0}])
    """Parameters of the preset (see GET /v1/presets); defaults fill the rest."""
    stride: IntPair = 1
    """Step of the kernel window, an int or [h, w], each >= 1."""
    padding: PaddingValue | None = Field(default=None, examples=[1, "same", [0, 1, 0, 1]])
    """An int, [p_h, p_w], [top, bottom, left, right], 'valid' or 'same' (stride 1 only;
    odd remainder at bottom/right). Default: 0 with a kernel, 'same' with a preset."""
    dilation: IntPair = 1
    """Spacing between kernel taps, an int or [h, w], each >= 1."""
    groups: JsonInt | None = None
    """Channel groups; must divide C_in and C_out. Default: 1 with a kernel, the preset's
    own with a preset."""
    padding_mode: PaddingModeName | None = None
    """zeros, reflect, replicate or circular (NumPy's constant, edge, wrap accepted).
    Default: zeros with a kernel, reflect with a preset."""

    @model_validator(mode="after")
    def _kernel_xor_preset(self) -> ConvLayerOptions:
        if (self.kernel is None) == (self.preset is None):
            raise ValueError(
                "give exactly one of kernel (an explicit weight tensor) and preset "
                "(a name from GET /v1/presets)"
            )
        return self


class ConvolveOptions(ConvLayerOptions):
    """Every option of /v1/convolve except the input itself."""

    engine: EngineName | None = None
    """auto (the engine measured fastest for this shape; the answer names the one that ran),
    numpy or onnxruntime; default from CONVSERVE_ENGINE (auto)."""
    device: DeviceName | None = None
    """cpu or cuda; default from CONVSERVE_DEVICE. CUDA where it is not active is a 422."""
    color_mode: ColorMode = "rgb"
    """How an image becomes channels: rgb (C=3), gray (C=1), rgba (C=4), keep (the file's)."""
    format: Format = "json"
    """Response format: json, array, npy, png (one channel), image (c_out 1, 3 or 4), grid, zip."""
    normalize: Normalize = "auto"
    """Float to pixel mapping for PNGs: auto (clip for range-preserving kernels, else minmax),
    clip, minmax, abs, symmetric (0 is mid-grey)."""
    channel: Annotated[int, Field(ge=0), json_typed(int)] | None = None
    """The output channel returned by format=png (default 0)."""
    dry_run: JsonBool = False
    """Validate and return shapes and cost without computing."""


class ConvolveRequest(ConvolveOptions):
    """A JSON body for /v1/convolve: the options plus the input."""

    input: InputSpec
    """The image or array to convolve."""


class Cost(BaseModel):
    """Size and arithmetic cost of a layer."""

    params: int
    """Learnable parameters: c_out * c_in/groups * k_h * k_w (+ c_out with bias)."""
    macs: int
    """Multiply-accumulates."""
    flops: int
    """Floating-point operations (2 per MAC, plus bias additions)."""
    input_bytes: int
    weight_bytes: int
    output_bytes: int
    output_size: dict[str, str]
    """The output-size formula per axis with the numbers filled in."""


class ChannelResult(BaseModel):
    """One output channel's statistics and picture."""

    index: int
    name: str | None = None
    min: float | None
    """Smallest value; null only where the output overflowed float32 (as max and mean)."""
    max: float | None
    mean: float | None
    png_base64: str | None = None


class ConvolveResponse(BaseModel):
    """The format=json answer of /v1/convolve."""

    shape: list[int]
    """[c_out, h_out, w_out]."""
    engine: str
    device: str
    padding: list[int]
    """Resolved padding [top, bottom, left, right]."""
    padding_mode: str
    stride: list[int]
    dilation: list[int]
    groups: int
    normalize: str
    """The normalize mode used for the PNGs (auto resolved)."""
    input: dict[str, Any]
    kernel: dict[str, Any]
    cost: Cost
    timing_ms: dict[str, float]
    channels: list[ChannelResult] = Field(default_factory=list)
    """format=json: one entry per output channel (none with dry_run); absent with
    format=array."""
    dtype: Literal["float32"] = "float32"
    """format=array: the type of ``data``'s numbers."""
    data: list[list[list[float | None]]] = Field(default_factory=list)
    """format=array only: the output (c_out, h_out, w_out) as nested lists; null where a value
    overflowed float32."""
    dry_run: bool = False
