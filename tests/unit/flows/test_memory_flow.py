"""flows.memory: the working memory a request will need, read from headers only."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image

from convserve.admission import estimate_working_bytes
from convserve.flows.inputs import Source
from convserve.flows.memory import (
    input_shape,
    model_working_bytes,
    weight_file_bytes,
    working_bytes,
)
from convserve.weightfiles import open_weight_file
from tests.weightfiles import npz_bytes


def png(height: int, width: int, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def layer(**fields: Any) -> dict[str, Any]:
    return {"kernel": None, "preset": None, "preset_params": {}, "stride": 1, "padding": None,
            "dilation": 1, "groups": None, "padding_mode": None, **fields}


def test_input_shape_of_bytes_base64_and_arrays() -> None:
    data = png(30, 40)
    assert input_shape(Source(data=data)) == (3, 30, 40)
    assert input_shape(Source(data=data, color_mode="gray")) == (1, 30, 40)
    text = "data:image/png;base64," + base64.b64encode(data).decode()
    assert input_shape(Source(image_base64=text)) == (3, 30, 40)
    assert input_shape(Source(array=np.zeros((2, 5, 7)).tolist())) == (2, 5, 7)
    assert input_shape(Source(array=[[1, 2, 3]])) == (1, 1, 3)
    assert input_shape(Source(data=b"garbage")) is None
    assert input_shape(Source(image_base64="!!!not base64")) is None


def test_a_preset_layer_is_estimated_from_its_resolved_kernel() -> None:
    data = png(300, 200)
    got = working_bytes(Source(data=data), [layer(preset="sobel")], "json")
    # Sobel on RGB: 2 output channels, a 3x3 kernel
    assert got == estimate_working_bytes(300, 200, 3, 2, "json", body_bytes=len(data), padding=3)


def test_a_kernel_layer_and_a_stack_count_every_output_channel() -> None:
    data = png(64, 64, "L")
    kernel = {"weight": np.ones((5, 1, 7, 7)).tolist(), "bias": None, "layout": "OIHW"}
    one = working_bytes(Source(data=data, color_mode="gray"), [layer(kernel=kernel)], "npy")
    assert one == estimate_working_bytes(64, 64, 1, 5, "npy", body_bytes=len(data), padding=7)
    stack = [{"type": "conv2d", "filters": 8, "kernel_size": 3},
             {"type": "maxpool2d", "kernel_size": 2}]
    many = working_bytes(Source(data=data, color_mode="gray"), stack, "json")
    assert many == estimate_working_bytes(64, 64, 1, 16, "json", body_bytes=len(data),
                                          padding=3)


def test_auto_counts_the_blocked_output_of_onnx_runtimes_packed_strategy() -> None:
    """``auto`` may run a layer of 8 output channels or more, up to 16 MiB in and out, on the
    packed strategy, whose blocked layout holds two outputs more while it convolves: the
    estimate counts them for ``auto`` only, and only where that strategy may run."""
    data = png(256, 256)
    eight = layer(kernel={"weight": np.ones((8, 3, 3, 3)).tolist(), "bias": None,
                          "layout": "OIHW"})
    named = working_bytes(Source(data=data), [eight], "npy", engine="onnxruntime")
    auto = working_bytes(Source(data=data), [eight], "npy", engine="auto")
    values_out = 8 * 256 * 256
    convolve = 4 * 3 * 256 * 256 + 4 * 3 * 262 * 262 + 4 * values_out
    assert named == estimate_working_bytes(256, 256, 3, 8, "npy", body_bytes=len(data),
                                           padding=3)
    assert auto == estimate_working_bytes(256, 256, 3, 8, "npy", body_bytes=len(data),
                                          padding=3, packed=True)
    assert auto == len(data) + max(convolve + 8 * values_out, named - len(data))
    assert auto > named
    sobel = working_bytes(Source(data=data), [layer(preset="sobel")], "npy", engine="auto")
    assert sobel == working_bytes(Source(data=data), [layer(preset="sobel")], "npy")


def test_what_the_flow_will_refuse_is_left_to_it() -> None:
    assert working_bytes(Source(data=b"not an image"), [layer(preset="sobel")], "json") == 0
    bad_kernel = layer(kernel={"weight": "nonsense", "bias": None, "layout": "OIHW"})
    data = png(10, 10)
    assert working_bytes(Source(data=data), [bad_kernel], "json") == estimate_working_bytes(
        10, 10, 3, 3, "json", body_bytes=len(data), padding=1)


def test_layers_from_a_weight_file_are_estimated_from_its_headers() -> None:
    data = png(20, 20)
    weights = open_weight_file(npz_bytes(**{
        "conv.weight": np.zeros((16, 3, 5, 5), np.float32),
        "conv.bias": np.zeros(16, np.float32),
        "keras.kernel": np.zeros((3, 3, 16, 8), np.float32),  # HWIO
    }), "w.npz", max_bytes=1 << 20)
    stack = [{"type": "conv2d", "kernel_key": "conv.weight"},
             {"type": "conv2d", "kernel_key": "keras.kernel", "layout": "HWIO"}]
    got = working_bytes(Source(data=data), stack, "json", weights=weights)
    assert got == estimate_working_bytes(20, 20, 3, 16 + 8, "json", body_bytes=len(data),
                                         padding=5)
    assert weight_file_bytes(weights, stack) == 4 * (16 * 3 * 25 + 16 + 3 * 3 * 16 * 8)
    unknown = [{"type": "conv2d", "kernel_key": "nope"}]
    assert weight_file_bytes(weights, unknown) == 0
    assert working_bytes(Source(data=data), unknown, "json", weights=weights) == (
        estimate_working_bytes(20, 20, 3, 3, "json", body_bytes=len(data), padding=1))


def test_a_model_request_counts_its_graph_weights_and_the_maps_asked_for() -> None:
    meta = {"total_params": 1000, "layers": [
        {"name": "conv1", "output_shape": [4, 10, 10]},
        {"name": "relu1", "output_shape": [4, 10, 10]},
        {"name": "dyn", "output_shape": [4, "h", 10]},  # unknown size: not counted
    ]}
    source = Source(array=np.zeros((3, 12, 12)).tolist())
    graph, weights, body, values_in = 4 * 800, 4 * 1000, 32 * 432, 432
    base = body + 12 * values_in + graph + weights
    assert model_working_bytes(meta, source, [], "npy") == base
    assert model_working_bytes(meta, source, ["conv1"], "npy") == base + 8 * 400
    assert model_working_bytes(meta, source, ["conv1", 1], "json") == base + 9 * 800
    assert model_working_bytes(meta, source, ["nope"], "json") == base
