"""The sample network of the demo page, built here from code (nothing is downloaded).

The small Keras CNN learners meet first, as ``torch.onnx.export`` would write it: input
``(1, 3, 150, 150)`` -> Conv2D 16 (3x3) -> ReLU -> MaxPool 2 -> Conv2D 32 -> ReLU -> MaxPool 2 ->
Conv2D 64 -> ReLU -> MaxPool 2 -> Flatten -> Dense 512 -> ReLU -> Dense 1 -> Sigmoid, 9,494,561
parameters. Its first layer holds meaningful kernels, the ``gabor`` preset's 16 orientations at
3x3 spread over RGB by luminance, so its feature maps show edges by direction; every later
layer has seeded He-normal weights (an untrained network, labelled as such).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from convserve.conv.presets import resolve_preset

__all__ = ["SAMPLE_FILENAME", "SAMPLE_SEED", "sample_model_bytes"]

SAMPLE_FILENAME = "sample-keras-cnn.onnx"
SAMPLE_SEED = 0
_SIZE = 150


def _tensor(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name)


def sample_model_bytes() -> bytes:
    """The sample model, serialized: 38 MB, built in about a second and not kept (it is asked
    for rarely); the same bytes, so the same id, every time."""
    rng = np.random.default_rng(SAMPLE_SEED)
    gabor = resolve_preset("gabor", 3, {"size": 3, "orientations": 16}, ("R", "G", "B"))
    weights: list[np.ndarray] = [gabor.weight]
    for c_in, c_out in ((16, 32), (32, 64)):
        weights.append(rng.normal(0, np.sqrt(2 / (c_in * 9)), (c_out, c_in, 3, 3)))
    inits, nodes = [], []
    previous = "input"
    for i, w in enumerate(weights, start=1):
        inits += [_tensor(f"conv{i}.weight", w), _tensor(f"conv{i}.bias", np.zeros(len(w)))]
        nodes += [
            helper.make_node("Conv", [previous, f"conv{i}.weight", f"conv{i}.bias"],
                             [f"conv{i}"], name=f"/conv{i}/Conv", kernel_shape=[3, 3]),
            helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"], name=f"/relu{i}/Relu"),
            helper.make_node("MaxPool", [f"relu{i}"], [f"pool{i}"], name=f"/pool{i}/MaxPool",
                             kernel_shape=[2, 2], strides=[2, 2]),
        ]
        previous = f"pool{i}"
    flat = 64 * 17 * 17
    inits += [
        _tensor("dense1.weight", rng.normal(0, np.sqrt(2 / flat), (512, flat))),
        _tensor("dense1.bias", np.zeros(512)),
        _tensor("dense2.weight", rng.normal(0, np.sqrt(1 / 512), (1, 512))),
        _tensor("dense2.bias", np.zeros(1)),
    ]
    nodes += [
        helper.make_node("Flatten", ["pool3"], ["flatten"], name="/flatten/Flatten", axis=1),
        helper.make_node("Gemm", ["flatten", "dense1.weight", "dense1.bias"], ["dense1"],
                         name="/dense1/Gemm", transB=1),
        helper.make_node("Relu", ["dense1"], ["relu4"], name="/relu4/Relu"),
        helper.make_node("Gemm", ["relu4", "dense2.weight", "dense2.bias"], ["dense2"],
                         name="/dense2/Gemm", transB=1),
        helper.make_node("Sigmoid", ["dense2"], ["probability"], name="/sigmoid/Sigmoid"),
    ]
    graph = helper.make_graph(
        nodes, "sample_keras_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, _SIZE, _SIZE])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, [1, 1])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8,
                              producer_name="convserve", producer_version="sample")
    model.doc_string = ("The Keras reference CNN; conv1 holds the gabor preset (16 orientations, "
                        "3x3), later layers seeded He-normal weights (untrained).")
    data: bytes = model.SerializeToString()
    return data
