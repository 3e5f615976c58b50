"""POST /v1/vision/classify: the FastAPI declaration that documents it; `service.tasks.vision` serves it."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response

from service.lean import serve
from service.tasks.vision import DEFAULT_TOP_K, PATH, VisionRequest, VisionResponse, classify_call

router = APIRouter(tags=["vision"])
FILES_SCHEMA = {"type": "array", "items": {"type": "string", "format": "binary"}}


@router.post(
    PATH,
    responses={200: {"model": VisionResponse}},
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {"schema": {"type": "object", "properties": {"images": FILES_SCHEMA}}},
                "application/json": {"schema": VisionRequest.model_json_schema()},
            }
        }
    },
)
async def classify(
    request: Request,
    model: str | None = Query(None, description="Model name (default: the vision default model)"),
    version: int | None = Query(None, description="Model version (default: newest ready)"),
    top_k: int | None = Query(None, description=f"How many best labels to return (default {DEFAULT_TOP_K})"),
) -> Response:
    """Classify PNG/JPEG/WebP images, pre-processed exactly as in training; answers in input order."""
    return await serve(request, classify_call)  # the app serves this path from service.lean; this documents it
