"""kernel_file on POST /v1/layers: a network's state_dict (.npz, .safetensors) or a .npy feeds
the conv2d entries that name its tensors; every way it can go wrong is a 4xx naming the layer."""

from __future__ import annotations

import json
import pickle
from typing import Any

import numpy as np
import onnxruntime
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper

from tests.api.conftest import ClientFactory, load_npy, npy_bytes
from tests.onnx_models import keras_cnn, serialize
from tests.weightfiles import npy_file, npz_bytes, safetensors_bytes

RNG = np.random.default_rng(13)
X = RNG.random((3, 12, 10)).astype(np.float32)
# A PyTorch nn.Sequential(Conv2d(3, 4, 3, padding=1), ReLU(), MaxPool2d(2), Conv2d(4, 2, 3))
# as its state_dict names it: features.0 and features.3.
STATE = {
    "features.0.weight": RNG.standard_normal((4, 3, 3, 3)).astype(np.float32),
    "features.0.bias": RNG.standard_normal(4).astype(np.float32),
    "features.3.weight": RNG.standard_normal((2, 4, 3, 3)).astype(np.float32),
    "features.3.bias": RNG.standard_normal(2).astype(np.float32),
    "classifier.weight": RNG.standard_normal((5, 2 * 4 * 3)).astype(np.float32),
}
FILE_STACK: list[dict[str, Any]] = [
    {"type": "conv2d", "kernel_key": "features.0.weight", "padding": 1, "activation": "relu"},
    {"type": "maxpool2d", "kernel_size": 2},
    {"type": "conv2d", "kernel_key": "features.3.weight"},
]
JSON_STACK: list[dict[str, Any]] = [
    {"type": "conv2d", "kernel": {"weight": STATE["features.0.weight"].tolist(),
                                  "bias": STATE["features.0.bias"].tolist()},
     "padding": 1, "activation": "relu"},
    {"type": "maxpool2d", "kernel_size": 2},
    {"type": "conv2d", "kernel": {"weight": STATE["features.3.weight"].tolist(),
                                  "bias": STATE["features.3.bias"].tolist()}},
]
FILES = {
    "npz": ("model.npz", npz_bytes(**STATE)),
    "safetensors": ("model.safetensors", safetensors_bytes(STATE)),
}


def post(client: TestClient, layers: list[dict[str, Any]], weights: tuple[str, bytes] | None,
         **fields: str) -> Any:
    files = {"image": ("x.npy", npy_bytes(X))}
    if weights is not None:
        files["kernel_file"] = weights
    return client.post("/v1/layers", files=files, data={"layers": json.dumps(layers), **fields})


def maps(client: TestClient, layers: list[dict[str, Any]], weights: tuple[str, bytes] | None,
         **fields: str) -> np.ndarray:
    response = post(client, layers, weights, format="npy", **fields)
    assert response.status_code == 200, response.text
    return load_npy(response.content)


def json_stack_maps(client: TestClient, layers: list[dict[str, Any]], **fields: Any) -> np.ndarray:
    response = client.post("/v1/layers", json={"input": {"array": X.tolist()}, "layers": layers,
                                               "format": "npy", **fields})
    assert response.status_code == 200, response.text
    return load_npy(response.content)


