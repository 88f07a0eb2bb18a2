"""The convolution of one ``Conv`` node, in convserve's terms.

ONNX lays ``pads`` out begins-then-ends, ``[top, left, bottom, right]``; convserve (and
``/v1/convolve``) takes ``[top, bottom, left, right]``. ``auto_pad`` is resolved against the
node's input size: ``VALID`` is no padding; ``SAME_UPPER`` and ``SAME_LOWER`` pad a total of
``max((ceil(H / s) - 1) * s + (k - 1) * d + 1 - H, 0)`` per axis, the odd remainder at the end
(UPPER, as PyTorch and TensorFlow) or at the beginning (LOWER).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from onnx import ModelProto, NodeProto, numpy_helper

from convserve.errors import InvalidArgumentError

__all__ = ["ConvKernel", "conv_kernel", "producer"]


@dataclass(frozen=True)
class ConvKernel:
    """A Conv node as the arguments of :func:`convserve.conv2d`."""

    input: str
    """The name of the tensor the node reads (its input 0), NCHW with a batch axis."""
    weight: np.ndarray
    """float32 (C_out, C_in/groups, k_h, k_w)."""
    bias: np.ndarray | None
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]
    """(top, bottom, left, right)."""
    dilation: tuple[int, int]
    groups: int

    def to_dict(self) -> dict[str, Any]:
        """What ``/v1/convolve`` takes: ``weight``, ``bias``, ``stride``, ``padding``,
        ``dilation``, ``groups``."""
        return {
            "weight": self.weight.tolist(),
            "bias": None if self.bias is None else self.bias.tolist(),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "dilation": list(self.dilation),
            "groups": self.groups,
        }


def producer(model: ModelProto, output: str) -> NodeProto:
    """The node that writes tensor ``output``."""
    node: NodeProto = next(n for n in model.graph.node if output in n.output)
    return node


def _constant(model: ModelProto, name: str, node: NodeProto, role: str) -> np.ndarray:
    for t in model.graph.initializer:
        if t.name == name:
            return np.asarray(numpy_helper.to_array(t), dtype=np.float32)
    for n in model.graph.node:
        if n.op_type == "Constant" and name in n.output:
            value = next((a.t for a in n.attribute if a.name == "value"), None)
            if value is not None:
                return np.asarray(numpy_helper.to_array(value), dtype=np.float32)
    raise InvalidArgumentError(
        f"the {role} of Conv node {node.name or node.output[0]!r} ({name!r}) is computed at run "
        "time, not stored in the model; only stored weights can be shown", field="name")


def _ints(node: NodeProto, name: str, default: list[int]) -> list[int]:
    return next((list(a.ints) for a in node.attribute if a.name == name), default)


def conv_kernel(model: ModelProto, output: str, input_hw: tuple[int, int]) -> ConvKernel:
    """The weights and geometry of the Conv node writing ``output``.

    Parameters
    ----------
    model : ModelProto
        A validated model.
    output : str
        The Conv node's output name.
    input_hw : (int, int)
        The height and width of the node's input (for ``auto_pad`` SAME).

    Raises
    ------
    InvalidArgumentError
        The node is not a 2-D Conv, or its weights are computed at run time.
    """
    node = producer(model, output)
    if node.op_type != "Conv":
        raise InvalidArgumentError(
            f"layer {output!r} is a {node.op_type}, not a Conv; kernels exist for Conv layers",
            field="name")
    weight = _constant(model, node.input[1], node, "weight")
    if weight.ndim != 4:
        raise InvalidArgumentError(
            f"layer {output!r} is a {weight.ndim - 2}-D convolution; convserve shows 2-D ones",
            field="name")
    bias = _constant(model, node.input[2], node, "bias") if len(node.input) > 2 and \
        node.input[2] else None
    k = weight.shape[2:]
    stride = _ints(node, "strides", [1, 1])
    dilation = _ints(node, "dilations", [1, 1])
    auto_pad = next((a.s.decode() for a in node.attribute if a.name == "auto_pad"), "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for size, s, d, kk in zip(input_hw, stride, dilation, k, strict=True):
            total = max((math.ceil(size / s) - 1) * s + (kk - 1) * d + 1 - size, 0)
            small, large = total // 2, total - total // 2
            pads.append((small, large) if auto_pad == "SAME_UPPER" else (large, small))
        padding = (pads[0][0], pads[0][1], pads[1][0], pads[1][1])
    elif auto_pad == "VALID":
        padding = (0, 0, 0, 0)
    else:
        top, left, bottom, right = _ints(node, "pads", [0, 0, 0, 0])
        padding = (top, bottom, left, right)
    groups = next((a.i for a in node.attribute if a.name == "group"), 1)
    return ConvKernel(node.input[0], np.ascontiguousarray(weight), bias,
                      (stride[0], stride[1]), padding, (dilation[0], dilation[1]), int(groups))
