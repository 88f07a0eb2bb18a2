"""Request and response schemas of HTTP API v1.

Field docstrings become the OpenAPI descriptions. Requests forbid unknown fields, so a typo is
a 422 naming the field instead of a silently ignored option.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "BODY_MODELS",
    "ChannelResult",
    "ConvolveOptions",
    "ConvolveRequest",
    "ConvolveResponse",
    "Cost",
    "EngineInfo",
    "EnginesResponse",
    "InputSpec",
    "KernelSpec",
    "Problem",
]

IntPair = Annotated[
    int | list[int],
    Field(examples=[1, [2, 2]], json_schema_extra={"description": "an int or [h, w]"}),
]
PaddingValue = int | list[int] | Literal["same", "valid"]
Format = Literal["json", "array", "npy", "png", "image", "grid", "zip"]
Normalize = Literal["auto", "clip", "minmax", "abs", "symmetric"]
ColorMode = Literal["rgb", "gray", "rgba", "keep"]
EngineName = Literal["numpy", "onnxruntime"]
DeviceName = Literal["cpu", "cuda"]
PaddingModeName = Literal[
    "zeros", "reflect", "replicate", "circular", "constant", "edge", "wrap"
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class KernelSpec(_Strict):
    """An explicit kernel tensor."""

    weight: list[Any] = Field(examples=[[[[[0, 1], [2, 3]], [[1, 2], [3, 4]]]]])
    """Nested lists of numbers, shape (c_out, c_in/groups, k_h, k_w) for OIHW or
    (k_h, k_w, c_in/groups, c_out) for HWIO."""
    bias: list[float] | None = None
    """One number per output channel, or null for no bias."""
    layout: Literal["OIHW", "HWIO"] = "OIHW"
    """OIHW (PyTorch, ONNX) or HWIO (Keras, TensorFlow); HWIO is converted to OIHW."""


class InputSpec(_Strict):
    """The input of a JSON request: exactly one of ``array`` and ``image_base64``."""

    array: list[Any] | None = None
    """Nested lists of numbers, (C, H, W) or (H, W); used as sent (no scaling)."""
    image_base64: str | None = None
    """An encoded image file (PNG, JPEG, WebP, BMP, TIFF, GIF) in base64; a data: URL is
    accepted too."""

    @model_validator(mode="after")
    def _exactly_one(self) -> InputSpec:
        if (self.array is None) == (self.image_base64 is None):
            raise ValueError("give exactly one of input.array and input.image_base64")
        return self


class ConvolveOptions(_Strict):
    """Every option of /v1/convolve except the input itself."""

    kernel: KernelSpec | None = None
    """An explicit kernel; give exactly one of kernel and preset."""
    preset: str | None = Field(default=None, examples=["sobel"])
    """A named kernel from GET /v1/presets, resolved for the input's channels."""
    preset_params: dict[str, float] = Field(default_factory=dict, examples=[{"sigma": 2.0}])
    """Parameters of the preset (see GET /v1/presets); defaults fill the rest."""
    stride: IntPair = 1
    """Step of the kernel window, an int or [h, w], each >= 1."""
    padding: PaddingValue | None = Field(default=None, examples=[1, "same", [0, 1, 0, 1]])
    """An int, [p_h, p_w], [top, bottom, left, right], 'valid' or 'same' (stride 1 only;
    odd remainder at bottom/right). Default: 0 with a kernel, 'same' with a preset."""
    dilation: IntPair = 1
    """Spacing between kernel taps, an int or [h, w], each >= 1."""
    groups: int | None = None
    """Channel groups; must divide C_in and C_out. Default: 1 with a kernel, the preset's
    own with a preset."""
    padding_mode: PaddingModeName | None = None
    """zeros, reflect, replicate or circular (NumPy's constant, edge, wrap accepted).
    Default: zeros with a kernel, reflect with a preset."""
    engine: EngineName | None = None
    """numpy or onnxruntime; default from CONVSERVE_ENGINE."""
    device: DeviceName | None = None
    """cpu or cuda; default from CONVSERVE_DEVICE. CUDA where it is not active is a 422."""
    color_mode: ColorMode = "rgb"
    """How an image becomes channels: rgb (C=3), gray (C=1), rgba (C=4), keep (the file's)."""
    format: Format = "json"
    """Response format: json, array, npy, png (one channel), image (c_out 1, 3 or 4), grid, zip."""
    normalize: Normalize = "auto"
    """Float to pixel mapping for PNGs: auto (clip for range-preserving kernels, else minmax),
    clip, minmax, abs, symmetric (0 is mid-grey)."""
    channel: Annotated[int, Field(ge=0)] | None = None
    """The output channel returned by format=png (default 0)."""
    dry_run: bool = False
    """Validate and return shapes and cost without computing."""

    @model_validator(mode="after")
    def _kernel_xor_preset(self) -> ConvolveOptions:
        if (self.kernel is None) == (self.preset is None):
            raise ValueError(
                "give exactly one of kernel (an explicit weight tensor) and preset "
                "(a name from GET /v1/presets)"
            )
        return self


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
    min: float
    max: float
    mean: float
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
    channels: list[ChannelResult]
    dry_run: bool = False


class DeviceInfo(BaseModel):
    device: str
    available: bool
    reason: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class EngineInfo(BaseModel):
    name: str
    version: str
    devices: list[DeviceInfo]


class EnginesResponse(BaseModel):
    default_engine: str
    default_device: str
    engines: list[EngineInfo]


class Problem(BaseModel):
    """An RFC 9457 problem."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


BODY_MODELS: list[type[BaseModel]] = [ConvolveRequest]
"""JSON request bodies that routes parse themselves (to also take multipart); main.py adds
them to the OpenAPI components so ``$ref``s in ``openapi_extra`` resolve."""
