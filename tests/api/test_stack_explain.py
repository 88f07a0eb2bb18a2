"""A /v1/layers stack's conv2d pixel explained exactly, the way the page's Network mode does it:
the stack exported as ONNX (``format=onnx``), stored with ``/v1/models``, and the layer's Conv
node (``l{i}_conv``) explained by ``/v1/models/{id}/explain`` on the same image with no
preprocessing. The explained value must be the stack's own map value at that pixel."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import load_npy, wait_ready

# Reflect padding (a preset: the export puts a Pad node before the Conv), zero padding inside
# the Conv, a leaky ReLU, then stride, dilation and groups on an un-activated layer.
STACK: list[dict[str, Any]] = [
    {"type": "conv2d", "preset": "gabor", "preset_params": {"size": 3, "orientations": 4},
     "activation": "relu"},
    {"type": "maxpool2d", "kernel_size": 2},
    {"type": "conv2d", "filters": 6, "kernel_size": 3, "padding": 1, "seed": 3,
     "activation": {"type": "leaky_relu", "slope": 0.2}},
    {"type": "conv2d", "filters": 2, "kernel_size": [3, 2], "stride": 2, "dilation": 2,
     "groups": 2, "init": "glorot_uniform"},
]
CONV_LAYERS = [0, 2, 3]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from convserve.main import create_app
    from convserve.settings import Settings

    settings = Settings(model_dir=tmp_path_factory.mktemp("store"), warmup=False)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        yield client


def layers(app: TestClient, image: bytes, stack: list[dict[str, Any]], **fields: str) -> Any:
    response = app.post("/v1/layers", files={"image": ("photo.png", image)},
                        data={"layers": json.dumps(stack), **fields})
    assert response.status_code == 200, response.text
    return response


@pytest.fixture(scope="module")
def stored(app: TestClient, rgb_png: bytes) -> dict[str, Any]:
    """The /v1/models answer for the exported stack."""
    onnx = layers(app, rgb_png, STACK, format="onnx").content
    response = app.post("/v1/models", files={"model": ("stack.onnx", onnx)})
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


def leaky(value: float) -> float:
    return value if value >= 0 else 0.2 * value


def test_each_conv2d_layer_is_the_exported_conv_node_l_i_conv(
        app: TestClient, rgb_png: bytes, stored: dict[str, Any]) -> None:
    described = layers(app, rgb_png, STACK, **{"return": "none"}).json()["layers"]
    assert stored["inputs"][0]["shape"][1:] == described[0]["input_shape"] == [3, 48, 64]
    convs = {row["node"]: row for row in stored["layers"] if row["op"] == "Conv"}
    assert sorted(convs) == [f"l{i}_conv" for i in CONV_LAYERS]
    for i in CONV_LAYERS:
        assert convs[f"l{i}_conv"]["output_shape"] == described[i]["output_shape"]
        assert convs[f"l{i}_conv"]["params"] == described[i]["params"]
        assert convs[f"l{i}_conv"]["macs"] == described[i]["macs"]


def test_the_same_stack_and_image_size_store_one_model(
        app: TestClient, rgb_png: bytes, stored: dict[str, Any]) -> None:
    again = app.post("/v1/models", files={
        "model": ("stack.onnx", layers(app, rgb_png, STACK, format="onnx").content)})
    assert again.status_code == 200
    assert again.json()["id"] == stored["id"]


@pytest.mark.parametrize("index", CONV_LAYERS, ids=lambda i: f"layer{i}")
@pytest.mark.parametrize("where", [(0, 0), (1, -1), (-1, 3)], ids=["top-left", "top-right",
                                                                    "bottom-edge"])
def test_an_explained_stack_pixel_is_the_layers_map_value(
        app: TestClient, rgb_png: bytes, stored: dict[str, Any], index: int,
        where: tuple[int, int]) -> None:
    """Border pixels read padding (reflect through the exported Pad, zeros inside the Conv)."""
    plain = [*STACK[:index], {**STACK[index], "activation": None}]
    before = load_npy(layers(app, rgb_png, plain, format="npy").content)
    after = load_npy(layers(app, rgb_png, STACK[:index + 1], format="npy").content)
    channels, height, width = before.shape
    channel, y, x = channels - 1, where[0] % height, where[1] % width
    # The row's name is the node's output: l{i}_conv, L{i} or, for the last layer, output.
    name = next(r["name"] for r in stored["layers"] if r["node"] == f"l{index}_conv")
    response = app.post(
        f"/v1/models/{stored['id']}/explain", files={"image": ("photo.png", rgb_png)},
        data={"layer": name, "preprocess": "none",
              "at": json.dumps({"channel": channel, "y": y, "x": x})})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["layer"]["node"] == f"l{index}_conv"
    assert answer["preprocess"]["model_input_shape"] == [1, 3, 48, 64]
    value = float(answer["value"])
    assert math.isclose(value, float(before[channel, y, x]), rel_tol=1e-5, abs_tol=1e-6)
    recomputed = sum(term["sum"] for term in answer["terms"]) + (answer["bias"] or 0.0)
    assert math.isclose(recomputed, value, rel_tol=1e-5, abs_tol=1e-6)
    activation = STACK[index].get("activation")
    shown = max(0.0, value) if activation == "relu" else leaky(value) if activation else value
    assert math.isclose(shown, float(after[channel, y, x]), rel_tol=1e-5, abs_tol=1e-6)
    # Stride 2 and dilation 2 on layer 3: the window starts at (2y, 2x) of its input.
    if index == 3:
        assert answer["window_origin"] == {"y": 2 * y, "x": 2 * x}
        assert len(answer["terms"]) == 3  # groups=2 over 6 channels: 3 per output
        assert np.asarray(answer["terms"][0]["kernel"]).shape == (3, 2)
