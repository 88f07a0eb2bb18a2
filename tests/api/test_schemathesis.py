"""The contract holds under a fuzzer: schemathesis, every check, every phase, a live server.

schemathesis runs its examples, coverage, fuzzing and stateful phases with ``--checks all``
against the real service in a uvicorn process, from the OpenAPI document the service serves.
tests/api/schemathesis.toml bounds the examples (fixed seed) and replaces
``positive_data_acceptance`` with the check in tests/api/schemathesis_hooks.py: a schema-valid
request never fails schema validation; content a schema cannot state (undecodable image bytes,
shapes that must fit together) is a 422 problem of its own type.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server import REPO_ROOT, run_server

CONFIG = Path(__file__).with_name("schemathesis.toml")
PHASES = "examples,coverage,fuzzing,stateful"


@pytest.mark.e2e
@pytest.mark.slow
def test_schemathesis_finds_no_failure_with_every_check_over_every_phase() -> None:
    with run_server({"CONVSERVE_COMPUTE_TIMEOUT_S": "30"}) as base_url:
        result = subprocess.run(
            [str(Path(sys.executable).with_name("schemathesis")), "--no-color",
             "--config-file", str(CONFIG), "run", f"{base_url}/openapi.json",
             "--checks", "all", "--exclude-checks", "positive_data_acceptance",
             "--phases", PHASES, "--workers", "1"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-20_000:]
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in report or f"✅  {phase}" in report, report[-5_000:]
