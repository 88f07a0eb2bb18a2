"""glibc's allocator, set for a server whose every request allocates and frees arrays of a few MB.

By default glibc serves an allocation of 128 KiB or more with its own ``mmap`` and unmaps it on
``free``, so each request's decoded image, float32 planes, feature maps and PNG buffers are
fresh pages, faulted in one 4 KiB page at a time, and given back at the end. On a 512x512
Sobel request that was a quarter to a third of the whole computation (measured in-process on
2 cores: 11.3-13.3 ms of Server-Timing ``total`` without this, 8.6-9.0 ms with it).

:func:`tune` keeps allocations up to :data:`MMAP_THRESHOLD` in the heap, where freed memory is
reused by the next request, and bounds what the heap keeps:

- ``M_MMAP_THRESHOLD`` = 4 MiB: larger blocks (large images) are still mapped and unmapped;
- ``M_TRIM_THRESHOLD`` = 16 MiB: free memory at the top of a heap beyond this goes back;
- ``M_ARENA_MAX`` = 2: at most two heaps, so at most about 2 x 16 MiB are kept in all (threads
  allocate under the GIL, so two arenas cost no waiting).

The service calls it once per process at start-up (``CONVSERVE_MALLOC_TUNING=0`` leaves glibc
as it is); the library never does, since a library should not change its host's allocator. A C
library other than glibc (musl) has no ``mallopt``: nothing changes there.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Iterable

__all__ = ["ARENA_MAX", "M_ARENA_MAX", "M_MMAP_MAX", "M_MMAP_THRESHOLD", "M_TRIM_THRESHOLD",
           "MMAP_THRESHOLD", "TRIM_THRESHOLD", "set_options", "tune"]

log = logging.getLogger(__name__)

MMAP_THRESHOLD = 4 * 2**20
TRIM_THRESHOLD = 16 * 2**20
ARENA_MAX = 2

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
M_ARENA_MAX = -8


def tune(libc_name: str | None = None) -> bool:
    """Apply the settings above with glibc's ``mallopt``; False (and nothing changed) where
    the C library has none or refuses one.

    ``libc_name``: the C library to load (tests pass one); default: this process's.
    """
    return set_options(((M_ARENA_MAX, ARENA_MAX), (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
                        (M_MMAP_THRESHOLD, MMAP_THRESHOLD)), libc_name)


def set_options(options: Iterable[tuple[int, int]], libc_name: str | None = None) -> bool:
    """``mallopt(parameter, value)`` for each pair (the ``M_*`` parameters above); False where
    the C library has no ``mallopt`` (nothing changed) or refused a value."""
    try:
        libc = ctypes.CDLL(libc_name or ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        log.info("no glibc mallopt here; the C library's allocator is left as it is")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = [mallopt(param, value) == 1 for param, value in options]
    return all(applied)
