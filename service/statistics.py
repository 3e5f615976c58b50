"""Per model version inference statistics in Triton's shape (`GET /v2/models/{m}/stats`, gRPC ModelStatistics).

Protocol-free: the data plane reports each request's outcome and phase times, the batcher's observer
each execution; `model_stats` answers with Triton's field names so `get_inference_statistics` works
over REST and gRPC alike. Times are cumulative nanoseconds, as in Triton.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

PHASES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


@dataclass
class Duration:
    """A count and the nanoseconds they took together (Triton's StatisticDuration)."""

    count: int = 0
    ns: int = 0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.ns += int(seconds * 1e9)


@dataclass
class VersionStats:
    """What one model version has done since it was first asked."""

    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    phases: dict[str, Duration] = field(default_factory=lambda: {p: Duration() for p in PHASES})


@dataclass(slots=True)  # one per request: a frozen __init__ costs 3x (each field via object.__setattr__)
class Timing:
    """Where one successful request's time went, in seconds."""

    total: float
    queue: float
    compute_input: float
    compute_infer: float
    compute_output: float


class Statistics:
    """Counters keyed by (model, version); kept across reloads of a version, like Triton's per-version stats."""

    def __init__(self) -> None:
        self._stats: dict[tuple[str, int], VersionStats] = {}

    def _get(self, name: str, version: int | None) -> VersionStats:
        key = (name, version or 0)
        found = self._stats.get(key)
        if found is None:
            found = self._stats[key] = VersionStats()
        return found

    def success(self, name: str, version: int | None, rows: int, timing: Timing) -> None:
        """Count one answered request of `rows` inferences and add its phase times."""
        stats = self._get(name, version)
        stats.last_inference_ms = int(time.time() * 1000)
        stats.inference_count += rows
        phases = stats.phases
        phases["success"].add(timing.total)
        phases["queue"].add(timing.queue)
        phases["compute_input"].add(timing.compute_input)
        phases["compute_infer"].add(timing.compute_infer)
        phases["compute_output"].add(timing.compute_output)

    def failure(self, name: str, version: int | None, seconds: float) -> None:
        """Count one request that reached a model version and failed there."""
        self._get(name, version).phases["fail"].add(seconds)

    def batch_observer(self, name: str, version: int | None) -> Callable[[int, float], None]:
        """The batcher's per-execution callback: one execution of however many rows."""
        stats = self._get(name, version)

        def observe(rows: int, elapsed: float) -> None:
            stats.execution_count += 1

        return observe

    def model_stats(self, versions: Iterable[tuple[str, int | None]]) -> dict[str, Any]:
        """Triton's statistics answer for these (model, version) pairs, zeros for a version never asked."""
        rows = []
        for name, version in versions:
            stats = self._stats.get((name, version or 0), VersionStats())
            rows.append({
                "name": name,
                "version": "" if version is None else str(version),
                "last_inference": stats.last_inference_ms,
                "inference_count": stats.inference_count,
                "execution_count": stats.execution_count,
                "inference_stats": {p: {"count": d.count, "ns": d.ns} for p, d in stats.phases.items()},
                "batch_stats": [],
            })  # fmt: skip
        return {"model_stats": rows}
