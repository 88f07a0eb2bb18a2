"""What goes over the wire: inputs, kernels and options as the server will read them.

A capturing transport records the requests; the behaviour they lead to on a real server is
checked in test_client.py.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from convserve_client import APIResponseValidationError, Client
from tests.client.conftest import D2L_K, D2L_X

D2L_ANSWER = {"shape": [1, 2, 2], "engine": "numpy", "device": "cpu",
              "padding": [0, 0, 0, 0], "channels": []}


class Capture:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return httpx.Response(200, json=D2L_ANSWER)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


@pytest.fixture
def capture() -> Capture:
    return Capture()


@pytest.fixture
def offline(capture: Capture) -> Client:
    return Client("http://convserve.test", api_key="k",
                  http_client=httpx.Client(transport=httpx.MockTransport(capture)))


def parts(request: httpx.Request) -> dict[str, tuple[str | None, str | None, bytes]]:
    """Multipart parts by name: (filename, content type, body)."""
    boundary = request.headers["content-type"].partition("boundary=")[2].encode()
    found = {}
    for chunk in request.content.split(b"--" + boundary)[1:-1]:
        # Each part sits between "\r\n" after the boundary and "\r\n" before the next one.
        head, _, body = chunk[2:-2].partition(b"\r\n\r\n")
        text = head.decode()
        name = re.search(r'name="([^"]+)"', text)
        filename = re.search(r'filename="([^"]*)"', text)
        ctype = re.search(r"Content-Type: (\S+)", text)
        assert name is not None
        found[name.group(1)] = (filename and filename.group(1), ctype and ctype.group(1), body)
    return found


def test_arrays_travel_as_npy_files_not_json_lists(offline: Client, capture: Capture) -> None:
    x = np.random.default_rng(0).random((3, 64, 64))  # float64: sent as float32
    offline.convolve(x, preset="sobel")
    sent = parts(capture.last)
    filename, ctype, body = sent["image"]
    assert (filename, ctype) == ("input.npy", "application/octet-stream")
    received = np.load(io.BytesIO(body))
    assert received.dtype == np.float32
    np.testing.assert_array_equal(received, x.astype(np.float32))
    assert len(capture.last.content) < x.size * 4 + 2000
    assert sent["preset"][2] == b"sobel"


def test_json_transport_sends_lists_when_asked(offline: Client, capture: Capture) -> None:
    offline.convolve(D2L_X, kernel=D2L_K[np.newaxis], stride=(1, 1), padding="valid",
                     transport="json")
    assert capture.last.headers["content-type"] == "application/json"
    body = json.loads(capture.last.content)
    assert body == {"input": {"array": D2L_X.tolist()},
                    "kernel": {"weight": D2L_K[np.newaxis].tolist()},
                    "stride": [1, 1], "padding": "valid", "format": "json"}


def test_files_go_as_they_are_and_base64_in_json(offline: Client, capture: Capture,
                                                 cat_png: Path) -> None:
    offline.convolve(cat_png, preset="sobel")
    assert parts(capture.last)["image"] == ("chelsea.png", "image/png", cat_png.read_bytes())
    offline.convolve(cat_png, preset="sobel", transport="json")
    sent = json.loads(capture.last.content)["input"]["image_base64"]
    assert base64.b64decode(sent) == cat_png.read_bytes()


@pytest.mark.parametrize("kind, filename, ctype", [
    ("PNG", "image.png", "image/png"),
    ("JPEG", "image.jpg", "image/jpeg"),
    ("WEBP", "image.webp", "image/webp"),
    ("TIFF", "image.tif", "image/tiff"),
    ("BMP", "image.bmp", "image/bmp"),
    ("GIF", "image.gif", "image/gif"),
])
def test_raw_bytes_are_named_by_their_signature(offline: Client, capture: Capture, kind: str,
                                                filename: str, ctype: str) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), (10, 20, 30)).save(buffer, format=kind)
    offline.convolve(buffer.getvalue(), preset="identity")
    assert parts(capture.last)["image"] == (filename, ctype, buffer.getvalue())


def test_pil_images_are_sent_as_lossless_png(offline: Client, capture: Capture) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    offline.convolve(Image.fromarray(pixels), preset="identity")
    filename, ctype, body = parts(capture.last)["image"]
    assert (filename, ctype) == ("image.png", "image/png")
    with Image.open(io.BytesIO(body)) as decoded:
        np.testing.assert_array_equal(np.asarray(decoded), pixels)


def test_float_pil_images_keep_their_values(offline: Client, capture: Capture) -> None:
    values = np.linspace(-1, 2, 12, dtype=np.float32).reshape(3, 4)
    offline.convolve(Image.fromarray(values, mode="F"), preset="identity")
    filename, _, body = parts(capture.last)["image"]
    assert filename == "input.npy"
    np.testing.assert_array_equal(np.load(io.BytesIO(body)), values)


def test_options_are_form_fields_the_server_parses(offline: Client, capture: Capture) -> None:
    offline.convolve(D2L_X, kernel={"weight": D2L_K[np.newaxis], "bias": np.array([0.5])},
                     stride=(2, 3), dilation=2, padding=(0, 1, 0, 1), groups=1,
                     padding_mode="circular", engine="numpy", device="cpu",
                     color_mode="keep", format="zip", normalize="abs", channel=0,
                     dry_run=True)
    fields = {name: body.decode() for name, (filename, _, body) in
              parts(capture.last).items() if filename is None}
    assert fields == {
        "kernel": json.dumps({"weight": D2L_K[np.newaxis].tolist(), "bias": [0.5]},
                             separators=(",", ":")),
        "stride": "2,3", "dilation": "2", "padding": "0,1,0,1", "groups": "1",
        "padding_mode": "circular", "engine": "numpy", "device": "cpu", "color_mode": "keep",
        "format": "zip", "normalize": "abs", "channel": "0", "dry_run": "true",
    }


def test_preset_params_and_explain_position_are_json_fields(offline: Client,
                                                           capture: Capture) -> None:
    offline.convolve(D2L_X, preset="gaussian_blur", preset_params={"size": 5, "sigma": 1.5})
    assert parts(capture.last)["preset_params"][2] == b'{"size":5,"sigma":1.5}'
    with pytest.raises(APIResponseValidationError, match="cannot read"):
        # A NumPy integer is accepted at run time though `at` is typed Sequence[int].
        offline.explain(D2L_X, kernel=D2L_K[np.newaxis],
                        at=(0, 1, np.int64(1)))  # type: ignore[arg-type]
    assert parts(capture.last)["at"][2] == b'{"channel":0,"y":1,"x":1}'


def test_hwio_layout_and_separate_bias_join_the_kernel(offline: Client,
                                                      capture: Capture) -> None:
    offline.convolve(D2L_X, kernel=D2L_K.reshape(2, 2, 2, 1), bias=[1], layout="HWIO",
                     transport="json")
    assert json.loads(capture.last.content)["kernel"] == {
        "weight": D2L_K.reshape(2, 2, 2, 1).tolist(), "bias": [1], "layout": "HWIO"}


def test_nan_in_a_kernel_reaches_the_server_to_be_named(offline: Client,
                                                        capture: Capture) -> None:
    offline.convolve(D2L_X, kernel=np.full((1, 2, 1, 1), np.nan), transport="json")
    assert b'"weight":[[[[NaN]],[[NaN]]]]' in capture.last.content


def test_every_request_carries_the_key_and_a_user_agent(offline: Client,
                                                        capture: Capture) -> None:
    offline.convolve(D2L_X, kernel=D2L_K[np.newaxis], format="array")
    assert capture.last.headers["authorization"] == "Bearer k"
    assert capture.last.headers["user-agent"].startswith("convserve-client/0.1.0 python/")
    assert str(capture.last.url) == "http://convserve.test/v1/convolve"


def test_preset_names_are_escaped_and_params_go_in_the_query(offline: Client,
                                                             capture: Capture) -> None:
    with pytest.raises(APIResponseValidationError, match="cannot read"):
        offline.preset("a/b c", channels=4, params={"size": 5})
    assert capture.last.url.raw_path == b"/v1/presets/a%2Fb%20c?channels=4&size=5"


def test_base_url_keeps_a_path_prefix(capture: Capture) -> None:
    with Client("http://gateway.test/convserve/", http_client=httpx.Client(
            transport=httpx.MockTransport(capture))) as cs:
        cs.convolve(D2L_X, kernel=D2L_K[np.newaxis])
    assert str(capture.last.url) == "http://gateway.test/convserve/v1/convolve"


def test_a_base_url_that_is_not_http_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="base_url must be an http:// or https:// URL"):
        Client("localhost:8000")
