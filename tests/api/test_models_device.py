"""Where a model runs: ``device`` on /v1/models/{id}/features and /explain, CPU or CUDA.

The device rules are those of /v1/convolve (DESIGN.md: never a quiet fall-back from CUDA to the
CPU): ``cuda`` where ONNX Runtime offers no active CUDAExecutionProvider is the same 422 problem
that /v1/convolve answers, and the answer names the device and provider that ran. The ``cuda``
tests compare CUDA with the CPU on a machine that has a GPU (they skip elsewhere).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from convserve.errors import EngineUnavailableError
from convserve.limits import Limits
from convserve.models import ModelService, Preprocess
from tests import onnx_models as m
from tests.api.conftest import ClientFactory, app_settings, load_npy, npy_bytes, wait_ready
from tests.conftest import cuda_unavailable_reason

PROBLEM = "application/problem+json"
KERAS_ROWS = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3", "pool3"]
NO_CUDA = cuda_unavailable_reason() is not None


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from convserve.main import create_app

    settings = app_settings(model_dir=tmp_path_factory.mktemp("store"), warmup=False)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        yield client


@pytest.fixture(scope="module")
def bn_id(app: TestClient) -> str:
    response = app.post("/v1/models", files={"model": ("bn.onnx", m.serialize(m.bn_cnn()))})
    assert response.status_code == 201, response.text
    ident: str = response.json()["id"]
    return ident


def bn_input() -> np.ndarray:
    return np.random.default_rng(21).random((2, 10, 9), dtype=np.float32)


def convolve_cuda_problem(client: TestClient) -> dict[str, Any]:
    """What /v1/convolve answers for device=cuda on this machine (onnxruntime engine)."""
    response = client.post("/v1/convolve", json={
        "input": {"array": bn_input().tolist()}, "kernel": {"weight": [[[[1.0]], [[1.0]]]]},
        "engine": "onnxruntime", "device": "cuda"})
    assert response.status_code == 422, response.text
    body: dict[str, Any] = response.json()
    return body


# --- the CPU answer names where it ran --------------------------------------------------------

def test_features_report_the_device_and_provider_that_ran(app: TestClient, bn_id: str) -> None:
    response = app.post(f"/v1/models/{bn_id}/features",
                        json={"input": {"array": bn_input().tolist()}, "layers": ["y"],
                              "device": "cpu"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["engine"], body["device"], body["provider"]) == (
        "onnxruntime", "cpu", "CPUExecutionProvider")
    assert response.headers["x-convserve-engine"] == "onnxruntime/cpu"
    # Without a device: CONVSERVE_DEVICE (cpu here); the zip's manifest says so too.
    packed = app.post(f"/v1/models/{bn_id}/features", files={"image": ("x.npy",
                                                                      npy_bytes(bn_input()))},
                      data={"layers": "y", "format": "zip"})
    assert packed.status_code == 200, packed.text
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(packed.content)).read("manifest.json"))
    assert (manifest["device"], manifest["provider"]) == ("cpu", "CPUExecutionProvider")


def test_explain_reports_the_device_and_provider_that_ran(app: TestClient, bn_id: str) -> None:
    response = app.post(f"/v1/models/{bn_id}/explain", json={
        "input": {"array": bn_input().tolist()}, "layer": "conv",
        "at": {"channel": 1, "y": 2, "x": 3}, "device": "cpu"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["device"], body["provider"]) == ("cpu", "CPUExecutionProvider")
    assert response.headers["x-convserve-engine"] == "onnxruntime/cpu"


def test_unknown_device_is_422_listing_the_devices(app: TestClient, bn_id: str) -> None:
    response = app.post(f"/v1/models/{bn_id}/features", json={
        "input": {"array": bn_input().tolist()}, "layers": ["y"], "device": "tpu"})
    assert response.status_code == 422
    body = response.json()
    assert body["errors"][0]["field"] == "device"
    assert "'cpu'" in body["detail"] and "'cuda'" in body["detail"]


# --- CUDA where there is none: the same problem as /v1/convolve --------------------------------

@pytest.mark.skipif(not NO_CUDA, reason="this machine runs CUDA: the cuda tests cover it")
def test_cuda_without_cuda_is_the_problem_convolve_gives(app: TestClient, bn_id: str) -> None:
    expected = convolve_cuda_problem(app)
    assert expected["type"] == "/problems/engine-unavailable"
    assert "CUDAExecutionProvider" in expected["detail"]
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("json features", f"/v1/models/{bn_id}/features",
         {"json": {"input": {"array": bn_input().tolist()}, "layers": ["y"], "device": "cuda"}}),
        ("multipart features", f"/v1/models/{bn_id}/features",
         {"files": {"image": ("x.npy", npy_bytes(bn_input()))},
          "data": {"layers": "y", "format": "npy", "device": "cuda"}}),
        ("explain", f"/v1/models/{bn_id}/explain",
         {"json": {"input": {"array": bn_input().tolist()}, "layer": "conv",
                   "at": {"channel": 0, "y": 0, "x": 0}, "device": "cuda"}}),
    ]
    for what, path, body in requests:
        response = app.post(path, **body)
        assert response.status_code == 422, (what, response.text)
        assert response.headers["content-type"] == PROBLEM
        assert response.json() == expected, what
    # Nothing was cached for CUDA, and the CPU still answers.
    again = app.post(f"/v1/models/{bn_id}/features",
                     json={"input": {"array": bn_input().tolist()}, "layers": ["y"]})
    assert again.status_code == 200 and again.json()["device"] == "cpu"


@pytest.mark.skipif(not NO_CUDA, reason="this machine runs CUDA: the cuda tests cover it")
def test_default_device_cuda_applies_to_models_and_cpu_still_answers_when_asked(
        make_client: ClientFactory, tmp_path: Path) -> None:
    client = make_client(model_dir=tmp_path, device="cuda", engine="onnxruntime",
                         warmup=False)
    ident = client.post("/v1/models", files={"model": ("bn.onnx",
                                                       m.serialize(m.bn_cnn()))}).json()["id"]
    request = {"input": {"array": bn_input().tolist()}, "layers": ["y"]}
    refused = client.post(f"/v1/models/{ident}/features", json=request)
    assert refused.status_code == 422
    assert refused.json() == convolve_cuda_problem(client)
    on_cpu = client.post(f"/v1/models/{ident}/features", json={**request, "device": "cpu"})
    assert on_cpu.status_code == 200 and on_cpu.json()["device"] == "cpu"


@pytest.mark.skipif(not NO_CUDA, reason="this machine runs CUDA: the cuda tests cover it")
def test_service_refuses_cuda_before_any_session_and_keeps_cpu_sessions(tmp_path: Path) -> None:
    service = ModelService(tmp_path, Limits(), sessions=4, intra_op_threads=1)
    ident = service.upload(m.serialize(m.bn_cnn()))[0]["id"]
    with pytest.raises(EngineUnavailableError) as refused:
        service.features(ident, bn_input(), ["y"], Preprocess(), device="cuda")
    assert refused.value.field == "device"
    assert "CUDAExecutionProvider" in refused.value.detail
    result = service.features(ident, bn_input(), ["y"], Preprocess(), device="cpu")
    assert (result.device, result.provider) == ("cpu", "CPUExecutionProvider")
    assert [key[2] for key in service._sessions] == ["cpu"]


# --- CUDA where there is one ---------------------------------------------------------------

@pytest.fixture(scope="module")
def keras_id(app: TestClient) -> str:
    response = app.post("/v1/models", files={"model": ("cnn.onnx", m.keras_cnn_bytes())})
    assert response.status_code in (200, 201), response.text
    ident: str = response.json()["id"]
    return ident


def zipped_features(app: TestClient, ident: str, x: np.ndarray,
                    device: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    response = app.post(f"/v1/models/{ident}/features",
                        files={"image": ("x.npy", npy_bytes(x))},
                        data={"layers": ",".join(KERAS_ROWS), "format": "zip",
                              "device": device})
    assert response.status_code == 200, response.text
    assert response.headers["x-convserve-engine"] == f"onnxruntime/{device}"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    manifest = json.loads(archive.read("manifest.json"))
    maps = {layer["name"]: load_npy(archive.read(f"{layer['folder']}/features.npy"))
            for layer in manifest["layers"]}
    return manifest, maps


@pytest.mark.cuda
def test_features_on_cuda_equal_the_cpu_within_1e4(app: TestClient, keras_id: str) -> None:
    x = np.random.default_rng(31).random((3, 150, 150), dtype=np.float32)
    on_cpu, cpu_maps = zipped_features(app, keras_id, x, "cpu")
    on_cuda, cuda_maps = zipped_features(app, keras_id, x, "cuda")
    assert (on_cpu["device"], on_cpu["provider"]) == ("cpu", "CPUExecutionProvider")
    assert (on_cuda["device"], on_cuda["provider"]) == ("cuda", "CUDAExecutionProvider")
    for name in KERAS_ROWS:
        want, got = cpu_maps[name], cuda_maps[name]
        assert got.shape == want.shape, name
        np.testing.assert_allclose(got, want, rtol=1e-4,
                                   atol=1e-4 * float(np.abs(want).max()), err_msg=name)


@pytest.mark.cuda
def test_explain_on_cuda_equals_the_cpu_within_1e4(app: TestClient, keras_id: str) -> None:
    x = np.random.default_rng(32).random((3, 150, 150), dtype=np.float32)
    answers = {}
    for device in ("cpu", "cuda"):
        response = app.post(f"/v1/models/{keras_id}/explain", json={
            "input": {"array": x.tolist()}, "layer": "conv2",
            "at": {"channel": 5, "y": 30, "x": 40}, "device": device})
        assert response.status_code == 200, response.text
        answers[device] = response.json()
    assert answers["cuda"]["provider"] == "CUDAExecutionProvider"
    cpu, cuda = answers["cpu"], answers["cuda"]
    np.testing.assert_allclose(cuda["value"], cpu["value"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cuda["total"], cuda["value"], rtol=1e-4, atol=1e-5)
