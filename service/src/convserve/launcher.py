"""Start uvicorn with worker and thread counts that fit the CPU quota of a container.

``python -m convserve.launcher [uvicorn options...]`` is the container image's command. It
exists because a container limited to 2 CPUs (``docker run --cpus 2``, compose ``cpus``, a
Kubernetes ``limits.cpu``) still *sees* every core of the host: ``os.sched_getaffinity`` and
``os.cpu_count`` ignore the CFS quota, so on a 64-core host each of 2 workers would run 64
compute threads of 32 ONNX Runtime threads each, all fighting over 2 CPUs. The launcher

1. counts the usable cores: the affinity mask, lowered to the cgroup CPU quota (v2
   ``cpu.max`` or v1 ``cpu.cfs_quota_us / cpu.cfs_period_us``), rounded down, at least 1;
2. fills in, only where the environment leaves them unset, empty or ``0``:

   - ``WEB_CONCURRENCY``, uvicorn worker processes: the usable cores, at most 4;
   - ``CONVSERVE_INTRA_OP_THREADS``, threads one convolution may use: cores // workers, >= 1;
   - ``CONVSERVE_WORKER_THREADS``, convolutions one process runs at once: cores // workers;
   - ``OMP_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS``, BLAS threads inside one NumPy matmul:
     the intra-op count;

   so 2 workers on 2 cores run 1 convolution of 1 thread each: 2 busy threads on 2 CPUs;
3. replaces itself (``exec``) with ``python -m uvicorn convserve.main:app --workers N``, on
   ``HOST`` (default ``0.0.0.0``) and ``PORT`` (default ``8000``), at the service's log level,
   without uvicorn's access log (the service logs one structured line a request), keeping
   idle connections 75 s (``KEEP_ALIVE_S``) and giving a busy worker 30 s to answer the
   supervisor's ping (``WORKER_HEALTHCHECK_S``). Extra arguments are passed on to uvicorn.

Every value the operator sets explicitly wins; the chosen plan is logged as one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from convserve.cores import CGROUP_ROOT, cgroup_cpu_quota, effective_cores

__all__ = [
    "CGROUP_ROOT",
    "MAX_DEFAULT_WORKERS",
    "LaunchPlan",
    "cgroup_cpu_quota",
    "effective_cores",
    "main",
    "plan_launch",
    "uvicorn_argv",
]

MAX_DEFAULT_WORKERS = 4
"""Workers started when ``WEB_CONCURRENCY`` is unset: more cost memory for little gain."""
_BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")
KEEP_ALIVE_S = 75
"""Seconds an idle keep-alive connection stays open. uvicorn's default, 5 s, equals httpx's
(and the SDK's) idle expiry, so a client reusing a connection just as the server closed it
got a reset under load; the server must outlast its clients and proxies (nginx: 60 s)."""
WORKER_HEALTHCHECK_S = 30
"""Seconds uvicorn's supervisor waits for a worker to answer its ping before it kills it. The
answer comes from a thread of the worker; on CPUs saturated by convolutions it can take more
than uvicorn's default 5 s, and the supervisor then killed a healthy worker mid-request."""


@dataclass(frozen=True)
class LaunchPlan:
    """What the launcher decided, for the log line and the tests."""

    cores: int
    """Usable cores (affinity lowered to the CPU quota)."""
    cpu_quota: float | None
    """CPUs allowed by the cgroup, None when unlimited."""
    workers: int
    """uvicorn worker processes (``WEB_CONCURRENCY``)."""
    intra_op_threads: int
    """Threads one convolution may use (``CONVSERVE_INTRA_OP_THREADS``)."""
    worker_threads: int
    """Convolutions one process runs at once (``CONVSERVE_WORKER_THREADS``)."""
    env: dict[str, str]
    """The whole environment uvicorn gets."""


def _positive(env: Mapping[str, str], name: str) -> int | None:
    """``int(env[name])`` when it is set to a positive integer; None for unset, empty or 0."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"convserve launcher: {name}={raw!r} is not an integer") from None
    if value < 0:
        raise SystemExit(f"convserve launcher: {name}={value} must be 0 (automatic) or more")
    return value or None


def plan_launch(env: Mapping[str, str], affinity: int, quota: float | None) -> LaunchPlan:
    """Fill in worker and thread counts the environment leaves open.

    Parameters
    ----------
    env : Mapping[str, str]
        The process environment; explicit positive values are kept as they are.
    affinity : int
        CPUs in the affinity mask.
    quota : float or None
        CPUs allowed by the cgroup quota, None when unlimited.

    Returns
    -------
    LaunchPlan
        The counts chosen and the environment to start uvicorn with.
    """
    cores = effective_cores(affinity, quota)
    workers = _positive(env, "WEB_CONCURRENCY") or min(cores, MAX_DEFAULT_WORKERS)
    share = max(1, cores // workers)
    intra = _positive(env, "CONVSERVE_INTRA_OP_THREADS") or share
    worker_threads = _positive(env, "CONVSERVE_WORKER_THREADS") or share
    out = dict(env)
    out["WEB_CONCURRENCY"] = str(workers)
    out["CONVSERVE_INTRA_OP_THREADS"] = str(intra)
    out["CONVSERVE_WORKER_THREADS"] = str(worker_threads)
    for name in _BLAS_THREAD_VARS:
        if not env.get(name, "").strip():
            out[name] = str(intra)
    return LaunchPlan(cores, quota, workers, intra, worker_threads, out)


def uvicorn_argv(env: Mapping[str, str], extra: Sequence[str] = ()) -> list[str]:
    """The uvicorn command line for ``env`` (as returned in :attr:`LaunchPlan.env`).

    Parameters
    ----------
    env : Mapping[str, str]
        Environment holding ``WEB_CONCURRENCY`` and optionally ``HOST``, ``PORT`` and
        ``CONVSERVE_LOG_LEVEL``.
    extra : Sequence[str]
        Further uvicorn options, appended last so they win.

    Returns
    -------
    list of str
        ``[python, "-m", "uvicorn", "convserve.main:app", ...]``.
    """
    return [
        sys.executable, "-m", "uvicorn", "convserve.main:app",
        "--host", env.get("HOST") or "0.0.0.0",
        "--port", env.get("PORT") or "8000",
        "--workers", env["WEB_CONCURRENCY"],
        "--log-level", (env.get("CONVSERVE_LOG_LEVEL") or "info").lower(),
        "--no-access-log",
        "--timeout-keep-alive", str(KEEP_ALIVE_S),
        "--timeout-worker-healthcheck", str(WORKER_HEALTHCHECK_S),
        *extra,
    ]


def main(argv: Sequence[str] | None = None) -> None:
    """Plan from this process's environment and cgroup, log the plan, exec uvicorn."""
    extra = list(sys.argv[1:] if argv is None else argv)
    plan = plan_launch(os.environ, len(os.sched_getaffinity(0)), cgroup_cpu_quota())
    summary = {k: v for k, v in asdict(plan).items() if k != "env"}
    print(json.dumps({"logger": "convserve.launcher", "message": "starting uvicorn", **summary}),
          file=sys.stderr, flush=True)
    args = uvicorn_argv(plan.env, extra)
    os.execve(args[0], args, plan.env)


if __name__ == "__main__":
    main()
