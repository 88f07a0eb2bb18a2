"""``engine="auto"``, the default: the answer names the engine that ran, CUDA is ONNX Runtime's."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from convserve.conv.auto import AutoEngine, AutoTable, family, features
from convserve.conv.spec import conv_spec
from tests.api.conftest import ClientFactory, png_bytes

LAPLACE = [[[[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]]]


def _photo() -> np.ndarray:
    rng = np.random.default_rng(12)
    return rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)


def _expected_engine(x_shape: tuple[int, ...], weight: np.ndarray, **options: int) -> str:
    spec = conv_spec(x_shape, weight.shape, None, **options)  # type: ignore[arg-type]
    # A request's input is always finite, which the flow tells the planner.
    return AutoEngine().plan(spec, weight, finite_input=True).engine


@pytest.mark.parametrize("engine", [None, "auto"])
def test_convolve_reports_the_engine_auto_ran(client: TestClient, engine: str | None) -> None:
    x = _photo()
    weight = np.array(LAPLACE * 3, np.float32).reshape(3, 1, 3, 3)
    fields = {"kernel": f'{{"weight": {weight.tolist()}}}', "groups": "3", "padding": "1",
              "format": "json"} | ({"engine": engine} if engine else {})
    response = client.post("/v1/convolve", data=fields,
                           files={"image": ("photo.png", png_bytes(x), "image/png")})
    assert response.status_code == 200, response.text
    ran = _expected_engine((1, 3, 40, 48), weight, padding=1, groups=3)
    assert ran in ("numpy", "onnxruntime", "opencv")
    assert response.json()["engine"] == ran
    image = client.post("/v1/convolve", data=fields | {"format": "image"},
                        files={"image": ("photo.png", png_bytes(x), "image/png")})
    assert image.status_code == 200
    assert image.headers["X-Convserve-Engine"] == f"{ran}/cpu"


def test_convolve_with_auto_equals_each_engine(client: TestClient) -> None:
    x = np.random.default_rng(3).standard_normal((2, 9, 11)).round(3).tolist()
    body = {"input": {"array": x}, "kernel": {"weight": np.ones((3, 2, 3, 3)).tolist()},
            "stride": 2, "dilation": 2, "padding": 2, "format": "array"}
    answers = {name: client.post("/v1/convolve", json=body | {"engine": name}).json()
               for name in ("auto", "numpy", "onnxruntime")}
    assert answers["auto"]["engine"] in ("numpy", "onnxruntime")
    np.testing.assert_allclose(answers["auto"]["data"], answers["numpy"]["data"], rtol=1e-5)
    np.testing.assert_allclose(answers["auto"]["data"], answers["onnxruntime"]["data"],
                               rtol=1e-5)


def test_auto_on_cuda_is_the_same_422_as_onnxruntime_on_cuda(client: TestClient) -> None:
    body = {"input": {"array": [[[1.0, 2.0], [3.0, 4.0]]]},
            "kernel": {"weight": [[[[1.0]]]]}, "device": "cuda"}
    auto = client.post("/v1/convolve", json=body)
    ort = client.post("/v1/convolve", json=body | {"engine": "onnxruntime"})
    assert auto.status_code == ort.status_code == 422
    assert auto.json() == ort.json()
    assert "CUDAExecutionProvider" in auto.json()["detail"]


def test_layers_with_auto_run_on_onnxruntime(client: TestClient) -> None:
    x = np.random.default_rng(4).random((3, 16, 16)).round(3).tolist()
    response = client.post("/v1/layers", json={
        "input": {"array": x}, "format": "json",
        "layers": [{"type": "conv2d", "filters": 4, "kernel_size": 3, "padding": 1}],
    })
    assert response.status_code == 200, response.text
    assert response.json()["engine"] == "onnxruntime"


def test_auto_follows_the_table_of_the_app(make_client: ClientFactory) -> None:
    """The engine named in the answer is the table's pick, whichever engine that is."""
    client = make_client(engine="auto")
    x = _photo()
    weight = np.ones((3, 1, 5, 5), np.float32) / 25
    spec = conv_spec((1, 3, 40, 48), weight.shape, None, padding=2, groups=3)
    assert family(spec) == "depthwise-s1" and len(features(spec)) == 5
    ran = AutoEngine(table=AutoTable.load()).plan(spec, weight).engine
    buffer = io.BytesIO()
    Image.fromarray(x).save(buffer, format="PNG")
    response = client.post("/v1/convolve", json={
        "input": {"image_base64": base64.b64encode(buffer.getvalue()).decode()},
        "kernel": {"weight": weight.tolist()}, "groups": 3, "padding": 2,
    })
    assert response.status_code == 200, response.text
    assert response.json()["engine"] == ran


def test_a_blur_auto_runs_on_opencv_equals_the_numpy_engine(client: TestClient) -> None:
    """A depthwise blur without zero weights: whichever path the table picks (OpenCV's where it
    ranks first, as the kept table has it for this size, reported as such), the numbers are the
    NumPy engine's."""
    x = np.random.default_rng(9).random((3, 200, 240)).round(3).tolist()
    weight = np.random.default_rng(10).uniform(0.5, 1.0, (3, 1, 3, 3)).round(3)
    body = {"input": {"array": x}, "kernel": {"weight": weight.tolist()}, "groups": 3,
            "padding": 1, "padding_mode": "reflect", "format": "array"}
    spec = conv_spec((1, 3, 200, 240), weight.shape, None, padding=1, groups=3,
                     padding_mode="reflect")
    answers = {name: client.post("/v1/convolve", json=body | {"engine": name})
               for name in ("auto", "numpy")}
    assert answers["auto"].status_code == answers["numpy"].status_code == 200
    assert answers["auto"].json()["engine"] == AutoEngine().plan(
        spec, weight.astype(np.float32), finite_input=True).engine
    np.testing.assert_allclose(answers["auto"].json()["data"], answers["numpy"].json()["data"],
                               rtol=1e-5, atol=1e-6)


def test_a_laplacian_with_zero_weights_may_run_on_opencv_for_a_photo(client: TestClient) -> None:
    """thumbor's job (R2): a depthwise Laplacian, replicate border, on a decoded photo. Its zero
    taps, which OpenCV skips, are allowed because a decoded image is always finite: the kept
    table ranks OpenCV first for this size, and the numbers are the NumPy engine's."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (256, 256, 3), dtype=np.uint8)
                    ).save(buffer, format="PNG")
    weight = np.array(LAPLACE * 3, dtype=np.float32)
    body = {"input": {"image_base64": base64.b64encode(buffer.getvalue()).decode()},
            "kernel": {"weight": weight.tolist()}, "groups": 3, "padding": 1,
            "padding_mode": "replicate", "format": "array"}
    answers = {name: client.post("/v1/convolve", json=body | {"engine": name})
               for name in ("auto", "numpy")}
    assert answers["auto"].status_code == answers["numpy"].status_code == 200
    spec = conv_spec((1, 3, 256, 256), weight.shape, None, padding=1, groups=3,
                     padding_mode="replicate")
    planned = AutoEngine().plan(spec, weight, finite_input=True)
    assert answers["auto"].json()["engine"] == planned.engine == "opencv"
    assert AutoEngine().plan(spec, weight).engine != "opencv"  # a library call checks NaNs
    np.testing.assert_allclose(answers["auto"].json()["data"], answers["numpy"].json()["data"],
                               rtol=1e-5, atol=1e-5)
