"""Raw HTTP/1.1 requests for the HTTP benchmarks: built once as bytes, sent as they are.

The load generators (:mod:`bench.bench_http`, :mod:`bench.thumbor_peer`,
:mod:`bench.bench_batch`) write these bytes on asyncio streams, so what they time is the
server's work plus loopback, not a client library's request building.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Mapping

import httpx

BOUNDARY = "convserve-bench-boundary"


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def multipart_post(port: int, path: str, fields: Mapping[str, str], image: bytes,
                   filename: str = "r.png", *, close: bool = False) -> bytes:
    """The whole request (headers and body): ``fields`` as text parts, then ``image`` as the
    ``image`` file part; ``close`` asks for ``Connection: close``."""
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        .encode() for name, value in fields.items()
    ]
    parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; '
                 f'filename="{filename}"\r\nContent-Type: image/png\r\n\r\n'.encode() + image
                 + b"\r\n")
    parts.append(f"--{BOUNDARY}--\r\n".encode())
    body = b"".join(parts)
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            + ("Connection: close\r\n" if close else "")
            + f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def wait_http(process: subprocess.Popen[bytes], url: str, timeout_s: float) -> None:
    """Return once ``url`` answers 200; exit if ``process`` (its server) ends first, and kill
    it after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: the server exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):  # not listening yet
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{url} did not answer 200 in {timeout_s:g} s")
