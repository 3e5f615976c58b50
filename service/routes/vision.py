"""POST /v1/vision/classify and /v1/vision/explain: the FastAPI declarations that document them."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response

from service.explain import vision as explain
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


@router.post(
    explain.PATH,
    responses={200: {"model": explain.VisionExplainResponse}},
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {"schema": {"type": "object", "properties": {"images": FILES_SCHEMA}}},
                "application/json": {"schema": explain.VisionExplainRequest.model_json_schema()},
            }
        }
    },
)
async def explain_images(
    request: Request,
    model: str | None = Query(None, description="Model name (default: the vision default model)"),
    version: int | None = Query(None, description="Model version (default: newest ready)"),
    target: str | None = Query(None, description="Label to explain (default: the predicted one)"),
    overlay: bool | None = Query(None, description="Also return a base64 PNG of the saliency over the image"),
) -> Response:
    """Occlusion saliency per image (H x W, model input resolution, larger = more important); costs `passes` runs."""
    return await serve(request, explain.explain_call)
