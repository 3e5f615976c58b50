"""POST /v1/anomaly/score: tabular rows or one time series."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StrictFloat, StrictInt, StrictStr, model_validator

from service.routes.common import pick, unless_client_leaves
from service.state import axon

router = APIRouter(prefix="/v1/anomaly", tags=["anomaly"])


class AnomalyRequest(BaseModel):
    """Either `samples` (rows in the dataset's column order) or `series` (+ optional `timestamps`)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    samples: list[list[StrictFloat]] | None = None
    series: list[StrictFloat] | None = None
    timestamps: list[StrictStr | StrictInt | StrictFloat] | None = None
    model: str | None = None
    version: int | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> AnomalyRequest:
        if (self.samples is None) == (self.series is None):
            raise ValueError("send exactly one of 'samples' (tabular rows) or 'series' (one time series)")
        if self.timestamps is not None and self.series is None:
            raise ValueError("'timestamps' go with 'series'")
        return self


class Score(BaseModel):
    """One sample's (or point's) anomaly score and verdict."""

    score: float
    is_anomaly: bool
    timestamp: Any = None


class Segment(BaseModel):
    """A run of anomalous points, both ends included."""

    start: int
    end: int
    max_score: float


class AnomalyResponse(BaseModel):
    """Scores in input order; `segments` only for a series."""

    model_config = ConfigDict(protected_namespaces=())
    model: str
    version: int
    threshold: float
    results: list[Score]
    segments: list[Segment] | None = None


@router.post("/score", responses={200: {"model": AnomalyResponse}})
async def score(
    body: AnomalyRequest, request: Request,
    model: str | None = Query(None, description="Model name (default: the anomaly default for samples or series)"),
    version: int | None = Query(None, description="Model version (default: newest ready)"),
) -> JSONResponse:
    """Reconstruction-error anomaly scores; above the model's calibrated threshold = anomaly."""
    plane = axon(request).dataplane
    name, ver = pick(body.model, model), pick(body.version, version)
    if body.samples is not None:
        work = plane.score_samples(body.samples, name, ver)
    else:
        work = plane.score_series(body.series, body.timestamps, name, ver)
    return JSONResponse(await unless_client_leaves(request, work))
