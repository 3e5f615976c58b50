"""Prometheus metrics of one app, in their own registry (tests build many apps in one process)."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE  # noqa: F401  (re-exported for the route)
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

PHASES = ("preprocess", "queue", "inference", "postprocess", "total")
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


served_model: contextvars.ContextVar[str | None] = contextvars.ContextVar("served_model", default=None)
"""The model label of the inference request being served (the access log's `model` field)."""


class Metrics:
    """Request counts, per-phase latency, batch sizes, queue depth and loaded models."""

    def __init__(self) -> None:
        # `*_created` timestamps double the scrape size and no dashboard reads them (process-wide switch).
        disable_created_metrics()
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "axon_requests", "Requests by model, endpoint and HTTP status.",
            ["model", "endpoint", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "axon_request_phase_seconds",
            "Time per request phase: preprocess (decode/tokenize), queue, inference, postprocess, total.",
            ["model", "phase"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.batch_size = Histogram(
            "axon_batch_size", "Rows per session.run.", ["model", "version"],
            buckets=BATCH_BUCKETS, registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "axon_batch_inference_seconds", "Duration of one session.run.", ["model", "version"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.queue_depth = Gauge(
            "axon_queue_depth", "Rows waiting in a model version's batch queue.", ["model", "version"],
            registry=self.registry,
        )
        self.http_requests = Counter(
            "axon_http_requests",
            "Every HTTP request by method, route template and status (errors before any model included).",
            ["method", "route", "status"], registry=self.registry,
        )
        self.http_seconds = Histogram(
            "axon_http_request_seconds", "Time from the request's arrival to its response, by route template.",
            ["route"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.models_loaded = Gauge("axon_models_loaded", "Model versions ready to serve.", registry=self.registry)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def batch_observer(self, model: str, version: int) -> Callable[[int, float], None]:
        """The callback a batcher reports each batch to."""
        size = self.batch_size.labels(model, str(version))
        seconds = self.batch_seconds.labels(model, str(version))

        def observe(rows: int, elapsed: float) -> None:
            size.observe(rows)
            seconds.observe(elapsed)

        return observe

    def watch_queue(self, model: str, version: int, depth: Callable[[], float]) -> None:
        """Read a batcher's queue depth at scrape time."""
        self.queue_depth.labels(model, str(version)).set_function(depth)

    def forget_version(self, model: str, version: int) -> None:
        """Drop the queue gauge of an unloaded version (its histograms keep their history)."""
        try:
            self.queue_depth.remove(model, str(version))
        except KeyError:
            pass

    def _child(self, metric: Counter | Histogram, *labels: str) -> Any:
        # `.labels()` takes a lock and validates every value on each call (~2 us); label sets are few and
        # bounded (known models only), so each child is looked up once and then found in a plain dict.
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def count_request(self, model: str, endpoint: str, status: int) -> None:
        """Count one inference request by model, endpoint and status."""
        served_model.set(model)
        self._child(self.requests, model, endpoint, str(status)).inc()

    def observe_phases(self, model: str, phases: dict[str, float]) -> None:
        """Record the seconds spent in each phase of one request."""
        for phase, seconds in phases.items():
            self._child(self.latency, model, phase).observe(seconds)

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one HTTP request and its duration."""
        self._child(self.http_requests, method, route, str(status)).inc()
        self._child(self.http_seconds, route).observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of this app's registry."""
        return generate_latest(self.registry)
