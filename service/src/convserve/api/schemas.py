"""Request and response schemas of HTTP API v1.

Field docstrings become the OpenAPI descriptions. Requests forbid unknown fields, so a typo is
a 422 naming the field instead of a silently ignored option.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from convserve.conv.initializers import InitName
from convserve.conv.layers import ActivationKind
from convserve.conv.spec import PaddingModeName

__all__ = [
    "BODY_MODELS",
    "AbsLayerSpec",
    "ActivationSpec",
    "AvgPool2dLayerSpec",
    "ChannelResult",
    "Conv2dLayerSpec",
    "ConvLayerOptions",
    "ConvolveOptions",
    "ConvolveRequest",
    "ConvolveResponse",
    "Cost",
    "EngineInfo",
    "EnginesResponse",
    "ExplainAt",
    "ExplainOptions",
    "ExplainRequest",
    "ExplainResponse",
    "ExplainTerm",
    "InputSpec",
    "KernelSpec",
    "LayerResult",
    "LayerSpec",
    "LayersOptions",
    "LayersRequest",
    "LayersResponse",
    "LeakyReluLayerSpec",
    "LimitsResponse",
    "MaxPool2dLayerSpec",
    "Problem",
    "ReluLayerSpec",
    "RunOptions",
    "SigmoidLayerSpec",
    "StackCost",
    "TanhLayerSpec",
]

# JSON bodies are validated by JSON type, as the OpenAPI document states them: a boolean is
# true or false, a number is a JSON number (JSON Schema counts 8.0 as an integer, so integers
# keep pydantic's lax check, which takes 8.0 and refuses 8.5), and neither is a string.
# Multipart fields are text by nature and keep the lax conversion ("2" -> 2, "true" -> True).
_JSON_TYPE_NAMES = {bool: "boolean", int: "number", float: "number", str: "string",
                    list: "array", dict: "object", type(None): "null"}
_EXPECTED = {bool: "a boolean (true or false)", int: "an integer", float: "a number"}


def _json_typed(kind: type) -> BeforeValidator:
    """Refuse, in a JSON body, a string for a number or boolean and a number for a boolean
    (and a boolean for a number)."""

    def check(value: object, info: ValidationInfo) -> object:
        if info.mode == "json" and (isinstance(value, str)
                                    or (kind is bool) != isinstance(value, bool)):
            raise PydanticCustomError(
                f"{kind.__name__}_type", "Input should be {expected}, not a JSON {got}",
                {"expected": _EXPECTED[kind],
                 "got": _JSON_TYPE_NAMES.get(type(value), type(value).__name__)},
            )
        return value

    return BeforeValidator(check)


# Constraints go before the type check (Annotated[int, Field(ge=0), _json_typed(int)]): after
# it, pydantic cannot state them in the JSON Schema (it would write "ge", not "minimum").
JsonInt = Annotated[int, _json_typed(int)]
JsonFloat = Annotated[float, _json_typed(float)]
JsonBool = Annotated[bool, _json_typed(bool)]

IntPair = Annotated[
    JsonInt | list[JsonInt],
    Field(examples=[1, [2, 2]], json_schema_extra={"description": "an int or [h, w]"}),
]
PaddingValue = JsonInt | list[JsonInt] | Literal["same", "valid"]
Format = Literal["json", "array", "npy", "png", "image", "grid", "zip"]
Normalize = Literal["auto", "clip", "minmax", "abs", "symmetric"]
ColorMode = Literal["rgb", "gray", "rgba", "keep"]
EngineName = Literal["auto", "numpy", "onnxruntime"]
DeviceName = Literal["cpu", "cuda"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class KernelSpec(_Strict):
    """An explicit kernel tensor."""

    weight: list[Any] = Field(examples=[[[[[0, 1], [2, 3]], [[1, 2], [3, 4]]]]])
    """Nested lists of numbers, shape (c_out, c_in/groups, k_h, k_w) for OIHW or
    (k_h, k_w, c_in/groups, c_out) for HWIO."""
    bias: list[JsonFloat] | None = None
    """One number per output channel, or null for no bias."""
    layout: Literal["OIHW", "HWIO"] = "OIHW"
    """OIHW (PyTorch, ONNX) or HWIO (Keras, TensorFlow); HWIO is converted to OIHW."""


def _exactly_one(*branches: dict[str, Any]) -> dict[str, Any]:
    """``oneOf`` branches for "exactly one of these fields": a branch requires its fields with
    the given schemas and the other fields absent or null, as the model validators check."""
    fields = {name for branch in branches for name in branch}
    return {"oneOf": [
        {"required": sorted(branch),
         "properties": {**{name: {"type": "null"} for name in sorted(fields - set(branch))},
                        **branch}}
        for branch in branches
    ]}


class InputSpec(_Strict):
    """The input of a JSON request: exactly one of ``array`` and ``image_base64``."""

    model_config = ConfigDict(json_schema_extra=_exactly_one(
        {"array": {"type": "array"}}, {"image_base64": {"type": "string"}},
    ))

    array: Annotated[list[Any], Field(min_length=1)] | None = None
    """Nested lists of numbers, (C, H, W) or (H, W); used as sent (no scaling)."""
    image_base64: Annotated[str, Field(min_length=1)] | None = None
    """An encoded image file (PNG, JPEG, WebP, BMP, TIFF, GIF) in base64; a data: URL is
    accepted too."""

    @model_validator(mode="after")
    def _exactly_one(self) -> InputSpec:
        if (self.array is None) == (self.image_base64 is None):
            raise ValueError("give exactly one of input.array and input.image_base64")
        return self


class ConvLayerOptions(_Strict):
    """One convolution layer: its kernel (explicit or a preset) and its options."""

    model_config = ConfigDict(json_schema_extra=_exactly_one(
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
    channel: Annotated[int, Field(ge=0), _json_typed(int)] | None = None
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


class RunOptions(_Strict):
    """Where the computation runs and how an image becomes channels."""

    engine: EngineName | None = None
    """auto (the engine measured fastest for this shape; the answer names the one that ran),
    numpy or onnxruntime; default from CONVSERVE_ENGINE (auto)."""
    device: DeviceName | None = None
    """cpu or cuda; default from CONVSERVE_DEVICE. CUDA where it is not active is a 422."""
    color_mode: ColorMode = "rgb"
    """How an image becomes channels: rgb (C=3), gray (C=1), rgba (C=4), keep (the file's)."""


class ExplainAt(_Strict):
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


ActivationName = ActivationKind


class ReluLayerSpec(_Strict):
    """max(x, 0), element-wise."""

    type: Literal["relu"]


class LeakyReluLayerSpec(_Strict):
    """x for x >= 0, else slope * x."""

    type: Literal["leaky_relu"]
    slope: Annotated[float, Field(allow_inf_nan=False), _json_typed(float)] = 0.01
    """The negative slope (PyTorch's default 0.01)."""


class SigmoidLayerSpec(_Strict):
    """1 / (1 + exp(-x)), element-wise."""

    type: Literal["sigmoid"]


class TanhLayerSpec(_Strict):
    """tanh(x), element-wise."""

    type: Literal["tanh"]


class AbsLayerSpec(_Strict):
    """|x|, element-wise."""

    type: Literal["abs"]


ActivationSpec = Annotated[
    ReluLayerSpec | LeakyReluLayerSpec | SigmoidLayerSpec | TanhLayerSpec | AbsLayerSpec,
    Field(discriminator="type"),
]


class Conv2dLayerSpec(ConvLayerOptions):
    """A convolution layer: give exactly one of ``kernel``, ``preset`` or ``filters`` (with
    ``kernel_size``, for seeded initial weights). Padding defaults to 0 and zeros with a kernel
    or filters, to 'same' and reflect with a preset."""

    model_config = ConfigDict(json_schema_extra=_exactly_one(
        {"kernel": {"type": "object"}}, {"preset": {"type": "string"}},
        {"filters": {"type": "integer", "minimum": 1}, "kernel_size": {"not": {"type": "null"}}},
    ))

    type: Literal["conv2d"]
    filters: Annotated[int, Field(ge=1), _json_typed(int)] | None = None
    """Output channels of seeded initial weights (c_out); needs kernel_size."""
    kernel_size: IntPair | None = None
    """k or [k_h, k_w] of seeded initial weights."""
    init: InitName = "he_normal"
    """Initialiser of seeded weights (fan_in = c_in/groups*k_h*k_w, fan_out = c_out*k_h*k_w):
    he_normal (std sqrt(2/fan_in)), he_uniform, glorot_normal, glorot_uniform (Keras'
    default), lecun_normal, lecun_uniform, pytorch_default (nn.Conv2d's). Normals are not
    truncated; biases start at 0 except with pytorch_default."""
    seed: Annotated[int, Field(ge=0), _json_typed(int)] | None = None
    """Seed of numpy.random.default_rng for the initial weights; default: the layer's index."""
    bias: JsonBool = True
    """Whether the layer has a bias: seeded layers get one (zeros), a kernel or preset keeps
    its own; false drops it."""
    activation: ActivationName | ActivationSpec | None = Field(
        default=None, examples=["relu", {"type": "leaky_relu", "slope": 0.2}]
    )
    """An activation applied to this layer's output, as a name or a layer object."""

    @model_validator(mode="after")
    def _kernel_xor_preset(self) -> Conv2dLayerSpec:
        given = [name for name, value in (("kernel", self.kernel), ("preset", self.preset),
                                          ("filters", self.filters)) if value is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of kernel (an explicit weight tensor), preset (a name from "
                "GET /v1/presets) and filters (+ kernel_size, seeded weights); got "
                + (", ".join(given) or "none")
            )
        if (self.filters is None) != (self.kernel_size is None):
            raise ValueError("kernel_size goes with filters (seeded weights), and only with it")
        return self


class MaxPool2dLayerSpec(_Strict):
    """Max pooling: padded positions never win. Output floor((H + 2p - k) / s) + 1."""

    type: Literal["maxpool2d"]
    kernel_size: IntPair
    """k or [k_h, k_w]."""
    stride: IntPair | None = None
    """Default: kernel_size (PyTorch and Keras)."""
    padding: IntPair = 0
    """p or [p_h, p_w] on each side, at most half the kernel."""


class AvgPool2dLayerSpec(_Strict):
    """Average pooling. Output floor((H + 2p - k) / s) + 1."""

    type: Literal["avgpool2d"]
    kernel_size: IntPair
    """k or [k_h, k_w]."""
    stride: IntPair | None = None
    """Default: kernel_size (PyTorch and Keras)."""
    padding: IntPair = 0
    """p or [p_h, p_w] zeros on each side, at most half the kernel."""
    count_include_pad: JsonBool = True
    """Divide by k_h*k_w including padded zeros (PyTorch's default); false divides by the
    number of input values in the window (Keras' padding='same')."""


LayerSpec = Annotated[
    Conv2dLayerSpec | ReluLayerSpec | LeakyReluLayerSpec | SigmoidLayerSpec | TanhLayerSpec
    | AbsLayerSpec | MaxPool2dLayerSpec | AvgPool2dLayerSpec,
    Field(discriminator="type"),
]


class LayersOptions(RunOptions):
    """Every option of /v1/layers except the input itself."""

    layers: list[LayerSpec] = Field(
        min_length=1,
        examples=[[{"type": "conv2d", "filters": 8, "kernel_size": 3, "padding": 1,
                    "activation": "relu"}, {"type": "maxpool2d", "kernel_size": 2}]],
    )
    """The layers, applied in order; in multipart, a JSON string."""
    format: Literal["json", "npy", "zip", "onnx"] = "json"
    """json; npy (the last layer's float32 maps); zip (every layer's maps as PNGs and a
    manifest); onnx (the stack as a standalone ONNX model, weights included, not run)."""
    normalize: Normalize = "auto"
    """Float to pixel mapping for the PNGs (as /v1/convolve), per layer."""
    return_: Literal["all", "last", "none"] = Field(default="last", alias="return")
    """Which layers' maps format=json returns: all, last or none (shapes and cost only)."""
    dry_run: JsonBool = False
    """Validate and return shapes and cost without computing."""


class LayersRequest(LayersOptions):
    """A JSON body for /v1/layers: the options plus the input."""

    input: InputSpec
    """The image or array the first layer reads."""


class StackCost(BaseModel):
    """Size and arithmetic cost of a whole stack."""

    params: int
    macs: int
    flops: int
    """2 per MAC plus bias additions, 1 per activated element, k_h*k_w per pooled element."""
    input_bytes: int
    weight_bytes: int
    output_bytes: int
    """The last layer's output."""
    feature_map_bytes: int
    """Every layer's output together (what return=all holds)."""


class LayerResult(BaseModel):
    """One layer of the stack: its shapes, options, cost and, when asked, its maps."""

    index: int
    type: str
    input_shape: list[int]
    output_shape: list[int]
    """[c, h, w]."""
    params: int
    macs: int
    flops: int
    options: dict[str, Any]
    """The layer's resolved options (padding as [top, bottom, left, right] for conv2d)."""
    kernel: dict[str, Any] | None = None
    """conv2d: where the weights came from (kernel, preset or init)."""
    cost: Cost
    normalize: str | None = None
    channels: list[ChannelResult] | None = None


class LayersResponse(BaseModel):
    """The format=json answer of /v1/layers."""

    input: dict[str, Any]
    engine: str
    device: str
    output_shape: list[int]
    layers: list[LayerResult]
    total_params: int
    total_macs: int
    total_flops: int
    cost: StackCost
    timing_ms: dict[str, float]
    dry_run: bool = False


BODY_MODELS: list[type[BaseModel]] = [ConvolveRequest, ExplainRequest, LayersRequest]
"""JSON request bodies that routes parse themselves (to also take multipart); main.py adds
them to the OpenAPI components so ``$ref``s in ``openapi_extra`` resolve."""


class LimitsResponse(BaseModel):
    """The effective limits of this server (GET /v1/limits); each request is checked against
    exactly these numbers."""

    max_upload_bytes: int
    """Largest request body in bytes (413 above)."""
    max_pixels: int
    """Largest image or array, H x W, checked from the header before decoding (413 above)."""
    max_kernel_size: int
    """Largest kernel or pooling window side."""
    max_out_channels: int
    """Largest c_out of one layer."""
    max_macs: int
    """Multiply-accumulates (and pooling-window reads) of one request, all layers together."""
    max_layers: int
    """Layers in one /v1/layers request."""
    max_array_values: int
    """Numbers in a JSON input array or a format=array answer."""
    max_output_bytes: int
    """float32 bytes of one output, feature map or weight tensor."""
    max_model_bytes: int
    """Largest ONNX model upload (POST /v1/models) in bytes (413 above)."""
    model_store_bytes: int
    """Bytes the model store may hold; least recently used models are evicted past it."""
    memory_budget_bytes: int
    """Bytes of requests in flight one server process admits (bodies before they are read,
    then their working memory); more wait, then get 503 with Retry-After. The effective value
    (fitted to the memory limit when the setting is 0)."""
    body_timeout_s: float
    """Seconds a request body may take to arrive in full (408 after)."""
    max_preset_channels: int
    """Input channels a preset can be spread over (a bound of the core, no setting)."""
    max_explain_products: int
    """Products one explained output element may read (a bound of the core, no setting)."""
    env: dict[str, str]
    """For each limit that is a setting, the environment variable that changes it."""
