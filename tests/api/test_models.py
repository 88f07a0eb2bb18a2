"""/v1/models over HTTP: upload, table, store, features, kernels, explain, refusals."""

from __future__ import annotations

import io
import json
import urllib.parse
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import helper, numpy_helper

from tests import onnx_models as m
from tests.api.conftest import (
    ClientFactory,
    app_settings,
    decode_png,
    load_npy,
    npy_bytes,
    png_bytes,
    wait_ready,
)
from tests.unit.models.test_runner import ort_outputs


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from convserve.main import create_app

    settings = app_settings(model_dir=tmp_path_factory.mktemp("store"), warmup=False)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        yield client


@pytest.fixture(scope="module")
def keras_id(app: TestClient) -> str:
    response = app.post("/v1/models", files={"model": ("cnn.onnx", m.keras_cnn_bytes())})
    assert response.status_code == 201, response.text
    ident: str = response.json()["id"]
    return ident


def upload(client: TestClient, model: onnx.ModelProto, **data: str) -> dict[str, Any]:
    response = client.post("/v1/models", files={"model": ("m.onnx", m.serialize(model))},
                           data=data)
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


def test_upload_answers_the_keras_table_and_the_same_file_answers_200(
    app: TestClient, keras_id: str
) -> None:
    response = app.post("/v1/models", files={"model": ("again.onnx", m.keras_cnn_bytes())})
    assert response.status_code == 200
    assert response.headers["location"] == f"/v1/models/{keras_id}"
    body = response.json()
    assert body["id"] == keras_id and body["filename"] == "cnn.onnx"
    assert body["inputs"] == [{"name": "input", "shape": [1, 3, 150, 150], "layout": "NCHW",
                               "channels": 3, "size": [150, 150]}]
    assert body["total_params"] == 9_494_561
    assert [r["params"] for r in body["layers"] if r["params"]] == [448, 4640, 18496, 9_470_464,
                                                                    513]
    assert [(r["name"], r["output_shape"]) for r in body["layers"][:9:2]] == [
        ("conv1", [16, 148, 148]), ("pool1", [16, 74, 74]), ("relu2", [32, 72, 72]),
        ("conv3", [64, 34, 34]), ("pool3", [64, 17, 17])]
    assert app.get(f"/v1/models/{keras_id}").json() == body
    listed = app.get("/v1/models").json()["models"]
    assert keras_id in [item["id"] for item in listed]
    assert all("layers" not in item for item in listed)


def test_features_of_every_conv_relu_and_pool_equal_onnx_runtime(
    app: TestClient, keras_id: str
) -> None:
    x = np.random.default_rng(11).random((3, 150, 150), dtype=np.float32)
    names = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3", "pool3"]
    response = app.post(f"/v1/models/{keras_id}/features",
                        files={"image": ("x.npy", npy_bytes(x))},
                        data={"layers": json.dumps(names), "format": "zip"})
    assert response.status_code == 200, response.text
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    manifest = json.loads(archive.read("manifest.json"))
    assert [layer["name"] for layer in manifest["layers"]] == names
    expected = ort_outputs(m.keras_cnn(), {"input": x[np.newaxis]}, names)
    for layer, want in zip(manifest["layers"], expected, strict=True):
        got = load_npy(archive.read(f"{layer['folder']}/features.npy"))
        assert got.shape == want.shape[1:] == tuple(layer["shape"])
        np.testing.assert_allclose(got, want[0], rtol=1e-5, atol=1e-6)
        assert len(layer["channels"]) == got.shape[0]
        png = decode_png(archive.read(layer["channels"][0]["file"]))
        assert png.shape == got.shape[1:]


