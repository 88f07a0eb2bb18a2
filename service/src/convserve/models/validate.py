"""Untrusted ONNX bytes -> a validated model with a fixed input size, or a problem naming why.

An uploaded model is hostile until proven otherwise. The checks run in this order, each before
anything that could be harmed by what the previous one refuses:

1. size, against ``CONVSERVE_MAX_MODEL_BYTES`` (413);
2. protobuf parsing (a truncated or foreign file is a 422);
3. **external data**: any tensor (initializer, sparse initializer, node attribute, in any
   subgraph) that stores its values outside the file is refused *before* ``onnx.checker`` or
   ONNX Runtime see the model: the checker accepts a relative location inside the server's
   working directory, and ONNX Runtime would then read that file as weights;
4. local functions and training info (never needed for inference) are refused;
5. the default-domain opset is between :data:`MIN_OPSET` and the newest the installed ONNX
   Runtime runs (:func:`max_supported_opset`, probed once);
6. every node: no custom domain, no control flow (``If``, ``Loop``, ``Scan``), and an operator
   from :data:`ALLOWED_OPS`, which covers CNN backbones;
7. exactly one float32 input of rank 4 (initializers listed as inputs, as old exporters do,
   do not count), whose layout (NCHW or NHWC) is read from the graph;
8. ``onnx.checker.check_model`` and strict shape inference, with the batch fixed at 1 and the
   height and width fixed from the graph or from ``input_size``.

The layer table, its MACs and the MACs limit are :mod:`convserve.models.table`'s.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import onnx
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from onnx import GraphProto, ModelProto, TensorProto

from convserve.errors import InvalidArgumentError, InvalidInputError, PayloadTooLargeError

__all__ = [
    "ALLOWED_OPS",
    "CONTROL_FLOW_OPS",
    "MIN_OPSET",
    "InputInfo",
    "Layout",
    "ModelRefusedError",
    "ValidatedModel",
    "max_supported_opset",
    "validate_model",
]

Layout = Literal["NCHW", "NHWC"]

MIN_OPSET = 11
"""Oldest default-domain opset accepted (what ``torch.onnx.export`` and tf2onnx have produced
for years; older ones use operator versions ONNX Runtime handles poorly)."""

CONTROL_FLOW_OPS = frozenset({"If", "Loop", "Scan", "SequenceMap"})

ALLOWED_OPS = frozenset({
    # convolution and dense layers
    "Conv", "Gemm", "MatMul",
    # activations
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid", "HardSwish",
    "Tanh", "Softplus", "Softsign", "Clip", "Gelu", "Mish", "Erf", "Softmax", "LogSoftmax",
    # pooling and normalisation
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool",
    "BatchNormalization", "InstanceNormalization", "LayerNormalization", "LRN",
    # element-wise arithmetic
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Neg", "Abs", "Reciprocal",
    "Min", "Max", "Sum", "Mean", "Floor", "Ceil", "Round", "Sign",
    # shapes (every tensor's size is bounded after shape inference, see models.table)
    "Concat", "Split", "Slice", "Pad", "Reshape", "Flatten", "Transpose", "Squeeze",
    "Unsqueeze", "Identity", "Dropout", "Constant", "Shape", "Gather", "Cast", "Resize",
    "Upsample", "DepthToSpace", "SpaceToDepth", "ReduceMean", "ReduceMax", "ReduceMin",
    "ReduceSum", "ReduceL2", "ArgMax",
})
"""Operators a model may use: those of CNN backbones and their classifier heads. Anything else
(control flow, random generators, ``ConstantOfShape``/``Expand``/``Tile`` that could allocate
without bound, custom ops) is refused with the node's name."""

_DEFAULT_DOMAINS = ("", "ai.onnx")


class ModelRefusedError(InvalidArgumentError):
    """The uploaded ONNX model is refused (422); ``detail`` names the node, operator or rule."""

    slug = "model-refused"
    title = "Model refused"


