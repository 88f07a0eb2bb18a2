"""``HelperThreads.share``: every item once, on up to ``threads`` threads, errors raised."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from convserve.conv.threads import HelperThreads


def test_every_item_is_handled_once_with_one_worker_per_thread() -> None:
    helpers = HelperThreads(3, "test-share")
    seen: list[int] = []
    workers: list[str] = []
    lock = threading.Lock()

    def make_worker() -> Callable[[int], None]:
        with lock:
            workers.append(threading.current_thread().name)

        def work(item: int) -> None:
            with lock:
                seen.append(item)
        return work

    helpers.share(range(200), make_worker)
    assert sorted(seen) == list(range(200))
    assert len(workers) <= 3  # one worker per thread taking part (a pool thread may run two)
    assert threading.current_thread().name in workers  # the caller works too


def test_one_thread_runs_in_the_caller_and_starts_no_pool() -> None:
    helpers = HelperThreads(1, "test-one")
    names: set[str] = set()
    helpers.share([1, 2, 3], lambda: lambda _: names.add(threading.current_thread().name))
    assert names == {threading.current_thread().name}
    assert helpers._pool is None


def test_fewer_items_than_threads_start_fewer_helpers() -> None:
    helpers = HelperThreads(4, "test-few")
    calls: list[str] = []
    helpers.share([None], lambda: lambda _: calls.append(threading.current_thread().name))
    assert calls == [threading.current_thread().name]  # None is an item like any other
    assert helpers._pool is None


def test_the_first_error_stops_the_others_and_is_raised() -> None:
    helpers = HelperThreads(2, "test-error")
    handled: list[int] = []

    def work(item: int) -> None:
        if item == 3:
            raise ValueError("item 3 is bad")
        handled.append(item)

    with pytest.raises(ValueError, match="item 3 is bad"):
        helpers.share(range(10_000), lambda: work)
    assert len(handled) < 9_999  # the queue stopped early
