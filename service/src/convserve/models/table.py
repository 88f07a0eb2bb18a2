"""The layer table of a validated model: one row per node output, with shapes, params and MACs.

Counting rules (those of DESIGN.md and of Keras' ``model.summary()``):

- ``params`` of a node: the values of the floating-point initializers it reads, each
  initializer counted once (at its first reader). Integer initializers (a ``Reshape``'s target
  shape, a ``Slice``'s bounds) are not parameters, so a Flatten row reads 0 as in Keras.
- ``macs``: multiply-accumulates, bias additions not counted. ``Conv``:
  ``c_out * (c_in/groups) * k_h * k_w * h_out * w_out``; ``Gemm`` and ``MatMul``:
  ``M * N * K``. Every other operator (activations, pooling, element-wise) counts 0.
- A node with several outputs (``Split``, ``MaxPool`` with indices) has one row per output;
  its params and MACs are on the first.

Every tensor's size is known after inference with the fixed input size; any tensor over the
tensor limit, or whose shape inference left unknown, refuses the model, so no uploaded graph
can allocate without bound at run time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from onnx import GraphProto, NodeProto, TensorProto, ValueInfoProto

from convserve.errors import LimitExceededError
from convserve.models.validate import Layout, ModelRefusedError, ValidatedModel

__all__ = ["LayerRow", "ModelSummary", "summarize"]

_FLOAT_TYPES = frozenset({TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16,
                          TensorProto.BFLOAT16})
# Operators whose 4-D output is NCHW whatever their input's layout.
_NCHW_OPS = frozenset({"Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
                       "LpPool", "BatchNormalization", "InstanceNormalization", "LRN",
                       "DepthToSpace", "SpaceToDepth"})


@dataclass(frozen=True)
class LayerRow:
    """One node output."""

    index: int
    name: str
    op: str
    node: str
    """The node's name (exporters' ``/features/features.0/Conv``); may be empty."""
    output_shape: tuple[int, ...]
    """Without the batch axis, in the model's own layout."""
    layout: Layout | None
    """For 4-D outputs: NCHW or NHWC as the graph produces it; None otherwise."""
    params: int
    macs: int

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "op": self.op, "node": self.node,
                "output_shape": list(self.output_shape), "layout": self.layout,
                "params": self.params, "macs": self.macs}


@dataclass(frozen=True)
class ModelSummary:
    """What ``POST /v1/models`` reports, less the id."""

    layers: tuple[LayerRow, ...]
    total_params: int
    total_macs: int

    def row(self, key: str | int) -> LayerRow | None:
        """The row named ``key`` (a node output name) or at index ``key``."""
        if isinstance(key, int):
            return self.layers[key] if 0 <= key < len(self.layers) else None
        return next((r for r in self.layers if r.name == key), None)


def _shapes(graph: GraphProto) -> dict[str, ValueInfoProto]:
    values: dict[str, ValueInfoProto] = {}
    for v in (*graph.input, *graph.value_info, *graph.output):
        values[v.name] = v
    return values


def _static_shape(value: ValueInfoProto | None) -> tuple[int, ...] | None:
    if value is None or not value.type.HasField("tensor_type"):
        return None
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    dims = []
    for d in tensor.shape.dim:
        if not d.HasField("dim_value"):
            return None
        dims.append(d.dim_value)
    return tuple(dims)