@dataclass(frozen=True)
class InputInfo:
    """The model's one image input."""

    name: str
    shape: tuple[int, int, int, int]
    """(1, C, H, W) or (1, H, W, C), with the batch fixed at 1 and H, W fixed."""
    layout: Layout

    @property
    def channels(self) -> int:
        return self.shape[1] if self.layout == "NCHW" else self.shape[3]

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)."""
        return (self.shape[2], self.shape[3]) if self.layout == "NCHW" else \
            (self.shape[1], self.shape[2])

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "shape": list(self.shape), "layout": self.layout}


@dataclass(frozen=True)
class ValidatedModel:
    """A model that passed every check, with static shapes inferred for every tensor."""

    model: ModelProto
    """Batch 1 and the input size fixed; ``graph.value_info`` holds every inferred shape."""
    input: InputInfo
    opset: int
    input_size_given: bool
    """Whether ``input_size`` fixed a dynamic height and width."""


@functools.cache
def max_supported_opset() -> int:
    """The newest default-domain opset the installed ONNX Runtime runs (probed once).

    A one-node ``Identity`` model is stamped with each opset from ONNX's newest downwards; the
    first one ONNX Runtime loads is the answer.
    """
    import onnxruntime as ort

    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "probe",
        [onnx.helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    options = ort.SessionOptions()
    options.log_severity_level = 4
    for opset in range(onnx.defs.onnx_opset_version(), MIN_OPSET - 1, -1):
        model = onnx.helper.make_model(
            graph, opset_imports=[onnx.helper.make_opsetid("", opset)],
            ir_version=onnx.helper.find_min_ir_version_for(
                [onnx.helper.make_opsetid("", opset)]),
        )
        try:
            ort.InferenceSession(model.SerializeToString(), options,
                                 providers=["CPUExecutionProvider"])
        except Exception:  # ORT raises its own Fail/InvalidGraph types for a too-new opset
            continue
        return opset
    return MIN_OPSET


def validate_model(
    data: bytes, *, max_bytes: int, input_size: Sequence[int] | None = None
) -> ValidatedModel:
    """Check untrusted ONNX bytes and fix the input's batch and size.

    Parameters
    ----------
    data : bytes
        The uploaded file.
    max_bytes : int
        ``CONVSERVE_MAX_MODEL_BYTES``.
    input_size : (H, W), optional
        For a model whose input height or width is dynamic; for a static model it must equal
        the model's own size.

    Returns
    -------
    ValidatedModel

    Raises
    ------
    PayloadTooLargeError
        The file is larger than ``max_bytes`` (413).
    InvalidInputError
        The bytes are not an ONNX model (422).
    ModelRefusedError
        A rule above is broken (422); the message names the node, operator or rule.
    """
    if len(data) > max_bytes:
        raise PayloadTooLargeError(
            f"the model file is {len(data):,} bytes, more than the limit of {max_bytes:,} "
            "(CONVSERVE_MAX_MODEL_BYTES)", field="model")
    model = ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise InvalidInputError(
            f"the file is not an ONNX model (protobuf ModelProto): {exc}; a truncated upload "
            "fails here too", field="model") from None
    if not model.HasField("graph") or not model.graph.node:
        raise InvalidInputError(
            "the file is not an ONNX model: it has no graph with nodes (a truncated upload or "
            "another protobuf file)", field="model")
    _refuse_external_data(model)
    if model.functions:
        raise ModelRefusedError(
            f"the model defines local functions ({', '.join(f.name for f in model.functions)});"
            " only standard ONNX operators are accepted", field="model")
    if model.training_info:
        raise ModelRefusedError("the model holds training_info; export it for inference only",
                                field="model")
    opset = _check_opset(model)
    _check_nodes(model.graph)
    info = _the_input(model.graph)
    fixed = _fix_input(model, info, input_size)
    return ValidatedModel(_checked_and_inferred(model), fixed, opset,
                          input_size_given=input_size is not None and info.dynamic)


# --------------------------------------------------------------------------------------------
# Individual checks
# --------------------------------------------------------------------------------------------


def _graphs(graph: GraphProto) -> Iterator[GraphProto]:
    """``graph`` and every subgraph held by a node attribute, depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs(attr.g)
            for sub in attr.graphs:
                yield from _graphs(sub)


def _tensors(graph: GraphProto) -> Iterator[tuple[str, TensorProto]]:
    """Every tensor stored in ``graph`` (and its subgraphs), with where it sits."""
    for g in _graphs(graph):
        for t in g.initializer:
            yield f"initializer {t.name!r}", t
        for s in g.sparse_initializer:
            yield f"sparse initializer {s.values.name!r}", s.values
            yield f"sparse initializer {s.indices.name!r}", s.indices
        for node in g.node:
            for attr in node.attribute:
                where = f"attribute {attr.name!r} of node {node.name or node.output[0]!r}"
                if attr.HasField("t"):
                    yield where, attr.t
                for t in attr.tensors:
                    yield where, t
                if attr.HasField("sparse_tensor"):
                    yield where, attr.sparse_tensor.values
                    yield where, attr.sparse_tensor.indices


def _refuse_external_data(model: ModelProto) -> None:
    for where, tensor in _tensors(model.graph):
        if tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data):
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            raise ModelRefusedError(
                f"{where} refers to external data (location {location!r}); the server never "
                "reads files a model names: save the model with its weights inside "
                "(onnx.save_model(model, path, save_as_external_data=False))",
                field="model")


def _check_opset(model: ModelProto) -> int:
    versions: dict[str, int] = {o.domain: int(o.version) for o in model.opset_import}
    opset = next((versions[d] for d in _DEFAULT_DOMAINS if d in versions), None)
    newest = max_supported_opset()
    if opset is None or not MIN_OPSET <= opset <= newest:
        raise ModelRefusedError(
            f"the model's default-domain opset is {opset}; accepted are {MIN_OPSET} to {newest} "
            "(the newest the installed ONNX Runtime runs); export with an opset in that range",
            field="model")
    return opset


