"""Every odd real file from ``tests/images.py`` uploaded through ``POST /v1/convolve``.

CMYK and progressive JPEG, 16-bit and palette-with-transparency PNG, animated GIF/PNG/WebP,
EXIF-rotated JPEG/PNG/TIFF, float and integer TIFF, truncated files, non-images, decompression
bombs and ``.npy`` arrays of every dtype: each gets the status ``ODD_FILE_EXPECTATIONS`` says
(decoding is unit-tested in ``tests/unit/test_imaging.py``); a success reports the decoded
shape and mode, a failure is a problem+json naming the upload, and nothing is ever a 500.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.images import ODD_FILE_EXPECTATIONS, odd_files

PROBLEM = "application/problem+json"
FILES = odd_files()
NAMES = sorted(ODD_FILE_EXPECTATIONS)


def test_every_odd_file_has_an_expectation() -> None:
    assert sorted(FILES) == NAMES


def check(response: Any, name: str, field: str) -> None:
    expected = ODD_FILE_EXPECTATIONS[name]
    assert response.status_code == expected.status, response.text
    if expected.status == 200:
        body = response.json()
        assert expected.shape is not None
        assert body["input"]["shape"] == list(expected.shape)
        assert body["input"]["mode"] == expected.mode
        assert body["shape"] == list(expected.shape)  # identity: one map per input channel
        assert len(body["channels"]) == expected.shape[0]
        assert all(ch["png_base64"] for ch in body["channels"])
    else:
        assert response.headers["content-type"] == PROBLEM
        body = response.json()
        assert body["status"] == expected.status
        assert body["title"] and body["detail"]
        assert body["type"].startswith("/problems/")
        if expected.status == 422:
            assert [e["field"] for e in body["errors"]] == [field]


@pytest.mark.parametrize("name", NAMES)
def test_multipart_upload(client: TestClient, name: str) -> None:
    response = client.post("/v1/convolve", files={"image": (name, FILES[name])},
                           data={"preset": "identity"})
    check(response, name, "image")


@pytest.mark.parametrize("name", [n for n in NAMES if FILES[n]])  # empty base64 is "no input"
def test_json_base64_upload(client: TestClient, name: str) -> None:
    text = base64.b64encode(FILES[name]).decode("ascii")
    response = client.post("/v1/convolve", json={"input": {"image_base64": text},
                                                 "preset": "identity"})
    check(response, name, "input.image_base64")
