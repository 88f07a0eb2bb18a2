"""What one app instance owns at run time: engines, the bounded compute pool, readiness.

CPU-bound work (decoding, convolution, encoding) never runs on the event loop. It goes to a
fixed pool of ``worker_threads`` threads with at most ``queue_size`` requests waiting; a request
that finds the queue full is refused at once with 503 and ``Retry-After`` (never a hang). A
request that waits or computes longer than ``compute_timeout_s`` gets 504; if it was still
queued its slot is freed at once, if it was already running the thread finishes the work and
frees the slot then (a Python thread cannot be interrupted safely). Work that runs out of
memory or disk (``MemoryError``, ENOSPC, an ONNX Runtime allocation failure) ends in a
retryable 503, never a 500.

Memory is admitted before work by :class:`convserve.admission.MemoryBudget` (``budget``):
the middleware reserves a body's bytes before reading it, the route its working memory once
the image header is known.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from convserve.admission import ADMISSION_WAIT_S, CURRENT, MemoryBudget, resource_exhaustion
from convserve.api.metrics import Metrics
from convserve.collector import freeze_start_up
from convserve.conv import opencv_engine
from convserve.conv.auto import AutoEngine
from convserve.conv.engine import Device, Engine
from convserve.conv.onnx_engine import OnnxRuntimeEngine
from convserve.conv.opencv_engine import OpenCvEngine
from convserve.conv.runner import LayerRunner
from convserve.conv.spec import conv_spec
from convserve.errors import (
    ComputeTimeoutError,
    ConvServeError,
    EngineUnavailableError,
    OverloadedError,
    ResourceExhaustedError,
)
from convserve.flows.context import FlowContext, make_engines
from convserve.limits import Limits
from convserve.models import ModelService
from convserve.priority import priority_initializer
from convserve.settings import Settings

__all__ = ["ComputePool", "Runtime"]

T = TypeVar("T")
log = logging.getLogger("convserve")


class ComputePool:
    """A bounded thread pool that refuses work instead of queueing without end.

    Parameters
    ----------
    workers : int
        Threads running work.
    queue_size : int
        Work items that may wait for a thread; one more is refused with OverloadedError.
    timeout_s : float
        Seconds a caller waits (queue and run) before ComputeTimeoutError.
    on_reject : callable, optional
        Called for each refused item (a metric).
    nice : int
        Nice value added to the pool's threads (:mod:`convserve.priority`); 0 leaves them
        at the creating thread's.
    """

    def __init__(
        self,
        workers: int,
        queue_size: int,
        timeout_s: float,
        on_reject: Callable[[], None] | None = None,
        nice: int = 0,
    ) -> None:
        self.workers = workers
        self.capacity = workers + queue_size
        self.timeout_s = timeout_s
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="convserve-compute",
                                            initializer=priority_initializer(nice))
        self._lock = threading.Lock()
        self._in_flight = 0
        self._on_reject = on_reject

    @property
    def in_flight(self) -> int:
        """Work items queued or running."""
        return self._in_flight

    def _release(self, _: Future[Any]) -> None:
        with self._lock:
            self._in_flight -= 1

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the pool; refuse at once when the pool is full."""
        with self._lock:
            if self._in_flight >= self.capacity:
                if self._on_reject is not None:
                    self._on_reject()
                retry_after = max(1, int(np.ceil(self.timeout_s / 10)))
                raise OverloadedError(
                    f"all {self.workers} compute threads are busy and "
                    f"{self.capacity - self.workers} requests are already waiting; retry later "
                    "(CONVSERVE_WORKER_THREADS and CONVSERVE_QUEUE_SIZE set the capacity)",
                    retry_after=retry_after,
                )
            self._in_flight += 1
        future = self._executor.submit(fn)
        future.add_done_callback(self._release)
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)),
                                          self.timeout_s)
        except TimeoutError:
            # Queued work is cancelled (its slot freed at once); running work keeps its
            # memory reserved until it ends.
            if not future.cancel():
                reservation = CURRENT.get()
                if reservation is not None:
                    reservation.release_when_done(future)
            raise ComputeTimeoutError(
                f"the computation did not finish within {self.timeout_s:g} s "
                "(CONVSERVE_COMPUTE_TIMEOUT_S); try a smaller image, kernel or fewer channels"
            ) from None
        except Exception as exc:
            what = resource_exhaustion(exc)
            if what is None:
                raise
            log.warning("computation ran out of %s: %s: %s", what, type(exc).__name__, exc)
            raise ResourceExhaustedError(
                f"the server ran out of {what} for this computation ({type(exc).__name__}); "
                "retry later, or send a smaller image",
                retry_after=max(1, int(np.ceil(self.timeout_s / 10))),
            ) from None

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass
class Runtime:
    """Engines, pools, metrics and readiness of one app."""

    settings: Settings
    metrics: Metrics
    limits: Limits = field(init=False)
    engines: dict[str, Engine] = field(init=False)
    layers: LayerRunner = field(init=False)
    pool: ComputePool = field(init=False)
    budget: MemoryBudget = field(init=False)
    encoder: ThreadPoolExecutor = field(init=False)
    ready: threading.Event = field(default_factory=threading.Event)
    warmup_error: str | None = None
    sample_done: threading.Event = field(default_factory=threading.Event)
    """Set when the start-up attempt to store the sample network has ended (either way)."""
    _models: ModelService | None = field(init=False, default=None)
    _models_lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _closed: bool = field(init=False, default=True)

    def __post_init__(self) -> None:
        self.limits = Limits.from_settings(self.settings)
        self.engines, self.layers = make_engines(self.settings)
        self.budget = MemoryBudget(
            self.limits.memory_budget_bytes,
            wait_s=min(ADMISSION_WAIT_S, self.settings.compute_timeout_s),
            on_change=lambda pool, used: self.metrics.memory_in_use.labels(pool).set(used),
        )
        for pool in (self.budget.intake, self.budget.work):
            self.metrics.memory_budget.labels(pool.name).set(pool.capacity)
            self.metrics.memory_in_use.labels(pool.name).set(0)
        onnx_engine = self.engines["onnxruntime"]
        if isinstance(onnx_engine, OnnxRuntimeEngine):
            self.metrics.watch_session_caches({"convolve": onnx_engine.cache_stats,
                                               "convolve_packed": onnx_engine.packed_cache_stats,
                                               "layers": self.layers.cache_stats})
        self._closed = True
        self.open()

    def open(self) -> None:
        """Start the thread pools (again, after :meth:`close`; the app's lifespan calls it)."""
        if not self._closed:
            return
        self.pool = ComputePool(
            self.settings.worker_threads,
            self.settings.queue_size,
            self.settings.compute_timeout_s,
            on_reject=self.metrics.rejected_overload.inc,
            nice=self.settings.compute_nice,
        )
        # PNG encoding of several channels runs in parallel beside the compute threads.
        self.encoder = ThreadPoolExecutor(
            max(2, self.settings.threads_per_op), thread_name_prefix="convserve-encode",
            initializer=priority_initializer(self.settings.compute_nice),
        )
        self._closed = False

    def engine(self, name: str) -> Engine:
        return self.engines[name]

    @property
    def context(self) -> FlowContext:
        """What the request flows (:mod:`convserve.flows`) use of this runtime."""
        metrics = self.metrics
        return FlowContext(
            settings=self.settings,
            limits=self.limits,
            engines=self.engines,
            layers=self.layers,
            encoder=self.encoder,
            observe_convolution=lambda engine, device, seconds: metrics.convolution.labels(
                engine, device).observe(seconds),
            observe_stage=lambda stage, seconds: metrics.stage.labels(stage).observe(seconds),
        )

    def warm_up(self) -> None:
        """Load the default engine and run one small convolution on every usable device.

        Sets :attr:`ready` when the default engine and device answered correctly, after
        freezing the process's start-up objects out of the garbage collector's full passes
        (:func:`convserve.collector.freeze_start_up`, once per process).
        """
        x = np.arange(2 * 5 * 5, dtype=np.float32).reshape(1, 2, 5, 5)
        w = np.ones((3, 2, 3, 3), dtype=np.float32)
        spec = conv_spec(x.shape, w.shape, None, padding=1)
        expected = self.engines["numpy"].conv2d(x, w, None, spec, "cpu")
        default = (self.settings.engine, self.settings.device)
        try:
            runs: list[tuple[str, Device, Engine | OpenCvEngine]] = [
                (engine.name, status.device, engine) for engine in self.engines.values()
                for status in engine.devices() if status.available]
            auto = self.engines.get("auto")
            if isinstance(auto, AutoEngine) and opencv_engine.installed():
                # auto's OpenCV paths too: importing cv2 holds the GIL for about 0.1 s, which
                # the first request needing it would otherwise make the event loop wait for.
                runs.append(("opencv", "cpu", auto.engine("opencv")))
            for name, device, runner in runs:
                started = time.perf_counter()
                y = runner.conv2d(x, w, None, spec, device)
                np.testing.assert_allclose(y, expected, rtol=1e-5)
                log.info("warm-up done", extra={
                    "engine": name, "device": device,
                    "ms": round(1000 * (time.perf_counter() - started), 1)})
            usable = {
                (engine.name, status.device)
                for engine in self.engines.values()
                for status in engine.devices()
                if status.available
            }
            if default not in usable:
                raise EngineUnavailableError(
                    f"the default engine={default[0]!r} device={default[1]!r} "
                    "(CONVSERVE_ENGINE, CONVSERVE_DEVICE) is not usable here"
                )
        except Exception as exc:  # readiness reports why instead of crashing the server
            self.warmup_error = str(exc)
            log.error("warm-up failed: %s", exc)
            return
        # Before /readyz turns 200: the one full collection holds the GIL for about 0.1 s.
        freeze_start_up()
        self.ready.set()

    def model_service(self) -> ModelService:
        """The model store and session cache of this app, built on first use: a store
        directory that cannot be created fails the model requests (503), never the start."""
        with self._models_lock:
            if self._models is None:
                settings = self.settings
                self._models = ModelService(
                    settings.model_dir, self.limits, sessions=settings.model_sessions,
                    intra_op_threads=settings.threads_per_op,
                    sample_file=settings.sample_model_file)
            return self._models

    def store_sample(self) -> None:
        """Put the sample network into the model store unless it is there (start-up, in a
        thread). Nothing here stops the server: a store too small for it, a full disk or a
        refused model is logged, and POST /v1/models/sample tries again when asked."""
        started = time.perf_counter()
        try:
            meta, created = self.model_service().store_sample()
        except ConvServeError as exc:
            log.warning("the sample network was not stored at start-up: %s", exc.detail)
        except Exception as exc:  # a thread's failure would otherwise vanish unlogged
            log.exception("the sample network was not stored at start-up: %s", exc)
        else:
            log.info("sample network %s", "stored" if created else "already stored",
                     extra={"model": meta["id"],
                            "ms": round(1000 * (time.perf_counter() - started), 1)})
        finally:
            self.sample_done.set()

    def close(self) -> None:
        """Stop the thread pools; running work finishes, queued work is cancelled."""
        self._closed = True
        self.pool.shutdown()
        self.encoder.shutdown(wait=False, cancel_futures=True)
