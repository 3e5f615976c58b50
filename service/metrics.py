"""Prometheus metrics of one app, in their own registry (tests build many apps in one process).

Under `AXON_WORKERS=N` prometheus-client runs in multiprocess mode (the supervisor sets
`PROMETHEUS_MULTIPROC_DIR` before any worker starts): every value lives in a per-process file, each
worker flushes into those files on every tick (`AxonState.tick`) and on a scrape, and a scrape of any
worker reads all of them (`MultiProcessCollector`). Gauges then hold numbers, not functions: they are
set on flush. Queue depth is summed over live workers; models loaded is the minimum over live workers
(the versions every worker serves), so neither counts a dead worker.
"""

from __future__ import annotations

import contextvars
import os
from bisect import bisect_left
from collections.abc import Callable, Sequence

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE  # noqa: F401  (re-exported for the route)
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

PHASES = ("preprocess", "queue", "inference", "postprocess", "total")
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


served_model: contextvars.ContextVar[str | None] = contextvars.ContextVar("served_model", default=None)
"""The model label of the inference request being served (the access log's `model` field)."""


class _Tally:
    """Observations of one histogram child not yet flushed: a count per bucket and their sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = (*bounds, float("inf"))
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # Prometheus buckets are `value <= bound`
        self.sum += value


class Metrics:
    """Request counts, per-phase latency, batch sizes, queue depth and loaded models."""

    def __init__(self) -> None:
        # `*_created` timestamps double the scrape size and no dashboard reads them (process-wide switch).
        disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus-client leaves it unannotated
        self.registry = CollectorRegistry()
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self.requests = Counter(
            "axon_requests",
            "Requests by model, endpoint and HTTP status.",
            ["model", "endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "axon_request_phase_seconds",
            "Time per request phase: preprocess (decode/tokenize), queue, inference, postprocess, total.",
            ["model", "phase"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "axon_batch_size",
            "Rows per session.run.",
            ["model", "version"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "axon_batch_inference_seconds",
            "Duration of one session.run.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "axon_queue_depth",
            "Rows waiting in a model version's batch queue.",
            ["model", "version"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.http_requests = Counter(
            "axon_http_requests",
            "Every HTTP request by method, route template and status (errors before any model included).",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_seconds = Histogram(
            "axon_http_request_seconds",
            "Time from the request's arrival to its response, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.models_loaded = Gauge(
            "axon_models_loaded", "Model versions ready to serve.", registry=self.registry, multiprocess_mode="livemin"
        )
        # Gauges read at scrape time (single process) or set on every flush (multiprocess mode).
        self._gauges: dict[tuple[str, ...], Callable[[], float]] = {}
        self._models_ready: Callable[[], float] | None = None
        # Per-request observations go into plain ints and floats, flushed into the Prometheus children when
        # scraped: prometheus-client takes a lock per value and walks the buckets per observation, 7 times a
        # request (~5% of the event loop at 2,000 req/s). Only the event loop thread observes and renders.
        self._counts: dict[tuple[int, tuple[str, ...]], int] = {}
        self._tallies: dict[tuple[int, tuple[str, ...]], _Tally] = {}
        self._phase_tallies: dict[str, dict[str, _Tally]] = {}  # per model, the latency tally of each phase
        self._counters: dict[int, Counter] = {}
        self._histograms: dict[int, Histogram] = {}

    def batch_observer(self, model: str, version: int) -> Callable[[int, float], None]:
        """The callback a batcher reports each batch to."""
        size = self._tally(self.batch_size, model, str(version))
        seconds = self._tally(self.batch_seconds, model, str(version))

        def observe(rows: int, elapsed: float) -> None:
            size.observe(rows)
            seconds.observe(elapsed)

        return observe

    def watch_queue(self, model: str, version: int, depth: Callable[[], float]) -> None:
        """Read a batcher's queue depth at scrape time."""
        if self.multiprocess_dir:
            self._gauges[(model, str(version))] = depth
        else:
            self.queue_depth.labels(model, str(version)).set_function(depth)

    def watch_models(self, ready: Callable[[], float]) -> None:
        """Read the number of ready model versions at scrape time."""
        if self.multiprocess_dir:
            self._models_ready = ready
        else:
            self.models_loaded.set_function(ready)

    def forget_version(self, model: str, version: int) -> None:
        """Drop the queue gauge of an unloaded version (its histograms keep their history)."""
        if self.multiprocess_dir:  # a worker's file cannot drop a series: it reads 0 from now on
            if self._gauges.pop((model, str(version)), None) is not None:
                self.queue_depth.labels(model, str(version)).set(0)
            return
        try:
            self.queue_depth.remove(model, str(version))
        except KeyError:
            pass

    def _tally(self, metric: Histogram, *labels: str) -> _Tally:
        # Label sets are few and bounded (known models only): each is validated by `.labels()` once, when its
        # tally is made, and then found in a plain dict.
        key = (id(metric), labels)
        tally = self._tallies.get(key)
        if tally is None:
            metric.labels(*labels)
            self._histograms[id(metric)] = metric
            tally = self._tallies[key] = _Tally(metric._upper_bounds[:-1])
        return tally

    def _count(self, metric: Counter, *labels: str) -> None:
        key = (id(metric), labels)
        count = self._counts.get(key)
        if count is None:
            metric.labels(*labels)
            self._counters[id(metric)] = metric
            count = 0
        self._counts[key] = count + 1

    def count_request(self, model: str, endpoint: str, status: int) -> None:
        """Count one inference request by model, endpoint and status."""
        served_model.set(model)
        self._count(self.requests, model, endpoint, str(status))

    def observe_phases(self, model: str, phases: dict[str, float]) -> None:
        """Record the seconds spent in each phase of one request."""
        tallies = self._phase_tallies.get(model)
        if tallies is None:
            tallies = self._phase_tallies[model] = {p: self._tally(self.latency, model, p) for p in PHASES}
        for phase, seconds in phases.items():
            tallies[phase].observe(seconds)

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one HTTP request and its duration."""
        self._count(self.http_requests, method, route, str(status))
        self._tally(self.http_seconds, route).observe(seconds)

    def flush(self) -> None:
        """Move the observations gathered since the last scrape into the Prometheus children."""
        for (metric_id, labels), count in self._counts.items():
            if count:
                self._counters[metric_id].labels(*labels).inc(count)
                self._counts[(metric_id, labels)] = 0
        for (metric_id, labels), tally in self._tallies.items():
            if not tally.sum and not any(tally.counts):
                continue
            child = self._histograms[metric_id].labels(*labels)
            # prometheus-client has no public "observe n values at once"; its child keeps one value per
            # bucket (`_buckets`, not cumulative) and `_sum`, as in Histogram.observe (tests/test_metrics.py).
            child._sum.inc(tally.sum)
            for i, n in enumerate(tally.counts):
                if n:
                    child._buckets[i].inc(n)
                    tally.counts[i] = 0
            tally.sum = 0.0
        for labels, depth in self._gauges.items():
            self.queue_depth.labels(*labels).set(depth())
        if self._models_ready is not None:
            self.models_loaded.set(self._models_ready())

    def render(self) -> bytes:
        """The Prometheus text exposition of this app's registry, or of every worker's files."""
        self.flush()
        if not self.multiprocess_dir:
            return generate_latest(self.registry)
        everyone = CollectorRegistry()
        MultiProcessCollector(everyone, self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(everyone)
