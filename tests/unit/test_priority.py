"""Compute threads run nicer than the event loop (convserve.priority), on Linux."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from convserve import priority
from convserve.api.runtime import ComputePool, Runtime
from convserve.main import create_app
from convserve.priority import MAX_NICE, lower_thread_priority, thread_nice
from convserve.settings import Settings
from tests.api.conftest import app_settings, wait_ready

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice is Linux's")

T = TypeVar("T")


def in_thread(fn: Callable[[], T]) -> T:
    """``fn()`` on a fresh thread (a raised nice value cannot be lowered again unprivileged)."""
    result: list[T] = []
    thread = threading.Thread(target=lambda: result.append(fn()))
    thread.start()
    thread.join()
    return result[0]


def base() -> int:
    nice = thread_nice()
    assert nice is not None
    return nice


def test_lowering_raises_only_the_calling_threads_nice_value() -> None:
    main_before = base()

    def lowered() -> tuple[bool, int | None]:
        return lower_thread_priority(5), thread_nice()

    assert in_thread(lowered) == (True, min(MAX_NICE, main_before + 5))
    assert thread_nice() == main_before
    assert os.getpriority(os.PRIO_PROCESS, 0) == main_before


def test_the_nice_value_is_capped_and_zero_changes_nothing() -> None:
    start = base()

    def twice() -> tuple[bool, int | None, bool, int | None]:
        first = lower_thread_priority(15)
        after_first = thread_nice()
        second = lower_thread_priority(15)
        return first, after_first, second, thread_nice()

    assert in_thread(twice) == (True, min(MAX_NICE, start + 15), True, MAX_NICE)
    assert in_thread(lambda: (lower_thread_priority(0), thread_nice())) == (False, start)


def test_threads_started_by_a_nicer_thread_inherit_its_nice_value() -> None:
    def parent() -> int | None:
        lower_thread_priority(7)
        return in_thread(thread_nice)

    assert in_thread(parent) == min(MAX_NICE, base() + 7)


def _task_nice(tid: str) -> int:
    stat = Path(f"/proc/self/task/{tid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])  # field 19, after "pid (comm) state"


def test_onnx_runtime_threads_made_by_a_compute_thread_inherit_its_nice_value() -> None:
    """ONNX Runtime's intra-op pool starts when a session is made, on a compute thread."""
    ort = pytest.importorskip("onnxruntime")
    from convserve.conv.graphs import conv_model  # noqa: PLC0415 (needs onnx)
    from convserve.conv.spec import conv_spec  # noqa: PLC0415

    model = conv_model(conv_spec((1, 1, 8, 8), (1, 1, 3, 3))).SerializeToString()

    before = set(os.listdir("/proc/self/task"))

    def make_and_run() -> object:
        lower_thread_priority(6)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 3
        session = ort.InferenceSession(model, options,
                                       providers=["CPUExecutionProvider"])
        x = np.ones((1, 1, 8, 8), np.float32)
        w = np.ones((1, 1, 3, 3), np.float32)
        session.run(None, {"X": x, "W": w})
        return session

    holder: list[object] = []

    def keep() -> None:
        holder.append(make_and_run())
        done.wait()

    done = threading.Event()
    worker = threading.Thread(target=keep)
    worker.start()
    try:
        while not holder:
            threading.Event().wait(0.01)
        started = set(os.listdir("/proc/self/task")) - before - {str(worker.native_id)}
        assert len(started) >= 2, "ONNX Runtime started no intra-op threads"
        assert {_task_nice(tid) for tid in started} == {min(MAX_NICE, base() + 6)}
    finally:
        done.set()
        worker.join()


def test_a_refused_priority_change_leaves_the_pool_working(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(*_: object) -> None:
        raise PermissionError("not here")

    monkeypatch.setattr(os, "setpriority", refuse)
    monkeypatch.setattr(priority, "_warned", False)
    assert in_thread(lambda: lower_thread_priority(3)) is False
    assert "keep the event loop's priority: not here" in caplog.text

    import asyncio  # noqa: PLC0415

    async def run() -> int | None:
        pool = ComputePool(1, 0, timeout_s=10.0, nice=3)
        try:
            return await pool.run(thread_nice)
        finally:
            pool.shutdown()

    assert asyncio.run(run()) == base()


def test_the_service_runs_compute_and_encoding_nicer_than_its_event_loop() -> None:
    app = create_app(app_settings(compute_nice=4))
    with TestClient(app) as client:
        wait_ready(client)
        runtime: Runtime = app.state.runtime
        portal = client.portal
        assert portal is not None
        loop_nice = portal.call(_async_nice)
        compute = portal.call(runtime.pool.run, thread_nice)
        encode = runtime.encoder.submit(thread_nice).result()
        assert client.post("/v1/convolve", json={
            "input": {"array": [[[0, 1, 2], [3, 4, 5], [6, 7, 8]]]},
            "kernel": {"weight": [[[[0, 1], [2, 3]]]]}, "format": "array",
        }).json()["data"] == [[[19, 25], [37, 43]]]
    assert loop_nice == base()
    assert compute == encode == min(MAX_NICE, base() + 4)


async def _async_nice() -> int | None:
    return thread_nice()


def test_the_warm_up_and_the_threads_it_starts_run_at_the_compute_priority(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The warm-up makes the engines' first sessions (ONNX Runtime's intra-op threads among
    them), which keep their threads: it runs at the compute threads' nice value, not the
    loop's."""
    seen: dict[str, object] = {}
    warm_up = Runtime.warm_up

    def recorded(runtime: Runtime) -> None:
        before = set(os.listdir("/proc/self/task"))
        seen["nice"] = thread_nice()
        warm_up(runtime)
        seen["started"] = {_task_nice(tid) for tid in set(os.listdir("/proc/self/task"))
                           - before}

    monkeypatch.setattr(Runtime, "warm_up", recorded)
    app = create_app(app_settings(compute_nice=5))
    with TestClient(app) as client:
        wait_ready(client)
        assert client.portal is not None
        loop_nice = client.portal.call(_async_nice)
    assert loop_nice == base()
    assert seen["nice"] == min(MAX_NICE, base() + 5)
    assert seen["started"] == {min(MAX_NICE, base() + 5)}  # ONNX Runtime's threads at least


def test_compute_nice_zero_keeps_the_loops_priority_and_the_range_is_checked() -> None:
    app = create_app(app_settings(compute_nice=0))
    with TestClient(app) as client:
        runtime: Runtime = app.state.runtime
        assert client.portal is not None
        assert client.portal.call(runtime.pool.run, thread_nice) == base()
    assert Settings(compute_nice=19).compute_nice == 19
    for bad in (-1, 20):
        with pytest.raises(ValidationError, match="compute_nice"):
            Settings(compute_nice=bad)
    assert Settings().compute_nice == 10
