"""How many cores this process may use: the affinity mask, lowered to the cgroup CPU quota.

A module of the standard library only, below everything that counts threads: the launcher (before
it starts uvicorn), the settings (default thread counts) and the engines (their own defaults).
``os.sched_getaffinity`` and ``os.cpu_count`` ignore a container's CFS quota, so a container
limited to 2 CPUs on a 64-core host would otherwise run 64 threads per pool.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["CGROUP_ROOT", "available_cores", "cgroup_cpu_quota", "effective_cores"]

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs this container may use per period according to its cgroup, or None if unlimited.

    Parameters
    ----------
    root : Path
        Where the cgroup filesystem is mounted (``/sys/fs/cgroup``; tests pass a folder).

    Returns
    -------
    float or None
        ``quota / period`` (e.g. ``1.5`` for ``--cpus 1.5``); None when no quota is set or no
        cgroup file is readable.
    """
    cpu_max = _read(root / "cpu.max")  # cgroup v2: "<quota|max> <period>"
    if cpu_max is not None:
        fields = cpu_max.split()
        if len(fields) == 2 and fields[0] != "max":
            quota, period = int(fields[0]), int(fields[1])
            return quota / period if quota > 0 and period > 0 else None
        return None
    for controller in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):  # cgroup v1
        quota_text = _read(root / controller / "cpu.cfs_quota_us")
        period_text = _read(root / controller / "cpu.cfs_period_us")
        if quota_text is not None and period_text is not None:
            quota, period = int(quota_text), int(period_text)
            return quota / period if quota > 0 and period > 0 else None
    return None


def effective_cores(affinity: int, quota: float | None) -> int:
    """Cores worth running threads on: the affinity count, lowered to the CPU quota.

    Parameters
    ----------
    affinity : int
        CPUs in this process's affinity mask.
    quota : float or None
        CPUs per period allowed by the cgroup (None: unlimited).

    Returns
    -------
    int
        ``min(affinity, floor(quota))``, at least 1.
    """
    cores = max(1, affinity)
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return cores


def available_cores() -> int:
    """Cores worth running threads on: the affinity mask, lowered to the cgroup CPU quota.

    A container limited to 2 CPUs on a 64-core host gets 2, not 64 (see
    :func:`effective_cores`).
    """
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        affinity = os.cpu_count() or 1
    return effective_cores(affinity, cgroup_cpu_quota())
