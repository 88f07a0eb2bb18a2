"""Many inputs through one endpoint: a bounded number of calls in flight, results as they end.

``Client.convolve_many`` runs its calls on a thread pool and ``AsyncClient.convolve_many`` as
tasks; both share the client's connection pool, so ``concurrency`` calls use at most that many
connections. Each call keeps the client's retry policy. An input whose call fails yields its
error as a value (:data:`ItemError`) and the others go on; anything else (a bug, Ctrl-C) stops
the whole map, cancelling what has not started (threads) or what is in flight (tasks).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from itertools import islice
from typing import Protocol, TypeAlias, TypeVar

from convserve_client._exceptions import ConvServeError

__all__ = ["DEFAULT_CONCURRENCY", "ITEM_ERRORS", "ItemError", "map_tasks", "map_threads"]

InputT = TypeVar("InputT")
ResultT = TypeVar("ResultT")
ResultT_co = TypeVar("ResultT_co", covariant=True)

DEFAULT_CONCURRENCY = 4
"""Calls in flight at once: enough to keep a few server workers busy while this side reads
files and answers, without queueing a whole data set on the server."""

ItemError: TypeAlias = ConvServeError | OSError | ValueError | TypeError
"""What a failed input yields instead of a result: the error its single call would raise (a
status error with the server's problem, a connection error after retries, or an input that
cannot be read or sent)."""
ITEM_ERRORS = (ConvServeError, OSError, ValueError, TypeError)


def _check(concurrency: int) -> None:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be an integer >= 1, not {concurrency!r}")


class _Ended(Protocol[ResultT_co]):
    """A finished ``concurrent.futures.Future`` or ``asyncio.Future``."""

    def exception(self) -> BaseException | None: ...

    def result(self) -> ResultT_co: ...


def _outcome(done: _Ended[ResultT]) -> ResultT | ItemError:
    error = done.exception()
    if error is None:
        return done.result()
    if isinstance(error, ITEM_ERRORS):
        return error
    raise error


def map_threads(
    call: Callable[[InputT], ResultT], inputs: Iterable[InputT], concurrency: int
) -> Generator[tuple[InputT, ResultT | ItemError], None, None]:
    """``(input, call(input) or its error)`` for each input, in the order the calls end.

    Inputs are drawn from ``inputs`` only as slots free up, so a generator of a million paths
    is fine. Leaving the loop early (or an exception) cancels the calls not yet started and
    waits for the at most ``concurrency`` running ones, so none outlives the client.
    """
    _check(concurrency)
    pending = iter(inputs)
    running: dict[Future[ResultT], InputT] = {}
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="convserve-many")
    try:
        exhausted = False
        while True:
            if not exhausted:
                wanted = concurrency - len(running)
                batch = list(islice(pending, wanted))
                exhausted = len(batch) < wanted
                running.update((pool.submit(call, item), item) for item in batch)
            if not running:
                return
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                yield running.pop(future), _outcome(future)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


async def map_tasks(
    call: Callable[[InputT], Awaitable[ResultT]], inputs: Iterable[InputT], concurrency: int
) -> AsyncGenerator[tuple[InputT, ResultT | ItemError], None]:
    """The asynchronous :func:`map_threads`: each call is a task on the running loop.

    Closing the generator early (``async with contextlib.aclosing(...)``, or cancelling the
    task that iterates it, as Ctrl-C under ``asyncio.run`` does) cancels the calls in flight
    and waits until they have ended, so their connections are released.
    """
    _check(concurrency)
    pending = iter(inputs)
    running: dict[asyncio.Future[ResultT], InputT] = {}
    try:
        exhausted = False
        while True:
            if not exhausted:
                wanted = concurrency - len(running)
                batch = list(islice(pending, wanted))
                exhausted = len(batch) < wanted
                running.update((asyncio.ensure_future(call(item)), item) for item in batch)
            if not running:
                return
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                yield running.pop(task), _outcome(task)
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)

