"""Run a process's compute threads at a lower CPU priority than its event loop.

A worker's event loop accepts connections, reads bodies, answers ``/healthz`` and refuses
work with 503; its compute threads convolve and encode. When both want the CPU, the loop
should win: it needs a fraction of a millisecond per request, and a loop kept waiting behind
convolutions delays every connection of the process. On Linux each thread has its own nice
value (``setpriority(PRIO_PROCESS, tid, ...)``), so the service raises it for the threads that
compute (``CONVSERVE_COMPUTE_NICE``, 10 by default). A thread inherits its creator's nice
value, so the threads a compute thread starts (ONNX Runtime's intra-op pool, the engines'
helper threads) run at the same priority. Nothing is slower when the CPU is otherwise free:
a nice value only weighs threads that are runnable at the same time.

Measured on 2 cores (``bench/loadtest.py --scenario abort``: 300 clients that upload a photo
at once against 2 workers, three runs each way, alternating), the slowest ``/healthz`` took
92-120 ms with compute at the loop's priority and 50-64 ms with nice 10; R2's throughput over
HTTP (``bench/bench_http.py``) was unchanged, 125-137 req/s either way.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable

__all__ = ["MAX_NICE", "lower_thread_priority", "priority_initializer", "thread_nice"]

MAX_NICE = 19
"""The largest nice value Linux allows."""

log = logging.getLogger("convserve")
_warned = False


def thread_nice(native_id: int | None = None) -> int | None:
    """The nice value of a thread (default: the calling one), or None where unknown."""
    if sys.platform != "linux":
        return None
    try:
        return os.getpriority(os.PRIO_PROCESS, native_id or threading.get_native_id())
    except OSError:
        return None


def lower_thread_priority(increment: int) -> bool:
    """Raise the calling thread's nice value by ``increment`` (capped at 19), on Linux.

    Lowering one's own priority needs no privilege. Returns whether it was done; never
    raises (a thread pool initializer that raised would break the pool), and logs a warning
    once where the platform refuses.
    """
    global _warned
    if increment <= 0 or sys.platform != "linux":
        return False
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(MAX_NICE, current + increment))
    except OSError as error:
        if not _warned:
            _warned = True
            log.warning("compute threads keep the event loop's priority: %s", error)
        return False
    return True


def priority_initializer(increment: int) -> Callable[[], None]:
    """A thread pool ``initializer`` that runs each of its threads ``increment`` nicer."""

    def initializer() -> None:
        lower_thread_priority(increment)

    return initializer
