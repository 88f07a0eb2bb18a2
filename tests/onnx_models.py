"""ONNX models built by the tests with onnx.helper and NumPy (nothing is downloaded).

``keras_cnn`` is the small Keras CNN learners meet first (150x150x3 -> Conv2D 16 -> MaxPool ->
Conv2D 32 -> MaxPool -> Conv2D 64 -> MaxPool -> Flatten -> Dense 512 -> Dense 1), laid out as
``torch.onnx.export`` writes it (NCHW, Gemm for the dense layers); its parameter counts are those
of Keras' ``model.summary()``. The others are small models for one property each, and hostile
models that the service must refuse.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
KERAS_PARAMS = (448, 4640, 18496, 9_470_464, 513)
KERAS_TOTAL = 9_494_561


def _model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
           outputs: list[onnx.ValueInfoProto], initializers: Sequence[onnx.TensorProto] = (),
           opset: int = OPSET, name: str = "test") -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                             ir_version=8, producer_name="convserve-tests")


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(array), name)


def _float_input(name: str, shape: Sequence[int | str | None] | None) -> onnx.ValueInfoProto:
    """A float32 tensor; ``shape=None`` is rank 4 with every axis unknown."""
    dims = [None] * 4 if shape is None else list(shape)
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def keras_cnn(seed: int = 0, first: np.ndarray | None = None, size: int = 150,
              dense: int = 512) -> onnx.ModelProto:
    """The reference CNN with seeded weights; ``first`` (16, 3, 3, 3) replaces conv 1's weights.

    Rows (names): conv1 relu1 pool1 conv2 relu2 pool2 conv3 relu3 pool3 flatten dense1 relu4
    dense2 prob.
    """
    rng = np.random.default_rng(seed)
    inits = []
    nodes = []
    previous, channels = "input", 3
    side = size
    for i, c_out in enumerate((16, 32, 64), start=1):
        scale = 1 / np.sqrt(channels * 9)
        w = rng.normal(0, scale, (c_out, channels, 3, 3)).astype(np.float32)
        if i == 1 and first is not None:
            w = first.astype(np.float32)
        inits += [_init(f"conv{i}.weight", w),
                  _init(f"conv{i}.bias", rng.normal(0, 0.1, c_out).astype(np.float32))]
        nodes += [
            helper.make_node("Conv", [previous, f"conv{i}.weight", f"conv{i}.bias"],
                             [f"conv{i}"], name=f"/features/conv{i}/Conv", kernel_shape=[3, 3]),
            helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"], name=f"/features/relu{i}"),
            helper.make_node("MaxPool", [f"relu{i}"], [f"pool{i}"], name=f"/features/pool{i}",
                             kernel_shape=[2, 2], strides=[2, 2]),
        ]
        previous, channels = f"pool{i}", c_out
        side = (side - 2) // 2
    flat = channels * side * side
    inits += [
        _init("dense1.weight", rng.normal(0, 1 / np.sqrt(flat), (dense, flat)).astype(np.float32)),
        _init("dense1.bias", np.zeros(dense, np.float32)),
        _init("dense2.weight", rng.normal(0, 1 / np.sqrt(dense), (1, dense)).astype(np.float32)),
        _init("dense2.bias", np.zeros(1, np.float32)),
    ]
    nodes += [
        helper.make_node("Flatten", ["pool3"], ["flatten"], name="/flatten", axis=1),
        helper.make_node("Gemm", ["flatten", "dense1.weight", "dense1.bias"], ["dense1"],
                         name="/dense1/Gemm", transB=1),
        helper.make_node("Relu", ["dense1"], ["relu4"], name="/relu4"),
        helper.make_node("Gemm", ["relu4", "dense2.weight", "dense2.bias"], ["dense2"],
                         name="/dense2/Gemm", transB=1),
        helper.make_node("Sigmoid", ["dense2"], ["prob"], name="/sigmoid"),
    ]
    return _model(nodes, [_float_input("input", ["batch", 3, size, size])],
                  [_float_input("prob", ["batch", 1])], inits, name="keras_cnn")


@functools.cache
def keras_cnn_bytes() -> bytes:
    """``keras_cnn()`` serialized (38 MB; built once per process)."""
    return serialize(keras_cnn())


def nhwc_cnn(seed: int = 1, size: int = 12) -> onnx.ModelProto:
    """tf2onnx's shape of a Keras model: NHWC input, Transpose, Conv (SAME_UPPER, stride 2),
    Relu, Transpose back to NHWC."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)
    b = rng.normal(0, 0.1, 4).astype(np.float32)
    nodes = [
        helper.make_node("Transpose", ["image"], ["to_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["to_nchw", "w", "b"], ["conv"], name="model/conv2d/Conv2D",
                         auto_pad="SAME_UPPER", strides=[2, 2]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("Transpose", ["relu"], ["out"], perm=[0, 2, 3, 1]),
    ]
    return _model(nodes, [_float_input("image", ["unk__1", size, size, 3])],
                  [_float_input("out", ["unk__1", None, None, 4])], [_init("w", w), _init("b", b)])


def bn_cnn(seed: int = 2) -> onnx.ModelProto:
    """Conv (pads [top, left, bottom, right] = [1, 0, 2, 1]) -> BatchNormalization -> Relu."""
    rng = np.random.default_rng(seed)
    c = 5
    inits = [
        _init("w", rng.normal(0, 0.3, (c, 2, 3, 3)).astype(np.float32)),
        _init("gamma", rng.uniform(0.5, 1.5, c).astype(np.float32)),
        _init("beta", rng.normal(0, 0.1, c).astype(np.float32)),
        _init("mean", rng.normal(0, 0.1, c).astype(np.float32)),
        _init("var", rng.uniform(0.5, 1.5, c).astype(np.float32)),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["conv"], pads=[1, 0, 2, 1], dilations=[1, 2]),
        helper.make_node("BatchNormalization", ["conv", "gamma", "beta", "mean", "var"], ["bn"]),
        helper.make_node("Relu", ["bn"], ["y"]),
    ]
    return _model(nodes, [_float_input("x", [1, 2, 10, 9])], [_float_input("y", [1, c, 11, 6])],
                  inits)


def dynamic_cnn(seed: int = 3) -> onnx.ModelProto:
    """Input (N, 3, H, W), all dynamic but channels: Conv 3x3 -> Relu -> GlobalAveragePool."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["gap"]),
    ]
    return _model(nodes, [_float_input("x", ["N", 3, "H", "W"])],
                  [_float_input("gap", ["N", 2, 1, 1])],
                  [_init("w", rng.normal(0, 0.3, (2, 3, 3, 3)).astype(np.float32))])


def tiny_conv(extra_nodes: Sequence[onnx.NodeProto] = (), out: str = "y",
              opset: int = OPSET) -> onnx.ModelProto:
    """x (1, 1, 4, 4) -> Conv 1x1 -> y, plus ``extra_nodes`` reading ``y`` and writing ``out``."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv"), *extra_nodes]
    return _model(nodes, [_float_input("x", [1, 1, 4, 4])], [_float_input(out, None)],
                  [_init("w", np.ones((1, 1, 1, 1), np.float32))], opset=opset)


