"""Run the real service in a uvicorn subprocess for tests that talk HTTP over loopback.

    with run_server({"CONVSERVE_API_KEYS": "secret"}) as base_url:
        httpx.get(base_url + "/v1/presets", headers={"X-API-Key": "secret"})

Each server gets a free port and its own environment (the test process's, plus ``env``), and
is stopped when the block ends. The SDK, end-to-end and browser suites share this helper.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

__all__ = ["ServerStartError", "run_server"]

REPO_ROOT = Path(__file__).resolve().parent.parent

# Enough for a cold start of Python, NumPy, ONNX Runtime and the warm-up convolution on a
# busy 2-core CI machine.
START_TIMEOUT_S = 90.0


class ServerStartError(RuntimeError):
    """The server exited or never became ready; the message carries its log."""


def _log_tail(log: Path, limit: int = 4000) -> str:
    text = log.read_text(errors="replace")
    return text[-limit:]


def _wait(base_url: str, process: subprocess.Popen[bytes], log: Path, path: str,
          timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServerStartError(
                    f"the server exited with status {process.returncode} before it was ready:\n"
                    + _log_tail(log)
                )
            try:
                response = client.get(base_url + path)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:300]}"
            time.sleep(0.05)
    raise ServerStartError(f"{base_url}{path} was not 200 after {timeout:g} s ({last}):\n"
                           + _log_tail(log))


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _listening_socket(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(128)
    return sock


@contextmanager
def run_server(
    env: Mapping[str, str] | None = None,
    *,
    wait_path: str = "/readyz",
    app: str = "convserve.main:app",
    timeout: float = START_TIMEOUT_S,
) -> Iterator[str]:
    """Start ``python -m uvicorn <app>`` on a free loopback port; yield its base URL.

    The listening socket is bound here and handed to uvicorn (``--fd``), so no other process
    can take the port between choosing it and serving on it.

    Parameters
    ----------
    env : Mapping[str, str], optional
        Variables added to (and overriding) this process's environment, e.g.
        ``{"CONVSERVE_MAX_UPLOAD_BYTES": "2000"}``.
    wait_path : str
        Yield once this path answers 200 (``/readyz``: engines warm); ``/healthz`` for a
        server that is never meant to become ready.
    app : str
        The ASGI app to serve, as ``module:attribute``.
    timeout : float
        Seconds to wait for ``wait_path`` before giving up.

    Raises
    ------
    ServerStartError
        When the process exits or does not become ready in time; the message has its log.
    """
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    # No sample network at start-up (38 MB and a second of CPU per server) unless asked for.
    full_env.setdefault("CONVSERVE_SAMPLE_MODEL", "0")
    with tempfile.TemporaryDirectory(prefix="convserve-server-") as tmp:
        log = Path(tmp) / "server.log"
        with _listening_socket("127.0.0.1") as sock, log.open("wb") as sink:
            base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", app, "--fd", str(sock.fileno()),
                 "--no-access-log", "--log-level", "warning"],
                cwd=REPO_ROOT,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                pass_fds=(sock.fileno(),),
            )
        try:
            _wait(base_url, process, log, wait_path, timeout)
            yield base_url
        finally:
            _stop(process)
