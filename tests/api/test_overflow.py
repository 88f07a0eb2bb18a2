"""Finite inputs and weights whose products overflow float32 (``3e38 * 10``): every answer is
still a 200 with standard JSON (infinity written as null, as no JSON parser accepts
``Infinity``), and the binary formats keep the infinity."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

INPUT = {"array": [[[3e38, 1.0], [2.0, 3.0]]]}
KERNEL = {"weight": [[[[10.0]]]]}


def strict_json(text: str | bytes) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("fmt", ["json", "array", "zip", "npy", "png", "grid", "image"])
def test_convolve_overflow(client: TestClient, fmt: str) -> None:
    response = client.post("/v1/convolve", json={"input": INPUT, "kernel": KERNEL,
                                                  "format": fmt})
    assert response.status_code == 200, response.text
    if fmt == "json":
        channel = strict_json(response.content)["channels"][0]
        assert channel["max"] is None  # +inf
        assert channel["min"] == 10.0
    elif fmt == "array":
        assert strict_json(response.content)["data"] == [[[None, 10.0], [20.0, 30.0]]]
    elif fmt == "zip":
        with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
            assert strict_json(archive.read("manifest.json"))["channels"][0]["max"] is None
    elif fmt == "npy":
        y = np.load(io.BytesIO(response.content), allow_pickle=False)
        assert np.isposinf(y[0, 0, 0]) and y[0, 1, 1] == 30.0


def test_explain_overflow(client: TestClient) -> None:
    response = client.post("/v1/explain", json={"input": INPUT, "kernel": KERNEL,
                                                "at": {"channel": 0, "y": 0, "x": 0}})
    assert response.status_code == 200, response.text
    assert strict_json(response.content)["value"] is None


def test_layers_overflow(client: TestClient) -> None:
    response = client.post("/v1/layers", json={
        "input": INPUT, "layers": [{"type": "conv2d", "kernel": KERNEL}], "return": "all"})
    assert response.status_code == 200, response.text
    body = strict_json(response.content)
    assert body["layers"][0]["channels"][0]["max"] is None
