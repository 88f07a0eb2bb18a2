"""``BufferPool``: large outputs reuse a buffer only once no array refers to it, within a bound
on bytes; the engines' outputs held together never share memory and stay exact."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import convserve
from convserve.conv import buffers
from convserve.conv.buffers import BufferPool
from convserve.conv.numpy_engine import NumpyEngine
from convserve.conv.opencv_engine import OpenCvEngine
from convserve.main import create_app
from convserve.settings import Settings
from tests.reference import conv2d_reference

MIB = 1 << 20


def address(array: np.ndarray) -> int:
    data: int = array.__array_interface__["data"][0]
    return data


def test_a_buffer_no_array_refers_to_serves_the_next_array() -> None:
    pool = BufferPool(64 * MIB, min_bytes=MIB)
    first = pool.empty((4, 512, 512))
    where = address(first)
    assert first.shape == (4, 512, 512) and first.dtype == np.float32
    assert first.flags.c_contiguous and first.flags.writeable
    assert pool.held_bytes() == 4 * MIB and pool.free_bytes() == 0
    del first
    assert pool.free_bytes() == 4 * MIB
    again = pool.empty((2, 1024, 512))  # the same bytes in another shape
    assert address(again) == where
    assert pool.held_bytes() == 4 * MIB


KEEPERS: dict[str, Callable[[np.ndarray], Any]] = {
    "slice": lambda a: a[1:3],
    "transpose": lambda a: a.T,
    "reshape": lambda a: a.reshape(-1),
    "channel": lambda a: a[0],
    "memoryview": lambda a: memoryview(a.data),
    "asarray of a view": lambda a: np.asarray(a[::2]),
    "frombuffer": lambda a: np.frombuffer(a, dtype=np.float32),
}


@pytest.mark.parametrize("keep", KEEPERS.values(), ids=KEEPERS.keys())
def test_a_buffer_is_not_reused_while_any_array_made_from_it_lives(
    keep: Callable[[np.ndarray], Any],
) -> None:
    pool = BufferPool(64 * MIB, min_bytes=MIB)
    first = pool.empty((4, 512, 512))
    first[...] = 7.0
    kept = keep(first)
    where = address(first)
    del first
    assert pool.free_bytes() == 0
    second = pool.empty((4, 512, 512))
    second[...] = -1.0
    assert address(second) != where
    assert np.all(np.asarray(kept) == 7.0)  # untouched by the second array's writes
    del kept, second
    assert pool.free_bytes() == 8 * MIB


def test_small_and_oversized_arrays_are_plain_numpy_arrays() -> None:
    pool = BufferPool(16 * MIB, min_bytes=4 * MIB)
    small = pool.empty((1, 1023, 1024))  # just under 4 MiB
    large = pool.empty((5, 1024, 1024))  # 20 MiB, over the capacity
    assert small.flags.owndata and large.flags.owndata
    assert pool.held_bytes() == 0


def test_the_pool_holds_at_most_its_capacity_busy_and_free() -> None:
    pool = BufferPool(16 * MIB, min_bytes=MIB)
    busy = [pool.empty((1, 1024, 1024)) for _ in range(4)]  # 4 x 4 MiB: full
    assert pool.held_bytes() == 16 * MIB
    extra = pool.empty((1, 1024, 1024))  # busy buffers fill it: an array of its own
    assert pool.held_bytes() == 16 * MIB
    assert all(not np.shares_memory(extra, b) for b in busy)
    del busy[:2], extra
    # A larger array: the free buffers are dropped to make room, then one of its size is made.
    bigger = pool.empty((2, 1024, 1024))
    assert pool.held_bytes() == 16 * MIB
    assert pool.free_bytes() == 0
    del bigger, busy
    assert pool.free_bytes() == 16 * MIB
    pool.clear()
    assert pool.held_bytes() == 0


def test_a_free_buffer_over_twice_the_size_is_kept_for_larger_arrays() -> None:
    pool = BufferPool(64 * MIB, min_bytes=MIB)
    big = pool.empty((8, 1024, 1024))  # 32 MiB
    where = address(big)
    del big
    small = pool.empty((1, 1024, 1024))  # 4 MiB: a buffer of its own
    assert address(small) != where
    assert pool.held_bytes() == 36 * MIB
    half = pool.empty((4, 1024, 1024))  # 16 MiB: the 32 MiB buffer fits (at most twice)
    assert address(half) == where


def test_arrays_handed_to_threads_at_once_never_share_memory() -> None:
    pool = BufferPool(32 * MIB, min_bytes=MIB)
    failures: list[str] = []
    start = threading.Barrier(4)

    def work(value: float) -> None:
        start.wait()
        for _ in range(40):
            array = pool.empty((1, 512, 512))
            array.fill(value)
            array2 = pool.empty((1, 512, 512))
            array2.fill(-value)
            if not (np.all(array == value) and np.all(array2 == -value)):
                failures.append(f"thread {value}: another array wrote into this one")
            del array, array2

    threads = [threading.Thread(target=work, args=(float(i + 1),)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert pool.held_bytes() <= 32 * MIB


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_can_use_the_pool_even_if_its_lock_was_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(buffers.OUTPUTS, "capacity", 64 * MIB)
    monkeypatch.setattr(buffers.OUTPUTS, "min_bytes", MIB)
    buffers.OUTPUTS.clear()
    with buffers.OUTPUTS._lock:  # as if another thread were inside empty() at the fork
        pid = os.fork()
        if pid == 0:  # the child: exit 0 only if the pool works
            signal.alarm(20)  # a deadlocked child dies (SIGALRM) instead of hanging the test
            try:
                array = buffers.OUTPUTS.empty((1, 1024, 1024))
                array.fill(1.0)
                code = 0 if buffers.OUTPUTS.held_bytes() == 4 * MIB else 2
            except BaseException:
                code = 3
            sys.stdout.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    buffers.OUTPUTS.clear()


@pytest.fixture
def pooled_outputs(monkeypatch: pytest.MonkeyPatch) -> Iterator[BufferPool]:
    """The process's pool, pooling every output size (restored afterwards)."""
    monkeypatch.setattr(buffers.OUTPUTS, "capacity", 64 * MIB)
    monkeypatch.setattr(buffers.OUTPUTS, "min_bytes", 0)
    buffers.OUTPUTS.clear()
    yield buffers.OUTPUTS
    buffers.OUTPUTS.clear()


