"""Bad input gets a clear 4xx problem+json naming what was wrong; never a 500."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import ClientFactory, npy_bytes, png_bytes

PROBLEM = "application/problem+json"
X3 = np.zeros((3, 8, 8)).tolist()


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("/problems/")
    assert body["title"] and body["detail"]
    return body


def kernel_request(weight: Any, **extra: Any) -> dict[str, Any]:
    return {"input": {"array": X3}, "kernel": {"weight": weight}, **extra}


def test_wrong_c_in_names_the_shapes(client: TestClient) -> None:
    body = problem(client.post("/v1/convolve", json=kernel_request(
        np.ones((2, 2, 3, 3)).tolist())), 422)
    assert body == {
        "type": "/problems/shape-mismatch",
        "title": "Shapes do not fit together",
        "status": 422,
        "detail": "weight.shape=(2, 2, 3, 3) needs C_in//groups=3 for x.shape=(1, 3, 8, 8), "
                  "groups=1",
        "errors": [{"field": "kernel.weight", "message": body["detail"]}],
    }


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_kernel_values_are_rejected(client: TestClient, bad: str) -> None:
    text = f'{{"input": {{"array": [[[1, 2], [3, 4]]]}}, "kernel": {{"weight": [[[[{bad}]]]]}}}}'
    response = client.post("/v1/convolve", content=text,
                           headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == 422
    assert body["errors"]


@pytest.mark.parametrize("bad", ["1e300", "-1e39", "NaN", "Infinity"])
def test_input_array_values_beyond_float32_are_rejected(client: TestClient, bad: str) -> None:
    text = f'{{"input": {{"array": [[[1, {bad}], [3, 4]]]}}, "kernel": {{"weight": [[[[1]]]]}}}}'
    body = problem(client.post("/v1/convolve", content=text,
                               headers={"content-type": "application/json"}), 422)
    assert "NaN or infinite" in body["detail"] or "finite" in body["detail"]
    assert body["errors"][0]["field"] == "input.array"


def test_non_finite_kernel_in_multipart_names_the_kernel(client: TestClient) -> None:
    body = problem(client.post(
        "/v1/convolve", files={"image": ("x.npy", npy_bytes(np.ones((1, 3, 3), np.float32)))},
        data={"kernel": '{"weight": [[[[NaN]]]]}'},
    ), 422)
    assert body["detail"] == (
        "weight holds 1 NaN or infinite value(s); only finite numbers are allowed"
    )
    assert body["errors"] == [{"field": "kernel.weight", "message": body["detail"]}]


@pytest.mark.parametrize(
    ("extra", "field", "needle"),
    [
        ({"groups": 0}, "groups", "groups"),
        ({"groups": 2}, "groups", "groups=2 must divide both C_in=3 and C_out=1"),
        ({"stride": -1}, "stride", "stride=-1 must be >= 1"),
        ({"stride": 0}, "stride", "stride=0 must be >= 1"),
        ({"dilation": [1, 0]}, "dilation", "dilation=[1, 0] must be >= 1"),
        ({"padding": -1}, "padding", "must be >= 0 and <= 2147483647 on every side"),
        ({"stride": 10**30}, "stride", "<= 2147483647"),
        ({"dilation": [1, 10**30]}, "dilation", "<= 2147483647"),
        ({"padding": [10**30, 0]}, "padding", "<= 2147483647"),
        ({"padding": [1, 2, 3]}, "padding", "has 3 numbers"),
        ({"padding": "same", "stride": 2}, "padding", "padding='same' needs stride 1"),
        ({"padding": 8, "padding_mode": "reflect"}, "padding", "needs each pad < the size"),
        ({"padding": 9, "padding_mode": "circular"}, "padding", "needs each pad <= the size"),
        ({"padding_mode": "mirror"}, "padding_mode", "padding_mode"),
        ({"engine": "torch"}, "engine", "engine"),
        ({"device": "tpu"}, "device", "device"),
        ({"format": "gif"}, "format", "format"),
        ({"normalize": "log"}, "normalize", "normalize"),
        ({"color_mode": "cmyk"}, "color_mode", "color_mode"),
        ({"unknown": 1}, "unknown", "is not a field this endpoint takes"),
    ],
)
def test_invalid_options_name_field_and_numbers(
    client: TestClient, extra: dict[str, Any], field: str, needle: str
) -> None:
    body = problem(client.post("/v1/convolve", json=kernel_request(
        np.ones((1, 3, 3, 3)).tolist(), **extra)), 422)
    assert needle in body["detail"]
    assert field in [e["field"] for e in body["errors"]]


def test_output_smaller_than_one_names_the_sizes(client: TestClient) -> None:
    body = problem(client.post("/v1/convolve", json=kernel_request(
        np.ones((1, 3, 9, 9)).tolist())), 422)
    assert body["detail"].startswith("output would be 0x0: input 8x8 padded by")
    assert "dilated kernel 9x9" in body["detail"]


def test_channel_outside_output_is_422(client: TestClient) -> None:
    body = problem(client.post("/v1/convolve", json=kernel_request(
        np.ones((2, 3, 3, 3)).tolist(), format="png", channel=2)), 422)
    assert body["detail"] == "channel=2 is outside [0, 2): the output has 2 channel(s)"
    assert body["errors"] == [{"field": "channel", "message": body["detail"]}]


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"input": {"array": X3}}, "exactly one of kernel"),
        ({"input": {"array": X3}, "preset": "sobel", "kernel": {"weight": [[[[1]]]]}},
         "exactly one of kernel"),
        ({"input": {}, "preset": "sobel"}, "exactly one of input.array and input.image_base64"),
        ({"preset": "sobel"}, "input"),
    ],
)
def test_kernel_and_preset_both_or_neither(
    client: TestClient, payload: dict[str, Any], needle: str
) -> None:
    body = problem(client.post("/v1/convolve", json=payload), 422)
    assert needle in body["detail"]


def test_unknown_preset_is_404_listing_names(client: TestClient) -> None:
    body = problem(client.post("/v1/convolve", json={"input": {"array": X3}, "preset": "nope"}),
                   404)
    assert "nope" in body["detail"] and "sobel" in body["detail"]


def test_unknown_preset_parameter_names_the_allowed_ones(client: TestClient) -> None:
    body = problem(client.post("/v1/convolve", json={
        "input": {"array": X3}, "preset": "gaussian_blur", "preset_params": {"radius": 3}}), 422)
    assert "radius" in body["detail"] and "sigma" in body["detail"]


def test_groups_conflicting_with_preset(client: TestClient) -> None:
    body = problem(client.post("/v1/convolve", json={
        "input": {"array": X3}, "preset": "sobel", "groups": 3}), 422)
    assert body["detail"].startswith("groups=3 conflicts with preset 'sobel'")


@pytest.mark.parametrize(
    "weight",
    [
        [[[[1, 2], [3]]]],  # ragged
        [[["a"]]],
        [1, 2, 3],
        [],
    ],
    ids=["ragged", "strings", "1-d", "empty"],
)
def test_malformed_kernels_are_422(client: TestClient, weight: Any) -> None:
    problem(client.post("/v1/convolve", json=kernel_request(weight)), 422)


def test_ragged_input_array_is_422(client: TestClient) -> None:
    body = problem(client.post("/v1/convolve", json={
        "input": {"array": [[[1, 2], [3]]]}, "kernel": {"weight": [[[[1]]]]}}), 422)
    assert body["errors"][0]["field"] == "input.array"


def test_deeply_nested_json_is_422_not_500(client: TestClient) -> None:
    deep = "[" * 5000 + "]" * 5000
    text = f'{{"input": {{"array": {deep}}}, "kernel": {{"weight": [[[[1]]]]}}}}'
    response = client.post("/v1/convolve", content=text,
                           headers={"content-type": "application/json"})
    problem(response, 422)


def test_deeply_nested_kernel_in_multipart_is_422(client: TestClient) -> None:
    response = client.post(
        "/v1/convolve", files={"image": ("x.npy", npy_bytes(np.ones((1, 3, 3), np.float32)))},
        data={"kernel": '{"weight": ' + "[" * 5000 + "]" * 5000 + "}"},
    )
    problem(response, 422)


def test_invalid_json_body_is_422(client: TestClient) -> None:
    response = client.post("/v1/convolve", content=b"{not json",
                           headers={"content-type": "application/json"})
    problem(response, 422)


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", ""])
def test_wrong_content_type_is_415(client: TestClient, content_type: str) -> None:
    headers = {"content-type": content_type} if content_type else {}
    body = problem(client.post("/v1/convolve", content=b"hello", headers=headers), 415)
    assert "multipart/form-data" in body["detail"] and "application/json" in body["detail"]


def test_multipart_without_image_is_422(client: TestClient) -> None:
    body = problem(client.post("/v1/convolve", files={"preset": (None, "sobel")}), 422)
    assert body["errors"][0]["field"] == "image"


def test_a_file_in_a_text_field_is_422(client: TestClient, rgb_png: bytes) -> None:
    body = problem(client.post("/v1/convolve", files={
        "image": ("a.png", rgb_png), "kernel": ("k.json", b"{}")}), 422)
    assert body["detail"] == ("form field 'kernel' must be text; only image and kernel_file "
                              "are files")


def test_non_image_upload_is_422_naming_formats(client: TestClient) -> None:
    body = problem(client.post("/v1/convolve", files={"image": ("a.txt", b"hello world")},
                               data={"preset": "sobel"}), 422)
    assert "PNG" in body["detail"] and "JPEG" in body["detail"]


def test_bad_base64_is_422(client: TestClient) -> None:
    body = problem(client.post("/v1/convolve", json={
        "input": {"image_base64": "***"}, "preset": "sobel"}), 422)
    assert body["errors"] == [{"field": "input.image_base64", "message": body["detail"]}]


def test_cuda_where_not_active_is_422_naming_providers(client: TestClient) -> None:
    body = problem(client.post("/v1/convolve", json=kernel_request(
        np.ones((1, 3, 3, 3)).tolist(), device="cuda")), 422)
    assert body["type"] == "/problems/engine-unavailable"
    assert "CUDA" in body["detail"]


def test_unknown_route_is_problem_404(client: TestClient) -> None:
    body = problem(client.get("/v1/nothing"), 404)
    assert body["title"] == "Not found"


def test_wrong_method_is_problem_405(client: TestClient) -> None:
    problem(client.get("/v1/convolve"), 405)


class TestLimits:
    def test_upload_bytes_limit_is_413_naming_setting(self, make_client: ClientFactory) -> None:
        client = make_client(max_upload_bytes=1000)
        body = problem(client.post("/v1/convolve", files={"image": ("a.bin", b"x" * 5000)},
                                   data={"preset": "sobel"}), 413)
        assert "1000 bytes" in body["detail"] and "CONVSERVE_MAX_UPLOAD_BYTES" in body["detail"]

    def test_decoded_pixels_limit_is_413_naming_setting(self, make_client: ClientFactory) -> None:
        client = make_client(max_pixels=100)
        image = png_bytes(np.zeros((20, 20), np.uint8))
        body = problem(client.post("/v1/convolve", files={"image": ("a.png", image)},
                                   data={"preset": "sobel"}), 413)
        assert "CONVSERVE_MAX_PIXELS" in body["detail"]

    def test_kernel_size_limit(self, make_client: ClientFactory) -> None:
        client = make_client(max_kernel_size=3)
        body = problem(client.post("/v1/convolve", json={
            "input": {"array": np.zeros((1, 8, 8)).tolist()},
            "kernel": {"weight": np.zeros((1, 1, 5, 5)).tolist()}}), 422)
        assert body["detail"] == ("kernel 5x5 is larger than the limit of 3 per side "
                                  "(CONVSERVE_MAX_KERNEL_SIZE)")

    def test_out_channels_limit(self, make_client: ClientFactory) -> None:
        client = make_client(max_out_channels=4)
        body = problem(client.post("/v1/convolve", json={
            "input": {"array": np.zeros((1, 4, 4)).tolist()},
            "kernel": {"weight": np.zeros((5, 1, 1, 1)).tolist()}}), 422)
        assert "CONVSERVE_MAX_OUT_CHANNELS" in body["detail"]

    def test_macs_limit(self, make_client: ClientFactory) -> None:
        client = make_client(max_macs=1000)
        body = problem(client.post("/v1/convolve", json={
            "input": {"array": np.zeros((1, 16, 16)).tolist()},
            "kernel": {"weight": np.zeros((1, 1, 3, 3)).tolist()}}), 422)
        assert "1.76e+03 multiply-accumulates" in body["detail"]
        assert "CONVSERVE_MAX_MACS" in body["detail"]

    def test_output_size_limit_covers_every_format(self, make_client: ClientFactory) -> None:
        client = make_client(max_output_bytes=640)  # 160 float32 output values at most
        for fmt in ("json", "npy", "grid", "zip"):
            body = problem(client.post("/v1/convolve", json={
                "input": {"array": np.zeros((1, 3, 3)).tolist()},
                "kernel": {"weight": np.ones((20, 1, 1, 1)).tolist()}, "format": fmt}), 422)
            assert body["detail"] == (
                "the output 20x3x3 would hold 180 float32 values (720 bytes), more than the "
                "limit of 640 bytes (CONVSERVE_MAX_OUTPUT_BYTES); use a smaller image, fewer "
                "channels or a larger stride")
            assert body["errors"] == [{"field": "kernel", "message": body["detail"]}]

    def test_array_format_limit_suggests_npy(self, make_client: ClientFactory) -> None:
        client = make_client(max_array_values=50)
        body = problem(client.post("/v1/convolve", json={
            "input": {"array": np.zeros((1, 6, 6)).tolist()},
            "kernel": {"weight": [[[[1]]], [[[2]]]]}, "format": "array"}), 422)
        assert body["detail"] == ("format=array would return 72 numbers, more than the limit "
                                  "of 50 (CONVSERVE_MAX_ARRAY_VALUES); use format=npy")


def test_preset_params_must_be_json_in_multipart(client: TestClient) -> None:
    body = problem(client.post(
        "/v1/convolve", files={"image": ("x.npy", npy_bytes(np.ones((3, 4, 4), np.float32)))},
        data={"preset": "gaussian_blur", "preset_params": "{sigma: 2}"},
    ), 422)
    assert body["errors"][0]["field"] == "preset_params"


def test_problem_bodies_are_valid_json_everywhere(client: TestClient) -> None:
    for response, status in (
        (client.post("/v1/convolve", json=kernel_request([[[[1]]]])), 422),
        (client.get("/v1/presets/none"), 404),
        (client.post("/v1/convolve", content=b"", headers={"content-type": "image/png"}), 415),
    ):
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert json.loads(response.text)["status"] == status


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"garbage", "multipart/form-data; boundary=x", "Invalid multipart data."),
        (b"--x\r\n", "multipart/form-data", "Missing boundary in multipart."),
    ],
    ids=["bad-body", "no-boundary"],
)
def test_unparseable_multipart_is_400_saying_what_to_send(
    client: TestClient, body: bytes, content_type: str, reason: str
) -> None:
    problem_body = problem(client.post("/v1/convolve", content=body,
                                       headers={"content-type": content_type}), 400)
    assert problem_body["detail"] == (
        f"the multipart/form-data body could not be parsed ({reason}); send an 'image' file "
        "part and text fields, separated by the boundary the Content-Type names"
    )
