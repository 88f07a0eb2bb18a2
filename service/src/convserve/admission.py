"""Admission by bytes: requests reserve the memory they will use before they use it.

Each server process has one budget of bytes in flight, ``CONVSERVE_MEMORY_BUDGET_BYTES``
(0: fitted to the container's memory limit, see :func:`default_memory_budget`). It is split in
two pools so that a request never waits while holding bytes another waiter needs:

- **intake** (an eighth of the budget): a request with a body reserves
  ``INTAKE_FACTOR x Content-Length`` (the body and the one copy the parsers make of it; a
  chunked body without Content-Length reserves against ``CONVSERVE_MAX_UPLOAD_BYTES``)
  *before a byte of it is read*, and keeps it while its body is in memory;
- **work** (the rest): once the image header is parsed, the request reserves what its decode,
  convolution and answer will need (:func:`estimate_working_bytes`, from width x height x
  channels, output channels and format), which includes its body, and gives its intake bytes
  back.

A reservation that does not fit waits, first come first served, at most ``wait_s`` seconds
and then fails with :class:`~convserve.errors.OverloadedError` (503 + ``Retry-After``), which
the SDK retries. Work reservations only wait for running requests to finish, and intake
holders either finish their upload (bounded by ``CONVSERVE_BODY_TIMEOUT_S``) or wait a bounded
time for work, so no set of requests can hold each other up for longer than those bounds. A
single request larger than a whole pool is clamped to the pool: it runs alone rather than
never (the limits on pixels and upload size bound it; docs/deployment.md sizes the budget so
that the largest one fits).
"""

from __future__ import annotations

import asyncio
import errno
import math
import re
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from convserve import imaging
from convserve.conv.packing import packed_work_bytes
from convserve.cores import cgroup_memory_limit, physical_memory
from convserve.errors import OverloadedError
from convserve.settings import Settings

__all__ = [
    "ADMISSION_WAIT_S",
    "BANDED_ABOVE_BYTES",
    "BAND_WORK_BYTES",
    "INTAKE_FACTOR",
    "INTAKE_SHARE",
    "WORKER_BASELINE_BYTES",
    "BytePool",
    "MemoryBudget",
    "Reservation",
    "default_memory_budget",
    "banded_answer_bytes_per_value",
    "estimate_working_bytes",
    "memory_budget",
    "probe_image",
    "sizing_problems",
    "resource_exhaustion",
]

WORKER_BASELINE_BYTES = 256 * 2**20
"""Memory one idle worker process needs outside the budget: Python, NumPy, ONNX Runtime and
its sessions (about 150 MB measured), plus allocator slack."""
MIN_BUDGET_BYTES = 64 * 2**20
"""The fitted budget is never lower than this, however small the container."""
INTAKE_SHARE = 0.125
"""Part of the budget that bodies may hold before their image header is known."""
INTAKE_FACTOR = 2
"""Bytes reserved per body byte while a body is in memory: the body plus the parser's copy."""
RETRY_AFTER_S = 2
ADMISSION_WAIT_S = 10.0
"""Longest wait for room in the budget (lowered to ``CONVSERVE_COMPUTE_TIMEOUT_S``)."""
CURRENT: ContextVar[Reservation | None] = ContextVar("convserve_reservation", default=None)
"""The reservation of the request being served (set by the middleware, read by the compute
pool to keep it while a timed-out computation still runs)."""