# --- hostile models -------------------------------------------------------------------------


def external_data_model(location: str = "secrets.bin") -> onnx.ModelProto:
    """Conv whose weight's values are said to live in ``location`` (read by the checker and
    ONNX Runtime if it got that far)."""
    model = tiny_conv()
    weight = model.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "4")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    return model


def custom_domain_model() -> onnx.ModelProto:
    model = tiny_conv([helper.make_node("Steal", ["y"], ["z"], name="evil", domain="com.evil")],
                      out="z")
    model.opset_import.append(helper.make_opsetid("com.evil", 1))
    return model


def loop_model() -> onnx.ModelProto:
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Identity", ["v_in"], ["v_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         _float_input("v_in", [1, 1, 4, 4])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         _float_input("v_out", [1, 1, 4, 4])],
    )
    nodes = [
        helper.make_node("Constant", [], ["trip"], value=numpy_helper.from_array(
            np.array(10**9, np.int64))),
        helper.make_node("Constant", [], ["cond"], value=numpy_helper.from_array(np.array(True))),
        helper.make_node("Loop", ["trip", "cond", "y"], ["z"], name="forever", body=body),
    ]
    return tiny_conv(nodes, out="z")


def huge_macs_model() -> onnx.ModelProto:
    """One Conv 128 -> 128, 3x3 over 8192x8192: 128*128*9*8190^2 = 9.9e12 MACs, 590 kB file."""
    w = np.zeros((128, 128, 3, 3), np.float32)
    return _model([helper.make_node("Conv", ["x", "w"], ["y"], name="huge")],
                  [_float_input("x", [1, 128, 8192, 8192])], [_float_input("y", None)],
                  [_init("w", w)])


def two_input_model() -> onnx.ModelProto:
    return _model([helper.make_node("Add", ["a", "b"], ["y"])],
                  [_float_input("a", [1, 1, 4, 4]), _float_input("b", [1, 1, 4, 4])],
                  [_float_input("y", None)])


def zero_input_model() -> onnx.ModelProto:
    return _model([helper.make_node("Constant", [], ["y"], value=numpy_helper.from_array(
        np.ones((1, 1, 2, 2), np.float32)))], [], [_float_input("y", None)])


def int_input_model() -> onnx.ModelProto:
    model = tiny_conv()
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.INT64
    return model


def serialize(model: onnx.ModelProto) -> bytes:
    data: bytes = model.SerializeToString()
    return data
