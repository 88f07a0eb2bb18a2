"""A layer :class:`~convserve.conv.layers.Stack` as one ONNX graph.

:func:`stack_model` builds the serving graph (weights as graph inputs, so one cached session
serves every set of weights of an architecture) or, with ``export=True``, the standalone model
(weights as initializers, input ``input`` of shape ``(N, C, H, W)``, output ``output``). The
convolutions are :func:`~convserve.conv.onnx_engine.conv_nodes`, the same ``Pad`` + ``Conv``
nodes the ONNX Runtime conv engine runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from convserve.conv.layers import (
    Activation,
    ActivationLayer,
    Conv2dLayer,
    Pool2dLayer,
    Stack,
)
from convserve.conv.onnx_engine import (
    IR_VERSION,
    OPSET,
    conv_nodes,
)
from convserve.errors import EngineUnavailableError

if TYPE_CHECKING:
    import onnx

__all__ = ["stack_model"]

_ONNX_ACTIVATIONS = {
    "relu": "Relu", "leaky_relu": "LeakyRelu", "sigmoid": "Sigmoid", "tanh": "Tanh", "abs": "Abs",
}


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise EngineUnavailableError(
            f"building an ONNX graph needs the onnx package, which is not installed ({exc}); "
            "pip install 'convserve[cpu]'",
            field="engine",
        ) from None
    return onnx


def stack_model(stack: Stack, *, export: bool = False, keep_all: bool = False) -> onnx.ModelProto:
    """The stack as one ONNX model (opset :data:`~convserve.conv.onnx_engine.OPSET`).

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
    onnx_module = _import_onnx()
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


