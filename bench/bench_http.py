"""HTTP benchmark of POST /v1/convolve (``make bench``; not a test).

R1: a 512x512 RGB PNG (a real photo, resized), preset ``sobel``, ``format=json``.
Measures in one run:

(a) the in-process sum of decode + convolution + encode for R1 (``convserve.flows.convolve``,
    what the server calls, without HTTP);
(b) p50/p99 latency and requests/s of R1 over loopback with 1 and 4 concurrent keep-alive
    connections, against a real uvicorn (uvloop + httptools) in a child process, from a
    minimal HTTP/1.1 client on asyncio streams (see ``load``), beside the median of the same
    requests' Server-Timing ``total`` (the flow's in-process total inside the server, measured
    at the same moment, so a machine whose speed drifts between (a) and (b) cannot skew it);
(c) the same for a 2048x2048 image and for ``format=npy``;
(d) **R2 against thumbor**, thumbor's own job (the 512x512 PNG photo, a 3x3 Laplacian per
    channel with an edge-repeat border, clipped, one RGB PNG at level 1 back): convserve behind
    its launcher with 2 workers, and thumbor 7.8 with 2 processes (``--processes 2``) reading
    the same photo from its file loader at ``PNG_COMPRESSION_LEVEL = 1``, in turn, each at 4
    concurrent connections with ``Connection: close`` (a new connection a request). The two
    answers are checked pixel for pixel against each other and against a NumPy reference
    before anything is timed. thumbor runs from its own virtual environment (``make bench``
    creates ``.venv-thumbor``: thumbor pins its own Pillow), given by ``--thumbor``.

Targets: R1 p50 at 1 connection <= 1.15x its Server-Timing total (b); R2 req/s >= 6x
thumbor's. Client and servers share this machine's cores, so the 4-connection figures include
the client's own work; thumbor is sent a GET (it loads the photo from disk) while convserve
receives the photo as an upload.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

if __package__ is None or __package__ == "":  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.thumbor_peer import r2_against_thumbor  # noqa: E402
from bench.wire import free_port, multipart_post, wait_http  # noqa: E402
from convserve import allocator, flows  # noqa: E402
from convserve.settings import Settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET_R1_HTTP = 1.15
PHOTO = ROOT / "tests" / "data" / "chelsea.png"


def photo_png(side: int) -> bytes:
    image = Image.open(PHOTO).convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def in_process_ms(data: bytes, fmt: str, runs: int) -> float:
    """Median ms of decode + prepare + convolve + encode, as the server does it."""
    ctx = flows.FlowContext.local(Settings())
    options: dict[str, object] = {
        "kernel": None, "preset": "sobel", "preset_params": {}, "stride": 1, "padding": None,
        "dilation": 1, "groups": None, "padding_mode": None, "engine": None, "device": None,
    }
    times = []
    for _ in range(runs + 2):
        started = time.perf_counter()
        flows.convolve(ctx, flows.Source(data=data), options, fmt=fmt)
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times[2:])


def start_server(port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CONVSERVE_LOG_LEVEL": "warning", "CONVSERVE_SAMPLE_MODEL": "0"}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "convserve.main:app", "--host", "127.0.0.1",
         "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--no-access-log"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return wait_ready(process, port, 60)


def wait_ready(
    process: subprocess.Popen[bytes], port: int, timeout_s: float
) -> subprocess.Popen[bytes]:
    """``process`` once its ``/readyz`` on ``port`` answers 200; killed after ``timeout_s``."""
    wait_http(process, f"http://127.0.0.1:{port}/readyz", timeout_s)
    return process


def multipart_request(port: int, data: bytes, fmt: str) -> bytes:
    """The whole HTTP/1.1 request of R1 (headers and multipart body), built once."""
    return multipart_post(port, "/v1/convolve", {"preset": "sobel", "format": fmt}, data)


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   request: bytes) -> float | None:
    """Send one request on a kept-alive connection and read its whole response; the
    ``total`` of its Server-Timing header in ms (None without one)."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = head[9:12]
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    body = await reader.readexactly(length)
    if status != b"200":
        raise SystemExit(f"the server answered {status.decode()}: {body[:300]!r}")
    timing = next((line.split(b":", 1)[1] for line in head.split(b"\r\n")
                   if line.lower().startswith(b"server-timing:")), b"")
    totals = [float(part.split(b"dur=")[1]) for part in timing.split(b",")
              if part.strip().startswith(b"total;")]
    return totals[0] if totals else None