@pytest.mark.parametrize("engine", [NumpyEngine(2), OpenCvEngine(2)], ids=["numpy", "opencv"])
def test_engine_outputs_held_together_are_distinct_and_exact(
    pooled_outputs: BufferPool, engine: Any,
) -> None:
    rng = np.random.default_rng(12)
    weight = rng.standard_normal((3, 1, 3, 3)).astype(np.float32)
    inputs = [rng.random((1, 3, 64, 80), dtype=np.float32) for _ in range(3)]
    kept = []
    for x in inputs:
        y = convserve.conv2d(x, weight, padding=1, groups=3, engine=engine)
        kept.append(y)
        del y
        convserve.conv2d(x[:, :, ::-1].copy(), weight, padding=1, groups=3, engine=engine)
    assert pooled_outputs.held_bytes() > 0
    for x, y in zip(inputs, kept, strict=True):
        reference = conv2d_reference(x.astype(np.float64), weight.astype(np.float64),
                                     padding=1, groups=3)
        np.testing.assert_allclose(y, reference, rtol=1e-4, atol=1e-5)
    assert not any(np.shares_memory(a, b) for i, a in enumerate(kept) for b in kept[i + 1:])


def test_the_service_keeps_no_outputs_between_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(buffers.OUTPUTS, "capacity", 64 * MIB)  # restored afterwards
    create_app(Settings(warmup=False, sample_model=False))
    assert buffers.OUTPUTS.capacity == 0
    assert buffers.OUTPUTS.empty((16, 1024, 1024)).flags.owndata