def test_every_conv_relu_and_pool_equals_v1_layers_given_the_same_weights(
    app: TestClient, keras_id: str
) -> None:
    x = np.random.default_rng(12).random((3, 150, 150), dtype=np.float32)
    stack: list[dict[str, Any]] = []
    for i in (1, 2, 3):
        kernel = app.get(f"/v1/models/{keras_id}/layers/conv{i}/kernel").json()
        stack.append({"type": "conv2d",
                      "kernel": {"weight": kernel["weight"], "bias": kernel["bias"]},
                      "stride": kernel["stride"], "padding": kernel["padding"]})
        for name in (f"conv{i}", f"relu{i}", f"pool{i}"):
            if name.startswith("relu"):
                stack.append({"type": "relu"})
            elif name.startswith("pool"):
                stack.append({"type": "maxpool2d", "kernel_size": 2})
            ours = app.post(f"/v1/models/{keras_id}/features",
                            files={"image": ("x.npy", npy_bytes(x))},
                            data={"layers": name, "format": "npy"})
            theirs = app.post("/v1/layers", files={"image": ("x.npy", npy_bytes(x))},
                              data={"layers": json.dumps(stack), "format": "npy",
                                    "engine": "numpy"})
            assert ours.status_code == theirs.status_code == 200, (ours.text, theirs.text)
            np.testing.assert_allclose(load_npy(ours.content), load_npy(theirs.content),
                                       rtol=1e-5, atol=1e-5, err_msg=name)


def test_kernel_equals_the_initializer(app: TestClient, keras_id: str) -> None:
    body = app.get(f"/v1/models/{keras_id}/layers/6/kernel").json()
    inits = {t.name: numpy_helper.to_array(t) for t in m.keras_cnn().graph.initializer}
    np.testing.assert_array_equal(np.asarray(body["weight"], np.float32), inits["conv3.weight"])
    np.testing.assert_array_equal(np.asarray(body["bias"], np.float32), inits["conv3.bias"])
    assert {k: body[k] for k in ("input", "stride", "padding", "dilation", "groups")} == {
        "input": "pool2", "stride": [1, 1], "padding": [0, 0, 0, 0], "dilation": [1, 1],
        "groups": 1}
    assert body["layer"]["name"] == "conv3"


def test_kernel_of_a_slashed_name_passed_to_convolve_reproduces_the_layer(
    app: TestClient, tmp_path: Path
) -> None:
    model = m.nhwc_cnn()
    for node in model.graph.node:  # exporters' names: slashes and a colon
        node.output[:] = [n.replace("conv", "model/conv2d/BiasAdd:0") if n == "conv" else n
                          for n in node.output]
        node.input[:] = [n.replace("conv", "model/conv2d/BiasAdd:0") if n == "conv" else n
                         for n in node.input]
    ident = upload(app, model)["id"]
    name = "model/conv2d/BiasAdd:0"
    kernel = app.get(f"/v1/models/{ident}/layers/{urllib.parse.quote(name, safe='')}/kernel")
    assert kernel.status_code == 200, kernel.text
    k = kernel.json()
    assert (k["padding"], k["stride"], k["input"]) == ([0, 1, 0, 1], [2, 2], "to_nchw")
    image = np.random.default_rng(3).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    maps = app.post(f"/v1/models/{ident}/features", files={"image": ("x.png", png_bytes(image))},
                    data={"layers": json.dumps(["to_nchw", name]), "format": "zip"})
    archive = zipfile.ZipFile(io.BytesIO(maps.content))
    folders = [layer["folder"] for layer in json.loads(archive.read("manifest.json"))["layers"]]
    layer_in, layer_out = (load_npy(archive.read(f"{f}/features.npy")) for f in folders)
    np.testing.assert_allclose(layer_in, np.moveaxis(image, -1, 0) / np.float32(255), rtol=1e-6)
    convolved = app.post("/v1/convolve", json={
        "input": {"array": layer_in.tolist()},
        "kernel": {"weight": k["weight"], "bias": k["bias"]},
        **{f: k[f] for f in ("stride", "padding", "dilation", "groups")}, "format": "npy"})
    assert convolved.status_code == 200, convolved.text
    np.testing.assert_allclose(load_npy(convolved.content), layer_out, rtol=1e-5, atol=1e-6)


