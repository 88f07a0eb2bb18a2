"""Schemas of ``POST /v1/layers``: the layer entries, the stack's options and its answer."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from convserve.api.schemas.common import (
    InputSpec,
    IntPair,
    JsonBool,
    Normalize,
    RunOptions,
    Strict,
    exactly_one,
    json_typed,
)
from convserve.api.schemas.convolve import (
    ChannelResult,
    ConvLayerOptions,
    Cost,
)
from convserve.conv.initializers import InitName
from convserve.conv.layers import ActivationKind

__all__ = [
    "AbsLayerSpec",
    "ActivationSpec",
    "AvgPool2dLayerSpec",
    "Conv2dLayerSpec",
    "LayerResult",
    "LayerSpec",
    "LayersOptions",
    "LayersRequest",
    "LayersResponse",
    "LeakyReluLayerSpec",
    "MaxPool2dLayerSpec",
    "ReluLayerSpec",
    "SigmoidLayerSpec",
    "StackCost",
    "TanhLayerSpec",
]

ActivationName = ActivationKind


class ReluLayerSpec(Strict):
    """max(x, 0), element-wise."""

    type: Literal["relu"]


class LeakyReluLayerSpec(Strict):
    """x for x >= 0, else slope * x."""

    type: Literal["leaky_relu"]
    slope: Annotated[float, Field(allow_inf_nan=False), json_typed(float)] = 0.01
    """The negative slope (PyTorch's default 0.01)."""


class SigmoidLayerSpec(Strict):
    """1 / (1 + exp(-x)), element-wise."""

    type: Literal["sigmoid"]


class TanhLayerSpec(Strict):
    """tanh(x), element-wise."""

    type: Literal["tanh"]


class AbsLayerSpec(Strict):
    """|x|, element-wise."""

    type: Literal["abs"]


ActivationSpec = Annotated[
    ReluLayerSpec | LeakyReluLayerSpec | SigmoidLayerSpec | TanhLayerSpec | AbsLayerSpec,
    Field(discriminator="type"),
]


def _only_with_file(schema: dict[str, Any], file_fields: tuple[str, ...],
                    dependent: tuple[str, ...]) -> dict[str, Any]:
    """``schema``'s ``oneOf`` branches with ``dependent`` fields null or absent wherever the
    branch is not one of ``file_fields``, as the validator checks."""
    for branch in schema["oneOf"]:
        if not set(branch["required"]) & set(file_fields):
            branch["properties"].update({name: {"type": "null"} for name in dependent})
    return schema


class Conv2dLayerSpec(ConvLayerOptions):
    """A convolution layer: give exactly one of ``kernel``, ``preset``, ``filters`` (with
    ``kernel_size``, for seeded initial weights), ``kernel_key`` (a tensor of the request's
    ``kernel_file`` part, e.g. a ``state_dict`` saved as .safetensors or .npz) or
    ``kernel_file: true`` (that file's only tensor, e.g. a .npy). Padding defaults to 0 and
    zeros with a kernel, filters or a file's tensor, to 'same' and reflect with a preset."""

    model_config = ConfigDict(json_schema_extra=_only_with_file(exactly_one(
        {"kernel": {"type": "object"}}, {"preset": {"type": "string"}},
        {"filters": {"type": "integer", "minimum": 1}, "kernel_size": {"not": {"type": "null"}}},
        {"kernel_key": {"type": "string"}}, {"kernel_file": {"const": True}},
    ), ("kernel_key", "kernel_file"), ("bias_key", "layout")))

    type: Literal["conv2d"]
    kernel_key: Annotated[str, Field(min_length=1)] | None = Field(
        default=None, examples=["features.0.weight"])
    """multipart only: the weight's name in the request's kernel_file part (.npz or
    .safetensors), e.g. features.0.weight; when it ends in weight, the bias of the same prefix
    (features.0.bias) is read with it if the file has one."""
    kernel_file: Annotated[Literal[True], json_typed(bool)] | None = None
    """multipart only: true takes the weight from the request's kernel_file part when it holds
    one tensor (a .npy, or an .npz or .safetensors with one tensor)."""
    bias_key: Annotated[str, Field(min_length=1)] | None = None
    """With kernel_key or kernel_file: the bias's name in the file, when it is not the
    weight's prefix + bias."""
    layout: Literal["OIHW", "HWIO"] | None = None
    """With kernel_key or kernel_file: the order of the file's weight, OIHW (PyTorch, ONNX;
    the default) or HWIO (Keras' get_weights()), converted to OIHW."""
    filters: Annotated[int, Field(ge=1), json_typed(int)] | None = None
    """Output channels of seeded initial weights (c_out); needs kernel_size."""
    kernel_size: IntPair | None = None
    """k or [k_h, k_w] of seeded initial weights."""
    init: InitName = "he_normal"
    """Initialiser of seeded weights (fan_in = c_in/groups*k_h*k_w, fan_out = c_out*k_h*k_w):
    he_normal (std sqrt(2/fan_in)), he_uniform, glorot_normal, glorot_uniform (Keras'
    default), lecun_normal, lecun_uniform, pytorch_default (nn.Conv2d's). Normals are not
    truncated; biases start at 0 except with pytorch_default."""
    seed: Annotated[int, Field(ge=0), json_typed(int)] | None = None
    """Seed of numpy.random.default_rng for the initial weights; default: the layer's index."""
    bias: JsonBool = True
    """Whether the layer has a bias: seeded layers get one (zeros), a kernel or preset keeps
    its own; false drops it."""
    activation: ActivationName | ActivationSpec | None = Field(
        default=None, examples=["relu", {"type": "leaky_relu", "slope": 0.2}]
    )
    """An activation applied to this layer's output, as a name or a layer object."""

    @property
    def from_file(self) -> bool:
        """Whether the weight comes from the request's kernel_file part."""
        return self.kernel_key is not None or self.kernel_file is not None

    # Named as ConvLayerOptions' validator, which it replaces (that one knows two sources).
    @model_validator(mode="after")
    def _kernel_xor_preset(self) -> Conv2dLayerSpec:
        given = [name for name, value in (("kernel", self.kernel), ("preset", self.preset),
                                          ("filters", self.filters),
                                          ("kernel_key", self.kernel_key),
                                          ("kernel_file", self.kernel_file)) if value is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of kernel (an explicit weight tensor), preset (a name from "
                "GET /v1/presets), filters (+ kernel_size, seeded weights), kernel_key (a "
                "tensor of the request's kernel_file part) and kernel_file: true (its only "
                "tensor); got " + (", ".join(given) or "none")
            )
        if (self.filters is None) != (self.kernel_size is None):
            raise ValueError("kernel_size goes with filters (seeded weights), and only with it")
        stray = [name for name, value in (("bias_key", self.bias_key), ("layout", self.layout))
                 if value is not None]
        if stray and not self.from_file:
            verb = "goes" if len(stray) == 1 else "go"
            raise ValueError(
                f"{' and '.join(stray)} {verb} with kernel_key or kernel_file (a weight "
                "file's tensor); an explicit kernel takes kernel.bias and kernel.layout")
        return self


class MaxPool2dLayerSpec(Strict):
    """Max pooling: padded positions never win. Output floor((H + 2p - k) / s) + 1."""

    type: Literal["maxpool2d"]
    kernel_size: IntPair
    """k or [k_h, k_w]."""
    stride: IntPair | None = None
    """Default: kernel_size (PyTorch and Keras)."""
    padding: IntPair = 0
    """p or [p_h, p_w] on each side, at most half the kernel."""


class AvgPool2dLayerSpec(Strict):
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
    """conv2d: where the weights came from (``source``: kernel, preset, init or kernel_file,
    with a file's format, weight_key, bias_key and layout)."""
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
