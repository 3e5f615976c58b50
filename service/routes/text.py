"""POST /v1/text/classify."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StrictStr

from service.routes.common import pick, unless_client_leaves
from service.state import axon

router = APIRouter(prefix="/v1/text", tags=["text"])


class TextRequest(BaseModel):
    """Texts to classify, and optionally which model (and version) should do it."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    texts: list[StrictStr]
    model: str | None = None
    version: int | None = None


class TextPrediction(BaseModel):
    """Best label, its probability, and the probability of every label."""

    label: str
    score: float
    scores: dict[str, float]


class TextResponse(BaseModel):
    """Predictions in the order of the request's texts."""

    model_config = ConfigDict(protected_namespaces=())
    model: str
    version: int
    predictions: list[TextPrediction]


@router.post("/classify", responses={200: {"model": TextResponse}})
async def classify(
    body: TextRequest, request: Request,
    model: str | None = Query(None, description="Model name (default: the text default model)"),
    version: int | None = Query(None, description="Model version (default: newest ready)"),
) -> JSONResponse:
    """Classify texts with the model's own tokenizer; texts longer than its max length are truncated."""
    work = axon(request).dataplane.classify_texts(body.texts, pick(body.model, model), pick(body.version, version))
    return JSONResponse(await unless_client_leaves(request, work))
