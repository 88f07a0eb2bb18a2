"""Keep the objects a worker made at start-up out of the cyclic garbage collector's full passes.

A worker imports FastAPI, pydantic, NumPy, ONNX Runtime, OpenCV and the service, builds its app
and warms its engines: about 89,000 objects that live as long as the process. CPython's full
(generation 2) collection walks every tracked object, and it runs on whichever thread happens
to allocate at the time, in a worker mostly the event loop. Measured after a two-minute soak
on 2 cores, each full pass held the event loop 80-97 ms, and one falling inside
``make loadtest``'s abort storm took the slowest ``/healthz`` from 50-64 ms to 134-174 ms.

:func:`freeze_start_up` runs one collection and then ``gc.freeze()``: everything alive moves to
the permanent generation, which later collections skip (CPython's documented use of
``gc.freeze``). Objects made afterwards, by requests, are collected as before. It acts once
per process (later calls, as when tests build many apps in one process, do nothing): frozen
objects that later become unreachable cycles are never collected, so freezing again and again
would keep every app a test process made.
"""

from __future__ import annotations

import gc
import logging
import threading
import time

__all__ = ["freeze_start_up"]

log = logging.getLogger("convserve")
_lock = threading.Lock()
_frozen = False


def freeze_start_up() -> int | None:
    """Collect, then freeze every object alive, once per process; the count frozen, or None
    when this process has frozen before."""
    global _frozen
    with _lock:
        if _frozen:
            return None
        _frozen = True
        started = time.perf_counter()
        gc.collect()
        gc.freeze()
        count = gc.get_freeze_count()
    log.info("start-up objects frozen out of the garbage collector's passes",
             extra={"objects": count, "ms": round(1000 * (time.perf_counter() - started), 1)})
    return count
