"""Float32 feature maps -> the answer's bytes, and what every flow returns.

A flow serialises its answer in the worker thread that computed it (never on the event loop)
and returns an :class:`Outcome`: the encoded body plus the numbers the response headers report.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convserve import imaging, jsonbody, png
from convserve.imaging import resolved_normalize  # the auto rule, defined once in imaging

__all__ = [
    "EncodedResult",
    "JsonAnswer",
    "Outcome",
    "channel_stats",
    "channels_json",
    "elapsed_ms",
    "finish",
    "pngs_of",
    "resolved_normalize",
    "serialise",
]


@dataclass(frozen=True)
class EncodedResult:
    """An encoded answer: its bytes, media type and, for files, a download name."""

    media_type: str
    body: bytes
    filename: str | None = None


@dataclass
class Outcome:
    """A flow's answer and what the response headers report about it."""

    result: EncodedResult
    shape: tuple[int, ...]
    """Output shape (C, H, W) of the layer or the stack."""
    engine: str
    device: str
    padding: tuple[int, int, int, int] | None = None
    """Resolved (top, bottom, left, right) of a single layer; None for a stack."""
    timing_ms: dict[str, float] = field(default_factory=dict)


def elapsed_ms(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.perf_counter()`` reading), rounded to µs."""
    return round(1000 * (time.perf_counter() - started), 3)


@dataclass(frozen=True)
class JsonAnswer:
    """A JSON answer serialised but for its ``timing_ms`` (:func:`serialise`, :func:`finish`)."""

    body: bytes


def serialise(rendered: EncodedResult | dict[str, Any]) -> EncodedResult | JsonAnswer:
    """A rendered answer's bytes: a file as it is, a JSON payload serialised (NaN and infinity
    written as null; see :mod:`convserve.jsonbody`) to take its timings last."""
    if isinstance(rendered, EncodedResult):
        return rendered
    return JsonAnswer(jsonbody.dumps(rendered))


def finish(rendered: EncodedResult | JsonAnswer | dict[str, Any],
           timing_ms: dict[str, float]) -> EncodedResult:
    """The answer's body: a file as it is, a JSON payload with its ``timing_ms`` added last.

    A flow serialises its payload first (:func:`serialise`) and then takes its ``total``, so
    the time it reports includes the serialisation of all but the timings themselves.
    """
    if isinstance(rendered, EncodedResult):
        return rendered
    if isinstance(rendered, dict):
        rendered = JsonAnswer(jsonbody.dumps(rendered))
    return EncodedResult("application/json",
                         jsonbody.with_member(rendered.body, "timing_ms", timing_ms))


def channel_stats(y: np.ndarray, executor: Executor | None = None) -> list[dict[str, float]]:
    """min, max and mean of each channel of float32 (C, H, W), the mean in float64; the
    channels in parallel on ``executor`` (besides the calling thread) when one is given."""

    def stats(plane: np.ndarray) -> dict[str, float]:
        return {"min": float(plane.min()), "max": float(plane.max()),
                "mean": float(plane.mean(dtype=np.float64))}

    return png.run_jobs([functools.partial(stats, plane) for plane in y], executor)


def pngs_of(
    y: np.ndarray, mode: imaging.NormalizeMode, range_preserving: bool, level: int,
    executor: Executor | None,
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Per channel of float32 (C, H, W): its ``index`` and statistics, and its PNG (made
    from ``y`` band by band, which stays as it is; the statistics' range is reused).

    One job per channel computes its statistics, then writes its PNG (whose segments, for a
    large channel, become jobs of their own), so no channel waits for the others' statistics.
    The jobs run on ``executor``, or on :func:`~convserve.imaging.default_pool` without one.
    """
    executor = imaging.default_pool() if executor is None else executor

    def channel(index: int) -> tuple[dict[str, Any], bytes]:
        entry: dict[str, Any] = {"index": index, **channel_stats(y[index:index + 1])[0]}
        data = imaging.maps_pngs(y[index:index + 1], mode, range_preserving=range_preserving,
                                 level=level, executor=executor,
                                 ranges=[(entry["min"], entry["max"])])[0]
        return entry, data

    done = png.run_jobs([functools.partial(channel, index) for index in range(y.shape[0])],
                        executor)
    return [entry for entry, _ in done], [data for _, data in done]


def channels_json(
    channels: list[dict[str, Any]], pngs: Sequence[bytes]
) -> list[dict[str, Any]]:
    """Channel entries with each PNG inline as ``png_base64`` (format=json)."""
    return [{**entry, "png_base64": jsonbody.Base64(png)}
            for entry, png in zip(channels, pngs, strict=True)]
