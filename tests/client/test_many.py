"""``convolve_many`` and ``layers_many`` of both clients against a real server, and the bounded
maps beneath them (``map_threads``, ``map_tasks``) on plain functions."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from convserve_client import (
    AsyncClient,
    Client,
    ConvolveResult,
    LayersResult,
    UnprocessableEntityError,
)
from convserve_client._batch import map_tasks, map_threads
from tests.client.conftest import D2L_K, D2L_X, D2L_Y, DATA


def inputs(tmp_path: Path) -> list[Any]:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"no image at all")
    return [DATA / "chelsea.png", D2L_X, bad, tmp_path / "missing.png", DATA / "camera.png"]


KERNEL = D2L_K[np.newaxis, :1].repeat(3, 1)
"""(1, 3, 2, 2): needs 3 input channels, so the 2-channel D2L array fails."""


def check(results: list[tuple[Any, Any]], items: list[Any], server_url: str) -> None:
    """Each input came back once, as given, with what a single call gives (or raises)."""
    assert len(results) == len(items)
    by_id = {id(item): outcome for item, outcome in results}
    assert set(by_id) == {id(item) for item in items}
    cat, d2l, bad, missing, camera = (by_id[id(item)] for item in items)
    with Client(server_url, max_retries=0) as cs:
        for path, result in ((items[0], cat), (items[4], camera)):
            assert isinstance(result, ConvolveResult)
            np.testing.assert_array_equal(
                result.array, cs.convolve(path, kernel=KERNEL, format="npy").array)
        for item, error in ((items[1], d2l), (items[2], bad)):
            assert isinstance(error, UnprocessableEntityError)
            with pytest.raises(UnprocessableEntityError) as alone:
                cs.convolve(item, kernel=KERNEL, format="npy")
            assert error.problem == alone.value.problem
    assert d2l.problem.detail.startswith("weight.shape=(1, 3, 2, 2) needs C_in//groups=2")
    assert bad.problem.detail.startswith("The upload is text")
    assert isinstance(missing, FileNotFoundError)


@pytest.mark.e2e
def test_convolve_many_yields_each_input_with_its_result_or_error(
        server_url: str, tmp_path: Path) -> None:
    items = inputs(tmp_path)
    with Client(server_url, max_retries=0) as cs:
        results = list(cs.convolve_many(items, kernel=KERNEL, format="npy", concurrency=2))
    check(results, items, server_url)


@pytest.mark.e2e
def test_async_convolve_many_yields_each_input_with_its_result_or_error(
        server_url: str, tmp_path: Path) -> None:
    items = inputs(tmp_path)

    async def run() -> list[tuple[Any, Any]]:
        async with AsyncClient(server_url, max_retries=0) as acs:
            return [pair async for pair in acs.convolve_many(items, kernel=KERNEL,
                                                            format="npy", concurrency=3)]

    check(asyncio.run(run()), items, server_url)


@pytest.mark.e2e
def test_layers_many_and_the_d2l_numbers(server_url: str) -> None:
    stack = [{"type": "conv2d", "kernel": {"weight": D2L_K[np.newaxis]}}]
    with Client(server_url, max_retries=0) as cs:
        results = list(cs.layers_many([D2L_X, D2L_X + 1], layers=stack, format="npy"))
        convolved = list(cs.convolve_many([D2L_X], kernel=D2L_K[np.newaxis],
                                          format="array"))
    assert len(results) == 2
    for x, result in results:
        assert isinstance(result, LayersResult)
        if x is D2L_X:
            np.testing.assert_array_equal(result.array, D2L_Y[np.newaxis])
    ((_, single),) = convolved
    assert isinstance(single, ConvolveResult)
    np.testing.assert_array_equal(single.array, D2L_Y[np.newaxis])


# --- the maps beneath, on plain functions ----------------------------------------------------


def test_map_threads_runs_exactly_concurrency_calls_at_once() -> None:
    barrier = threading.Barrier(3, timeout=30)  # breaks unless 3 calls run together
    active = 0
    most = 0
    lock = threading.Lock()

    def call(n: int) -> int:
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        barrier.wait()
        with lock:
            active -= 1
        return n * n

    results = dict(map_threads(call, range(9), concurrency=3))
    assert results == {n: n * n for n in range(9)}
    assert most == 3


def test_map_threads_draws_inputs_lazily_and_stops_early() -> None:
    drawn: list[int] = []

    def numbers() -> Iterator[int]:
        for n in range(1000):
            drawn.append(n)
            yield n

    mapped = map_threads(lambda n: n, numbers(), concurrency=2)
    first = next(mapped)
    mapped.close()
    assert first[0] in (0, 1)
    assert len(drawn) <= 4  # two in flight, at most two more drawn to refill


def test_map_threads_yields_input_errors_and_raises_bugs() -> None:
    def call(n: int) -> int:
        if n == 1:
            raise OSError(2, "No such file or directory", "x.png")
        if n == 2:
            raise ZeroDivisionError("a bug is not an input's failure")
        return n

    outcomes = map_threads(call, [0, 1], concurrency=1)
    assert [type(o).__name__ for _, o in outcomes] == ["int", "FileNotFoundError"]
    with pytest.raises(ZeroDivisionError):
        list(map_threads(call, [2], concurrency=1))


@pytest.mark.parametrize("concurrency", [0, -1, 1.5, True])
def test_concurrency_must_be_a_positive_integer(concurrency: Any) -> None:
    with pytest.raises(ValueError, match="concurrency must be an integer >= 1"):
        list(map_threads(lambda n: n, [1], concurrency))


def test_map_tasks_cancels_the_calls_in_flight_when_closed() -> None:
    cancelled: list[int] = []

    async def call(n: int) -> int:
        if n == 0:
            return 0
        try:
            await asyncio.Event().wait()  # never set: only cancellation ends it
        except asyncio.CancelledError:
            cancelled.append(n)
            raise
        return n

    async def run() -> list[tuple[int, Any]]:
        async with aclosing(map_tasks(call, range(10), concurrency=3)) as results:
            return [await anext(results)]

    assert asyncio.run(run()) == [(0, 0)]
    assert sorted(cancelled) == [1, 2]  # the two still in flight; 3..9 never started
