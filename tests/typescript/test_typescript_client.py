"""The TypeScript client (clients/typescript) through its own tools, so `make test` runs them.

``npm test`` there compiles the package and runs ``node --test``: every method against a real
uvicorn started with this interpreter, errors from real 4xx answers, retries and cancellation
against a scripted local server, the README's quick start from an ``npm pack`` installed into an
empty directory, and the drift checks (``src/openapi.ts`` against a fresh ``openapi-typescript``
run, the demo page's copy against a fresh ``tsc`` build). ``make test`` runs ``npm ci`` first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "clients" / "typescript"

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def npm(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``npm <args>`` in the package; fail with its output unless it exits 0."""
    executable = shutil.which("npm")
    assert executable, "npm is not on PATH: install Node.js 18+ with npm to test the TS client"
    assert (PACKAGE / "node_modules" / ".bin" / "tsc").exists(), (
        "clients/typescript/node_modules is missing: run `make test`, or `npm ci` in "
        "clients/typescript")
    env = {**os.environ, "CONVSERVE_PYTHON": sys.executable}
    done = subprocess.run([executable, *args], cwd=PACKAGE, capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)
    assert done.returncode == 0, (
        f"npm {' '.join(args)} exited {done.returncode}:\n{done.stdout[-8000:]}\n"
        f"{done.stderr[-4000:]}")
    return done


def test_typescript_client_suite_passes_against_a_real_server() -> None:
    done = npm("test")
    summary = dict(line[2:].split(" ", 1) for line in done.stdout.splitlines()
                   if line.startswith("# ") and line[2:].split(" ", 1)[0] in ("tests", "fail"))
    assert summary["fail"] == "0"
    assert int(summary["tests"]) >= 30
