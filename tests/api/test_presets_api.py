"""GET /v1/presets and /v1/presets/{name}, and every preset through /v1/convolve."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from convserve.conv.presets import PRESETS
from tests.api.conftest import ClientFactory, load_npy

DESIGN_PRESETS = {
    "identity", "box_blur", "gaussian_blur", "sharpen", "unsharp_mask", "laplacian", "sobel",
    "sobel_x", "sobel_y", "scharr", "prewitt", "emboss", "outline", "motion_blur", "kirsch",
    "gabor", "grayscale",
}


def test_list_has_every_design_preset_documented(client: TestClient) -> None:
    presets = client.get("/v1/presets").json()["presets"]
    names = {p["name"] for p in presets}
    assert DESIGN_PRESETS <= names
    assert any(name.startswith("d2l") for name in names)
    for preset in presets:
        assert preset["description"] and preset["source"]
        assert preset["rule"] in {"depthwise", "luminance", "full"}
        assert isinstance(preset["range_preserving"], bool)


@pytest.mark.parametrize(
    ("query", "shape", "groups"),
    [
        ("sobel?channels=3", [2, 3, 3, 3], 1),
        ("sobel?channels=1", [2, 1, 3, 3], 1),
        ("gaussian_blur?channels=3&size=5", [3, 1, 5, 5], 3),
        ("identity?channels=4", [4, 1, 1, 1], 4),
        ("grayscale?channels=3", [1, 3, 1, 1], 1),
        ("kirsch?channels=3", [8, 3, 3, 3], 1),
    ],
)
def test_preset_resolves_for_channels(
    client: TestClient, query: str, shape: list[int], groups: int
) -> None:
    response = client.get(f"/v1/presets/{query}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert np.array(body["weight"]).shape == tuple(shape)
    assert body["groups"] == groups


def test_sobel_luminance_weights_sum_the_rgb_coefficients(client: TestClient) -> None:
    body = client.get("/v1/presets/sobel?channels=3").json()
    weight = np.array(body["weight"])
    base = weight[0, 0] / 0.299
    np.testing.assert_allclose(weight[0, 1], base * 0.587, rtol=1e-6)
    np.testing.assert_allclose(weight[0, 2], base * 0.114, rtol=1e-6)


@pytest.mark.parametrize(
    ("query", "status", "needle"),
    [
        ("nope", 404, "sobel"),
        ("gaussian_blur?radius=2", 422, "radius"),
        ("gaussian_blur?sigma=abc", 422, "not a number"),
        ("grayscale?channels=1", 422, "3"),
        ("sobel?channels=0", 422, "channels"),
    ],
)
def test_preset_errors(client: TestClient, query: str, status: int, needle: str) -> None:
    response = client.get(f"/v1/presets/{query}")
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert needle in response.json()["detail"]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_runs_through_convolve(
    client: TestClient, rgb_png: bytes, name: str
) -> None:
    preset = PRESETS[name]
    channels = preset.requires_channels or 3
    if channels == 3:
        response = client.post(
            "/v1/convolve", files={"image": ("a.png", rgb_png, "image/png")},
            data={"preset": name, "format": "npy"},
        )
    else:
        x = np.random.default_rng(0).random((channels, 9, 9), dtype=np.float32)
        response = client.post("/v1/convolve", json={
            "input": {"array": x.tolist()}, "preset": name, "format": "npy"})
    assert response.status_code == 200, response.text
    y = load_npy(response.content)
    resolved = client.get(f"/v1/presets/{name}?channels={channels}").json()
    assert y.shape[0] == len(resolved["weight"])
    assert np.isfinite(y).all()
    if preset.range_preserving:
        assert y.min() >= -1e-5 and y.max() <= 1 + 1e-5


def test_presets_resolve_for_as_many_channels_as_convolve_accepts(client: TestClient) -> None:
    limits = client.get("/v1/limits").json()
    top = limits["max_preset_channels"]
    response = client.get(f"/v1/presets/sobel?channels={top}")
    assert response.status_code == 200, response.text
    assert response.json()["weight_shape"] == [2, top, 3, 3]
    over = client.get(f"/v1/presets/sobel?channels={top + 1}")
    assert over.status_code == 422
    assert over.json()["errors"][0]["field"] == "channels"


def test_a_resolved_preset_larger_than_a_json_answer_may_be_is_refused(
    make_client: ClientFactory,
) -> None:
    client = make_client(max_array_values=100, warmup=False)
    response = client.get("/v1/presets/gaussian_blur?channels=8&size=5")
    assert response.status_code == 422
    assert response.json()["detail"] == (
        "preset 'gaussian_blur' for 8 channels would return 200 numbers, more than the limit of "
        "100 (CONVSERVE_MAX_ARRAY_VALUES); ask for fewer channels")


def test_query_parameters_are_checked_by_the_preset_itself(client: TestClient) -> None:
    for text, reason in (("abc", "is not a number"), ("nan", "is not finite")):
        response = client.get(f"/v1/presets/gaussian_blur?sigma={text}")
        assert response.status_code == 422
        detail = (f"gaussian_blur parameter sigma={text!r} {reason}; allowed: a number with "
                  "min 0.1 and max 10")
        assert response.json()["detail"] == detail
        assert response.json()["errors"] == [{"field": "preset_params.sigma", "message": detail}]