def test_nhwc_model_takes_chw_input_and_returns_chw_maps(app: TestClient) -> None:
    body = upload(app, m.nhwc_cnn())
    assert body["inputs"][0]["layout"] == "NHWC"
    x = np.random.default_rng(4).normal(size=(3, 12, 12)).astype(np.float32)
    response = app.post(f"/v1/models/{body['id']}/features",
                        json={"input": {"array": x.tolist()}, "layers": ["out"], "format": "npy"})
    out = load_npy(response.content)
    expected = ort_outputs(m.nhwc_cnn(), {"image": x.transpose(1, 2, 0)[np.newaxis]}, ["out"])
    np.testing.assert_allclose(out, expected[0][0].transpose(2, 0, 1), rtol=1e-5, atol=1e-6)


def test_dynamic_model_with_input_size_and_json_features(app: TestClient) -> None:
    body = upload(app, m.dynamic_cnn(), input_size="[16, 20]")
    assert body["input_size"] == [16, 20]
    assert body["inputs"][0]["shape"] == [1, 3, 16, 20]
    image = np.full((8, 10, 3), 200, np.uint8)
    response = app.post(f"/v1/models/{body['id']}/features",
                        files={"image": ("x.png", png_bytes(image))},
                        data={"layers": "conv,2", "preprocess": '{"resize": "stretch"}'})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["preprocess"]["resize"] == "stretch"
    assert answer["preprocess"]["input_shape"] == [3, 8, 10]
    assert [(layer["name"], layer["shape"]) for layer in answer["layers"]] == [
        ("conv", [2, 16, 20]), ("gap", [2, 1, 1])]
    assert set(answer["layers"][0]["channels"][0]) == {"index", "min", "max", "mean",
                                                       "png_base64"}


def test_explain_matches_the_feature_map(app: TestClient) -> None:
    ident = upload(app, m.bn_cnn())["id"]
    x = np.random.default_rng(8).normal(size=(2, 10, 9)).astype(np.float32)
    conv = load_npy(app.post(f"/v1/models/{ident}/features", json={
        "input": {"array": x.tolist()}, "layers": ["conv"], "format": "npy"}).content)
    response = app.post(f"/v1/models/{ident}/explain", json={
        "input": {"array": x.tolist()}, "layer": "conv", "at": {"channel": 3, "y": 0, "x": 5}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["value"] == pytest.approx(float(conv[3, 0, 5]), rel=1e-6)
    assert body["total"] == pytest.approx(body["value"], rel=1e-5, abs=1e-6)
    assert (body["padding"], body["dilation"]) == ([1, 2, 0, 1], [1, 2])
    assert len(body["terms"]) == 2 and body["terms"][0]["in_padding"][0] == [True] * 3
    outside = app.post(f"/v1/models/{ident}/explain", json={
        "input": {"array": x.tolist()}, "layer": "conv", "at": {"channel": 5, "y": 0, "x": 0}})
    assert outside.status_code == 422
    assert outside.json()["errors"][0]["field"] == "at"
    not_conv = app.post(f"/v1/models/{ident}/explain", json={
        "input": {"array": x.tolist()}, "layer": "bn", "at": {"y": 0, "x": 0}})
    assert not_conv.status_code == 422
    assert "is a BatchNormalization, not a Conv" in not_conv.json()["detail"]


def test_feature_request_errors_are_422_with_what_is_allowed(app: TestClient) -> None:
    ident = upload(app, m.bn_cnn())["id"]
    x = np.zeros((2, 10, 9)).tolist()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"layers": ["nope"]}, f"model {ident} has no layer 'nope'; give a name or an index in "
                               "[0, 3): 'conv', 'bn', 'y'"),
        ({"layers": ["conv", "y"], "format": "npy"}, "format=npy returns one layer and 2 were"),
        ({"layers": ["conv"], "input": {"array": np.zeros((3, 10, 9)).tolist()}},
         "the input has 3 channel(s) and the model takes 2"),
        ({"layers": ["conv"], "input": {"array": np.zeros((2, 5, 5)).tolist()}},
         "the input is 5x5 and the model takes 10x9"),
    ]
    for extra, detail in cases:
        response = app.post(f"/v1/models/{ident}/features", json={"input": {"array": x},
                                                                  **extra})
        assert response.status_code == 422, extra
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"].startswith(detail), response.json()
    empty = app.post(f"/v1/models/{ident}/features", json={"input": {"array": x}, "layers": []})
    assert empty.status_code == 422


