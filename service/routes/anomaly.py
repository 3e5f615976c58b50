"""POST /v1/anomaly/score and /v1/anomaly/explain: the FastAPI declarations that document them."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response

from service.explain import anomaly as explain
from service.lean import serve
from service.tasks.anomaly import PATH, AnomalyRequest, AnomalyResponse, score_call

router = APIRouter(tags=["anomaly"])


@router.post(
    PATH,
    responses={200: {"model": AnomalyResponse}},
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": AnomalyRequest.model_json_schema()}}}},
)
async def score(
    request: Request,
    model: str | None = Query(None, description="Model name (default: the anomaly default for samples or series)"),
    version: int | None = Query(None, description="Model version (default: newest ready)"),
) -> Response:
    """Reconstruction-error anomaly scores; above the model's calibrated threshold = anomaly."""
    return await serve(request, score_call)  # the app serves this path from service.lean; this documents it


@router.post(
    explain.PATH,
    responses={200: {"model": explain.AnomalyExplainResponse}},
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": AnomalyRequest.model_json_schema()}}}},
)
async def explain_scores(
    request: Request,
    model: str | None = Query(None, description="Model name (default: the anomaly default for samples or series)"),
    version: int | None = Query(None, description="Model version (default: newest ready)"),
) -> Response:
    """Per-feature share of each row's reconstruction error, or the window and points driving each flagged segment."""
    return await serve(request, explain.explain_call)
