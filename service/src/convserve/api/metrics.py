"""Prometheus metrics of one app, in a registry of its own (so several apps can coexist)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from convserve.conv.onnx_engine import CacheStats

__all__ = ["Metrics", "SessionCacheCollector"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class Metrics:
    """Request counts and latencies by route template and status, and compute time by engine."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "convserve_requests",
            "HTTP requests by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "convserve_request_duration_seconds",
            "HTTP request latency by route template and method.",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.convolution = Histogram(
            "convserve_convolution_seconds",
            "Time in the convolution engine per convolution layer, by engine and device (a "
            "/v1/layers stack on onnxruntime runs as one graph and counts once).",
            ["engine", "device"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stage = Histogram(
            "convserve_stage_seconds",
            "Time per pipeline stage (decode, convolve, encode) of compute requests.",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rejected_overload = Counter(
            "convserve_rejected_overload",
            "Requests refused with 503 because the compute queue was full.",
            registry=self.registry,
        )
        self.rejected_memory = Counter(
            "convserve_rejected_memory",
            "Requests refused with 503 because the memory budget had no room in time.",
            registry=self.registry,
        )
        self.body_timeouts = Counter(
            "convserve_body_timeouts",
            "Requests answered 408 because their body did not arrive in time.",
            registry=self.registry,
        )
        self.memory_budget = Gauge(
            "convserve_memory_budget_bytes",
            "Bytes of the memory budget, by pool (intake: bodies; work: computations).",
            ["pool"],
            registry=self.registry,
        )
        self.memory_in_use = Gauge(
            "convserve_memory_reserved_bytes",
            "Bytes of the memory budget reserved by requests in flight, by pool.",
            ["pool"],
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "convserve_requests_in_progress",
            "HTTP requests being served.",
            registry=self.registry,
        )

    def watch_session_caches(self, caches: Mapping[str, Callable[[], CacheStats]]) -> None:
        """Expose the ONNX Runtime session caches (``cache`` label: ``convolve``,
        ``convolve_packed``, ``layers``)."""
        self.registry.register(SessionCacheCollector(caches))


class SessionCacheCollector:
    """Reads each session cache's counters when ``/metrics`` is scraped."""

    def __init__(self, caches: Mapping[str, Callable[[], CacheStats]]) -> None:
        self.caches = dict(caches)

    def describe(self) -> list[Any]:
        return []  # collected on demand only: the registry must not call collect() at register

    def collect(self) -> Iterator[Any]:
        counters = {
            name: CounterMetricFamily(f"convserve_session_cache_{name}",
                                      f"ONNX Runtime session cache {name}.", labels=["cache"])
            for name in ("hits", "misses", "evictions")
        }
        size = GaugeMetricFamily("convserve_session_cache_size",
                                 "ONNX Runtime sessions cached now.", labels=["cache"])
        capacity = GaugeMetricFamily("convserve_session_cache_capacity",
                                     "ONNX Runtime sessions a cache keeps at most "
                                     "(CONVSERVE_ORT_CACHE_SIZE).", labels=["cache"])
        for cache, read in self.caches.items():
            stats = read()
            counters["hits"].add_metric([cache], stats.hits)
            counters["misses"].add_metric([cache], stats.misses)
            counters["evictions"].add_metric([cache], stats.evictions)
            size.add_metric([cache], stats.size)
            capacity.add_metric([cache], stats.capacity)
        yield from counters.values()
        yield size
        yield capacity
