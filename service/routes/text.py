"""POST /v1/text/classify."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, StrictStr

from service.lean import Answer, Call, encode_json, route, serve
from service.routes.common import parse_json, pick, query_int

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


async def classify_call(call: Call) -> Answer:
    """The lean handler: strict JSON, the text count checked before any text is looked at, one tokenizer call."""
    limits = call.state.settings.limits
    counts = {"texts": (limits.max_texts, "{n} texts in one request; the limit is {limit}")}
    body = await call.body()
    req = await call.offload(parse_json, TextRequest, body, counts, size=len(body))
    query = call.query()
    name, version = pick(req.model, query.get("model")), pick(req.version, query_int(query, "version"))
    result = await call.state.dataplane.classify_texts(req.texts, name, version)
    return Answer(encode_json(result))


@router.post(
    "/classify", responses={200: {"model": TextResponse}},
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": TextRequest.model_json_schema()}}}},
)
async def classify(
    request: Request,
    model: str | None = Query(None, description="Model name (default: the text default model)"),
    version: int | None = Query(None, description="Model version (default: newest ready)"),
) -> Response:
    """Classify texts with the model's own tokenizer; texts longer than its max length are truncated."""
    return await serve(request, classify_call)  # the app serves this path from service.lean; this documents it


LEAN_ROUTES = [route("/v1/text/classify", classify_call)]
