"""The container launcher: CPU quota from cgroup files, worker and thread plan, uvicorn argv."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from convserve.launcher import (
    MAX_DEFAULT_WORKERS,
    cgroup_cpu_quota,
    effective_cores,
    plan_launch,
    uvicorn_argv,
)
from convserve.settings import Settings


def write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param({"cpu.max": "200000 100000"}, 2.0, id="v2-2-cpus"),
        pytest.param({"cpu.max": "150000 100000"}, 1.5, id="v2-1.5-cpus"),
        pytest.param({"cpu.max": "max 100000"}, None, id="v2-unlimited"),
        pytest.param({"cpu/cpu.cfs_quota_us": "50000", "cpu/cpu.cfs_period_us": "100000"}, 0.5,
                     id="v1-half-cpu"),
        pytest.param({"cpu,cpuacct/cpu.cfs_quota_us": "400000",
                      "cpu,cpuacct/cpu.cfs_period_us": "100000"}, 4.0, id="v1-cpu,cpuacct"),
        pytest.param({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None,
                     id="v1-unlimited"),
        pytest.param({}, None, id="no-cgroup-files"),
    ],
)
def test_cgroup_cpu_quota_reads_v1_and_v2(
    tmp_path: Path, files: dict[str, str], expected: float | None
) -> None:
    for name, text in files.items():
        write(tmp_path, name, text)
    assert cgroup_cpu_quota(tmp_path) == expected


def test_cgroup_v2_wins_over_leftover_v1_files(tmp_path: Path) -> None:
    write(tmp_path, "cpu.max", "max 100000")
    write(tmp_path, "cpu/cpu.cfs_quota_us", "100000")
    write(tmp_path, "cpu/cpu.cfs_period_us", "100000")
    assert cgroup_cpu_quota(tmp_path) is None


@pytest.mark.parametrize(
    ("affinity", "quota", "expected"),
    [
        pytest.param(64, 2.0, 2, id="quota-below-affinity"),
        pytest.param(64, 1.5, 1, id="fraction-rounds-down"),
        pytest.param(64, 0.25, 1, id="at-least-one"),
        pytest.param(2, 8.0, 2, id="affinity-below-quota"),
        pytest.param(8, None, 8, id="no-quota"),
    ],
)
def test_effective_cores_is_affinity_lowered_to_quota(
    affinity: int, quota: float | None, expected: int
) -> None:
    assert effective_cores(affinity, quota) == expected


def test_two_workers_on_two_cpus_get_one_thread_each() -> None:
    plan = plan_launch({"WEB_CONCURRENCY": "2"}, affinity=64, quota=2.0)
    assert (plan.cores, plan.workers, plan.intra_op_threads, plan.worker_threads) == (2, 2, 1, 1)
    assert plan.env["CONVSERVE_INTRA_OP_THREADS"] == "1"
    assert plan.env["CONVSERVE_WORKER_THREADS"] == "1"
    assert plan.env["OMP_NUM_THREADS"] == plan.env["OPENBLAS_NUM_THREADS"] == "1"


def test_unset_workers_default_to_cores_capped() -> None:
    assert plan_launch({}, affinity=2, quota=None).workers == 2
    assert plan_launch({}, affinity=64, quota=None).workers == MAX_DEFAULT_WORKERS
    many = plan_launch({}, affinity=64, quota=None)
    assert many.intra_op_threads == 64 // MAX_DEFAULT_WORKERS


def test_zero_and_empty_mean_automatic() -> None:
    env = {"WEB_CONCURRENCY": "", "CONVSERVE_INTRA_OP_THREADS": "0",
           "CONVSERVE_WORKER_THREADS": " "}
    plan = plan_launch(env, affinity=8, quota=4.0)
    assert (plan.workers, plan.intra_op_threads, plan.worker_threads) == (4, 1, 1)


def test_explicit_values_win() -> None:
    env = {"WEB_CONCURRENCY": "3", "CONVSERVE_INTRA_OP_THREADS": "5",
           "CONVSERVE_WORKER_THREADS": "7", "OMP_NUM_THREADS": "2", "OTHER": "kept"}
    plan = plan_launch(env, affinity=2, quota=None)
    assert plan.env["WEB_CONCURRENCY"] == "3"
    assert plan.env["CONVSERVE_INTRA_OP_THREADS"] == "5"
    assert plan.env["CONVSERVE_WORKER_THREADS"] == "7"
    assert plan.env["OMP_NUM_THREADS"] == "2"
    assert plan.env["OPENBLAS_NUM_THREADS"] == "5"
    assert plan.env["OTHER"] == "kept"


def test_planned_environment_is_valid_settings() -> None:
    plan = plan_launch({"WEB_CONCURRENCY": "2"}, affinity=16, quota=2.0)
    settings = Settings.model_validate({
        "worker_threads": plan.env["CONVSERVE_WORKER_THREADS"],
        "intra_op_threads": plan.env["CONVSERVE_INTRA_OP_THREADS"],
        "web_concurrency": plan.env["WEB_CONCURRENCY"],
    })
    assert (settings.worker_threads, settings.threads_per_op, settings.web_concurrency) == (1, 1, 2)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("two", "WEB_CONCURRENCY='two' is not an integer", id="not-a-number"),
        pytest.param("-1", "WEB_CONCURRENCY=-1 must be 0 (automatic) or more", id="negative"),
    ],
)
def test_bad_counts_stop_with_the_variable_named(value: str, message: str) -> None:
    with pytest.raises(SystemExit) as excinfo:
        plan_launch({"WEB_CONCURRENCY": value}, affinity=2, quota=None)
    assert str(excinfo.value) == f"convserve launcher: {message}"


def test_uvicorn_argv_serves_the_app_with_planned_workers() -> None:
    env = plan_launch({"PORT": "9000", "CONVSERVE_LOG_LEVEL": "WARNING"}, affinity=2,
                      quota=None).env
    assert uvicorn_argv(env, ["--timeout-keep-alive", "10"]) == [
        sys.executable, "-m", "uvicorn", "convserve.main:app",
        "--host", "0.0.0.0", "--port", "9000", "--workers", "2",
        "--log-level", "warning", "--no-access-log", "--timeout-keep-alive", "75",
        "--timeout-worker-healthcheck", "30",
        "--timeout-keep-alive", "10",  # the operator's, last: it wins
    ]
