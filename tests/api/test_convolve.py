"""POST /v1/convolve over HTTP: both body types, every format and normalize mode."""

from __future__ import annotations

import base64
import io
import json
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import decode_png, load_npy, npy_bytes, png_bytes

D2L_X = [[[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[1, 2, 3], [4, 5, 6], [7, 8, 9]]]
D2L_K = [[[0, 1], [2, 3]], [[1, 2], [3, 4]]]
D2L_Y = [[56, 72], [104, 120]]
D2L_Y3 = [D2L_Y, [[76, 100], [148, 172]], [[96, 128], [192, 224]]]
ENGINES = ["numpy", "onnxruntime"]


def d2l_multi_out() -> list[object]:
    k = np.array(D2L_K)
    nested: list[object] = np.stack([k, k + 1, k + 2]).tolist()
    return nested


@pytest.mark.parametrize("engine", ENGINES)
def test_d2l_numbers_through_json_arrays(client: TestClient, engine: str) -> None:
    response = client.post("/v1/convolve", json={
        "input": {"array": D2L_X}, "kernel": {"weight": [D2L_K]}, "format": "array",
        "engine": engine,
    })
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["data"] == [D2L_Y]
    assert body["shape"] == [1, 2, 2]
    assert body["dtype"] == "float32"
    assert body["padding"] == [0, 0, 0, 0]
    assert body["padding_mode"] == "zeros"
    assert body["engine"] == engine


@pytest.mark.parametrize("engine", ENGINES)
def test_d2l_multi_output_through_npy_upload(client: TestClient, engine: str) -> None:
    upload = npy_bytes(np.array(D2L_X, dtype=np.float32))
    response = client.post(
        "/v1/convolve",
        files={"image": ("x.npy", upload, "application/octet-stream")},
        data={"kernel": json.dumps({"weight": d2l_multi_out()}), "format": "npy",
              "engine": engine},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["x-convserve-shape"] == "3,2,2"
    y = load_npy(response.content)
    assert y.dtype == np.float32
    assert y.tolist() == D2L_Y3


def test_hwio_kernel_equals_oihw(client: TestClient) -> None:
    oihw = np.array(d2l_multi_out(), dtype=np.float32)
    hwio = oihw.transpose(2, 3, 1, 0)
    response = client.post("/v1/convolve", json={
        "input": {"array": D2L_X}, "kernel": {"weight": hwio.tolist(), "layout": "HWIO"},
        "format": "array",
    })
    assert response.status_code == 200, response.text
    assert response.json()["data"] == D2L_Y3


def test_bias_is_added_per_output_channel(client: TestClient) -> None:
    response = client.post("/v1/convolve", json={
        "input": {"array": D2L_X},
        "kernel": {"weight": d2l_multi_out(), "bias": [1, -1, 0.5]}, "format": "array",
    })
    assert response.status_code == 200, response.text
    expected = (np.array(D2L_Y3) + np.array([1, -1, 0.5])[:, None, None]).tolist()
    assert response.json()["data"] == expected


def test_two_dimensional_array_is_one_channel(client: TestClient) -> None:
    response = client.post("/v1/convolve", json={
        "input": {"array": [[1, 2], [3, 4]]}, "kernel": {"weight": [[[[2]]]]},
        "format": "array",
    })
    assert response.status_code == 200, response.text
    assert response.json()["data"] == [[[2, 4], [6, 8]]]


def test_json_format_reports_everything(client: TestClient, rgb_png: bytes) -> None:
    response = client.post(
        "/v1/convolve", files={"image": ("a.png", rgb_png, "image/png")},
        data={"preset": "sobel"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["shape"] == [2, 48, 64]
    assert body["engine"] == "onnxruntime" and body["device"] == "cpu"
    assert body["padding"] == [1, 1, 1, 1]
    assert body["padding_mode"] == "reflect"
    assert body["normalize"] == "minmax"
    assert body["kernel"]["source"] == "preset" and body["kernel"]["name"] == "sobel"
    assert body["input"]["shape"] == [3, 48, 64]
    assert set(body["timing_ms"]) >= {"decode", "convolve", "encode", "total"}
    assert body["cost"]["macs"] == 2 * 3 * 3 * 3 * 48 * 64
    assert body["cost"]["params"] == 2 * 3 * 9
    assert len(body["channels"]) == 2
    for index, channel in enumerate(body["channels"]):
        assert channel["index"] == index
        assert channel["min"] <= channel["mean"] <= channel["max"]
        pixels = decode_png(base64.b64decode(channel["png_base64"]))
        assert pixels.shape == (48, 64) and pixels.dtype == np.uint8
        assert pixels.min() == 0 and pixels.max() == 255  # minmax spans the range


def test_json_body_with_base64_image_equals_multipart(client: TestClient, rgb_png: bytes) -> None:
    multipart = client.post(
        "/v1/convolve", files={"image": ("a.png", rgb_png, "image/png")},
        data={"preset": "gaussian_blur", "format": "npy"},
    )
    as_json = client.post("/v1/convolve", json={
        "input": {"image_base64": base64.b64encode(rgb_png).decode()},
        "preset": "gaussian_blur", "format": "npy",
    })
    data_url = client.post("/v1/convolve", json={
        "input": {"image_base64": "data:image/png;base64," + base64.b64encode(rgb_png).decode()},
        "preset": "gaussian_blur", "format": "npy",
    })
    assert multipart.status_code == as_json.status_code == data_url.status_code == 200
    np.testing.assert_array_equal(load_npy(multipart.content), load_npy(as_json.content))
    np.testing.assert_array_equal(load_npy(multipart.content), load_npy(data_url.content))


@pytest.mark.parametrize("preset", ["sobel", "gaussian_blur", "laplacian", "kirsch"])
def test_engines_agree_over_http(client: TestClient, rgb_png: bytes, preset: str) -> None:
    results = []
    for engine in ENGINES:
        response = client.post(
            "/v1/convolve", files={"image": ("a.png", rgb_png, "image/png")},
            data={"preset": preset, "format": "npy", "engine": engine},
        )
        assert response.status_code == 200, response.text
        results.append(load_npy(response.content))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-4, atol=1e-5)


def test_identity_preset_returns_input_pixels_exactly(
    client: TestClient, rgb_image: np.ndarray, rgb_png: bytes
) -> None:
    response = client.post(
        "/v1/convolve", files={"image": ("a.png", rgb_png, "image/png")},
        data={"preset": "identity", "format": "image"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(decode_png(response.content), rgb_image)


def test_identity_on_gray_gives_gray_image(client: TestClient, rgb_image: np.ndarray) -> None:
    gray = rgb_image[..., 1]
    response = client.post(
        "/v1/convolve", files={"image": ("g.png", png_bytes(gray), "image/png")},
        data={"preset": "identity", "format": "image", "color_mode": "gray"},
    )
    assert response.status_code == 200, response.text
    np.testing.assert_array_equal(decode_png(response.content), gray)


def test_blur_keeps_an_rgb_photos_brightness(client: TestClient, photo_png: bytes) -> None:
    response = client.post(
        "/v1/convolve", files={"image": ("photo.png", photo_png, "image/png")},
        data={"preset": "gaussian_blur", "preset_params": json.dumps({"sigma": 2.0})},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["normalize"] == "clip"
    assert body["shape"][0] == 3
    original = client.post(
        "/v1/convolve", files={"image": ("photo.png", photo_png, "image/png")},
        data={"preset": "identity"},
    ).json()
    for blurred, plain in zip(body["channels"], original["channels"], strict=True):
        assert blurred["mean"] == pytest.approx(plain["mean"], rel=0.01)
        assert blurred["max"] <= plain["max"] + 1e-6


def test_png_format_returns_the_asked_channel(client: TestClient, rgb_png: bytes) -> None:
    shapes = []
    for channel in (0, 1):
        response = client.post(
            "/v1/convolve", files={"image": ("a.png", rgb_png, "image/png")},
            data={"preset": "sobel", "format": "png", "channel": str(channel)},
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        shapes.append(decode_png(response.content).shape)
    assert shapes == [(48, 64), (48, 64)]


def test_image_format_refuses_two_channels_and_suggests_grid(
    client: TestClient, rgb_png: bytes
) -> None:
    response = client.post(
        "/v1/convolve", files={"image": ("a.png", rgb_png, "image/png")},
        data={"preset": "sobel", "format": "image"},
    )
    assert response.status_code == 422
    body = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert body["status"] == 422
    assert "grid" in body["detail"] and "zip" in body["detail"]


def test_grid_format_is_one_png_holding_every_channel(client: TestClient, rgb_png: bytes) -> None:
    response = client.post(
        "/v1/convolve", files={"image": ("a.png", rgb_png, "image/png")},
        data={"preset": "kirsch", "format": "grid"},
    )
    assert response.status_code == 200, response.text
    grid = decode_png(response.content)
    assert grid.shape[0] >= 48 and grid.shape[1] >= 64
    assert grid.shape[0] * grid.shape[1] >= 8 * 48 * 64


def test_zip_format_has_one_png_per_channel_and_a_manifest(
    client: TestClient, rgb_png: bytes
) -> None:
    response = client.post(
        "/v1/convolve", files={"image": ("a.png", rgb_png, "image/png")},
        data={"preset": "sobel", "format": "zip"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["shape"] == [2, 48, 64]
    assert [c["file"] for c in manifest["channels"]] == ["channel_000.png", "channel_001.png"]
    for entry in manifest["channels"]:
        assert decode_png(archive.read(entry["file"])).shape == (48, 64)


@pytest.mark.parametrize(
    ("normalize", "expected"),
    [
        ("clip", [0, 0, 128, 255, 255]),
        ("minmax", [0, 128, 159, 191, 255]),
        ("abs", [255, 0, 64, 128, 255]),
        ("symmetric", [0, 128, 159, 191, 255]),
    ],
)
def test_normalize_modes_map_floats_to_pixels(
    client: TestClient, normalize: str, expected: list[int]
) -> None:
    # values -2, 0, 0.5, 1, 2 through a 1x1 identity kernel
    values = [[[-2.0, 0.0, 0.5, 1.0, 2.0]]]
    response = client.post("/v1/convolve", json={
        "input": {"array": values}, "kernel": {"weight": [[[[1.0]]]]},
        "format": "png", "normalize": normalize,
    })
    assert response.status_code == 200, response.text
    pixels = decode_png(response.content)[0].tolist()
    assert pixels == expected  # exact: rounding is to nearest, halves to even


def test_auto_normalize_clips_range_preserving_kernels(client: TestClient) -> None:
    response = client.post("/v1/convolve", json={
        "input": {"array": [[[0.0, 0.5, 1.0]]]}, "kernel": {"weight": [[[[1.0]]]]},
    })
    assert response.json()["normalize"] == "clip"
    response = client.post("/v1/convolve", json={
        "input": {"array": [[[0.0, 0.5, 1.0]]]}, "kernel": {"weight": [[[[2.0]]]]},
    })
    assert response.json()["normalize"] == "minmax"


def test_explicit_padding_wins_over_preset_default(client: TestClient, rgb_png: bytes) -> None:
    response = client.post(
        "/v1/convolve", files={"image": ("a.png", rgb_png, "image/png")},
        data={"preset": "sobel", "padding": "0", "padding_mode": "zeros", "format": "json",
              "dry_run": "true"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["padding"] == [0, 0, 0, 0]
    assert body["padding_mode"] == "zeros"
    assert body["shape"] == [2, 46, 62]


@pytest.mark.parametrize(
    ("field", "value", "pads", "shape"),
    [
        ("padding", "2", [2, 2, 2, 2], [1, 7, 7]),
        ("padding", "1,2", [1, 1, 2, 2], [1, 5, 7]),
        ("padding", "[1, 2]", [1, 1, 2, 2], [1, 5, 7]),
        ("padding", "0,1,2,3", [0, 1, 2, 3], [1, 4, 8]),
        ("padding", "same", [1, 1, 1, 1], [1, 5, 5]),
        ("padding", "valid", [0, 0, 0, 0], [1, 3, 3]),
        ("stride", "2,1", [0, 0, 0, 0], [1, 2, 3]),
        ("dilation", "[2, 1]", [0, 0, 0, 0], [1, 1, 3]),
    ],
)
def test_multipart_pair_fields_accept_every_spelling(
    client: TestClient, field: str, value: str, pads: list[int], shape: list[int]
) -> None:
    upload = npy_bytes(np.ones((1, 5, 5), dtype=np.float32))
    response = client.post(
        "/v1/convolve", files={"image": ("x.npy", upload, "application/octet-stream")},
        data={"kernel": json.dumps({"weight": np.ones((1, 1, 3, 3)).tolist()}),
              field: value, "dry_run": "true"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["padding"] == pads
    assert body["shape"] == shape


def test_groups_and_depthwise_through_json(client: TestClient) -> None:
    x = np.arange(4 * 4 * 4, dtype=np.float32).reshape(4, 4, 4)
    w = np.ones((4, 1, 3, 3), dtype=np.float32)
    response = client.post("/v1/convolve", json={
        "input": {"array": x.tolist()}, "kernel": {"weight": w.tolist()}, "groups": 4,
        "padding": 1, "format": "array",
    })
    assert response.status_code == 200, response.text
    y = np.array(response.json()["data"])
    # depthwise 3x3 box sum of channel c at the centre equals the 3x3 sum around it
    assert y[2, 1, 1] == x[2, 0:3, 0:3].sum()


def test_dry_run_reports_shapes_and_cost_without_computing(client: TestClient) -> None:
    before = client.get("/metrics").text
    response = client.post("/v1/convolve", json={
        "input": {"array": np.zeros((3, 64, 64)).tolist()},
        "kernel": {"weight": np.zeros((8, 3, 3, 3)).tolist()}, "stride": 2, "padding": 1,
        "dry_run": True,
    })
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dry_run"] is True
    assert body["shape"] == [8, 32, 32]
    assert body["channels"] == []
    assert body["cost"]["macs"] == 8 * 3 * 9 * 32 * 32
    assert body["cost"]["params"] == 8 * 3 * 9
    assert body["cost"]["output_size"]["h_out"] == "floor((64 + 1 + 1 - 1*(3-1) - 1) / 2) + 1 = 32"
    assert "convolve" not in body["timing_ms"]
    after = client.get("/metrics").text
    assert _count(before) == _count(after)


def _count(metrics: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("convserve_convolution_seconds_count"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_large_upload_through_multipart_is_converted_from_16_bit(client: TestClient) -> None:
    ramp = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).astype(np.uint16)
    response = client.post(
        "/v1/convolve",
        files={"image": ("r.png", png_bytes(ramp), "image/png")},
        data={"preset": "identity", "color_mode": "gray", "format": "npy"},
    )
    assert response.status_code == 200, response.text
    y = load_npy(response.content)
    np.testing.assert_allclose(y[0], ramp / 65535.0, rtol=1e-6)
