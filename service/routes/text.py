"""POST /v1/text/classify: the FastAPI declaration that documents it; `service.tasks.text` serves it."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response

from service.lean import serve
from service.tasks.text import PATH, TextRequest, TextResponse, classify_call

router = APIRouter(tags=["text"])


@router.post(
    PATH,
    responses={200: {"model": TextResponse}},
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": TextRequest.model_json_schema()}}}},
)
async def classify(
    request: Request,
    model: str | None = Query(None, description="Model name (default: the text default model)"),
    version: int | None = Query(None, description="Model version (default: newest ready)"),
) -> Response:
    """Classify texts with the model's own tokenizer; texts longer than its max length are truncated."""
    return await serve(request, classify_call)  # the app serves this path from service.lean; this documents it