async def load(port: int, data: bytes, fmt: str, connections: int, requests: int
               ) -> tuple[list[float], list[float], float]:
    """Send ``requests`` requests over ``connections`` concurrent keep-alive connections;
    their latencies, their Server-Timing totals (ms) and the requests per second.

    The client is HTTP/1.1 on raw asyncio streams with the request bytes built once, so the
    latencies are the server's (plus loopback), not a client library's: httpx, for one, adds
    several ms per R1 request of its own (multipart encoding, response parsing).
    """
    request = multipart_request(port, data, fmt)
    latencies: list[float] = []
    totals: list[float] = []
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]
    for reader, writer in streams:  # warm the connections and the session cache
        await exchange(reader, writer, request)
    queue = list(range(requests))

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while queue:
            queue.pop()
            started = time.perf_counter()
            total = await exchange(reader, writer, request)
            latencies.append(1000 * (time.perf_counter() - started))
            if total is not None:
                totals.append(total)

    started = time.perf_counter()
    await asyncio.gather(*(worker(reader, writer) for reader, writer in streams))
    elapsed = time.perf_counter() - started
    for _, writer in streams:
        writer.close()
    return latencies, totals, requests / elapsed


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60, help="requests per R1 row")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    parser.add_argument("--r2-requests", type=int, default=200, help="requests per R2 side")
    parser.add_argument("--thumbor", type=Path, default=ROOT / ".venv-thumbor" / "bin" / "thumbor",
                        help="thumbor's executable (R2 is skipped, and reported so, without it)")
    args = parser.parse_args()
    allocator.tune()  # the in-process side runs as a service process does

    cases = [
        ("R1 512x512 json", photo_png(512), "json", args.requests),
        ("R1 512x512 npy", photo_png(512), "npy", args.requests),
        ("2048x2048 json", photo_png(2048), "json", max(8, args.requests // 6)),
        ("2048x2048 npy", photo_png(2048), "npy", max(8, args.requests // 6)),
    ]
    port = free_port()
    server = start_server(port)
    rows = []
    try:
        for name, data, fmt, count in cases:
            inproc = in_process_ms(data, fmt, runs=max(5, count // 4))
            for connections in (1, 4):
                latencies, totals, rps = asyncio.run(load(port, data, fmt, connections, count))
                rows.append((name, connections, inproc, percentile(totals, 50),
                             percentile(latencies, 50), percentile(latencies, 99), rps))
    finally:
        server.terminate()
        server.wait(10)

    print(f"cores available: {len(os.sched_getaffinity(0))}; server: 1 uvicorn worker "
          "(uvloop, httptools), onnxruntime on cpu\n")
    print("| request | conns | in-process ms (a) | Server-Timing total p50 (b) | p50 ms | "
          "p99 ms | req/s | p50 / (a) | p50 / (b) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    verdict = "n/a"
    for name, connections, inproc, server_ms, p50, p99, rps in rows:
        print(f"| {name} | {connections} | {inproc:.1f} | {server_ms:.1f} | {p50:.1f} | "
              f"{p99:.1f} | {rps:.1f} | {p50 / inproc:.2f}x | {p50 / server_ms:.2f}x |")
        if name == "R1 512x512 json" and connections == 1:
            target = p50 / server_ms
            verdict = "PASS" if target <= TARGET_R1_HTTP else "FAIL"
    print(f"\nTarget R1 p50 at 1 connection <= {TARGET_R1_HTTP}x its in-process total (b, the "
          f"same requests' Server-Timing total): {target:.2f}x {verdict}")
    failed = verdict != "PASS"
    print()
    failed |= not r2_against_thumbor(args.thumbor, photo_png(512), args.r2_requests)
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    raise SystemExit(main())
