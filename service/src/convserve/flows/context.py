"""What a flow may use: settings, limits, engines, the encoder pool and metric callbacks."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field

from convserve.conv.auto import AutoEngine
from convserve.conv.engine import Engine
from convserve.conv.numpy_engine import NumpyEngine
from convserve.conv.onnx_engine import OnnxRuntimeEngine
from convserve.conv.runner import LayerRunner
from convserve.limits import Limits
from convserve.settings import Settings

__all__ = ["FlowContext", "make_engines"]


def make_engines(settings: Settings) -> tuple[dict[str, Engine], LayerRunner]:
    """The engines ``settings`` configure (threads per convolution, session cache size) and
    the layer-stack runner: NumPy layer by layer, ONNX Runtime as one graph per stack."""
    threads, band_bytes = settings.threads_per_op, settings.band_bytes
    numpy_engine = NumpyEngine(threads=threads, band_bytes=band_bytes)
    engines: dict[str, Engine] = {
        "numpy": numpy_engine,
        "onnxruntime": OnnxRuntimeEngine(intra_op_threads=threads,
                                         cache_size=settings.ort_cache_size,
                                         band_bytes=band_bytes),
    }
    engines["auto"] = AutoEngine(dict(engines))  # picks between the two above per shape
    runner = LayerRunner(numpy_engine, intra_op_threads=threads,
                         cache_size=settings.ort_cache_size)
    return engines, runner


def _ignore(*_: object) -> None:
    return None


@dataclass(frozen=True)
class FlowContext:
    """Everything a request's computation reads, injected (the app's Runtime builds one).

    ``observe_convolution(engine, device, seconds)`` records one convolution (or one layer
    stack) and ``observe_stage(stage, seconds)`` one stage (decode, convolve, encode); both
    default to doing nothing, for library use and unit tests.
    """

    settings: Settings
    limits: Limits
    engines: Mapping[str, Engine]
    layers: LayerRunner
    encoder: Executor | None = None
    observe_convolution: Callable[[str, str, float], None] = field(default=_ignore)
    observe_stage: Callable[[str, float], None] = field(default=_ignore)

    @classmethod
    def local(cls, settings: Settings) -> FlowContext:
        """A context of its own engines, for scripts, benchmarks and tests without a server."""
        engines, runner = make_engines(settings)
        return cls(settings, Limits.from_settings(settings), engines, runner)

    @functools.cached_property
    def auto(self) -> AutoEngine:
        """``engine="auto"``: the context's own (:func:`make_engines` makes one), else one over
        its engines and the kept table."""
        engine = self.engines.get("auto")
        return engine if isinstance(engine, AutoEngine) else AutoEngine(self.engines)

    def engine(self, name: str) -> Engine:
        """The engine called ``name`` (already validated by the request schema)."""
        return self.engines[name]
