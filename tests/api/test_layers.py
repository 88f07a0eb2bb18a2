"""POST /v1/layers over HTTP: shapes and cost, engines, pooling, formats, ONNX export, errors."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
from fastapi.testclient import TestClient

from convserve.openapi_export import openapi_document
from tests.api.conftest import ClientFactory, decode_png, load_npy, npy_bytes

VGG_LIKE: list[dict[str, Any]] = [
    {"type": "conv2d", "filters": 16, "kernel_size": 3, "padding": 1, "activation": "relu"},
    {"type": "conv2d", "filters": 16, "kernel_size": 3, "padding": 1, "activation": "relu"},
    {"type": "maxpool2d", "kernel_size": 2},
    {"type": "conv2d", "filters": 32, "kernel_size": 3, "padding": 1, "activation": "relu"},
    {"type": "conv2d", "filters": 32, "kernel_size": 3, "padding": 1, "activation": "relu"},
    {"type": "maxpool2d", "kernel_size": 2},
    {"type": "conv2d", "filters": 10, "kernel_size": 1},
]

MIXED: list[dict[str, Any]] = [
    {"type": "conv2d", "preset": "sobel", "activation": "abs"},
    {"type": "conv2d", "filters": 6, "kernel_size": [3, 2], "stride": [2, 1], "dilation": [1, 2],
     "padding": [1, 0, 2, 1], "padding_mode": "circular", "init": "glorot_uniform", "seed": 3,
     "activation": {"type": "leaky_relu", "slope": 0.1}},
    {"type": "avgpool2d", "kernel_size": 3, "stride": 1, "padding": 1, "count_include_pad": False},
    {"type": "tanh"},
    {"type": "conv2d", "filters": 6, "kernel_size": 3, "groups": 3, "padding": "same",
     "padding_mode": "reflect", "init": "pytorch_default"},
    {"type": "maxpool2d", "kernel_size": 2, "padding": 1},
    {"type": "leaky_relu", "slope": 0.3},
    {"type": "sigmoid"},
]


def image(shape: tuple[int, int, int] = (3, 24, 20), seed: int = 0) -> list[Any]:
    nested: list[Any] = np.random.default_rng(seed).random(shape).astype(np.float32).tolist()
    return nested


def convolution_count(client: TestClient) -> float:
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("convserve_convolution_seconds_count"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_vgg_like_dry_run_reports_shapes_and_parameters_without_computing(
    client: TestClient,
) -> None:
    before = convolution_count(client)
    response = client.post("/v1/layers", json={
        "input": {"array": image((3, 32, 32))}, "layers": VGG_LIKE, "dry_run": True,
    })
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dry_run"] is True
    shapes = [layer["output_shape"] for layer in body["layers"]]
    assert shapes == [[16, 32, 32], [16, 32, 32], [16, 16, 16], [32, 16, 16], [32, 16, 16],
                      [32, 8, 8], [10, 8, 8]]

    def params(c_in: int, c_out: int, k: int) -> int:
        return c_out * c_in * k * k + c_out

    expected = [params(3, 16, 3), params(16, 16, 3), 0, params(16, 32, 3), params(32, 32, 3),
                0, params(32, 10, 1)]
    assert [layer["params"] for layer in body["layers"]] == expected
    assert body["total_params"] == sum(expected) == 16_986
    macs = [(p - s[0]) * s[1] * s[2] if p else 0 for p, s in zip(expected, shapes, strict=True)]
    assert [layer["macs"] for layer in body["layers"]] == macs
    assert body["total_macs"] == body["cost"]["macs"] == sum(macs)
    assert [layer["type"] for layer in body["layers"]] == [
        "conv2d", "conv2d", "maxpool2d", "conv2d", "conv2d", "maxpool2d", "conv2d"]
    first = body["layers"][0]
    assert first["options"]["padding"] == [1, 1, 1, 1]
    assert first["options"]["activation"] == {"type": "relu"}
    assert first["kernel"] == {"source": "init", "init": "he_normal", "seed": 0,
                               "weight_shape": [16, 3, 3, 3], "bias": True}
    assert first["cost"]["output_size"]["h_out"] == (
        "floor((32 + 1 + 1 - 1*(3-1) - 1) / 1) + 1 = 32")
    assert body["layers"][2]["cost"]["output_size"]["w_out"] == "floor((32 + 2*0 - 2) / 2) + 1 = 16"
    assert body["layers"][2]["options"] == {"kernel_size": [2, 2], "stride": [2, 2],
                                            "padding": [0, 0]}
    assert body["cost"]["weight_bytes"] == 4 * sum(expected)
    assert body["cost"]["output_bytes"] == 4 * 10 * 8 * 8
    assert "channels" not in first
    assert "compute" not in body["timing_ms"]
    assert convolution_count(client) == before


@pytest.mark.parametrize("fmt", ["npy", "json"])
def test_both_engines_agree_on_a_mixed_stack(client: TestClient, fmt: str) -> None:
    x = image()
    results = {}
    for engine in ("numpy", "onnxruntime"):
        response = client.post("/v1/layers", json={
            "input": {"array": x}, "layers": MIXED, "engine": engine, "format": fmt,
        })
        assert response.status_code == 200, response.text
        assert response.headers["x-convserve-engine"] == f"{engine}/cpu"
        results[engine] = response
    if fmt == "npy":
        a, b = (load_npy(r.content) for r in results.values())
        assert a.shape == b.shape == (6, 7, 11)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        return
    a_body, b_body = (r.json() for r in results.values())
    a_last, b_last = a_body["layers"][-1].pop("channels"), b_body["layers"][-1].pop("channels")
    for key in ("layers", "total_params", "total_macs", "output_shape", "cost"):
        assert a_body[key] == b_body[key]
    for a_channel, b_channel in zip(a_last, b_last, strict=True):
        for stat in ("min", "max", "mean"):
            assert a_channel[stat] == pytest.approx(b_channel[stat], rel=1e-4)


def test_return_picks_whose_maps_come_back(client: TestClient) -> None:
    layers = [{"type": "conv2d", "preset": "box_blur"}, {"type": "maxpool2d", "kernel_size": 2}]
    maps = {}
    for returned in ("all", "last", "none"):
        response = client.post("/v1/layers", json={
            "input": {"array": image((3, 8, 8))}, "layers": layers, "return": returned,
        })
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["return"] == returned
        maps[returned] = [layer.get("channels") for layer in body["layers"]]
        assert "compute" in body["timing_ms"]
    assert [m is not None for m in maps["all"]] == [True, True]
    assert [m is not None for m in maps["last"]] == [False, True]
    assert maps["none"] == [None, None]
    assert maps["all"][1] == maps["last"][1]
    channel = maps["all"][0][2]
    assert set(channel) == {"index", "min", "max", "mean", "png_base64"}
    assert decode_png(base64.b64decode(channel["png_base64"])).shape == (8, 8)


def test_pooling_through_http_matches_pytorch_defaults(client: TestClient) -> None:
    x = np.arange(2 * 7 * 7, dtype=np.float32).reshape(2, 7, 7)
    layers = [
        {"type": "maxpool2d", "kernel_size": 2},                       # stride 2, floor: 3x3
        {"type": "avgpool2d", "kernel_size": 3, "stride": 1, "padding": 1},  # zeros counted
    ]
    for engine in ("numpy", "onnxruntime"):
        response = client.post("/v1/layers", json={
            "input": {"array": x.tolist()}, "layers": layers, "engine": engine, "format": "npy",
        })
        assert response.status_code == 200, response.text
        y = load_npy(response.content)
        pooled = x[:, :6, :6].reshape(2, 3, 2, 3, 2).max(axis=(2, 4))
        padded = np.pad(pooled, ((0, 0), (1, 1), (1, 1)))
        expected = np.stack([[[padded[c, r:r + 3, k:k + 3].sum() / 9 for k in range(3)]
                              for r in range(3)] for c in range(2)])
        np.testing.assert_allclose(y, expected, rtol=1e-6)
        assert response.headers["x-convserve-shape"] == "2,3,3"


def test_onnx_export_loads_in_onnx_runtime_and_gives_the_same_output(
    client: TestClient,
) -> None:
    x = image()
    request = {"input": {"array": x}, "layers": MIXED}
    exported = client.post("/v1/layers", json={**request, "format": "onnx"})
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"] == "application/octet-stream"
    assert exported.headers["content-disposition"] == (
        'attachment; filename="convserve_layers.onnx"')
    assert "compute" not in exported.headers["server-timing"]
    model = onnx.load_from_string(exported.content)
    onnx.checker.check_model(model, full_check=True)
    (model_input,) = model.graph.input
    dims = [d.dim_param or d.dim_value for d in model_input.type.tensor_type.shape.dim]
    assert (model_input.name, dims) == ("input", ["N", 3, 24, 20])
    layers = json.loads({p.key: p.value for p in model.metadata_props}["convserve.layers"])
    assert [layer["type"] for layer in layers] == [entry["type"] for entry in MIXED]
    session = onnxruntime.InferenceSession(exported.content, providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"input": np.array(x, np.float32)[np.newaxis]})
    for engine in ("numpy", "onnxruntime"):
        served = client.post("/v1/layers", json={**request, "format": "npy", "engine": engine})
        assert served.status_code == 200, served.text
        np.testing.assert_allclose(y[0], load_npy(served.content), rtol=1e-4, atol=1e-5)


def test_zip_holds_every_layers_maps_and_a_manifest(client: TestClient) -> None:
    response = client.post("/v1/layers", json={
        "input": {"array": image((1, 6, 6))},
        "layers": [{"type": "conv2d", "filters": 2, "kernel_size": 3}, {"type": "relu"}],
        "format": "zip",
    })
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.namelist() == [
        "layer_00_conv2d/channel_000.png", "layer_00_conv2d/channel_001.png",
        "layer_01_relu/channel_000.png", "layer_01_relu/channel_001.png", "manifest.json",
    ]
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["layers"][1]["channels"][1]["file"] == "layer_01_relu/channel_001.png"
    assert decode_png(archive.read("layer_01_relu/channel_001.png")).shape == (4, 4)


def test_multipart_takes_layers_as_json_text_and_presets_see_the_image_channels(
    client: TestClient,
) -> None:
    rgba = np.random.default_rng(2).random((4, 9, 9)).astype(np.float32)
    response = client.post(
        "/v1/layers",
        files={"image": ("x.npy", npy_bytes(rgba))},
        data={"layers": json.dumps([{"type": "conv2d", "preset": "sobel"}, {"type": "abs"}]),
              "return": "none", "engine": "numpy"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["output_shape"] == [2, 9, 9]
    assert body["layers"][0]["kernel"] == {
        "source": "preset", "name": "sobel", "rule": "luminance", "params": {},
        "weight_shape": [2, 4, 3, 3], "bias": False,
    }
    assert body["layers"][0]["options"]["padding_mode"] == "reflect"


def test_seeded_weights_are_reproducible_and_differ_by_seed(client: TestClient) -> None:
    outputs = []
    for seed in (7, 7, 8):
        response = client.post("/v1/layers", json={
            "input": {"array": image((2, 5, 5))}, "format": "npy",
            "layers": [{"type": "conv2d", "filters": 3, "kernel_size": 3, "seed": seed}],
        })
        assert response.status_code == 200, response.text
        outputs.append(load_npy(response.content))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert not np.array_equal(outputs[0], outputs[2])


def test_openapi_documents_layers_and_its_examples_work(client: TestClient) -> None:
    post = json.loads(openapi_document())["paths"]["/v1/layers"]["post"]
    content = post["requestBody"]["content"]
    assert content["multipart/form-data"]["schema"]["required"] == ["image", "layers"]
    assert {"layers", "return", "format", "dry_run"} <= set(
        content["multipart/form-data"]["schema"]["properties"])
    assert "application/problem+json" in post["responses"]["422"]["content"]
    assert "count_include_pad" in post["description"]
    examples = content["application/json"]["examples"]
    assert set(examples) == {"vgg_like", "edges"}
    shapes = {"vgg_like": [16, 8, 8], "edges": [1, 2, 2]}
    for name, example in examples.items():
        response = client.post("/v1/layers", json=example["value"])
        assert response.status_code == 200, (name, response.text)
        assert response.json()["output_shape"] == shapes[name]


# -- errors -----------------------------------------------------------------------------------


def test_too_many_layers_is_a_limit_naming_the_setting(make_client: ClientFactory) -> None:
    client = make_client(max_layers=2, warmup=False)
    response = client.post("/v1/layers", json={
        "input": {"array": image((1, 4, 4))}, "layers": [{"type": "relu"}] * 3,
    })
    assert response.status_code == 422
    detail = "3 layers is more than the limit of 2 (CONVSERVE_MAX_LAYERS)"
    assert response.json() == {
        "type": "/problems/limit-exceeded", "title": "Limit exceeded", "status": 422,
        "detail": detail, "errors": [{"field": "layers", "message": detail}],
    }


def test_total_macs_of_the_stack_are_limited(make_client: ClientFactory) -> None:
    client = make_client(max_macs=10_000, warmup=False)
    layer = {"type": "conv2d", "filters": 4, "kernel_size": 3, "padding": 1}
    response = client.post("/v1/layers", json={
        "input": {"array": image((1, 10, 10))}, "layers": [layer, layer], "dry_run": True,
    })
    assert response.status_code == 422
    detail = ("this request would cost 1.8e+04 multiply-accumulates, more than the limit of "
              "1e+04 (CONVSERVE_MAX_MACS); use a smaller image, kernel, fewer channels or a "
              "larger stride")
    assert response.json() == {
        "type": "/problems/limit-exceeded", "title": "Limit exceeded", "status": 422,
        "detail": detail, "errors": [{"field": "layers.1", "message": detail}],
    }


def test_intermediate_maps_are_limited(make_client: ClientFactory) -> None:
    client = make_client(max_output_bytes=64_000, warmup=False)
    response = client.post("/v1/layers", json={
        "input": {"array": image((1, 20, 20))}, "dry_run": True,
        "layers": [{"type": "conv2d", "filters": 64, "kernel_size": 1}],
    })
    assert response.status_code == 422
    detail = ("this layer's output [64, 20, 20] would hold 25600 float32 values (102,400 "
              "bytes), more than the limit of 64,000 bytes (CONVSERVE_MAX_OUTPUT_BYTES); use a "
              "smaller image, fewer channels or a larger stride")
    assert response.json() == {
        "type": "/problems/limit-exceeded", "title": "Limit exceeded", "status": 422,
        "detail": detail, "errors": [{"field": "layers.0", "message": detail}],
    }


def test_pooling_windows_obey_the_kernel_size_limit(make_client: ClientFactory) -> None:
    client = make_client(max_kernel_size=3, warmup=False)
    response = client.post("/v1/layers", json={
        "input": {"array": image((1, 8, 8))}, "dry_run": True,
        "layers": [{"type": "relu"}, {"type": "maxpool2d", "kernel_size": [2, 4]}],
    })
    assert response.status_code == 422
    detail = "pooling window 2x4 is larger than the limit of 3 per side (CONVSERVE_MAX_KERNEL_SIZE)"
    assert response.json() == {
        "type": "/problems/limit-exceeded", "title": "Limit exceeded", "status": 422,
        "detail": detail, "errors": [{"field": "layers.1.kernel_size", "message": detail}],
    }


def test_pooling_work_counts_against_the_macs_limit(make_client: ClientFactory) -> None:
    client = make_client(max_macs=1_000, warmup=False)
    response = client.post("/v1/layers", json={
        "input": {"array": image((1, 20, 20))}, "dry_run": True,
        "layers": [{"type": "avgpool2d", "kernel_size": 3, "stride": 1}],
    })
    assert response.status_code == 422
    detail = ("this request would cost 2.92e+03 multiply-accumulates and pooling-window reads, "
              "more than the limit of 1e+03 (CONVSERVE_MAX_MACS); use a smaller image, window "
              "or a larger stride")
    assert response.json() == {
        "type": "/problems/limit-exceeded", "title": "Limit exceeded", "status": 422,
        "detail": detail, "errors": [{"field": "layers.0", "message": detail}],
    }


def test_a_layer_that_does_not_fit_its_input_names_the_layer(client: TestClient) -> None:
    response = client.post("/v1/layers", json={
        "input": {"array": image((1, 8, 8))},
        "layers": [{"type": "maxpool2d", "kernel_size": 2}, {"type": "avgpool2d",
                                                             "kernel_size": 4, "padding": 3}],
    })
    assert response.status_code == 422
    detail = ("padding=[3, 3] must be at most half of kernel_size=[4, 4] on each axis "
              "(PyTorch's rule: a window must hold at least one input value)")
    assert response.json() == {
        "type": "/problems/invalid-argument", "title": "Invalid argument", "status": 422,
        "detail": detail, "errors": [{"field": "layers.1.padding", "message": detail}],
    }


def test_conv_layer_needs_exactly_one_weight_source(client: TestClient) -> None:
    response = client.post("/v1/layers", json={
        "input": {"array": image((1, 4, 4))},
        "layers": [{"type": "conv2d", "preset": "sobel", "filters": 2, "kernel_size": 3}],
    })
    assert response.status_code == 422
    message = ("Value error, give exactly one of kernel (an explicit weight tensor), preset (a "
               "name from GET /v1/presets), filters (+ kernel_size, seeded weights), kernel_key "
               "(a tensor of the request's kernel_file part) and kernel_file: true (its only "
               "tensor); got preset, filters")
    assert response.json() == {
        "type": "/problems/validation-error", "title": "Request validation failed",
        "status": 422, "detail": f"layers.0.conv2d: {message}",
        "errors": [{"field": "layers.0.conv2d", "message": message}],
    }


def test_unknown_layer_type_is_a_validation_problem(client: TestClient) -> None:
    response = client.post("/v1/layers", json={
        "input": {"array": image((1, 4, 4))}, "layers": [{"type": "dropout"}],
    })
    assert response.status_code == 422
    body = response.json()
    assert body["type"] == "/problems/validation-error"
    assert body["errors"][0]["field"] == "layers.0"
    assert "'conv2d', 'relu', 'leaky_relu', 'sigmoid', 'tanh', 'abs', 'maxpool2d'" in (
        body["errors"][0]["message"])


def test_empty_stack_is_refused(client: TestClient) -> None:
    response = client.post("/v1/layers", json={"input": {"array": image((1, 4, 4))},
                                               "layers": []})
    assert response.status_code == 422
    assert response.json() == {
        "type": "/problems/validation-error", "title": "Request validation failed",
        "status": 422, "detail": "layers: List should have at least 1 item after validation, "
                                 "not 0",
        "errors": [{"field": "layers", "message": "List should have at least 1 item after "
                                                  "validation, not 0"}],
    }


def test_layers_that_are_not_json_in_multipart_are_named(client: TestClient) -> None:
    response = client.post("/v1/layers", files={"image": ("x.npy", npy_bytes(np.ones((1, 3, 3),
                                                                                     np.float32)))},
                           data={"layers": "relu, maxpool"})
    assert response.status_code == 422
    body = response.json()
    assert (body["type"], body["title"], body["status"]) == (
        "/problems/invalid-argument", "Invalid argument", 422)
    assert body["detail"].startswith("layers is not valid JSON: ")
    assert body["errors"] == [{"field": "layers", "message": body["detail"]}]


def test_cuda_on_the_numpy_engine_is_refused(client: TestClient) -> None:
    response = client.post("/v1/layers", json={
        "input": {"array": image((1, 4, 4))}, "layers": [{"type": "relu"}],
        "engine": "numpy", "device": "cuda",
    })
    assert response.status_code == 422
    body = response.json()
    assert body["type"] == "/problems/engine-unavailable"
    assert body["detail"].startswith("device='cuda': the NumPy engine runs on the CPU only")
    assert body["errors"] == [{"field": "device", "message": body["detail"]}]


@pytest.mark.parametrize(
    "layer",
    [
        {"type": "maxpool2d", "kernel_size": 2, "stride": 10**30},
        {"type": "avgpool2d", "kernel_size": [2, 2], "stride": [1, 10**30]},
        {"type": "conv2d", "filters": 2, "kernel_size": 1, "dilation": 10**30},
    ],
    ids=["maxpool-stride", "avgpool-stride-w", "conv-dilation"],
)
def test_sizes_beyond_int32_are_a_422_naming_the_bound(client: TestClient,
                                                        layer: dict[str, Any]) -> None:
    response = client.post("/v1/layers", json={"input": {"array": [[[1.0, 2.0], [3.0, 4.0]]]},
                                               "layers": [layer]})
    assert response.status_code == 422, response.text
    assert "<= 2147483647" in response.json()["detail"]


def test_a_kernel_bias_of_the_wrong_length_is_a_422_not_an_engine_error(
    client: TestClient,
) -> None:
    response = client.post("/v1/layers", json={
        "input": {"array": image((1, 3, 3))},
        "layers": [{"type": "conv2d", "kernel": {"weight": [[[[1]]], [[[2]]]],
                                                 "bias": [1, 2, 3]}}],
    })
    assert response.status_code == 422
    detail = "bias.shape=(3,) must be (C_out,)=(2,) for weight.shape=(2, 1, 1, 1)"
    assert response.json() == {
        "type": "/problems/shape-mismatch", "title": "Shapes do not fit together",
        "status": 422, "detail": detail,
        "errors": [{"field": "layers.0.bias", "message": detail}],
    }