def problem(response: Any, status: int, field: str) -> dict[str, Any]:
    """The problem body, after checking its status and that its one error names ``field``."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["errors"] == [{"field": field, "message": body["detail"]}]
    return body


# --- what a trained network's file gives ------------------------------------------------------


@pytest.mark.parametrize("kind", ["npz", "safetensors"])
@pytest.mark.parametrize("engine", ["numpy", "onnxruntime"])
def test_two_conv_stack_from_a_state_dict_equals_the_stack_given_as_json_kernels(
    client: TestClient, kind: str, engine: str
) -> None:
    from_file = maps(client, FILE_STACK, FILES[kind], engine=engine)
    from_json = json_stack_maps(client, JSON_STACK, engine=engine)
    assert from_file.shape == (2, 4, 3)
    np.testing.assert_array_equal(from_file, from_json)


@pytest.mark.parametrize("kind", ["npz", "safetensors"])
def test_the_answer_reports_each_layers_file_format_and_keys(
    client: TestClient, kind: str
) -> None:
    response = post(client, FILE_STACK, FILES[kind], dry_run="true")
    assert response.status_code == 200, response.text
    layers = response.json()["layers"]
    assert layers[0]["kernel"] == {
        "source": "kernel_file", "format": kind, "weight_key": "features.0.weight",
        "bias_key": "features.0.bias", "layout": "OIHW", "weight_shape": [4, 3, 3, 3],
        "bias": True,
    }
    assert layers[2]["kernel"]["weight_key"] == "features.3.weight"
    assert layers[2]["kernel"]["bias_key"] == "features.3.bias"
    assert [layer["output_shape"] for layer in layers] == [[4, 12, 10], [4, 6, 5], [2, 4, 3]]
    assert layers[0]["params"] == 4 * 3 * 9 + 4


def test_keras_hwio_weights_with_layout_hwio_equal_the_oihw_ones(client: TestClient) -> None:
    # Keras' get_weights() order (k_h, k_w, c_in, c_out), half precision as some files hold it
    keras = {"conv2d/kernel": STATE["features.0.weight"].transpose(2, 3, 1, 0),
             "conv2d/bias": STATE["features.0.bias"],
             "conv2d_1/kernel": STATE["features.3.weight"].transpose(2, 3, 1, 0),
             "conv2d_1/bias": STATE["features.3.bias"]}
    stack = [{**FILE_STACK[0], "kernel_key": "conv2d/kernel", "bias_key": "conv2d/bias",
              "layout": "HWIO"}, FILE_STACK[1],
             {**FILE_STACK[2], "kernel_key": "conv2d_1/kernel", "bias_key": "conv2d_1/bias",
              "layout": "HWIO"}]
    hwio = maps(client, stack, ("keras.safetensors", safetensors_bytes(keras)))
    np.testing.assert_array_equal(hwio, maps(client, FILE_STACK, FILES["safetensors"]))
    half = maps(client, stack, ("keras.safetensors", safetensors_bytes(keras, "<f2")))
    np.testing.assert_allclose(half, hwio, rtol=0.05, atol=0.05)


def test_bias_is_picked_beside_the_weight_named_by_bias_key_or_dropped(
    client: TestClient,
) -> None:
    weight, bias = STATE["features.0.weight"], STATE["features.0.bias"]
    other = np.arange(4, dtype=np.float32)
    data = ("w.npz", npz_bytes(**{"conv.weight": weight, "conv.bias": bias, "shift": other}))
    layer = {"type": "conv2d", "kernel_key": "conv.weight"}
    auto = maps(client, [layer], data)
    named = maps(client, [{**layer, "bias_key": "shift"}], data)
    dropped = maps(client, [{**layer, "bias": False}], data)
    np.testing.assert_array_equal(
        auto, json_stack_maps(client, [{"type": "conv2d", "kernel": {
            "weight": weight.tolist(), "bias": bias.tolist()}}]))
    np.testing.assert_allclose(named - dropped, np.broadcast_to(other[:, None, None],
                                                                dropped.shape), atol=1e-5)
    np.testing.assert_allclose(auto - dropped, np.broadcast_to(bias[:, None, None],
                                                               dropped.shape), atol=1e-5)
    answer = post(client, [{**layer, "bias": False}, {**layer, "kernel_key": "shift"}], data,
                  dry_run="true")
    assert answer.status_code == 422  # 'shift' is 1-D: not a conv2d weight
    described = post(client, [{**layer, "bias": False}], data, dry_run="true").json()
    assert described["layers"][0]["kernel"]["bias_key"] is None
    assert described["layers"][0]["kernel"]["bias"] is False


def test_a_weight_without_bias_in_the_file_has_none(client: TestClient) -> None:
    data = ("w.safetensors", safetensors_bytes({"conv.weight": STATE["features.0.weight"]}))
    answer = post(client, [{"type": "conv2d", "kernel_key": "conv.weight"}], data,
                  dry_run="true").json()
    assert answer["layers"][0]["kernel"]["bias_key"] is None
    assert answer["layers"][0]["params"] == 4 * 3 * 9


def test_a_npy_file_is_taken_with_kernel_file_true(client: TestClient) -> None:
    stack = [{"type": "conv2d", "kernel_file": True, "padding": 1}]
    got = maps(client, stack, ("k.npy", npy_file(STATE["features.0.weight"])))
    want = json_stack_maps(client, [{"type": "conv2d", "padding": 1, "kernel": {
        "weight": STATE["features.0.weight"].tolist()}}])
    np.testing.assert_array_equal(got, want)
    described = post(client, stack, ("k.npy", npy_file(STATE["features.0.weight"])),
                     dry_run="true").json()["layers"][0]["kernel"]
    assert described == {"source": "kernel_file", "format": "npy", "weight_key": None,
                         "bias_key": None, "layout": "OIHW", "weight_shape": [4, 3, 3, 3],
                         "bias": False}


def test_onnx_export_of_a_file_stack_holds_the_files_weights(client: TestClient) -> None:
    response = post(client, FILE_STACK, FILES["npz"], format="onnx")
    assert response.status_code == 200, response.text
    session = onnxruntime.InferenceSession(response.content,
                                           providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"input": X[None]})
    np.testing.assert_allclose(y[0], maps(client, FILE_STACK, FILES["npz"]), rtol=1e-4,
                               atol=1e-5)


def test_a_networks_features_from_its_state_dict_equal_onnx_runtime_on_the_model(
    client: TestClient,
) -> None:
    """The reference Keras CNN's conv blocks, their weights read from the model's initializers
    saved as a state_dict, equal ONNX Runtime running the model with pool3 exposed."""
    model = keras_cnn(seed=5, size=30, dense=8)
    state = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    model.graph.output.append(helper.make_tensor_value_info("pool3", TensorProto.FLOAT, None))
    session = onnxruntime.InferenceSession(serialize(model), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(5).random((3, 30, 30)).astype(np.float32)
    (want,) = session.run(["pool3"], {"input": image[None]})
    stack: list[dict[str, Any]] = []
    for i in (1, 2, 3):
        stack += [{"type": "conv2d", "kernel_key": f"conv{i}.weight", "activation": "relu"},
                  {"type": "maxpool2d", "kernel_size": 2}]
    response = client.post("/v1/layers", files={
        "image": ("x.npy", npy_bytes(image)),
        "kernel_file": ("keras_cnn.safetensors", safetensors_bytes(state)),
    }, data={"layers": json.dumps(stack), "format": "npy"})
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(load_npy(response.content), want[0], rtol=1e-4, atol=1e-5)


# --- errors, each naming the layer and its field ----------------------------------------------


def test_kernel_key_without_a_kernel_file_part_is_a_422(client: TestClient) -> None:
    body = problem(post(client, FILE_STACK, None), 422, "layers.0.kernel_key")
    assert body["detail"] == (
        "layers.0.kernel_key takes its weight from a kernel_file part, and no kernel_file part "
        "was sent: add the weight file (.npz, .safetensors or .npy) as a file part named "
        "kernel_file")


def test_a_json_body_cannot_carry_the_file_and_says_so(client: TestClient) -> None:
    response = client.post("/v1/layers", json={
        "input": {"array": X.tolist()},
        "layers": [{"type": "conv2d", "preset": "sobel"}, {"type": "conv2d", "kernel_file": True}],
    })
    body = problem(response, 422, "layers.1.kernel_file")
    assert body["detail"] == (
        "layers.1.kernel_file takes its weight from a kernel_file part, which a JSON body "
        "cannot carry: send multipart/form-data with an image part, the weight file as a "
        "kernel_file part and layers as a JSON text field, or give the weights in the JSON "
        "body as kernel.weight")


def test_an_unknown_key_lists_the_files_tensors(client: TestClient) -> None:
    stack = [FILE_STACK[0], FILE_STACK[1], {**FILE_STACK[2], "kernel_key": "features.2.weight"}]
    body = problem(post(client, stack, FILES["safetensors"]), 422, "layers.2.kernel_key")
    assert body["detail"] == (
        "layers.2.kernel_key: the .safetensors file has no tensor 'features.2.weight'; it "
        "holds 'features.0.weight', 'features.0.bias', 'features.3.weight', "
        "'features.3.bias', 'classifier.weight'")
    bias = problem(post(client, [{**FILE_STACK[0], "bias_key": "features.0.b"}], FILES["npz"]),
                   422, "layers.0.bias_key")
    assert bias["detail"].startswith("layers.0.bias_key: the .npz file has no tensor "
                                     "'features.0.b'; it holds 'classifier.weight', ")


def test_a_weight_that_does_not_fit_the_previous_layer_names_its_key(
    client: TestClient,
) -> None:
    stack = [FILE_STACK[0], {"type": "conv2d", "kernel_key": "features.0.weight"}]
    body = problem(post(client, stack, FILES["npz"]), 422, "layers.1.kernel_key")
    assert body["type"] == "/problems/shape-mismatch"
    assert body["detail"] == (
        "layers.1.kernel_key: kernel_file tensor 'features.0.weight' (OIHW (4, 3, 3, 3)) does "
        "not fit this layer's input (C, H, W)=(4, 12, 10): weight.shape=(4, 3, 3, 3) needs "
        "C_in//groups=4 for x.shape=(1, 4, 12, 10), groups=1")


def test_a_dense_weight_or_a_wrong_bias_is_a_422_naming_the_tensor(client: TestClient) -> None:
    dense = problem(post(client, [{"type": "conv2d", "kernel_key": "classifier.weight"}],
                         FILES["npz"]), 422, "layers.0.kernel_key")
    assert dense["detail"] == (
        "layers.0.kernel_key: kernel_file tensor 'classifier.weight' has shape (5, 24); a "
        "conv2d weight has 4 axes, OIHW (c_out, c_in/groups, k_h, k_w) (Keras' get_weights() "
        "order is HWIO: send layout=HWIO)")
    wrong_bias = problem(post(client, [{**FILE_STACK[0], "bias_key": "features.3.bias"}],
                              FILES["npz"]), 422, "layers.0.bias_key")
    assert wrong_bias["detail"] == (
        "layers.0.bias_key: kernel_file tensor 'features.3.bias' has 2 values; the bias of "
        "kernel_file tensor 'features.0.weight' (OIHW (4, 3, 3, 3)) needs c_out=4")


def test_a_non_finite_weight_is_a_422_naming_the_tensor(client: TestClient) -> None:
    weight = STATE["features.0.weight"].copy()
    weight[0, 0, 0, 0] = np.nan
    body = problem(post(client, [{"type": "conv2d", "kernel_key": "w"}],
                        ("w.safetensors", safetensors_bytes({"w": weight}))),
                   422, "layers.0.kernel_key")
    assert body["detail"].startswith("layers.0.kernel_key: kernel_file tensor 'w': weight ")
    assert "NaN" in body["detail"]


def test_kernel_file_true_on_a_file_of_several_tensors_lists_them(client: TestClient) -> None:
    body = problem(post(client, [{"type": "conv2d", "kernel_file": True}], FILES["npz"]),
                   422, "layers.0.kernel_key")
    assert body["detail"].startswith("layers.0.kernel_key: the .npz file holds 5 tensors; "
                                     "name the weight with kernel_key: 'classifier.weight', ")
    npy = problem(post(client, [{"type": "conv2d", "kernel_key": "w"}],
                       ("k.npy", npy_file(STATE["features.0.weight"]))), 422,
                  "layers.0.kernel_key")
    assert npy["detail"] == ("layers.0.kernel_key: a .npy file holds one tensor; drop "
                             "kernel_key and bias_key, or send an .npz or .safetensors file")


@pytest.mark.parametrize(("name", "data"), [
    pytest.param("model.pth", b"PK\x03\x04 anything", id="pth-suffix"),
    pytest.param("state.bin", pickle.dumps(STATE), id="pickle-bytes"),
])
def test_a_pickle_is_refused_with_advice_to_save_with_safetensors(
    client: TestClient, name: str, data: bytes
) -> None:
    body = problem(post(client, FILE_STACK, (name, data)), 415, "kernel_file")
    assert body["title"] == "Pickled weight files are refused"
    assert "safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')" in (
        body["detail"])


def test_a_layer_gives_one_source_of_weights(client: TestClient) -> None:
    both = post(client, [{**FILE_STACK[0], "preset": "sobel"}], FILES["npz"])
    assert both.status_code == 422
    assert both.json()["errors"][0]["field"] == "layers.0.conv2d"
    assert both.json()["detail"].endswith("got preset, kernel_key")
    stray = post(client, [{"type": "conv2d", "preset": "sobel", "layout": "HWIO"}], None)
    assert stray.status_code == 422
    assert stray.json()["detail"] == (
        "layers.0.conv2d: Value error, layout goes with kernel_key or kernel_file (a weight "
        "file's tensor); an explicit kernel takes kernel.bias and kernel.layout")


def test_a_file_no_layer_reads_and_top_level_keys_are_422(client: TestClient) -> None:
    unread = problem(post(client, JSON_STACK, FILES["npz"]), 422, "kernel_file")
    assert unread["detail"].startswith("a kernel_file part was sent and no layer reads it")
    top = post(client, [{"type": "conv2d", "kernel_file": True}], FILES["npz"],
               kernel_key="features.0.weight")
    body = problem(top, 422, "kernel_key")
    assert body["detail"].startswith("on /v1/layers, kernel_key goes in a conv2d entry of "
                                     "layers")


def test_a_corrupt_npz_member_is_a_422_not_a_500(client: TestClient) -> None:
    data = bytearray(FILES["npz"][1])
    start = data.index(b"features.0.weight.npy") + 200  # inside that member's deflate stream
    data[start:start + 40] = bytes(b ^ 0x5A for b in data[start:start + 40])
    response = post(client, FILE_STACK, ("model.npz", bytes(data)))
    body = problem(response, 422, "layers.0.kernel_file")
    assert body["type"] == "/problems/invalid-input"
    assert body["detail"].startswith("layers.0.kernel_file: kernel_file member "
                                     "'features.0.weight' cannot be read from the .npz (ZIP) "
                                     "file: ")


def test_a_kernel_file_sent_as_text_is_a_422(client: TestClient) -> None:
    response = client.post("/v1/layers", files={"image": ("x.npy", npy_bytes(X))}, data={
        "layers": json.dumps(FILE_STACK), "kernel_file": "model.safetensors"})
    body = problem(response, 422, "kernel_file")
    assert body["detail"] == ("kernel_file must be a file part (curl -F "
                              "kernel_file=@net.safetensors), not text")


def test_limits_apply_to_the_file_and_to_each_tensor(make_client: ClientFactory) -> None:
    small = make_client(max_kernel_size=2, max_upload_bytes=20_000)
    body = problem(post(small, FILE_STACK, FILES["safetensors"]), 422, "layers.0.kernel_key")
    assert body["detail"] == (
        "layers.0.kernel_key: kernel_file tensor 'features.0.weight' (OIHW (4, 3, 3, 3)) 3x3 is "
        "larger than the limit of 2 per side (CONVSERVE_MAX_KERNEL_SIZE)")
    big = ("big.npy", npy_file(np.zeros((8, 3, 32, 32), np.float32)))
    too_large = post(small, [{"type": "conv2d", "kernel_file": True}], big)
    assert too_large.status_code == 413
    assert "CONVSERVE_MAX_UPLOAD_BYTES" in too_large.json()["detail"]
    few_bytes = make_client(max_output_bytes=400)
    weights = problem(post(few_bytes, FILE_STACK, FILES["safetensors"]), 422, "kernel_file")
    assert "CONVSERVE_MAX_OUTPUT_BYTES" in weights["detail"]
