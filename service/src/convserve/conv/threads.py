"""Helper threads for one call: the calling thread plus a fork-safe pool, sharing a queue.

The NumPy and OpenCV engines cut a layer into bands and the finiteness check cuts a large array
into parts; each spreads its items over up to ``threads`` threads with :meth:`HelperThreads.share`.
The calling thread works too, so ``threads=1`` starts no thread at all, and each thread takes
the next item when it finishes one: a thread the OS preempts, or a cheaper last item, does not
leave the others waiting at the end.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

__all__ = ["HelperThreads"]

T = TypeVar("T")
_END = object()


class HelperThreads:
    """Up to ``threads`` threads per call: the caller and ``threads - 1`` pooled helpers.

    Parameters
    ----------
    threads : int
        Threads one call may use, the calling thread included (at least 1).
    name : str
        Prefix of the helper threads' names.

    Notes
    -----
    The pool starts on first use, and again in a forked child, which inherits the pool object
    but not its threads. Several calls may share it at once (each waits for its own items only).
    """

    def __init__(self, threads: int, name: str) -> None:
        self.threads = max(1, int(threads))
        self.name = name
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0
        self._lock = threading.Lock()

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._pool_pid != os.getpid():
                self._pool = ThreadPoolExecutor(max_workers=max(1, self.threads - 1),
                                                thread_name_prefix=self.name)
                self._pool_pid = os.getpid()
            return self._pool

    def share(self, items: Sequence[T], make_worker: Callable[[], Callable[[T], None]]) -> None:
        """Handle every item of ``items`` on up to :attr:`threads` threads.

        Up to :attr:`threads` workers run at once, the caller's among them (fewer for fewer
        items): each calls ``make_worker()`` once (for its own scratch memory) and then the
        worker on each item it takes. The first error stops the other threads at their next
        item and is raised here, once every thread has stopped.
        """
        queue = iter(items)
        lock = threading.Lock()
        failed = threading.Event()

        def take() -> object:
            with lock:
                return _END if failed.is_set() else next(queue, _END)

        def thread() -> None:
            try:
                work = make_worker()
                while (item := take()) is not _END:
                    work(item)  # type: ignore[arg-type]  # an item of ``items``, not _END
            except BaseException:
                failed.set()  # the other threads stop at their next item
                raise

        helpers = min(self.threads, len(items)) - 1
        futures: list[Future[None]] = (
            [self._executor().submit(thread) for _ in range(helpers)] if helpers > 0 else []
        )
        try:
            thread()
        finally:
            wait(futures)
        for future in futures:
            future.result()
