"""Large result arrays handed out again once their last user has let go of them.

A fresh array of many MB costs more than its computation suggests: glibc maps it anew, and the
kernel faults in and zeroes its pages one at a time on the first write. A 64 MiB output took
4.5-5.2 ms to allocate and fill, against 2.0-2.3 ms to fill memory already mapped (this 2-vCPU
machine). ONNX Runtime avoids this with its arena; :class:`BufferPool` gives the NumPy and
OpenCV engines the same: :meth:`BufferPool.empty` returns a view of a buffer the pool keeps,
and the buffer serves another call once no array refers to it any more.

Whether a buffer is free is read from its reference count: every array made from the view the
pool hands out (slices, reshapes, transposes) refers to the pool's buffer itself as its
``base``, so the buffer is free exactly when the pool's own list is its only referrer. The pool
never holds more than ``capacity`` bytes, busy and free together: past that, and for arrays
under ``min_bytes`` (which the C allocator already reuses well), :meth:`~BufferPool.empty` is
:func:`numpy.empty`. So the memory it keeps beyond what callers hold is bounded by ``capacity``.
Outside CPython, where reference counts do not say this, it is always :func:`numpy.empty`.
"""

from __future__ import annotations

import math
import os
import sys
import threading

import numpy as np

__all__ = ["OUTPUTS", "POOL_BYTES", "POOL_MIN_BYTES", "BufferPool"]

POOL_BYTES = 64 << 20
"""Bytes the process's :data:`OUTPUTS` pool may hold, busy and free together."""
POOL_MIN_BYTES = 4 << 20
"""Arrays smaller than this come from :func:`numpy.empty` (the service's tuned allocator keeps
blocks up to 4 MiB in its heap, where they are reused anyway)."""



def _free_refs() -> int:
    """``sys.getrefcount`` of a buffer that only the pool's list holds, read the way
    :meth:`BufferPool._take` reads it (2 on CPython 3.11-3.13: the list and the argument)."""
    probe = [np.empty(1, dtype=np.uint8)]
    return sys.getrefcount(probe[0])


_POOLS = sys.implementation.name == "cpython"
_FREE_REFS = _free_refs()


class BufferPool:
    """Reusable backing buffers for large arrays, bounded in bytes.

    Parameters
    ----------
    capacity : int
        Most bytes the pool holds, busy and free buffers together.
    min_bytes : int
        Smaller arrays are not pooled.

    Notes
    -----
    Thread-safe. An array from :meth:`empty` holds whatever the buffer held before, as
    :func:`numpy.empty` does: callers write every element.
    """

    def __init__(self, capacity: int, min_bytes: int = POOL_MIN_BYTES) -> None:
        self.capacity = capacity
        self.min_bytes = min_bytes
        self._buffers: list[np.ndarray] = []
        self._lock = threading.Lock()

    def empty(self, shape: tuple[int, ...], dtype: type | np.dtype = np.float32) -> np.ndarray:
        """An uninitialised C-contiguous array of ``shape`` and ``dtype``, from a free buffer
        of the pool when one fits (at most twice the size asked for), else a new one."""
        kind = np.dtype(dtype)
        nbytes = math.prod(shape) * kind.itemsize
        if not _POOLS or nbytes < self.min_bytes or nbytes > self.capacity:
            return np.empty(shape, dtype=kind)
        with self._lock:
            buffer = self._take(nbytes)
        return buffer[:nbytes].view(kind).reshape(shape)

    def _take(self, nbytes: int) -> np.ndarray:
        buffers = self._buffers
        free = [i for i in range(len(buffers)) if sys.getrefcount(buffers[i]) == _FREE_REFS]
        fits = [i for i in free if nbytes <= buffers[i].nbytes <= 2 * nbytes]
        if fits:
            return buffers[min(fits, key=lambda i: buffers[i].nbytes)]
        held = sum(buffer.nbytes for buffer in buffers)
        # Make room by dropping free buffers, largest first, then add one of exactly this size.
        dropped = set()
        for i in sorted(free, key=lambda i: buffers[i].nbytes, reverse=True):
            if held + nbytes <= self.capacity:
                break
            held -= buffers[i].nbytes
            dropped.add(i)
        if dropped:
            self._buffers = [b for i, b in enumerate(buffers) if i not in dropped]
        buffer = np.empty(nbytes, dtype=np.uint8)
        if held + nbytes <= self.capacity:  # else busy buffers fill it: an array of its own
            self._buffers.append(buffer)
        return buffer

    def held_bytes(self) -> int:
        """Bytes of the buffers the pool holds, busy or free."""
        with self._lock:
            return sum(buffer.nbytes for buffer in self._buffers)

    def free_bytes(self) -> int:
        """Bytes of the pool's buffers that no array refers to."""
        with self._lock:
            buffers = self._buffers
            return sum(buffers[i].nbytes for i in range(len(buffers))
                       if sys.getrefcount(buffers[i]) == _FREE_REFS)

    def clear(self) -> None:
        """Forget every buffer (busy ones stay valid for their arrays and are freed with
        them)."""
        with self._lock:
            self._buffers = []

    def _after_fork(self) -> None:
        """In a forked child: a fresh lock (the parent's may have been held by a thread the
        child does not have); the buffers, copied with the process, stay usable."""
        self._lock = threading.Lock()


OUTPUTS = BufferPool(POOL_BYTES)
"""The process's pool for the engines' outputs (:mod:`convserve.conv.numpy_engine`,
:mod:`convserve.conv.opencv_engine`, :mod:`convserve.conv.tiling`)."""
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=OUTPUTS._after_fork)
