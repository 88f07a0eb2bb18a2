"""End to end against a real uvicorn process over loopback."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.server import run_server

pytestmark = pytest.mark.e2e

PHOTO = Path(__file__).resolve().parents[1] / "data" / "chelsea.png"
D2L = {
    "input": {"array": [[[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[1, 2, 3], [4, 5, 6], [7, 8, 9]]]},
    "kernel": {"weight": [[[[0, 1], [2, 3]], [[1, 2], [3, 4]]]]},
    "format": "array",
}


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array.astype(np.float32), allow_pickle=False)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with run_server() as base_url:
        yield base_url


def test_d2l_numbers_over_real_http(server: str) -> None:
    response = httpx.post(server + "/v1/convolve", json=D2L, timeout=30)
    assert response.status_code == 200
    assert response.json()["data"] == [[[56, 72], [104, 120]]]
    assert response.headers["x-request-id"]


def test_photo_sobel_gives_two_pngs_of_the_photo_size(server: str) -> None:
    response = httpx.post(server + "/v1/convolve",
                          files={"image": ("chelsea.png", PHOTO.read_bytes())},
                          data={"preset": "sobel"}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["shape"] == [2, 300, 451]
    for channel in body["channels"]:
        png = Image.open(io.BytesIO(base64.b64decode(channel["png_base64"])))
        assert png.size == (451, 300) and png.mode == "L"


def test_concurrent_requests_all_answer_correctly(server: str) -> None:
    def one(i: int) -> list[list[list[float]]]:
        body = dict(D2L, engine="numpy" if i % 2 else "onnxruntime")
        data: list[list[list[float]]] = httpx.post(
            server + "/v1/convolve", json=body, timeout=60).json()["data"]
        return data

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(24)))
    assert all(r == [[[56, 72], [104, 120]]] for r in results)


def test_metrics_and_docs_are_served(server: str) -> None:
    httpx.get(server + "/v1/presets", timeout=10)
    metrics = httpx.get(server + "/metrics", timeout=10).text
    assert 'route="/v1/presets"' in metrics
    assert httpx.get(server + "/docs", timeout=10).status_code == 200
    assert httpx.get(server + "/openapi.json", timeout=10).json()["info"]["title"] == "convserve"


def test_bad_uploads_never_take_the_server_down(server: str) -> None:
    truncated = PHOTO.read_bytes()[:5000]
    for payload in (truncated, b"\x89PNG\r\n\x1a\n" + b"\0" * 100, b"", b"GIF89a"):
        response = httpx.post(server + "/v1/convolve", files={"image": ("x", payload)},
                              data={"preset": "sobel"}, timeout=30)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
    assert httpx.get(server + "/healthz", timeout=10).status_code == 200


# Full rank on purpose: an all-ones kernel is rank 1, which the NumPy engine runs as two 1-D
# passes (30 instead of 225 multiply-adds per output) and can finish inside a short timeout.
HEAVY_KERNEL = np.random.default_rng(0).standard_normal((48, 1, 15, 15)).astype(np.float32)


def heavy_request(base_url: str) -> httpx.Response:
    return httpx.post(
        base_url + "/v1/convolve",
        files={"image": ("x.npy", npy(np.ones((1, 768, 768))))},
        data={"kernel": json.dumps({"weight": HEAVY_KERNEL.tolist()}), "engine": "numpy",
              "format": "npy"},
        timeout=120,
    )


def test_overload_gets_503_at_once_and_the_slow_request_still_completes() -> None:
    env = {"CONVSERVE_WORKER_THREADS": "1", "CONVSERVE_QUEUE_SIZE": "0"}
    with run_server(env) as base_url:
        results: list[httpx.Response] = []
        slow = threading.Thread(target=lambda: results.append(heavy_request(base_url)))
        slow.start()
        # The slow request holds the only compute thread once its input is decoded there
        # (its upload alone does not: the pool is entered after the body is read).
        deadline = time.monotonic() + 60
        decoded = 'convserve_stage_seconds_count{stage="decode"} 1.0'
        while decoded not in httpx.get(base_url + "/metrics", timeout=10).text:
            assert time.monotonic() < deadline, "the slow request never reached the pool"
            time.sleep(0.02)
        started = time.monotonic()
        refused = httpx.post(base_url + "/v1/convolve", json=D2L, timeout=30)
        refused_after = time.monotonic() - started
        assert not results, "the slow request ended before the pool was tested"
        slow.join(120)
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"]
        assert refused_after < 5  # answered at once, not after the slow request
        assert results and results[0].status_code == 200
        assert httpx.post(base_url + "/v1/convolve", json=D2L, timeout=30).status_code == 200


def test_compute_timeout_answers_504_and_the_server_lives_on() -> None:
    # 0.05 s against about 0.2 s of work on an idle machine (more under load): always 504.
    env = {"CONVSERVE_COMPUTE_TIMEOUT_S": "0.05", "CONVSERVE_WORKER_THREADS": "2"}
    with run_server(env) as base_url:
        response = heavy_request(base_url)
        assert response.status_code == 504, response.text
        assert response.json()["type"] == "/problems/compute-timeout"
        assert httpx.get(base_url + "/healthz", timeout=10).status_code == 200
