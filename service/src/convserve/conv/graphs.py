"""ONNX graphs of convolution layers: one layer (:func:`conv_model`, what the ONNX Runtime
engine runs) and a layer :class:`~convserve.conv.layers.Stack` (:func:`stack_model`).

Both are made of the same :func:`conv_nodes` (``Pad`` + ``Conv``). :func:`stack_model` builds the
serving graph (weights as graph inputs, so one cached session serves every set of weights of an
architecture) or, with ``export=True``, the standalone model (weights as initializers, input
``input`` of shape ``(N, C, H, W)``, output ``output``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from convserve.conv.layers import (
    Activation,
    ActivationLayer,
    Conv2dLayer,
    Pool2dLayer,
    Stack,
)
from convserve.conv.spec import ConvSpec
from convserve.errors import EngineUnavailableError

if TYPE_CHECKING:
    import onnx

__all__ = ["IR_VERSION", "OPSET", "conv_model", "conv_nodes", "import_onnx", "stack_model"]

OPSET = 21
"""ONNX opset of every graph built here (``Pad`` mode ``wrap`` needs >= 19)."""
IR_VERSION = 10
"""ONNX IR version of those models (the one opset 21 belongs to)."""

_ONNX_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}

_ONNX_ACTIVATIONS = {
    "relu": "Relu", "leaky_relu": "LeakyRelu", "sigmoid": "Sigmoid", "tanh": "Tanh", "abs": "Abs",
}


def import_onnx() -> Any:
    """The onnx package, or the error that says how to install it (the one import of it)."""
    try:
        import onnx
    except ImportError as exc:
        raise EngineUnavailableError(
            f"building an ONNX graph needs the onnx package, which is not installed ({exc}); "
            "pip install 'convserve[cpu]'",
            field="engine",
        ) from None
    return onnx


def conv_nodes(
    spec: ConvSpec,
    x: str,
    weight: str,
    bias: str | None,
    y: str,
    *,
    prefix: str = "",
) -> list[onnx.NodeProto]:
    """The ONNX node(s) computing one convolution layer ``y = conv2d(x, weight, bias)``.

    Parameters
    ----------
    spec : ConvSpec
        The validated layer; its pads ``(top, bottom, left, right)`` and padding mode decide
        whether a ``Pad`` node precedes the ``Conv``.
    x, weight, bias, y : str
        Tensor names: ``x`` of shape ``spec.input_shape``, ``weight`` of shape
        ``spec.weight_shape``, ``bias`` of shape ``(out_channels,)`` or None, and the output
        ``y`` of shape ``spec.output_shape``.
    prefix : str
        Prepended to the names of the nodes and intermediate tensors made here, so several
        layers can share one graph.

    Returns
    -------
    list of onnx.NodeProto
        ``[Conv]`` or ``[Constant, Pad, Conv]``.
    """
    onnx_module = import_onnx()
    helper = onnx_module.helper
    top, bottom, left, right = spec.pads
    nodes = []
    conv_input, conv_pads = x, [top, left, bottom, right]
    if spec.padding_mode != "zeros" and any(spec.pads):
        pads, padded = f"{prefix}pads", f"{prefix}padded"
        nodes.append(helper.make_node(
            "Constant", [], [pads], name=f"{prefix}pads_const",
            value=helper.make_tensor(
                pads, onnx_module.TensorProto.INT64, [8], [0, 0, top, left, 0, 0, bottom, right]
            ),
        ))
        nodes.append(helper.make_node(
            "Pad", [x, pads], [padded], name=f"{prefix}pad",
            mode=_ONNX_PAD_MODES[spec.padding_mode],
        ))
        conv_input, conv_pads = padded, [0, 0, 0, 0]
    nodes.append(helper.make_node(
        "Conv", [conv_input, weight] + ([bias] if bias is not None else []), [y],
        name=f"{prefix}conv",
        kernel_shape=[spec.kernel_h, spec.kernel_w],
        strides=list(spec.stride),
        dilations=list(spec.dilation),
        pads=conv_pads,
        group=spec.groups,
    ))
    return nodes


def conv_model(spec: ConvSpec, weight: np.ndarray | None = None,
               bias: np.ndarray | None = None) -> onnx.ModelProto:
    """A model of one convolution: inputs ``X``, ``W`` (and ``B``), output ``Y``, static shapes.

    ``X`` has shape ``spec.input_shape`` (N, C_in, H, W), ``W`` ``spec.weight_shape``
    (C_out, C_in // groups, k_h, k_w), ``B`` (C_out,) when ``spec.bias``; ``Y`` has shape
    ``spec.output_shape`` (N, C_out, H_out, W_out). All float32.

    Given ``weight`` (and ``bias`` when ``spec.bias``), ``W`` and ``B`` are initializers
    holding them instead of graph inputs: ONNX Runtime may then lay the weights out for its
    kernels once, when the session is made (the ``packed`` strategy of the ONNX Runtime
    engine), and ``X`` is the one input.
    """
    onnx_module = import_onnx()
    helper, f32 = onnx_module.helper, onnx_module.TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("X", f32, list(spec.input_shape))]
    initializers = []
    if weight is None:
        inputs.append(helper.make_tensor_value_info("W", f32, list(spec.weight_shape)))
        if spec.bias:
            inputs.append(helper.make_tensor_value_info("B", f32, [spec.out_channels]))
    else:
        if tuple(weight.shape) != spec.weight_shape or spec.bias != (bias is not None):
            raise ValueError(f"weights {weight.shape} (bias {bias is not None}) do not fit {spec}")
        to_tensor = onnx_module.numpy_helper.from_array
        initializers.append(to_tensor(np.asarray(weight, dtype=np.float32), "W"))
        if bias is not None:
            initializers.append(to_tensor(np.asarray(bias, dtype=np.float32), "B"))
    output = helper.make_tensor_value_info("Y", f32, list(spec.output_shape))
    nodes = conv_nodes(spec, "X", "W", "B" if spec.bias else None, "Y")
    graph = helper.make_graph(nodes, "convserve_conv2d", inputs, [output], initializers)
    model: onnx.ModelProto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="convserve",
    )
    return model


def stack_model(stack: Stack, *, export: bool = False, keep_all: bool = False) -> onnx.ModelProto:
    """The stack as one ONNX model (opset :data:`OPSET`).

    Parameters
    ----------
    stack : Stack
        With drawn weights when ``export`` is True.
    export : bool
        False: the serving graph. Input ``X`` of shape (1, C, H, W) and every weight as a graph
        input (``W{i}``, ``B{i}`` for layer ``i``); outputs ``L{i}``, each of shape
        (1, C_i, H_i, W_i). True: the standalone model. Input ``input`` of shape
        (N, C, H, W) with a free batch axis, weights as initializers
        (``layer{i}.weight``, ``layer{i}.bias``), one output ``output`` (N, C_out, H_out, W_out).
    keep_all : bool
        Serving graph only: every layer's output is a graph output, not just the last.
    """
    onnx_module = import_onnx()
    helper, f32 = onnx_module.helper, onnx_module.TensorProto.FLOAT
    batch: int | str = "N" if export else 1
    last = len(stack.layers) - 1
    x_name = "input" if export else "X"
    inputs = [helper.make_tensor_value_info(x_name, f32, [batch, *stack.input_shape])]
    initializers = []
    nodes: list[Any] = []
    outputs = []
    current = x_name
    for i, layer in enumerate(stack.layers):
        out = "output" if export and i == last else f"L{i}"
        if isinstance(layer, Conv2dLayer):
            spec = layer.spec
            w_name = f"layer{i}.weight" if export else f"W{i}"
            b_name = (f"layer{i}.bias" if export else f"B{i}") if spec.bias else None
            if export:
                weight, bias = layer.arrays()
                initializers.append(onnx_module.numpy_helper.from_array(weight, w_name))
                if b_name is not None and bias is not None:
                    initializers.append(onnx_module.numpy_helper.from_array(bias, b_name))
            else:
                inputs.append(helper.make_tensor_value_info(w_name, f32, list(spec.weight_shape)))
                if b_name is not None:
                    inputs.append(helper.make_tensor_value_info(b_name, f32, [spec.out_channels]))
            conv_out = out if layer.activation is None else f"l{i}_conv"
            nodes += conv_nodes(spec, current, w_name, b_name, conv_out, prefix=f"l{i}_")
            if layer.activation is not None:
                nodes.append(_activation_node(helper, layer.activation, conv_out, out, i))
        elif isinstance(layer, ActivationLayer):
            nodes.append(_activation_node(helper, layer.activation, current, out, i))
        else:
            nodes.append(_pool_node(helper, layer, current, out, i))
        if export and i == last or not export and (keep_all or i == last):
            outputs.append(helper.make_tensor_value_info(out, f32, [batch, *layer.output_shape]))
        current = out
    graph = helper.make_graph(nodes, "convserve_layers", inputs, outputs, initializers)
    model: onnx.ModelProto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="convserve",
        doc_string=" -> ".join(layer.type for layer in stack.layers),
    )
    return model


def _activation_node(helper: Any, activation: Activation, x: str, y: str, index: int) -> Any:
    extra = {"alpha": activation.slope} if activation.kind == "leaky_relu" else {}
    return helper.make_node(_ONNX_ACTIVATIONS[activation.kind], [x], [y],
                            name=f"l{index}_{activation.kind}", **extra)


def _pool_node(helper: Any, layer: Pool2dLayer, x: str, y: str, index: int) -> Any:
    p_h, p_w = layer.padding
    attrs: dict[str, Any] = {
        "kernel_shape": list(layer.kernel), "strides": list(layer.stride),
        "pads": [p_h, p_w, p_h, p_w], "ceil_mode": 0,
    }
    if layer.kind == "avgpool2d":
        attrs["count_include_pad"] = int(layer.count_include_pad)
        return helper.make_node("AveragePool", [x], [y], name=f"l{index}_avgpool", **attrs)
    return helper.make_node("MaxPool", [x], [y], name=f"l{index}_maxpool", **attrs)


