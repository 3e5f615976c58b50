"""POST /v1/anomaly/score: the FastAPI declaration that documents it; `service.tasks.anomaly` serves it."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response

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