def _check_nodes(graph: GraphProto) -> None:
    for node in graph.node:
        name = node.name or (node.output[0] if node.output else node.op_type)
        if node.domain not in _DEFAULT_DOMAINS:
            raise ModelRefusedError(
                f"node {name!r} uses operator {node.op_type!r} of the custom domain "
                f"{node.domain!r}; only the standard ONNX domain is accepted", field="model")
        if node.op_type in CONTROL_FLOW_OPS:
            raise ModelRefusedError(
                f"node {name!r} is control flow ({node.op_type}); If, Loop and Scan are not "
                "accepted: export a model whose graph is a plain feed-forward network",
                field="model")
        if node.op_type not in ALLOWED_OPS:
            raise ModelRefusedError(
                f"node {name!r} uses operator {node.op_type!r}, which is not in the allow-list "
                f"of CNN operators: {', '.join(sorted(ALLOWED_OPS))}", field="model")


@dataclass(frozen=True)
class _RawInput:
    name: str
    dims: tuple[int | None, ...]
    layout: Layout

    @property
    def dynamic(self) -> bool:
        return any(d is None for d in self.dims[1:])


def _the_input(graph: GraphProto) -> _RawInput:
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        names = ", ".join(repr(i.name) for i in inputs) or "none"
        raise ModelRefusedError(
            f"the model has {len(inputs)} inputs ({names}); convserve feeds one image, so the "
            "model needs exactly one input", field="model")
    value = inputs[0]
    tensor = value.type.tensor_type
    if not value.type.HasField("tensor_type") or tensor.elem_type != TensorProto.FLOAT:
        kind = TensorProto.DataType.Name(tensor.elem_type) if value.type.HasField(
            "tensor_type") else "not a tensor"
        raise ModelRefusedError(
            f"input {value.name!r} has element type {kind}; convserve feeds float32 (FLOAT) "
            "images", field="model")
    dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                 for d in tensor.shape.dim)
    if not tensor.HasField("shape") or len(dims) != 4:
        raise ModelRefusedError(
            f"input {value.name!r} has rank {len(dims) if tensor.HasField('shape') else '?'}; "
            "an image model takes (N, C, H, W) or (N, H, W, C)", field="model")
    return _RawInput(value.name, dims, _layout(graph, value.name, dims))


def _layout(graph: GraphProto, name: str, dims: tuple[int | None, ...]) -> Layout:
    """NHWC when the input feeds a Transpose to NCHW (what tf2onnx writes for Keras) or only
    its last axis looks like channels; NCHW otherwise (what torch.onnx.export writes)."""
    for node in graph.node:
        if name not in node.input:
            continue
        if node.op_type == "Transpose":
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            if perm == [0, 3, 1, 2]:
                return "NHWC"
        if node.op_type == "Conv" and node.input[0] == name:
            return "NCHW"
    channels_like = {1, 2, 3, 4}
    if dims[3] in channels_like and dims[1] not in channels_like:
        return "NHWC"
    return "NCHW"


def _fix_input(model: ModelProto, raw: _RawInput, input_size: Sequence[int] | None) -> InputInfo:
    c_axis, h_axis, w_axis = (1, 2, 3) if raw.layout == "NCHW" else (3, 1, 2)
    channels = raw.dims[c_axis]
    if channels is None:
        raise ModelRefusedError(
            f"input {raw.name!r} has a dynamic channel axis ({raw.layout}); export it with a "
            "fixed number of channels", field="model")
    h, w = raw.dims[h_axis], raw.dims[w_axis]
    if input_size is not None:
        if len(input_size) != 2 or min(input_size) < 1:
            raise InvalidArgumentError(
                f"input_size={list(input_size)} must be [H, W] with both >= 1",
                field="input_size")
        want = (int(input_size[0]), int(input_size[1]))
        if (h is not None and h != want[0]) or (w is not None and w != want[1]):
            raise InvalidArgumentError(
                f"input_size={list(want)} conflicts with the model's fixed input size "
                f"[{h}, {w}]; leave input_size out", field="input_size")
        h, w = want
    if h is None or w is None:
        raise InvalidArgumentError(
            f"input {raw.name!r} has a dynamic height or width ({raw.layout} shape "
            f"{['?' if d is None else d for d in raw.dims]}); send input_size [H, W]",
            field="input_size")
    shape = [1, channels, h, w] if raw.layout == "NCHW" else [1, h, w, channels]
    dims = next(i for i in model.graph.input if i.name == raw.name).type.tensor_type.shape.dim
    for dim, value in zip(dims, shape, strict=True):
        dim.Clear()
        dim.dim_value = value
    return InputInfo(raw.name, (shape[0], shape[1], shape[2], shape[3]), raw.layout)


def _checked_and_inferred(model: ModelProto) -> ModelProto:
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        raise ModelRefusedError(f"onnx.checker refused the model: {_first_line(exc)}",
                                field="model") from None
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, ValueError, RuntimeError) as exc:
        raise ModelRefusedError(
            f"shape inference failed for the fixed input size: {_first_line(exc)}",
            field="model") from None
    return inferred


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__
