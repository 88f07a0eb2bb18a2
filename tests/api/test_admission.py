"""Admission over HTTP (TestClient): bodies admitted and released, resource exhaustion as 503.

Concurrency (a full budget, slow senders, clients that vanish) needs a real server:
tests/e2e/test_admission.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.formparsers import MultiPartParser

from convserve.main import create_app
from tests.api.conftest import ClientFactory, app_settings, png_bytes, wait_ready


def reserved(client: TestClient) -> dict[str, float]:
    text = client.get("/metrics").text
    pools = re.findall(r'convserve_memory_(budget|reserved)_bytes\{pool="(\w+)"\} ([0-9.e+]+)',
                       text)
    return {f"{kind}.{pool}": float(value) for kind, pool, value in pools}


def test_the_budget_is_published_and_every_request_gives_its_bytes_back(
        make_client: ClientFactory) -> None:
    client = make_client(memory_budget_bytes=40_000_000)
    image = png_bytes(np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8))
    for fmt in ("json", "npy"):
        response = client.post("/v1/convolve", files={"image": ("x.png", image)},
                               data={"preset": "sobel", "format": fmt})
        assert response.status_code == 200, response.text
    bad = client.post("/v1/convolve", files={"image": ("x.png", b"not an image")},
                      data={"preset": "sobel"})
    assert bad.status_code == 422
    pools = reserved(client)
    assert pools["budget.intake"] + pools["budget.work"] == 40_000_000
    assert pools["reserved.intake"] == pools["reserved.work"] == 0


def test_a_chunked_body_without_content_length_is_admitted_and_read(
        make_client: ClientFactory) -> None:
    client = make_client(memory_budget_bytes=40_000_000)
    boundary = "b0undary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="preset"\r\n\r\nsobel\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n'
            "Content-Type: image/png\r\n\r\n").encode()
    body += png_bytes(np.full((20, 20), 128, dtype=np.uint8)) + f"\r\n--{boundary}--\r\n".encode()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 100):
            yield body[start:start + 100]

    response = client.post("/v1/convolve", content=chunks(),
                           headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 200, response.text
    assert response.json()["shape"] == [2, 20, 20]
    assert reserved(client)["reserved.intake"] == 0


def test_a_chunked_body_over_the_upload_limit_is_a_413(make_client: ClientFactory) -> None:
    client = make_client(max_upload_bytes=1000)

    def chunks() -> Iterator[bytes]:
        for _ in range(30):
            yield b"x" * 100

    response = client.post("/v1/convolve", content=chunks(),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert "CONVSERVE_MAX_UPLOAD_BYTES" in response.json()["detail"]


def test_uploads_up_to_the_limit_are_never_spooled_to_disk(make_client: ClientFactory) -> None:
    make_client(max_upload_bytes=30_000_000)
    assert MultiPartParser.spool_max_size >= 30_000_000


@pytest.fixture(scope="module")
def exhausted_app() -> Iterator[TestClient]:
    """The real app plus two routes that really run out: /dev/full (ENOSPC) and MemoryError."""
    app: FastAPI = create_app(app_settings())

    @app.post("/test/disk-full")
    async def disk_full() -> None:
        with open("/dev/full", "wb") as full:
            full.write(b"spooled upload")
            full.flush()

    @app.post("/test/out-of-memory")
    async def out_of_memory() -> None:
        np.ones(2**62, dtype=np.uint8)  # numpy raises MemoryError for 4 EiB

    @app.post("/test/missing-file")
    async def missing_file() -> None:
        Path("/nonexistent/convserve-test").read_bytes()  # FileNotFoundError, an OSError

    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


@pytest.mark.parametrize(("path", "what"), [("/test/disk-full", "disk space"),
                                            ("/test/out-of-memory", "memory")])
def test_running_out_of_disk_or_memory_is_a_retryable_503(exhausted_app: TestClient, path: str,
                                                          what: str) -> None:
    if path == "/test/disk-full":
        pytest.importorskip("os").stat("/dev/full")
    response = exhausted_app.post(path)
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1
    problem = response.json()
    assert problem["type"].endswith("resources-exhausted") and what in problem["detail"]


def test_other_os_errors_stay_internal_errors(exhausted_app: TestClient) -> None:
    response = exhausted_app.post("/test/missing-file")
    assert response.status_code == 500
    assert "retry-after" not in response.headers
