"""Prometheus metrics of one app, in a registry of its own (so several apps can coexist)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]

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
            "Time spent in the convolution engine (per layer), by engine and device.",
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
