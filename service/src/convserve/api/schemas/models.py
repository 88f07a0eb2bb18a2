"""Request and response schemas of the model endpoints (``/v1/models``).

Kept apart from :mod:`convserve.api.schemas` (the one-layer endpoints); the same conventions:
requests forbid unknown fields, field docstrings are the OpenAPI descriptions.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from convserve.api.schemas.common import ColorMode, DeviceName, InputSpec, Normalize
from convserve.api.schemas.explain import ExplainAt, ExplainTerm
from convserve.api.schemas.model_examples import MODEL_EXAMPLES

__all__ = [
    "FeatureLayer",
    "FeaturesOptions",
    "FeaturesRequest",
    "FeaturesResponse",
    "ModelExplainOptions",
    "ModelExplainRequest",
    "ModelExplainResponse",
    "ModelInfo",
    "ModelInput",
    "ModelKernelResponse",
    "ModelLayer",
    "ModelList",
    "ModelListItem",
    "PreprocessSpec",
    "SampleModelStatus",
]

FeatureFormat = Literal["json", "npy", "zip", "grid"]
LayerKey = str | Annotated[int, Field(ge=0)]


def _example(name: str) -> ConfigDict:
    """A response schema's config: its real example (:mod:`.model_examples`) in the OpenAPI."""
    return ConfigDict(json_schema_extra={"examples": [MODEL_EXAMPLES[name]]})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class ModelInput(BaseModel):
    """The model's image input."""

    name: str
    shape: list[int]
    """With the batch axis fixed at 1 and the input size fixed: [1, C, H, W] or [1, H, W, C]."""
    layout: Literal["NCHW", "NHWC"]
    """Read from the graph: NHWC when the input feeds a Transpose to NCHW (tf2onnx), else NCHW."""
    channels: int
    size: list[int]
    """[H, W]."""


class ModelLayer(BaseModel):
    """One node output, in graph order."""

    index: int
    """Row number, from 0; usable wherever a layer name is."""
    name: str
    """The node output's name (e.g. /features/features.0/Conv_output_0)."""
    op: str
    """The ONNX operator (Conv, Relu, MaxPool, Gemm, ...)."""
    node: str
    """The node's own name; may be empty."""
    output_shape: list[int]
    """Without the batch axis, in the model's own layout."""
    layout: Literal["NCHW", "NHWC"] | None
    """For 4-D outputs, the layout the graph produces; null otherwise."""
    params: int
    """Floating-point weights this node reads (each initializer counted once)."""
    macs: int
    """Multiply-accumulates (Conv, Gemm, MatMul; bias additions not counted)."""


class ModelListItem(BaseModel):
    """A stored model, without its layer table."""

    id: str
    """Content hash: the same file uploaded again has the same id."""
    filename: str | None
    bytes: int
    """Size of the uploaded file."""
    created: str
    """When it was stored (UTC, ISO 8601)."""
    producer: str
    opset: int
    input_size: list[int] | None
    """The input_size sent for a model with a dynamic input, else null."""
    inputs: list[ModelInput]
    total_params: int
    total_macs: int


class ModelInfo(ModelListItem):
    """A stored model with its layer table (POST /v1/models, GET /v1/models/{id})."""

    model_config = _example("ModelInfo")

    layers: list[ModelLayer]


class SampleModelStatus(BaseModel):
    """Where the demo page's sample network stands (GET /v1/models/sample)."""

    model_config = _example("SampleModelStatus")

    id: str
    """The sample's id, stored or not (a content hash: the same on every server)."""
    stored: bool
    """Whether it is in the model store now (it may have been evicted like any model)."""
    store_at_start: bool
    """Whether the server stores it when it starts (CONVSERVE_SAMPLE_MODEL)."""


class ModelList(BaseModel):
    """Every stored model (GET /v1/models)."""

    model_config = _example("ModelList")

    models: list[ModelListItem]
    """Every stored model, oldest upload first."""


class PreprocessSpec(_Strict):
    """Explicit preprocessing: resize, then channel order, then (x * scale - mean) / std."""

    resize: Literal["none", "fit", "stretch"] = "none"
    """none: the input must have the model's size; stretch: bilinear to the model's size;
    fit: keep the aspect ratio, fit inside, centre on zeros."""
    scale: float = 1.0
    """Multiplies the input (decoded 8-bit and 16-bit images are already in [0, 1])."""
    mean: list[float] = Field(default=[0.0], min_length=1, examples=[[0.485, 0.456, 0.406]])
    """Subtracted per channel (one value, or one per channel)."""
    std: list[float] = Field(default=[1.0], min_length=1, examples=[[0.229, 0.224, 0.225]])
    """Divides per channel (one value, or one per channel); never 0."""
    channel_order: Literal["RGB", "BGR"] = "RGB"
    """BGR reverses the channels (Caffe-era models)."""


PreprocessValue = Literal["none", "imagenet"] | PreprocessSpec


def _json_text(value: Any) -> Any:
    """A multipart text field holding JSON (an array or object) is parsed here."""
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
    return value


