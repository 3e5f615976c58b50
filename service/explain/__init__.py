"""Explanations: why a model answered as it did, computed in-process on the model's own batcher.

Perturbation explanations are batches of changed inputs (occluded image patches, texts with one token
left out); the data plane runs them through the version's batcher in slices of at most one batch, so an
explanation never holds more than a batch of rows in the queue and plain requests interleave with it.
Each task's explainer lives in `service.explain.<task>` (its pure attribution functions, which the
faithfulness benchmark reuses, its job and its lean handler); `routes()` is the one registration point,
served by the app in its own admission lane (`settings.explain.max_in_flight`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from service.errors import DeadlineExceeded
from service.runtime import Tensors
from service.settings import ExplainSettings
from service.tasks.base import Request

if TYPE_CHECKING:
    from service.lean import LeanRoute
    from service.registry import ModelVersion

ENDPOINT = "explain"  # the endpoint label of every explanation in axon_requests


class Runner:
    """Runs rows through one version's batcher, a batch at a time, and counts the rows (forward passes)."""

    def __init__(self, entry: ModelVersion, batch_rows: int, timeout_s: float, settings: ExplainSettings) -> None:
        self.entry = entry
        self.settings = settings  # the cost caps explainers size their perturbations with
        self.batch_rows = batch_rows
        self.deadline = time.monotonic() + timeout_s
        self.passes = 0

    async def __call__(self, inputs: Tensors) -> Tensors:
        """The model outputs for every row of `inputs`, in order."""
        from service.dataplane import check_finite  # the data plane imports this package's job type

        assert self.entry.batcher is not None
        rows = len(next(iter(inputs.values())))
        parts: list[Tensors] = []
        for start in range(0, rows, self.batch_rows):
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded(f"{self.entry.label} did not finish the explanation in time")
            chunk = {k: v[start : start + self.batch_rows] for k, v in inputs.items()}
            result = await self.entry.batcher.submit(chunk, left)
            check_finite(self.entry, result.outputs)
            parts.append(result.outputs)
        self.passes += rows
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class ExplainJob(Request, Protocol):
    """One explanation request, parsed and checked, as the data plane runs it."""

    async def explain(self, entry: ModelVersion, run: Runner) -> Mapping[str, Any]:
        """The answer's task part (the data plane adds `model` and `version`)."""


def routes() -> list[LeanRoute]:
    """Every explanation route: the three task routes and the V2 ones (served in the explanation lane)."""
    from service.explain import anomaly, text, v2, vision

    return [*vision.ROUTES, *text.ROUTES, *anomaly.ROUTES, *v2.ROUTES]
