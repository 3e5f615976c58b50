"""POST /v1/text/classify and /v1/text/explain: the FastAPI declarations that document them."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response

from service.explain import text as explain
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


@router.post(
    explain.PATH,
    responses={200: {"model": explain.TextExplainResponse}},
    openapi_extra={
        "requestBody": {"content": {"application/json": {"schema": explain.TextExplainRequest.model_json_schema()}}}
    },
)
async def explain_texts(
    request: Request,
    model: str | None = Query(None, description="Model name (default: the text default model)"),
    version: int | None = Query(None, description="Model version (default: newest ready)"),
    target: str | None = Query(None, description="Label to explain (default: the predicted one)"),
) -> Response:
    """Leave-one-token-out contribution of every real token, with its character offsets; costs `passes` runs."""
    return await serve(request, explain.explain_call)
