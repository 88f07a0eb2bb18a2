"""ONNX Runtime's shared CPU arena: registered once per process, shrunk by budget.

Every session of :mod:`convserve.conv.onnx_engine` (and of the model runner) allocates from one
arena registered here, with the ``kSameAsRequested`` extend strategy. A run that is told to
shrink it (:func:`run_options`) gives back every chunk beyond the first when it returns, so a
large request does not pin its working memory in the process afterwards. Shrinking after every
run unmapped and faulted in again each small layer's working memory (1.4x a raw session on a
512x512 layer), so :class:`ArenaBudget` lets runs draw up to :data:`SHRINK_AFTER_BYTES` between
two shrinks: the arena keeps at most that much beyond what callers hold.
"""

from __future__ import annotations

import functools
import threading
from types import ModuleType
from typing import Any

from convserve.conv.spec import ConvSpec

__all__ = [
    "SHARED_BUDGET",
    "SHRINK_AFTER_BYTES",
    "ArenaBudget",
    "arena_bytes",
    "register_shared_arena",
    "run_options",
]

_arena_lock = threading.Lock()
_arena_registered = False


def register_shared_arena(ort: ModuleType) -> None:
    """Register once per process the CPU arena that every session shares."""
    global _arena_registered
    with _arena_lock:
        if _arena_registered:
            return
        memory_info = ort.OrtMemoryInfo(
            "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
        )
        # (max_mem=0: unlimited, extend strategy 1: kSameAsRequested, defaults for the rest)
        ort.create_and_register_allocator(memory_info, ort.OrtArenaCfg(0, 1, -1, -1))
        _arena_registered = True


SHRINK_AFTER_BYTES = 64 * 2**20
"""Bytes the runs since the last arena shrink may draw before the next run shrinks it."""


class ArenaBudget:
    """Decides which runs shrink the shared CPU arena: one in every ``limit`` bytes drawn.

    Parameters
    ----------
    limit : int
        Bytes (outputs and padded copies) that runs may draw from the arena between shrinks.

    Notes
    -----
    Thread-safe. The arena only grows by what runs draw that its free chunks cannot serve, so
    between two shrinks it grows by at most the bytes counted here.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._drawn = 0
        self._lock = threading.Lock()

    def shrink_after(self, nbytes: int, *, force: bool = False) -> bool:
        """Count a run that draws ``nbytes``; True when it is to shrink the arena (then the
        count starts again). ``force`` shrinks regardless (the last band of a layer)."""
        with self._lock:
            self._drawn += nbytes
            if force or self._drawn > self.limit:
                self._drawn = 0
                return True
            return False


SHARED_BUDGET = ArenaBudget(SHRINK_AFTER_BYTES)
"""The budget of the process's one arena: every run of every session counts against it."""


def arena_bytes(spec: ConvSpec) -> int:
    """Bytes a run of ``spec`` draws from the arena: its output and, for reflect, replicate
    and circular padding, the ``Pad`` node's padded copy of the input."""
    out = 4 * spec.batch * spec.out_channels * spec.out_height * spec.out_width
    if spec.padding_mode != "zeros" and any(spec.pads):
        out += 4 * spec.batch * spec.in_channels * spec.padded_height * spec.padded_width
    return out


@functools.cache
def run_options(shrink: bool = True) -> Any:
    """``onnxruntime.RunOptions`` for a run: shrink the CPU arena when the run returns.

    The arena (extend strategy ``kSameAsRequested``) then gives back every chunk the run
    allocated beyond its first, so a large request does not pin its working memory in the
    process afterwards. ``shrink=False`` keeps it for the next band of the same layer. One
    object per value of ``shrink`` serves every run (a run only reads it), so no run pays for
    building it.
    """
    import onnxruntime as ort  # a session exists, so onnxruntime does: no message needed

    options = ort.RunOptions()
    if shrink:
        options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options
