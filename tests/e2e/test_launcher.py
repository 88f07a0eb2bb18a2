"""The container command on the host: ``python -m convserve.launcher`` serves with N workers,
the Dockerfile's own HEALTHCHECK command tracks readiness, the workers store the sample network
once in the store they share, and SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from convserve.models.sample import SAMPLE_FILENAME, write_sample
from tests.docker.dockerfiles import parse_dockerfile

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_launcher_serves_workers_that_pass_the_image_healthcheck(tmp_path: Path) -> None:
    program, flag, code = parse_dockerfile(ROOT / "Dockerfile").stages[-1].json_command(
        "HEALTHCHECK")
    assert (program, flag) == ("python3", "-c")
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CONVSERVE_", "WEB_CONCURRENCY", "OMP_", "OPENBLAS_"))}
    # As the image: the sample network built ahead of time, a model store of its own.
    prebuilt = tmp_path / "share" / SAMPLE_FILENAME
    write_sample(prebuilt)
    store = tmp_path / "models"
    env.update({"HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "2",
                "CONVSERVE_LOG_LEVEL": "warning", "CONVSERVE_MODEL_DIR": str(store),
                "CONVSERVE_SAMPLE_MODEL_FILE": str(prebuilt)})

    def healthcheck() -> int:
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              timeout=10).returncode

    assert healthcheck() != 0, "the health check passes with nothing listening"
    log = tmp_path / "launcher.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "convserve.launcher"], env=env,
                                   stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while healthcheck() != 0:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"never healthy:\n{log.read_text()}"
            time.sleep(0.2)
        plan = json.loads(log.read_text().splitlines()[0])
        cores = len(os.sched_getaffinity(0))
        assert plan["workers"] == 2
        assert plan["intra_op_threads"] == plan["worker_threads"] == max(1, cores // 2)
        # The health check passes once a worker is ready; the other may still be warming up.
        while (ready := httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)).status_code != 200:
            assert time.monotonic() < deadline, f"never ready:\n{log.read_text()}"
            time.sleep(0.2)
        assert ready.json()["status"] == "ready"
        # Both workers try to store the sample at start-up; the store holds it once.
        while not httpx.get(f"http://127.0.0.1:{port}/v1/models/sample",
                            timeout=10).json()["stored"]:
            assert time.monotonic() < deadline, f"sample never stored:\n{log.read_text()}"
            time.sleep(0.2)
        listed = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).json()["models"]
        assert [item["filename"] for item in listed] == [SAMPLE_FILENAME]
        assert [p.name for p in store.glob("*.onnx")] == [f"{listed[0]['id']}.onnx"]
        assert not list(store.glob(".tmp-*"))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log.read_text()
        assert healthcheck() != 0, "the health check passes after the server stopped"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