def _attr(node: NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            if a.type == a.INT:
                return a.i
            if a.type == a.INTS:
                return list(a.ints)
            if a.type == a.STRING:
                return a.s.decode()
            if a.type == a.FLOAT:
                return a.f
    return default


def _macs(node: NodeProto, shapes: dict[str, tuple[int, ...]], out: tuple[int, ...]) -> int:
    if node.op_type == "Conv":
        # weight (C_out, C_in/groups, k_h, k_w): every output element reads prod(weight[1:])
        # inputs, so groups are already counted.
        return math.prod(out) * math.prod(shapes[node.input[1]][1:])
    if node.op_type == "Gemm":
        a = shapes[node.input[0]]
        k = a[0] if _attr(node, "transA", 0) else a[1]
        return math.prod(out) * k
    if node.op_type == "MatMul":
        a = shapes[node.input[0]]
        return math.prod(out) * a[-1]
    return 0


def _tensor_layout(node: NodeProto, rank: int, layouts: dict[str, Layout | None]) -> Layout | None:
    if rank != 4:
        return None
    if node.op_type in _NCHW_OPS:
        return "NCHW"
    source = next((layouts[i] for i in node.input if layouts.get(i) is not None), None)
    if node.op_type == "Transpose":
        perm = _attr(node, "perm", [])
        if perm == [0, 3, 1, 2]:
            return "NCHW"
        if perm == [0, 2, 3, 1]:
            return "NHWC"
        return None
    return source


def summarize(
    validated: ValidatedModel, *, max_macs: int, max_tensor_bytes: int
) -> ModelSummary:
    """Build the layer table and check the MACs and tensor-size limits.

    Parameters
    ----------
    validated : ValidatedModel
    max_macs : int
        ``CONVSERVE_MAX_MACS``: the whole model's MACs for its input size must not exceed it.
    max_tensor_bytes : int
        ``CONVSERVE_MAX_OUTPUT_BYTES``: no tensor of the graph may hold more float32 bytes.

    Raises
    ------
    LimitExceededError
        Over either limit; names the node and the setting (422).
    ModelRefusedError
        A tensor's shape could not be inferred.
    """
    graph = validated.model.graph
    values = _shapes(graph)
    shapes: dict[str, tuple[int, ...]] = {}
    for t in graph.initializer:
        shapes[t.name] = tuple(t.dims)
    layouts: dict[str, Layout | None] = {validated.input.name: validated.input.layout}
    shapes[validated.input.name] = validated.input.shape
    initializers = {t.name: t for t in graph.initializer}
    counted: set[str] = set()
    rows: list[LayerRow] = []
    total_macs = 0
    for node in graph.node:
        params = 0
        for name in node.input:
            t = initializers.get(name)
            if t is not None and name not in counted and t.data_type in _FLOAT_TYPES:
                params += math.prod(t.dims)
                counted.add(name)
        for position, output in enumerate(node.output):
            if not output:
                continue
            shape = _static_shape(values.get(output))
            if node.op_type == "Constant" and shape is None:
                value = next((a.t for a in node.attribute if a.name == "value"), None)
                shape = tuple(value.dims) if value is not None else None
            if shape is None:
                raise ModelRefusedError(
                    f"the shape of {output!r} (output of node {node.name or node.op_type!r}, "
                    f"{node.op_type}) could not be inferred for the input "
                    f"{list(validated.input.shape)}; export with static shapes", field="model")
            shapes[output] = shape
            layouts[output] = _tensor_layout(node, len(shape), layouts)
            macs = _macs(node, shapes, shape) if position == 0 else 0
            total_macs += macs
            if total_macs > max_macs:
                raise LimitExceededError(
                    f"the model costs more than {max_macs:.3g} multiply-accumulates for the "
                    f"input {list(validated.input.shape)} (reached at node "
                    f"{node.name or output!r}, {node.op_type}: {total_macs:.3g}), over the "
                    "limit CONVSERVE_MAX_MACS; upload a smaller model or input_size",
                    field="model")
            if 4 * math.prod(shape) > max_tensor_bytes:
                raise LimitExceededError(
                    f"tensor {output!r} (node {node.name or node.op_type!r}, {node.op_type}) "
                    f"would hold {math.prod(shape):,} values ({4 * math.prod(shape):,} bytes as "
                    f"float32) for the input {list(validated.input.shape)}, more than the limit "
                    f"of {max_tensor_bytes:,} bytes (CONVSERVE_MAX_OUTPUT_BYTES)", field="model")
            batchless = shape[1:] if shape and shape[0] == 1 and len(shape) >= 2 else shape
            rows.append(LayerRow(
                index=len(rows), name=output, op=node.op_type, node=node.name,
                output_shape=batchless, layout=layouts[output],
                params=params if position == 0 else 0, macs=macs,
            ))
    return ModelSummary(tuple(rows), sum(r.params for r in rows), total_macs)
