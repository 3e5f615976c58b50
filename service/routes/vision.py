"""POST /v1/vision/classify: images as multipart files (field `images`) or JSON base64 strings."""

from __future__ import annotations

import base64
import binascii

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, StrictStr
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.lean import Answer, Call, encode_json, route, serve
from service.routes.common import parse_json, pick, query_int

router = APIRouter(prefix="/v1/vision", tags=["vision"])
DEFAULT_TOP_K = 5
FILES_SCHEMA = {"type": "array", "items": {"type": "string", "format": "binary"}}


class VisionRequest(BaseModel):
    """JSON form: base64 images (data URLs accepted) and optional model, version and top_k."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    images: list[StrictStr]
    model: str | None = None
    version: int | None = None
    top_k: int | None = None


class Ranked(BaseModel):
    """A label and its probability."""

    label: str
    score: float


class VisionPrediction(Ranked):
    """Best label, its probability, and the k best labels."""

    top_k: list[Ranked]


class VisionResponse(BaseModel):
    """Predictions in the order of the request's images."""

    model_config = ConfigDict(protected_namespaces=())
    model: str
    version: int
    predictions: list[VisionPrediction]


def decode_base64(images: list[str], max_bytes: int | None = None) -> list[bytes]:
    """Base64 strings (optionally `data:image/...;base64,` URLs) to bytes; each size checked before decoding."""
    decoded = []
    for i, text in enumerate(images):
        if text.startswith("data:"):
            text = text.partition(",")[2]
        if max_bytes is not None and len(text) > 4 * ((max_bytes + 2) // 3):
            raise PayloadTooLarge(f"image {i} has about {len(text) * 3 // 4} bytes; the limit is {max_bytes}")
        try:
            decoded.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidInput(f"image {i} is not valid base64") from None
    return decoded


async def read_multipart(request: Request, max_images: int) -> tuple[list[bytes], dict[str, str]]:
    """The files of the `images` field, and the other (text) fields."""
    try:
        form = await request.form(max_files=max_images, max_fields=16)
    except HTTPException as exc:
        if "Too many files" in str(exc.detail):
            raise PayloadTooLarge(f"more than {max_images} images in one request") from None
        raise
    images, fields = [], {}
    for key, value in form.multi_items():
        if key == "images":
            if not isinstance(value, UploadFile):
                raise InvalidInput("'images' parts must be files, not text fields")
            images.append(await value.read())
        elif isinstance(value, str):
            fields[key] = value
    await form.close()
    if not images:
        raise InvalidInput("multipart body has no file in the field 'images'")
    return images, fields


def _int_field(fields: dict[str, str], name: str) -> int | None:
    if name not in fields:
        return None
    try:
        return int(fields[name])
    except ValueError:
        raise InvalidInput(f"form field '{name}' must be an integer, got {fields[name]!r}") from None


async def classify_call(call: Call) -> Answer:
    """The lean handler: multipart files or strict JSON with base64 images, counts and sizes before decoding."""
    state = call.state
    limits = state.settings.limits
    query = call.query()
    content_type = (call.header("content-type") or "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        images, fields = await read_multipart(call.request(), limits.max_images)
        name, ver = pick(fields.get("model"), query.get("model")), pick(_int_field(fields, "version"), query_int(query, "version"))
        k = pick(_int_field(fields, "top_k"), query_int(query, "top_k"))
    elif content_type == "application/json":
        counts = {"images": (limits.max_images, "{n} images in one request; the limit is {limit}")}
        body = await call.body()
        req = await call.offload(parse_json, VisionRequest, body, counts, size=len(body))
        images = await call.offload(decode_base64, req.images, limits.max_image_bytes, size=len(body))
        name, ver = pick(req.model, query.get("model")), pick(req.version, query_int(query, "version"))
        k = pick(req.top_k, query_int(query, "top_k"))
    else:
        raise UnsupportedMediaType(
            f"content type {content_type or 'none'!r} is not accepted; send multipart/form-data (files in 'images') "
            "or application/json ({\"images\": [base64, ...]})"
        )
    result = await state.dataplane.classify_images(images, name, ver, pick(k, DEFAULT_TOP_K))
    return Answer(encode_json(result))


@router.post(
    "/classify",
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


LEAN_ROUTES = [route("/v1/vision/classify", classify_call)]
