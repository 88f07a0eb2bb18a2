"""The CPU image on a real Docker engine: builds with the legacy builder, serves the D2L
example as a non-root user within a 1-CPU limit, stores the sample network it built, and its
own HEALTHCHECK turns healthy.

Building the image takes a minute or more, so ``make test`` skips this module unless
``CONVSERVE_DOCKER_TESTS=1``; the CI docker stage (.ci/docker-stage.sh) starts an engine, sets it
and runs this module besides the compose stack. It also skips where no engine runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from convserve.models.sample import sample_model_bytes

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TAG = "convserve:pytest"
LOCAL_BASES = ("local/python:3.11-bookworm", "python:3.12-slim")
D2L_REQUEST = {
    "input": {"array": [[[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[1, 2, 3], [4, 5, 6], [7, 8, 9]]]},
    "kernel": {"weight": [[[[0, 1], [2, 3]], [[1, 2], [3, 4]]]]},
    "format": "array",
}


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "DOCKER_BUILDKIT": "0"})


def base_image() -> str:
    """The base to build on: $BASE_IMAGE, else a local one; skips when none is here."""
    if os.environ.get("CONVSERVE_DOCKER_TESTS") != "1":
        pytest.skip("the image test builds the image (a minute or more) and runs in the CI "
                    "docker stage (.ci/docker-stage.sh); set CONVSERVE_DOCKER_TESTS=1 to run it")
    if shutil.which("docker") is None:
        pytest.skip("no docker command here; the CI docker stage installs one")
    info = docker("info", "--format", "{{.ServerVersion}}", timeout=20)
    if info.returncode != 0:
        pytest.skip(f"no Docker engine is running ({info.stderr.strip()[:200]}); "
                    "../shared/tools/local-docker.sh starts one")
    candidates = [os.environ["BASE_IMAGE"]] if os.environ.get("BASE_IMAGE") else LOCAL_BASES
    for candidate in candidates:
        if docker("image", "inspect", candidate).returncode == 0:
            return candidate
    pytest.skip(f"none of the base images {candidates} is present and Docker Hub may be out of "
                "reach; ../shared/tools/local-docker.sh builds local/python:3.11-bookworm")


TASK_NICE = """
import contextlib, glob
for stat in glob.glob("/proc/[0-9]*/task/*/stat"):
    with contextlib.suppress(OSError):  # a thread that ended meanwhile
        print(open(stat).read().rsplit(")", 1)[1].split()[16])
"""
"""Prints the nice value of every thread in the container (field 19 of its stat)."""


@pytest.fixture(scope="module")
def image() -> str:
    base = base_image()
    build = docker("build", "-q", "--build-arg", f"BASE_IMAGE={base}", "-t", TAG, str(ROOT),
                   timeout=900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return TAG


@pytest.fixture
def container(image: str) -> Iterator[str]:
    run = docker("run", "-d", "--cpus", "1", "--read-only", "--tmpfs", "/tmp",
                 "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                 "--health-interval", "1s", "-p", "127.0.0.1::8000", image)
    assert run.returncode == 0, run.stderr
    cid = run.stdout.strip()
    try:
        yield cid
    finally:
        docker("rm", "-f", cid)


def test_image_serves_d2l_as_non_root_within_one_cpu(container: str) -> None:
    address = docker("port", container, "8000/tcp").stdout.splitlines()[0]
    base_url = f"http://{address}"
    deadline = time.monotonic() + 90
    with httpx.Client(base_url=base_url, timeout=10) as client:
        while True:
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, docker("logs", container).stderr[-3000:]
            time.sleep(0.2)
        answer = client.post("/v1/convolve", json=D2L_REQUEST)
        # The sample network, built into the image, is stored at start-up with the id a build
        # here gives (the same bytes on every build).
        while not (sample := client.get("/v1/models/sample").json())["stored"]:
            assert time.monotonic() < deadline, docker("logs", container).stderr[-3000:]
            time.sleep(0.2)
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"] == [[[56, 72], [104, 120]]]
    assert sample["id"] == hashlib.sha256(sample_model_bytes()).hexdigest()[:32]

    assert docker("exec", container, "id", "-u").stdout.strip() == "10001"
    logs = docker("logs", container)
    plan = json.loads(next(line for line in (logs.stdout + logs.stderr).splitlines()
                           if '"starting uvicorn"' in line))
    assert (plan["cpu_quota"], plan["cores"], plan["workers"], plan["intra_op_threads"]) == (
        1.0, 1, 1, 1)
    # Compute threads run nicer than the event loops, without any capability (cap-drop ALL).
    assert "keep the event loop's priority" not in logs.stdout + logs.stderr
    nice_values = docker("exec", container, "python3", "-c", TASK_NICE).stdout.split()
    assert {"0", "10"} <= set(nice_values), nice_values

    health = "starting"
    while health != "healthy" and time.monotonic() < deadline:
        time.sleep(0.5)
        health = docker("inspect", "--format", "{{.State.Health.Status}}", container).stdout
        health = health.strip()
    assert health == "healthy"
