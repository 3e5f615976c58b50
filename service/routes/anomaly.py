"""POST /v1/anomaly/score: tabular rows or one time series."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, StrictFloat, StrictInt, StrictStr, model_validator

from service.lean import Answer, Call, encode_json, route, serve
from service.routes.common import parse_json, pick, query_int

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


async def score_call(call: Call) -> Answer:
    """The lean handler: strict JSON, list lengths checked before any value is looked at."""
    limits = call.state.settings.limits
    counts = {
        "samples": (limits.max_samples, "{n} samples in one request; the limit is {limit}"),
        "series": (limits.max_series_length, "the series has {n} points; the limit is {limit}"),
        "timestamps": (limits.max_series_length, "'timestamps' has {n} entries; the limit is {limit}"),
    }
    body = await call.body()
    req = await call.offload(parse_json, AnomalyRequest, body, counts, size=len(body))
    query = call.query()
    name, version = pick(req.model, query.get("model")), pick(req.version, query_int(query, "version"))
    plane = call.state.dataplane
    if req.samples is not None:
        result = await plane.score_samples(req.samples, name, version)
    else:
        result = await plane.score_series(req.series, req.timestamps, name, version)
    return Answer(encode_json(result))


@router.post(
    "/score", responses={200: {"model": AnomalyResponse}},
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": AnomalyRequest.model_json_schema()}}}},
)
async def score(
    request: Request,
    model: str | None = Query(None, description="Model name (default: the anomaly default for samples or series)"),
    version: int | None = Query(None, description="Model version (default: newest ready)"),
) -> Response:
    """Reconstruction-error anomaly scores; above the model's calibrated threshold = anomaly."""
    return await serve(request, score_call)  # the app serves this path from service.lean; this documents it


LEAN_ROUTES = [route("/v1/anomaly/score", score_call)]
