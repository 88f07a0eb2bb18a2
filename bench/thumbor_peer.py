"""R2 over HTTP: convserve (2 workers) against thumbor (2 processes) on thumbor's own job.

The job: a 512x512 RGB PNG photo, a 3x3 Laplacian per channel with an edge-repeat border,
clipped to 8 bits, one RGB PNG at level 1 back. thumbor spells it
``/unsafe/filters:convolution(0;1;0;1;-4;1;0;1;0,3,false):format(png)/photo.png`` (its C
convolution filter clamps reads at the edges and clips the result); convserve is sent the
photo as a multipart upload with that kernel, ``groups=3``, ``padding=1``,
``padding_mode=replicate``, ``normalize=clip`` and ``format=image``. Both answers are checked
against a NumPy reference, pixel for pixel, before any request is timed.

Load: 4 concurrent connections, ``Connection: close`` (one new TCP connection a request, as a
browser or a CDN fetching thumbnails mostly does). Both servers run at once and take turns in
five rounds (an idle server costs nothing), so both see the same load on a shared machine.
Used by :mod:`bench.bench_http`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.wire import free_port, multipart_post, wait_http

LAPLACIAN = [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]
THUMBOR_PATH = "/unsafe/filters:convolution(0;1;0;1;-4;1;0;1;0,3,false):format(png)/photo.png"
THUMBOR_CONF = """\
LOADER = 'thumbor.loaders.file_loader'
FILE_LOADER_ROOT_PATH = {root!r}
STORAGE = 'thumbor.storages.no_storage'
RESULT_STORAGE = 'thumbor.result_storages.no_storage'
PNG_COMPRESSION_LEVEL = 1
ALLOW_UNSAFE_URL = True
"""
TARGET = 6.0
WORKERS = 2
CONNECTIONS = 4
ROUNDS = 5


def reference(png: bytes) -> np.ndarray:
    """The job in float64 NumPy: ``(H, W, 3)`` uint8."""
    x = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)
    p = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode="edge")
    total = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4 * p[1:-1, 1:-1]
    return np.clip(total, 0, 255).astype(np.uint8)


def convserve_request(port: int, png: bytes) -> bytes:
    """The whole R2 request to convserve, built once."""
    fields = {
        "kernel": json.dumps({"weight": [[LAPLACIAN]] * 3, "layout": "OIHW"}),
        "groups": "3", "padding": "1", "padding_mode": "replicate", "normalize": "clip",
        "format": "image",
    }
    return multipart_post(port, "/v1/convolve", fields, png, "photo.png", close=True)


def thumbor_request(port: int) -> bytes:
    return (f"GET {THUMBOR_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Connection: close\r\n\r\n").encode()


async def one_shot(port: int, request: bytes) -> bytes:
    """Open a connection, send ``request``, read the answer until the server closes; its body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    if head[9:12] != b"200":
        raise SystemExit(f"127.0.0.1:{port} answered {head[:200]!r}: {body[:300]!r}")
    if b"transfer-encoding: chunked" in head.lower():
        raise SystemExit(f"127.0.0.1:{port} answered chunked; this client reads whole bodies")
    return body


async def closed_loop(port: int, request: bytes, requests: int) -> float:
    """Requests per second of ``requests`` one-shot requests over CONNECTIONS at a time."""
    remaining = list(range(requests))

    async def worker() -> None:
        while remaining:
            remaining.pop()
            await one_shot(port, request)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return requests / (time.perf_counter() - started)


def check(port: int, request: bytes, expected: np.ndarray, name: str) -> None:
    """Fail unless the server's answer to ``request`` has exactly the reference's pixels."""
    body = asyncio.run(one_shot(port, request))
    got = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))
    if got.shape != expected.shape or not np.array_equal(got, expected):
        raise SystemExit(f"{name}'s answer differs from the reference in "
                         f"{int((got != expected).sum())} samples")


def alternating(sides: dict[str, tuple[int, bytes]], requests: int) -> dict[str, float]:
    """req/s per side, the sides taking turns in ROUNDS rounds so both see the same load."""
    for port, request in sides.values():  # warm-up: sessions, caches, connections
        asyncio.run(closed_loop(port, request, max(8, requests // 10)))
    spent = dict.fromkeys(sides, 0.0)
    per_round = max(1, requests // ROUNDS)
    for _ in range(ROUNDS):
        for name, (port, request) in sides.items():
            spent[name] += per_round / asyncio.run(closed_loop(port, request, per_round))
    return {name: per_round * ROUNDS / seconds for name, seconds in spent.items()}


def r2_against_thumbor(thumbor: Path, png: bytes, requests: int) -> bool:
    """Print the R2 rows and the target's verdict; False when the target fails or cannot run."""
    print(f"R2 over HTTP: {WORKERS} workers/processes each, {CONNECTIONS} connections, "
          f"Connection: close, {requests} requests per side")
    if not thumbor.exists():
        print(f"thumbor not found at {thumbor} (make bench creates .venv-thumbor): "
              f"R2 >= {TARGET:g}x thumbor NOT MEASURED")
        return False
    expected = reference(png)
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "photo.png").write_bytes(png)
        conf = root / "thumbor.conf"
        conf.write_text(THUMBOR_CONF.format(root=str(root)))
        ours, theirs = free_port(), free_port()
        env = {**os.environ, "PORT": str(ours), "HOST": "127.0.0.1",
               "WEB_CONCURRENCY": str(WORKERS), "CONVSERVE_LOG_LEVEL": "warning",
               "CONVSERVE_SAMPLE_MODEL": "0"}
        try:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "convserve.launcher"], env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True))
            processes.append(subprocess.Popen(
                [str(thumbor), "-i", "127.0.0.1", "-p", str(theirs), "-c", str(conf),
                 "-l", "error", "--processes", str(WORKERS)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True))  # its forked processes outlive a terminated parent
            wait_http(processes[0], f"http://127.0.0.1:{ours}/readyz", 90)
            wait_http(processes[1], f"http://127.0.0.1:{theirs}/healthcheck", 60)
            sides = {"convserve": (ours, convserve_request(ours, png)),
                     "thumbor": (theirs, thumbor_request(theirs))}
            for name, (port, request) in sides.items():
                check(port, request, expected, name)
            rates = alternating(sides, requests)
        finally:
            for process in processes:  # each leads its own process group: stop them all
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                process.wait(15)
    version = subprocess.run([str(thumbor), "--version"], capture_output=True, text=True,
                             check=False).stdout.strip() or "thumbor"
    ratio = rates["convserve"] / rates["thumbor"]
    passed = ratio >= TARGET
    print("| server | req/s |\n| --- | ---: |")
    print(f"| convserve | {rates['convserve']:.1f} |\n| {version} | {rates['thumbor']:.1f} |")
    print(f"Target R2 req/s >= {TARGET:g}x thumbor: {ratio:.2f}x "
          f"{'PASS' if passed else 'FAIL'} (both answers equal the NumPy reference)")
    return passed
