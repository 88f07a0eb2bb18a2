"""Running a layer :class:`~convserve.conv.layers.Stack`: layer by layer on the NumPy engine, or as
one ONNX graph (:func:`~convserve.conv.graphs.stack_model`) in one cached ONNX Runtime session."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from convserve.conv.engine import Device, Engine, EngineName, check_engine_name
from convserve.conv.graphs import stack_model
from convserve.conv.layers import (
    ActivationLayer,
    Conv2dLayer,
    Stack,
)
from convserve.conv.onnx_engine import (
    CacheStats,
    SessionCache,
    make_session,
    run_options,
)
from convserve.errors import EngineUnavailableError, ShapeError

__all__ = ["LayerRunner"]


class LayerRunner:
    """Runs a :class:`Stack` on the NumPy engine (layer by layer) or ONNX Runtime (one graph).

    Parameters
    ----------
    conv_engine : Engine
        The engine that runs the convolutions of ``engine="numpy"`` (the NumPy engine).
    intra_op_threads : int, optional
        Threads one ONNX Runtime node may use; None means every available core.
    cache_size : int
        ONNX Runtime sessions kept (least recently used evicted first).

    Notes
    -----
    Thread-safe: sessions may run concurrently; two threads missing the same key at once build
    it twice but keep one.
    """

    def __init__(self, conv_engine: Engine, intra_op_threads: int | None = None,
                 cache_size: int = 64) -> None:
        self.conv_engine = conv_engine
        self.intra_op_threads = intra_op_threads
        self._cache = SessionCache(cache_size)

    def run(
        self,
        stack: Stack,
        x: np.ndarray,
        engine: EngineName,
        device: Device = "cpu",
        *,
        keep_all: bool = False,
        observe: Callable[[float], None] | None = None,
    ) -> list[np.ndarray]:
        """Apply the stack to ``x``.

        Parameters
        ----------
        stack : Stack
            With drawn weights (:meth:`Stack.materialized`).
        x : ndarray of float32, shape (C, H, W) = ``stack.input_shape``
        engine : "numpy" or "onnxruntime"
        device : "cpu" or "cuda"
        keep_all : bool
            Return every layer's output, else only the last one's.
        observe : callable, optional
            Called with the seconds of each convolution layer (``numpy``: every conv2d layer on
            its own) or of the whole graph (``onnxruntime`` runs the stack as one graph).

        Returns
        -------
        list of ndarray of float32, shapes (C_i, H_i, W_i)
            One per layer, or one (the last layer's).

        Raises
        ------
        EngineUnavailableError
            The engine cannot run on ``device`` here.
        """
        if tuple(x.shape) != stack.input_shape:
            raise ShapeError(f"x.shape={x.shape} is not the stack's input {stack.input_shape}")
        if not stack.layers:
            return [x]
        x4 = np.ascontiguousarray(x, dtype=np.float32)[np.newaxis]
        if engine == "onnxruntime":
            started = time.perf_counter()
            outputs = self._run_onnx(stack, x4, device, keep_all)
            if observe is not None:
                observe(time.perf_counter() - started)
            return outputs
        check_engine_name(engine)
        return self._run_numpy(stack, x4, device, keep_all, observe)

    def _run_numpy(self, stack: Stack, x: np.ndarray, device: Device, keep_all: bool,
                   observe: Callable[[float], None] | None) -> list[np.ndarray]:
        status = {s.device: s for s in self.conv_engine.devices()}.get(device)
        if status is None or not status.available:
            reason = status.reason if status is not None else "unknown device"
            raise EngineUnavailableError(f"device={device!r}: {reason}", field="device")
        outputs = []
        current = x
        for layer in stack.layers:
            if isinstance(layer, Conv2dLayer):
                weight, bias = layer.arrays()
                started = time.perf_counter()
                current = self.conv_engine.conv2d(current, weight, bias, layer.spec, device)
                if observe is not None:
                    observe(time.perf_counter() - started)
                if layer.activation is not None:
                    current = layer.activation.apply(current)
            elif isinstance(layer, ActivationLayer):
                current = layer.activation.apply(current)
            else:
                current = layer.apply(current)
            if keep_all:
                outputs.append(current[0])
        return outputs if keep_all else [current[0]]

    def _run_onnx(self, stack: Stack, x: np.ndarray, device: Device,
                  keep_all: bool) -> list[np.ndarray]:
        session = self.session(stack, device, keep_all=keep_all)
        feeds = {"X": x}
        for i, layer in enumerate(stack.layers):
            if isinstance(layer, Conv2dLayer):
                weight, bias = layer.arrays()
                feeds[f"W{i}"] = np.ascontiguousarray(weight, dtype=np.float32)
                if bias is not None:
                    feeds[f"B{i}"] = np.ascontiguousarray(bias, dtype=np.float32)
        return [y[0] for y in session.run(None, feeds, run_options())]

    def session(self, stack: Stack, device: Device = "cpu", *, keep_all: bool = False) -> Any:
        """The cached ONNX Runtime session of the stack's architecture (built on a miss)."""
        return self._cache.get(
            (stack.key, device, keep_all),
            lambda: make_session(stack_model(stack, keep_all=keep_all), device,
                                 intra_op_threads=self.intra_op_threads),
        )

    def cache_stats(self) -> CacheStats:
        """Hits, misses, evictions and the current and maximum number of cached sessions."""
        return self._cache.stats()
