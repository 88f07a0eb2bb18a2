"""What this process may use: cores (the affinity mask, lowered to the cgroup CPU quota),
memory (the cgroup memory limit, or the machine's RAM) and one core's L2 cache.

A module of the standard library only, below everything that counts threads: the launcher (before
it starts uvicorn), the settings (default thread counts) and the engines (their own defaults).
``os.sched_getaffinity`` and ``os.cpu_count`` ignore a container's CFS quota, so a container
limited to 2 CPUs on a 64-core host would otherwise run 64 threads per pool.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = [
    "CGROUP_ROOT",
    "available_cores",
    "cgroup_cpu_quota",
    "cgroup_memory_limit",
    "effective_cores",
    "l2_cache_bytes",
    "physical_memory",
]

CGROUP_ROOT = Path("/sys/fs/cgroup")
CPU_CACHE_ROOT = Path("/sys/devices/system/cpu/cpu0/cache")
DEFAULT_L2_BYTES = 1 << 20
"""One core's L2 cache where the system does not say (1 MiB: recent x86_64 server cores)."""
_UNLIMITED = 2**60  # cgroup v1 writes "no limit" as a number near 2**63


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


def cgroup_memory_limit(root: Path = CGROUP_ROOT) -> int | None:
    """The memory limit of this process's cgroup in bytes, or None when there is none.

    Parameters
    ----------
    root : Path
        Where the cgroup filesystem is mounted (tests pass a folder).

    Returns
    -------
    int or None
        cgroup v2 ``memory.max`` or v1 ``memory/memory.limit_in_bytes``; None for ``max``,
        a v1 "unlimited" value or no readable file.
    """
    for path in (root / "memory.max", root / "memory" / "memory.limit_in_bytes"):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text == "max":
            return None
        try:
            value = int(text)
        except ValueError:
            return None
        return value if 0 < value < _UNLIMITED else None
    return None


def physical_memory() -> int:
    """Bytes of RAM of this machine (``SC_PHYS_PAGES x SC_PAGE_SIZE``)."""
    return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))


def l2_cache_bytes(root: Path = CPU_CACHE_ROOT) -> int:
    """Bytes of the first core's level-2 data (or unified) cache, from sysfs.

    Parameters
    ----------
    root : Path
        The core's ``cache`` folder (``/sys/devices/system/cpu/cpu0/cache``; tests pass one).

    Returns
    -------
    int
        The ``size`` (``1024K``, ``2M``) of the ``index*`` entry of level 2 whose type is
        ``Data`` or ``Unified``; :data:`DEFAULT_L2_BYTES` when none is readable (not Linux, a
        sandbox without sysfs).
    """
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    try:
        entries = sorted(root.glob("index*"))
    except OSError:
        return DEFAULT_L2_BYTES
    for entry in entries:
        if _read(entry / "level") != "2" or _read(entry / "type") not in ("Data", "Unified"):
            continue
        size = _read(entry / "size") or ""
        number, unit = size[:-1], size[-1:].upper()
        if unit in units and number.isdigit() and int(number) > 0:
            return int(number) * units[unit]
        if size.isdigit() and int(size) > 0:
            return int(size)
    return DEFAULT_L2_BYTES