class _ModelRunOptions(_Strict):
    device: DeviceName | None = None
    """cpu or cuda (ONNX Runtime's CUDAExecutionProvider); default from CONVSERVE_DEVICE.
    CUDA where it is not active is a 422, as on /v1/convolve (never a quiet run on the CPU)."""
    color_mode: ColorMode = "rgb"
    """How an image becomes channels: rgb (C=3), gray (C=1), rgba (C=4), keep (the file's)."""
    preprocess: PreprocessValue = "none"
    """none (the input as it is, images in [0, 1]), imagenet (mean 0.485, 0.456, 0.406 and std
    0.229, 0.224, 0.225) or an object; reported in the answer. In multipart, a JSON string."""

    @field_validator("preprocess", mode="before")
    @classmethod
    def _preprocess_text(cls, value: Any) -> Any:
        return _json_text(value)


class FeaturesOptions(_ModelRunOptions):
    """Every option of /v1/models/{id}/features except the input."""

    layers: list[LayerKey] = Field(min_length=1, max_length=64,
                                   examples=[["conv1", "relu1", 2]])
    """Node output names or row indices; in multipart a JSON list or names separated by
    commas."""
    format: FeatureFormat = "json"
    """json (PNG and statistics per channel), npy (one layer, float32 (C, H, W)), zip (a folder
    per layer: channel PNGs and a .npy, plus manifest.json), grid (one layer as one PNG)."""
    normalize: Normalize = "auto"
    """Float to pixel mapping of the PNGs, as /v1/convolve (auto is minmax here)."""

    @field_validator("layers", mode="before")
    @classmethod
    def _layers_text(cls, value: Any) -> Any:
        value = _json_text(value)
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


class FeaturesRequest(FeaturesOptions):
    """A JSON body for /v1/models/{id}/features."""

    input: InputSpec
    """The image or array (C, H, W); converted to the model's layout."""


class ModelExplainOptions(_ModelRunOptions):
    """Every option of /v1/models/{id}/explain except the input."""

    layer: LayerKey = Field(examples=["conv1"])
    """A Conv layer: its output name or row index."""
    at: ExplainAt = Field(examples=[{"channel": 0, "y": 0, "x": 0}])
    """The output element to explain; in multipart, a JSON string."""

    @field_validator("at", mode="before")
    @classmethod
    def _at_text(cls, value: Any) -> Any:
        return _json_text(value)


class ModelExplainRequest(ModelExplainOptions):
    """A JSON body for /v1/models/{id}/explain."""

    input: InputSpec


class FeatureChannel(BaseModel):
    index: int
    min: float | None
    max: float | None
    mean: float | None
    png_base64: str


class FeatureLayer(BaseModel):
    """One layer's feature maps."""

    index: int
    name: str
    op: str
    shape: list[int]
    """[C, H, W] of the maps (a dense output of F values is [F, 1, 1])."""
    layout: Literal["NCHW", "NHWC"] | None
    """The layout the graph produced (NHWC maps are transposed to (C, H, W))."""
    channels: list[FeatureChannel]


class FeaturesResponse(BaseModel):
    """The format=json answer of /v1/models/{id}/features."""

    model_config = _example("FeaturesResponse")

    model: str
    """The model's id."""
    engine: Literal["onnxruntime"]
    device: DeviceName
    """The device the model ran on."""
    provider: str
    """The execution provider that ran it (CPUExecutionProvider, CUDAExecutionProvider)."""
    preprocess: dict[str, Any]
    """What was done to the input: name, resize, scale, mean, std, channel_order, input_shape,
    model_input_shape, layout."""
    input: dict[str, Any]
    normalize: str
    layers: list[FeatureLayer]
    timing_ms: dict[str, float]


class ModelKernelResponse(BaseModel):
    """A Conv layer's kernel: ``weight``, ``bias``, ``stride``, ``padding``, ``dilation`` and
    ``groups`` go to /v1/convolve unchanged (kernel={weight, bias}) on the layer's input."""

    model_config = _example("ModelKernelResponse")

    layer: ModelLayer
    input: str
    """The name of the tensor the layer reads."""
    weight: list[Any]
    """OIHW: (c_out, c_in/groups, k_h, k_w)."""
    bias: list[float] | None
    stride: list[int]
    padding: list[int]
    """[top, bottom, left, right] (converted from ONNX's [top, left, bottom, right];
    auto_pad resolved)."""
    dilation: list[int]
    groups: int


class ModelExplainResponse(BaseModel):
    """One output element of a model's Conv layer, term by term (as /v1/explain)."""

    model_config = _example("ModelExplainResponse")

    model: str
    engine: Literal["onnxruntime"]
    device: DeviceName
    """The device the model ran on (to compute the layer's input and value)."""
    provider: str
    """The execution provider that ran it (CPUExecutionProvider, CUDAExecutionProvider)."""
    layer: ModelLayer
    at: ExplainAt
    value: float | None
    """What ONNX Runtime computed at ``at`` for this input."""
    total: float
    """Sum of the terms' sums plus the bias (float64); equals value up to float32 rounding."""
    bias: float | None
    output_shape: list[int]
    window_origin: dict[str, int]
    rows: list[int]
    cols: list[int]
    terms: list[ExplainTerm]
    expression: str
    padding: list[int]
    stride: list[int]
    dilation: list[int]
    groups: int
    preprocess: dict[str, Any]
    timing_ms: dict[str, float]


MODEL_BODY_MODELS: list[type[BaseModel]] = [FeaturesRequest, ModelExplainRequest]
"""JSON bodies the model routes parse by hand (added to the OpenAPI components)."""