def default_memory_budget(workers: int, limit: int | None) -> int:
    """The budget one of ``workers`` processes gets by default.

    Parameters
    ----------
    workers : int
        Server processes sharing the memory (``WEB_CONCURRENCY``).
    limit : int or None
        The container's memory limit in bytes (:func:`cgroup_memory_limit`); None: the
        machine's RAM.

    Returns
    -------
    int
        ``limit / workers - WORKER_BASELINE_BYTES``, at least ``MIN_BUDGET_BYTES``. For the
        compose defaults (2 GiB, 2 workers): 768 MiB.
    """
    total = physical_memory() if limit is None else limit
    return max(MIN_BUDGET_BYTES, total // max(1, workers) - WORKER_BASELINE_BYTES)


def memory_budget(settings: Settings) -> int:
    """The effective budget: ``CONVSERVE_MEMORY_BUDGET_BYTES``, or fitted when it is 0."""
    if settings.memory_budget_bytes:
        return settings.memory_budget_bytes
    return default_memory_budget(settings.web_concurrency, cgroup_memory_limit())


BANDED_ABOVE_BYTES = 64 * 2**20
"""float32 input bytes above which the convolve flow runs ONNX Runtime in bands
(:data:`convserve.flows.bands.WHOLE_BYTES`, which is this number)."""

MAX_TMPFS_BYTES = 32 * 2**20
"""Largest /tmp tmpfs the sizing rule allows: it counts against the memory limit, inside the
slack of ``WORKER_BASELINE_BYTES`` (uploads never go there)."""


def sizing_problems(
    memory_limit: int,
    workers: int,
    tmpfs_bytes: int,
    budget: int,
    max_pixels: int,
    max_upload_bytes: int,
) -> list[str]:
    """Where a deployment breaks the sizing rule of docs/deployment.md; empty when it holds.

    The rule: ``memory_limit >= workers x (WORKER_BASELINE_BYTES + budget)``, a tmpfs of at
    most ``MAX_TMPFS_BYTES``, and one largest request fits each pool of the budget: the work
    pool holds :func:`estimate_working_bytes` of a square ``max_pixels`` RGB photo with Sobel
    (2 output channels, padding 1, ``json``) and a ``max_upload_bytes`` body; the intake pool
    holds ``INTAKE_FACTOR x max_upload_bytes``.

    Parameters
    ----------
    memory_limit, tmpfs_bytes, budget, max_upload_bytes : int
        Bytes: the container's limit, its /tmp tmpfs, the per-worker budget and the upload
        limit.
    workers : int
        ``WEB_CONCURRENCY``.
    max_pixels : int
        ``CONVSERVE_MAX_PIXELS``.
    """
    pools = MemoryBudget(budget, 0.0)
    side = math.isqrt(max_pixels)
    largest = estimate_working_bytes(side, side, 3, 2, "json", body_bytes=max_upload_bytes,
                                     padding=1, banded=4 * 3 * side * side > BANDED_ABOVE_BYTES)
    mib = 2**20
    problems = []
    if workers * (WORKER_BASELINE_BYTES + budget) > memory_limit:
        problems.append(
            f"{workers} workers x ({WORKER_BASELINE_BYTES // mib} MiB + a budget of "
            f"{budget / mib:.0f} MiB) exceed the memory limit of {memory_limit / mib:.0f} MiB")
    if tmpfs_bytes > MAX_TMPFS_BYTES:
        problems.append(f"the tmpfs of {tmpfs_bytes / mib:.0f} MiB is over "
                        f"{MAX_TMPFS_BYTES // mib} MiB (it counts against the memory limit)")
    if largest > pools.work.capacity:
        problems.append(
            f"a {max_pixels:,}-pixel photo needs {largest / mib:.0f} MiB, more than the work "
            f"pool of {pools.work.capacity / mib:.0f} MiB (7/8 of the budget): lower "
            "CONVSERVE_MAX_PIXELS or raise the memory")
    if INTAKE_FACTOR * max_upload_bytes > pools.intake.capacity:
        problems.append(
            f"a {max_upload_bytes:,}-byte upload needs {INTAKE_FACTOR} x its size, more than the "
            f"intake pool of {pools.intake.capacity / mib:.0f} MiB (1/8 of the budget)")
    return problems


def estimate_working_bytes(
    height: int,
    width: int,
    channels: int,
    out_channels: int,
    fmt: str,
    *,
    body_bytes: int = 0,
    padding: int = 0,
    banded: bool = False,
    packed: bool = False,
) -> int:
    """Peak bytes one convolution request needs beyond an idle process, from its header.

    Parameters
    ----------
    height, width, channels : int
        The decoded input, (C, H, W) (channels after ``color_mode``).
    out_channels : int
        C_out of the layer (or of the widest layer of a stack).
    fmt : str
        The answer format: ``json``, ``array``, ``npy``, ``png``, ``image``, ``grid``, ``zip``.
    body_bytes : int
        The encoded upload, held until the request ends.
    padding : int
        The largest padding on any side (a padded copy of the input is made).
    banded : bool
        Whether the convolve flow runs the layer in bands from the decoded samples
        (:mod:`convserve.flows.bands`: ONNX Runtime on a large image), which never makes the
        float32 input nor a padded copy of it.
    packed : bool
        Whether ``engine="auto"`` may run the layer on ONNX Runtime's ``packed`` strategy,
        whose blocked layout holds about two outputs more while it convolves
        (:func:`convserve.conv.packing.packed_work_bytes`).

    Returns
    -------
    int
        The body plus the largest of three stages (each array is freed after its last use,
        except the float32 input, which the request keeps to the end):

        - decode: 8-bit pixels and the float32 (C, H, W) input, 5 B per input value;
        - convolve: the input, one padded copy of it and the float32 output;
        - encode: the input, the output and the answer (:func:`answer_bytes_per_value`).

        The output is taken as large as the input (stride 1, the largest). For a 3-channel
        photo, Sobel (2 output channels) and ``json`` that is 32 B per pixel.

        In bands the stages are: decode, the samples and the decoder's buffer (2 B per 8-bit
        value); convolve, the samples, the float32 output and :data:`BAND_WORK_BYTES`; encode,
        the output (its pixels are written over it) and the answer
        (:func:`banded_answer_bytes_per_value`). For a 48 MP photo with Sobel and ``json`` that
        is 12 B per pixel, as ``bench/bench_io.py`` measures (11.7-12.1 B per pixel).
    """
    pixels = height * width
    padded = (height + 2 * padding) * (width + 2 * padding)
    values_in = pixels * channels
    values_out = pixels * out_channels
    if banded:
        decode = 2 * values_in
        convolve = values_in + 4 * values_out + BAND_WORK_BYTES
        encode = (4 + banded_answer_bytes_per_value(fmt)) * values_out
        return int(body_bytes + max(decode, convolve, encode))
    decode = 5 * values_in
    convolve = 4 * values_in + 4 * padded * channels + 4 * values_out
    if packed:
        convolve += packed_work_bytes(values_in, values_out, out_channels)
    encode = 4 * values_in + 4 * values_out + answer_bytes_per_value(fmt) * values_out
    return int(body_bytes + max(decode, convolve, encode))


BAND_WORK_BYTES = 16 * 2**20
"""One band's float32 input and what ONNX Runtime holds for it (2 MiB bands, arena kept)."""


def banded_answer_bytes_per_value(fmt: str) -> float:
    """Bytes per output value the answer holds beside the output, when the pixels are written
    over the output (json/zip: a PNG and its base64 text; png, image, grid: the PNG; npy: the
    float32 copy; array: Python floats in lists and their text)."""
    return {"npy": 4.0, "png": 1.0, "image": 1.0, "grid": 1.0, "array": 44.0}.get(fmt, 2.0)


def answer_bytes_per_value(fmt: str) -> float:
    """Bytes per output value the answer in format ``fmt`` holds at its peak.

    json/zip: 8-bit pixels, a PNG, its base64 text and the JSON body per channel; png, image,
    grid: 8-bit pixels and a PNG; npy: the float32 copy; array: Python floats (24 B) in lists
    (8 B) and their text.
    """
    return {"npy": 4.0, "png": 2.0, "image": 2.0, "grid": 2.0, "array": 44.0}.get(fmt, 5.0)


def probe_image(data: bytes, color_mode: str = "rgb") -> tuple[int, int, int] | None:
    """(C, H, W) of an uploaded image or .npy array, read from its header without decoding.

    Returns
    -------
    tuple of int or None
        Channels as the decoder will produce them for ``color_mode`` (``gray`` 1, ``rgb`` 3,
        ``rgba`` 4, ``auto`` the image's own bands), height and width; None when the header
        cannot be read (the decoder then refuses the bytes with a 422 of its own).
    """
    probed = imaging.probe_input(data)
    if probed is None:
        return None
    bands, height, width = probed
    if data[:6] == b"\x93NUMPY":
        return probed  # arrays are used as sent
    channels = {"gray": 1, "rgb": 3, "rgba": 4}.get(color_mode, bands)
    return channels, height, width


_ORT_ALLOCATION = re.compile(r"failed to allocate|bad_alloc|out of memory", re.IGNORECASE)


def resource_exhaustion(exc: BaseException) -> str | None:
    """What ran out, when ``exc`` means the machine ran out of memory or disk; else None.

    ``MemoryError``, ``OSError`` with ENOSPC/ENOMEM/EDQUOT, and ONNX Runtime's allocation
    failures (an ONNX Runtime exception or ``RuntimeError`` whose message says it failed to
    allocate) are transient: the
    request may succeed when fewer run at once, so the API answers them with a retryable 503.
    """
    if isinstance(exc, MemoryError):
        return "memory"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk space"
    if isinstance(exc, OSError) and exc.errno == errno.ENOMEM:
        return "memory"
    from_ort = type(exc).__module__.startswith("onnxruntime")  # its errors subclass Exception
    if (from_ort or isinstance(exc, RuntimeError)) and _ORT_ALLOCATION.search(str(exc)):
        return "memory"
    return None


class BytePool:
    """An async semaphore of bytes: first come, first served, bounded waits.

    Parameters
    ----------
    name : str
        ``intake`` or ``work``; names the pool in errors and metrics.
    capacity : int
        Bytes the pool holds; a request for more is clamped to it (it then runs alone).
    on_change : callable, optional
        Called with the bytes in use after every change (a metrics gauge).

    Only coroutines on one event loop may call :meth:`acquire` and :meth:`release`.
    """

    def __init__(self, name: str, capacity: int,
                 on_change: Callable[[int], None] | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity={capacity} must be >= 1")
        self.name = name
        self.capacity = capacity
        self.in_use = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._on_change = on_change

    @property
    def waiting(self) -> int:
        """Reservations waiting for bytes."""
        return len(self._waiters)

    async def acquire(self, nbytes: int, timeout: float) -> int:
        """Reserve ``nbytes`` (clamped to the capacity); return what was reserved.

        Raises
        ------
        OverloadedError
            When the bytes were not free within ``timeout`` seconds.
        """
        amount = max(0, min(int(nbytes), self.capacity))
        if not self._waiters and self.in_use + amount <= self.capacity:
            self._take(amount)
            return amount
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (amount, future)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except BaseException as exc:
            if future.done() and not future.cancelled():
                if isinstance(exc, TimeoutError):
                    return amount  # granted just as the wait ran out: keep it
                self.release(amount)  # granted, but the waiter is gone (cancelled)
                raise
            future.cancel()
            self._waiters.remove(entry)
            self._grant()  # a waiter behind this one may fit now
            if isinstance(exc, TimeoutError):
                raise OverloadedError(
                    f"the server's memory budget is in use ({self.in_use:,} of "
                    f"{self.capacity:,} bytes of its {self.name} pool) and {amount:,} bytes "
                    f"did not come free within {timeout:g} s; retry later "
                    "(CONVSERVE_MEMORY_BUDGET_BYTES sets the budget)",
                    retry_after=RETRY_AFTER_S,
                ) from None
            raise
        return amount

    def release(self, amount: int) -> None:
        """Give back ``amount`` bytes reserved by :meth:`acquire`."""
        self.in_use -= amount
        self._notify()
        self._grant()

    def _take(self, amount: int) -> None:
        self.in_use += amount
        self._notify()

    def _grant(self) -> None:
        while self._waiters and self.in_use + self._waiters[0][0] <= self.capacity:
            amount, future = self._waiters.popleft()
            self._take(amount)
            future.set_result(None)

    def _notify(self) -> None:
        if self._on_change is not None:
            self._on_change(self.in_use)


@dataclass
class Reservation:
    """What one request holds: intake bytes (its body), then work bytes (its computation)."""

    budget: MemoryBudget
    intake: int = 0
    work: int = 0
    _deferred: bool = False

    async def reserve_work(self, nbytes: int) -> None:
        """Reserve ``nbytes`` of working memory (body included); give the intake bytes back.

        Called once the image header is known; a second call reserves the difference.

        Raises
        ------
        OverloadedError
            When the work pool had no room within the budget's wait.
        """
        want = min(max(0, int(nbytes)), self.budget.work.capacity)
        if want > self.work:
            self.work += await self.budget.work.acquire(want - self.work, self.budget.wait_s)
        if self.intake:
            self.budget.intake.release(self.intake)
            self.intake = 0

    def release_when_done(self, work: Future[Any]) -> None:
        """Keep the bytes until ``work`` (a thread computing for this request) has finished.

        For a request answered before its computation ended (a compute timeout): the thread
        goes on using the memory, so :meth:`release` leaves the bytes reserved and they are
        given back, on the event loop, when ``work`` is done.
        """
        loop = asyncio.get_running_loop()
        self._deferred = True

        def done(_: Future[Any]) -> None:
            loop.call_soon_threadsafe(self._release_now)

        work.add_done_callback(done)

    def release(self) -> None:
        """Give everything back (the request ended, answered or not). Idempotent."""
        if not self._deferred:
            self._release_now()

    def _release_now(self) -> None:
        if self.intake:
            self.budget.intake.release(self.intake)
            self.intake = 0
        if self.work:
            self.budget.work.release(self.work)
            self.work = 0


class MemoryBudget:
    """One process's budget of bytes in flight, as an intake pool and a work pool.

    Parameters
    ----------
    total : int
        The budget in bytes (``CONVSERVE_MEMORY_BUDGET_BYTES`` or its fitted default).
    wait_s : float
        Seconds a reservation may wait for bytes before it fails with 503.
    on_change : callable, optional
        ``on_change(pool_name, bytes_in_use)`` after every change (metrics).
    """

    def __init__(self, total: int, wait_s: float,
                 on_change: Callable[[str, int], None] | None = None) -> None:
        if total < 2:
            raise ValueError(f"the memory budget of {total} bytes is too small")
        self.total = total
        self.wait_s = wait_s
        intake = max(1, math.floor(total * INTAKE_SHARE))

        def report(name: str) -> Callable[[int], None] | None:
            if on_change is None:
                return None
            return lambda used: on_change(name, used)

        self.intake = BytePool("intake", intake, report("intake"))
        self.work = BytePool("work", total - intake, report("work"))

    async def admit_body(self, body_bytes: int) -> Reservation:
        """Reserve intake bytes for a body of ``body_bytes`` before it is read."""
        reservation = Reservation(self)
        reservation.intake = await self.intake.acquire(INTAKE_FACTOR * body_bytes, self.wait_s)
        return reservation
