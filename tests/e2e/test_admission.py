"""Admission against a real uvicorn: a full budget, slow senders, clients that vanish.

Raw sockets play the clients that an HTTP library would not: one that sends half a body and
stops, one that trickles, one that disconnects.
"""

from __future__ import annotations

import io
import json
import re
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.server import run_server

pytestmark = pytest.mark.e2e

BUDGET = 400_000  # intake pool: 100,000 bytes, i.e. bodies of 50,000 bytes in all


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with run_server({"CONVSERVE_MEMORY_BUDGET_BYTES": str(BUDGET),
                     "CONVSERVE_BODY_TIMEOUT_S": "2", "CONVSERVE_COMPUTE_TIMEOUT_S": "1",
                     "WEB_CONCURRENCY": "1"}) as url:
        yield url


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def head(url: str, length: int) -> bytes:
    host = address(url)[0]
    return (f"POST /v1/convolve HTTP/1.1\r\nHost: {host}\r\nContent-Length: {length}\r\n"
            "Content-Type: application/json\r\n\r\n").encode()


def metrics(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics").text
    found = {}
    for name, labels, value in re.findall(r"^(convserve_\w+)(\{[^}]*\})? ([0-9.e+-]+)$", text,
                                          re.MULTILINE):
        found[name + labels] = float(value)
    return found


def reserved(url: str) -> float:
    pools = metrics(url)
    return sum(v for k, v in pools.items() if k.startswith("convserve_memory_reserved_bytes"))


def server_errors(url: str) -> float:
    return sum(v for k, v in metrics(url).items()
               if k.startswith("convserve_requests_total") and 'status="500"' in k)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    header, _, body = data.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def wait_until_free(url: str, timeout: float = 10.0) -> float:
    deadline = time.monotonic() + timeout
    while (left := reserved(url)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def test_a_body_that_does_not_arrive_in_time_gets_408_and_frees_its_bytes(server: str) -> None:
    timeouts = metrics(server).get("convserve_body_timeouts_total", 0.0)
    with socket.create_connection(address(server), timeout=30) as sock:
        sock.sendall(head(server, 1000) + b'{"input": ')  # and then nothing more
        status, headers, body = read_response(sock)
    assert status == 408
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert "CONVSERVE_BODY_TIMEOUT_S" in problem["detail"] and "10 bytes" in problem["detail"]
    assert metrics(server)["convserve_body_timeouts_total"] == timeouts + 1
    assert wait_until_free(server) == 0


def test_a_full_budget_makes_others_wait_then_answers_503_with_retry_after(server: str) -> None:
    # The holder declares 45,000 bytes (90,000 reserved of the 100,000 intake) and trickles.
    with socket.create_connection(address(server), timeout=30) as holder:
        holder.sendall(head(server, 45_000) + b"{")
        time.sleep(0.2)
        response = httpx.post(server + "/v1/convolve", content=b" " * 30_000,
                              headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 503  # a clean answer, not a reset: its body was drained
    assert int(response.headers["retry-after"]) >= 1
    assert "CONVSERVE_MEMORY_BUDGET_BYTES" in response.json()["detail"]
    assert wait_until_free(server) == 0
    after = httpx.post(server + "/v1/convolve", content=b" " * 30_000,
                       headers={"Content-Type": "application/json"}, timeout=30)
    assert after.status_code == 422  # admitted now (and refused for what it says)


def test_clients_that_vanish_mid_upload_free_their_bytes_and_log_no_500(server: str) -> None:
    before = server_errors(server)
    sockets = []
    for _ in range(20):
        sock = socket.create_connection(address(server), timeout=30)
        sock.sendall(head(server, 4000) + b"{" * 1000)
        sockets.append(sock)
    time.sleep(0.3)
    for sock in sockets:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # RST, as a killed client would
    assert wait_until_free(server) == 0
    assert server_errors(server) == before
    assert httpx.get(server + "/healthz").status_code == 200


def test_a_request_reserves_its_working_memory_while_it_computes() -> None:
    """The header-stage estimate of a 1 MP image with 8 output channels (about 56 MB) is
    clamped to the whole work pool (300,000 bytes): it holds all of it until it ends."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (1000, 1000, 3), dtype=np.uint8)
                    ).save(buffer, format="PNG", compress_level=1)
    kernel = json.dumps({"weight": np.full((8, 3, 9, 9), 0.01).tolist()})
    with run_server({"CONVSERVE_MEMORY_BUDGET_BYTES": str(BUDGET), "WEB_CONCURRENCY": "1",
                     "CONVSERVE_MAX_UPLOAD_BYTES": "10000000"}) as url:
        answers: list[int] = []

        def compute() -> None:
            answers.append(httpx.post(url + "/v1/convolve", timeout=120,
                                      files={"image": ("x.png", buffer.getvalue())},
                                      data={"kernel": kernel, "format": "png"}).status_code)

        worker = threading.Thread(target=compute)
        worker.start()
        seen = 0.0
        while worker.is_alive():
            seen = max(seen, metrics(url).get('convserve_memory_reserved_bytes{pool="work"}', 0))
            time.sleep(0.02)
        worker.join()
        assert answers == [200]
        assert seen == BUDGET - BUDGET // 4  # the work pool, all of it
        assert reserved(url) == 0
