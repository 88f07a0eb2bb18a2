"""POST /v1/explain over HTTP: the D2L numbers, equality with /v1/convolve, padding, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from convserve.openapi_export import openapi_document
from tests.api.conftest import npy_bytes
from tests.reference import pad_reference

D2L_X = [[[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[1, 2, 3], [4, 5, 6], [7, 8, 9]]]
D2L_K = [[[0, 1], [2, 3]], [[1, 2], [3, 4]]]
D2L_EXPRESSION = "(0×0 + 1×1 + 3×2 + 4×3) + (1×1 + 2×2 + 4×3 + 5×4) = 56"
ENGINES = ["numpy", "onnxruntime"]


@pytest.mark.parametrize("engine", ENGINES)
def test_d2l_element_through_json(client: TestClient, engine: str) -> None:
    response = client.post("/v1/explain", json={
        "input": {"array": D2L_X}, "kernel": {"weight": [D2L_K]},
        "at": {"channel": 0, "y": 0, "x": 0}, "engine": engine,
    })
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["value"] == 56.0
    assert body["total"] == 56.0
    assert body["bias"] is None
    assert body["expression"] == D2L_EXPRESSION
    assert [t["sum"] for t in body["terms"]] == [19.0, 37.0]
    assert body["terms"][0] == {
        "input_channel": 0,
        "window": [[0, 1], [3, 4]],
        "in_padding": [[False, False], [False, False]],
        "kernel": [[0, 1], [2, 3]],
        "products": [[0, 1], [6, 12]],
        "sum": 19.0,
    }
    assert body["terms"][1]["window"] == [[1, 2], [4, 5]]
    assert body["output_shape"] == [1, 2, 2]
    assert body["window_origin"] == {"y": 0, "x": 0}
    assert body["rows"] == [0, 1] and body["cols"] == [0, 1]
    assert body["padding"] == [0, 0, 0, 0]
    assert body["at"] == {"channel": 0, "y": 0, "x": 0}
    assert body["engine"] == engine
    assert body["cost"]["macs"] == 32 and body["cost"]["params"] == 8
    assert body["cost"]["output_size"]["h_out"] == "floor((3 + 0 + 0 - 1*(2-1) - 1) / 1) + 1 = 2"
    assert {"decode", "convolve", "explain", "total"} <= set(body["timing_ms"])
    assert response.headers["x-convserve-shape"] == "1,2,2"


def test_d2l_multi_output_through_multipart_with_at_as_json_text(client: TestClient) -> None:
    k = np.array(D2L_K)
    weight = np.stack([k, k + 1, k + 2]).tolist()
    response = client.post(
        "/v1/explain",
        files={"image": ("x.npy", npy_bytes(np.array(D2L_X, np.float32)))},
        data={"kernel": json.dumps({"weight": weight, "bias": [0, 0, -0.5]}),
              "at": '{"channel": 2, "y": 1, "x": 1}'},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["value"] == 224 - 0.5
    assert body["bias"] == -0.5
    assert body["expression"] == (
        "(4×2 + 5×3 + 7×4 + 8×5) + (5×3 + 6×4 + 8×5 + 9×6) - 0.5 = 223.5"
    )


def _random_layer(rng: np.random.Generator) -> tuple[np.ndarray, dict[str, object]]:
    """An input (C, H, W) and /v1/convolve options with random shapes, strides, dilations,
    groups, asymmetric padding and padding mode."""
    groups = int(rng.choice([1, 2, 3]))
    c_in = groups * int(rng.integers(1, 3))
    c_out = groups * int(rng.integers(1, 3))
    k_h, k_w = (int(v) for v in rng.integers(1, 4, 2))
    x = rng.standard_normal((c_in, int(rng.integers(5, 9)), int(rng.integers(5, 9))))
    weight = rng.standard_normal((c_out, c_in // groups, k_h, k_w))
    bias = rng.standard_normal(c_out).tolist() if rng.random() < 0.5 else None
    return x, {
        "kernel": {"weight": weight.tolist(), "bias": bias},
        "stride": [int(v) for v in rng.integers(1, 3, 2)],
        "dilation": [int(v) for v in rng.integers(1, 3, 2)],
        "padding": [int(v) for v in rng.integers(0, min(k_h, k_w, 3), 4)],
        "padding_mode": str(rng.choice(["zeros", "reflect", "replicate", "circular"])),
        "groups": groups,
    }


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("seed", range(6))
def test_value_equals_convolve_output_at_random_positions(
    client: TestClient, engine: str, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    x, options = _random_layer(rng)
    options["engine"] = engine
    source = {"array": x.tolist()}
    convolved = client.post("/v1/convolve", json={"input": source, **options, "format": "array"})
    assert convolved.status_code == 200, convolved.text
    y = np.array(convolved.json()["data"])
    for _ in range(3):
        at = {"channel": int(rng.integers(y.shape[0])), "y": int(rng.integers(y.shape[1])),
              "x": int(rng.integers(y.shape[2]))}
        response = client.post("/v1/explain", json={"input": source, **options, "at": at})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["value"] == y[at["channel"], at["y"], at["x"]]
        scale = sum(abs(p) for t in body["terms"] for row in t["products"] for p in row)
        assert body["total"] == pytest.approx(body["value"], rel=1e-5, abs=1e-5 * (scale + 1))
        total = sum(t["sum"] for t in body["terms"]) + (body["bias"] or 0.0)
        assert total == pytest.approx(body["total"], rel=1e-12)


def test_position_in_the_reflect_padding_shows_the_mirrored_values(client: TestClient) -> None:
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    response = client.post("/v1/explain", json={
        "input": {"array": x.tolist()}, "kernel": {"weight": np.ones((1, 1, 3, 3)).tolist()},
        "padding": 2, "padding_mode": "reflect", "at": {"channel": 0, "y": 0, "x": 5},
    })
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["window_origin"] == {"y": -2, "x": 3}
    assert body["rows"] == [-2, -1, 0] and body["cols"] == [3, 4, 5]
    (term,) = body["terms"]
    padded = pad_reference(x[None].astype(np.float64), (2, 2, 2, 2), "reflect")[0, 0]
    assert term["window"] == padded[0:3, 5:8].tolist() == [[11, 10, 9], [7, 6, 5], [3, 2, 1]]
    assert term["in_padding"] == [[True, True, True], [True, True, True], [False, True, True]]
    assert body["value"] == body["total"] == 54.0


def test_zero_padding_is_shown_as_zeros(client: TestClient) -> None:
    response = client.post("/v1/explain", json={
        "input": {"array": D2L_X}, "kernel": {"weight": [D2L_K]}, "padding": 1,
        "at": {"channel": 0, "y": 0, "x": 0},
    })
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["window_origin"] == {"y": -1, "x": -1}
    assert body["terms"][0]["window"] == [[0, 0], [0, 0]]
    assert body["terms"][1]["window"] == [[0, 0], [0, 1]]
    assert body["expression"] == "(0×0 + 0×1 + 0×2 + 0×3) + (0×1 + 0×2 + 0×3 + 1×4) = 4"
    assert body["value"] == 4.0


def test_depthwise_preset_reads_only_its_own_channel(client: TestClient) -> None:
    x = np.random.default_rng(0).random((3, 6, 6)).round(2)
    response = client.post("/v1/explain", json={
        "input": {"array": x.tolist()}, "preset": "box_blur", "at": {"channel": 1, "y": 0, "x": 0},
    })
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["groups"] == 3
    assert [t["input_channel"] for t in body["terms"]] == [1]
    assert body["padding"] == [1, 1, 1, 1] and body["padding_mode"] == "reflect"
    window = np.array(body["terms"][0]["window"])
    assert window[1:, 1:].tolist() == x[1, :2, :2].astype(np.float32).tolist()
    assert body["value"] == pytest.approx(window.mean(), rel=1e-6)


def test_position_outside_the_output_is_a_422_naming_the_ranges(client: TestClient) -> None:
    response = client.post("/v1/explain", json={
        "input": {"array": D2L_X}, "kernel": {"weight": [D2L_K]},
        "at": {"channel": 1, "y": 0, "x": 2},
    })
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    detail = ("at=(channel=1, y=0, x=2) is outside the output of shape (c_out, h_out, w_out)="
              "(1, 2, 2): channel must be in [0, 1), y in [0, 2) and x in [0, 2)")
    assert response.json() == {
        "type": "/problems/invalid-argument", "title": "Invalid argument", "status": 422,
        "detail": detail, "errors": [{"field": "at", "message": detail}],
    }


def test_negative_position_is_the_same_422(client: TestClient) -> None:
    response = client.post("/v1/explain", json={
        "input": {"array": D2L_X}, "kernel": {"weight": [D2L_K]}, "at": {"y": -1, "x": 0},
    })
    assert response.status_code == 422
    assert response.json()["detail"].startswith("at=(channel=0, y=-1, x=0) is outside")


def test_missing_at_is_a_validation_problem(client: TestClient) -> None:
    response = client.post("/v1/explain", json={
        "input": {"array": D2L_X}, "kernel": {"weight": [D2L_K]},
    })
    assert response.status_code == 422
    assert response.json() == {
        "type": "/problems/validation-error", "title": "Request validation failed",
        "status": 422, "detail": "at: Field required",
        "errors": [{"field": "at", "message": "Field required"}],
    }


def test_at_that_is_not_json_in_multipart_is_named(client: TestClient) -> None:
    response = client.post(
        "/v1/explain",
        files={"image": ("x.npy", npy_bytes(np.array(D2L_X, np.float32)))},
        data={"kernel": json.dumps({"weight": [D2L_K]}), "at": "y=0,x=0"},
    )
    assert response.status_code == 422
    body = response.json()
    assert body["type"] == "/problems/invalid-argument"
    assert body["title"] == "Invalid argument"
    assert body["detail"].startswith("at is not valid JSON: ")
    assert body["errors"] == [{"field": "at", "message": body["detail"]}]


def test_options_of_convolve_that_explain_does_not_take_are_refused(client: TestClient) -> None:
    response = client.post("/v1/explain", json={
        "input": {"array": D2L_X}, "kernel": {"weight": [D2L_K]}, "at": {"y": 0, "x": 0},
        "format": "png",
    })
    assert response.status_code == 422
    assert response.json() == {
        "type": "/problems/validation-error", "title": "Request validation failed",
        "status": 422, "detail": "format: is not a field this endpoint takes",
        "errors": [{"field": "format", "message": "is not a field this endpoint takes"}],
    }


def test_element_with_too_many_products_is_refused_before_computing(client: TestClient) -> None:
    response = client.post("/v1/explain", json={
        "input": {"array": np.zeros((2, 70, 70)).tolist()},
        "kernel": {"weight": np.zeros((1, 2, 46, 46)).tolist()}, "at": {"y": 0, "x": 0},
    })
    assert response.status_code == 422
    detail = ("one output element of this layer is a sum of C_in/groups * k_h * k_w = "
              "2 * 46 * 46 = 4232 products, more than the 4096 /v1/explain shows; explain a "
              "layer with fewer input channels per group or a smaller kernel")
    assert response.json() == {
        "type": "/problems/limit-exceeded", "title": "Limit exceeded", "status": 422,
        "detail": detail, "errors": [{"field": "kernel", "message": detail}],
    }


def test_openapi_documents_explain_and_its_d2l_example_works(client: TestClient) -> None:
    post = json.loads(openapi_document())["paths"]["/v1/explain"]["post"]
    content = post["requestBody"]["content"]
    assert content["multipart/form-data"]["schema"]["required"] == ["image", "at"]
    assert "at" in content["multipart/form-data"]["schema"]["properties"]
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/ExplainRequest"}
    for status in ("413", "415", "422", "503"):
        assert "application/problem+json" in post["responses"][status]["content"]
    examples = content["application/json"]["examples"]
    d2l = client.post("/v1/explain", json=examples["d2l"]["value"])
    assert d2l.status_code == 200, d2l.text
    assert d2l.json()["expression"] == D2L_EXPRESSION
    padded = client.post("/v1/explain", json=examples["padding"]["value"])
    assert padded.status_code == 200, padded.text
    assert padded.json()["terms"][0]["in_padding"][0] == [True, True, True]