HOSTILE = [
    ("external-data", m.external_data_model, "initializer 'w' refers to external data"),
    ("custom-domain", m.custom_domain_model, "node 'evil' uses operator 'Steal' of the custom"),
    ("loop", m.loop_model, "node 'forever' is control flow (Loop)"),
    ("1e12-macs", m.huge_macs_model, "the model costs more than 2e+10 multiply-accumulates"),
    ("zero-inputs", m.zero_input_model, "the model has 0 inputs"),
    ("two-inputs", m.two_input_model, "the model has 2 inputs"),
    ("int-input", m.int_input_model, "input 'x' has element type INT64"),
]


@pytest.mark.parametrize(("build", "detail"), [pytest.param(*h[1:], id=h[0]) for h in HOSTILE])
def test_hostile_uploads_are_refused(app: TestClient, build: Any, detail: str) -> None:
    response = app.post("/v1/models", files={"model": ("bad.onnx", m.serialize(build()))})
    assert response.status_code == 422
    body = response.json()
    assert body["detail"].startswith(detail), body
    assert body["errors"][0]["field"] == "model"


def test_truncated_upload_and_wrong_bodies(app: TestClient) -> None:
    data = m.serialize(m.bn_cnn())
    truncated = app.post("/v1/models", files={"model": ("t.onnx", data[: len(data) // 2])})
    assert truncated.status_code == 422
    assert truncated.json()["detail"].startswith("the file is not an ONNX model")
    as_json = app.post("/v1/models", json={"model": "x"})
    assert as_json.status_code == 415
    no_file = app.post("/v1/models", data={"input_size": "3,3"})
    assert no_file.status_code in (415, 422)
    dynamic = app.post("/v1/models", files={"model": ("d.onnx", m.serialize(m.dynamic_cnn()))})
    assert dynamic.status_code == 422
    assert dynamic.json()["errors"][0]["field"] == "input_size"


def test_size_limits_are_413_naming_their_setting(make_client: ClientFactory,
                                                  tmp_path: Path) -> None:
    client = make_client(model_dir=tmp_path, max_model_bytes=500, warmup=False)
    data = m.serialize(m.bn_cnn())
    assert 500 < len(data) < 100_000
    response = client.post("/v1/models", files={"model": ("m.onnx", data)})
    assert response.status_code == 413
    assert "CONVSERVE_MAX_MODEL_BYTES" in response.json()["detail"]
    # Over the image upload limit is fine for a model under its own limit.
    big = make_client(model_dir=tmp_path / "b", max_upload_bytes=1000, warmup=False)
    assert big.post("/v1/models", files={"model": ("m.onnx", data)}).status_code == 201


def test_store_cap_evicts_the_least_recently_used_model(make_client: ClientFactory,
                                                        tmp_path: Path) -> None:
    probe = make_client(model_dir=tmp_path / "probe", warmup=False)
    upload(probe, m.bn_cnn(0))
    one = sum(p.stat().st_size for p in (tmp_path / "probe").glob("*.*"))
    client = make_client(model_dir=tmp_path / "store", model_store_bytes=int(2.5 * one),
                         warmup=False)
    ids = [upload(client, m.bn_cnn(seed))["id"] for seed in range(2)]
    assert client.get(f"/v1/models/{ids[0]}").status_code == 200
    ids.append(upload(client, m.bn_cnn(7))["id"])
    stored = [item["id"] for item in client.get("/v1/models").json()["models"]]
    assert ids[1] not in stored and ids[0] in stored and ids[2] in stored
    assert client.get(f"/v1/models/{ids[1]}").status_code == 404


def test_delete_is_204_then_404(app: TestClient) -> None:
    ident = upload(app, m.bn_cnn(3))["id"]
    assert app.delete(f"/v1/models/{ident}").status_code == 204
    gone = app.delete(f"/v1/models/{ident}")
    assert gone.status_code == 404
    assert gone.json()["title"] == "Not found"
    assert app.post(f"/v1/models/{ident}/features", json={
        "input": {"array": [[[0.0]]]}, "layers": [0]}).status_code == 404


def test_model_with_a_conv_weight_computed_at_run_time_has_no_kernel(app: TestClient) -> None:
    model = m.tiny_conv()
    model.graph.node.insert(0, helper.make_node("Abs", ["w0"], ["w"]))
    model.graph.initializer[0].name = "w0"
    ident = upload(app, model)["id"]
    response = app.get(f"/v1/models/{ident}/layers/conv/kernel".replace("conv", "y"))
    assert response.status_code == 422
    assert "is computed at run time" in response.json()["detail"]


def test_sample_network_has_the_keras_table_and_gabor_first_layer(app: TestClient) -> None:
    from convserve.conv.presets import resolve_preset

    response = app.post("/v1/models/sample")
    assert response.status_code in (200, 201), response.text
    body = response.json()
    assert body["filename"] == "sample-keras-cnn.onnx"
    assert body["total_params"] == m.KERAS_TOTAL
    assert [r["params"] for r in body["layers"] if r["params"]] == list(m.KERAS_PARAMS)
    again = app.post("/v1/models/sample")
    assert (again.status_code, again.json()["id"]) == (200, body["id"])
    kernel = app.get(f"/v1/models/{body['id']}/layers/conv1/kernel").json()
    gabor = resolve_preset("gabor", 3, {"size": 3, "orientations": 16}, ("R", "G", "B"))
    np.testing.assert_allclose(np.asarray(kernel["weight"], np.float32), gabor.weight,
                               rtol=1e-6)


def test_model_limits_are_published(app: TestClient) -> None:
    limits = app.get("/v1/limits").json()
    assert (limits["max_model_bytes"], limits["model_store_bytes"]) == (100_000_000,
                                                                        1_000_000_000)
    assert limits["env"]["max_model_bytes"] == "CONVSERVE_MAX_MODEL_BYTES"
    assert limits["env"]["model_store_bytes"] == "CONVSERVE_MODEL_STORE_BYTES"


def test_model_requests_reserve_working_memory_and_give_it_back(
        make_client: ClientFactory, tmp_path: Path) -> None:
    client = make_client(model_dir=tmp_path, memory_budget_bytes=64_000_000, warmup=False)
    meta = upload(client, m.bn_cnn())
    ident, (_, c, h, w) = meta["id"], meta["inputs"][0]["shape"]
    x = np.random.default_rng(3).random((c, h, w)).tolist()
    response = client.post(f"/v1/models/{ident}/features",
                           json={"input": {"array": x}, "layers": [0], "format": "npy"})
    assert response.status_code == 200, response.text
    unknown = client.post("/v1/models/" + "0" * len(ident) + "/features",
                          json={"input": {"array": x}, "layers": [0]})
    assert unknown.status_code == 404
    metrics = client.get("/metrics").text
    assert 'convserve_memory_reserved_bytes{pool="work"} 0.0' in metrics
    assert 'convserve_memory_reserved_bytes{pool="intake"} 0.0' in metrics
