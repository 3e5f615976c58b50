"""POST /v1/vision/classify: images as multipart files (field `images`) or JSON base64 strings."""

from __future__ import annotations

import base64
import binascii

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StrictStr
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.routes.common import parse_json, pick, unless_client_leaves
from service.state import axon

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


def decode_base64(images: list[str]) -> list[bytes]:
    """Base64 strings (optionally `data:image/...;base64,` URLs) to bytes."""
    decoded = []
    for i, text in enumerate(images):
        if text.startswith("data:"):
            text = text.partition(",")[2]
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
) -> JSONResponse:
    """Classify PNG/JPEG/WebP images, pre-processed exactly as in training; answers in input order."""
    state = axon(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        images, fields = await read_multipart(request, state.settings.limits.max_images)
        name, ver = pick(fields.get("model"), model), pick(_int_field(fields, "version"), version)
        k = pick(_int_field(fields, "top_k"), top_k)
    elif content_type == "application/json":
        body = parse_json(VisionRequest, await request.body())
        images = decode_base64(body.images)
        name, ver, k = pick(body.model, model), pick(body.version, version), pick(body.top_k, top_k)
    else:
        raise UnsupportedMediaType(
            f"content type {content_type or 'none'!r} is not accepted; send multipart/form-data (files in 'images') "
            "or application/json ({\"images\": [base64, ...]})"
        )
    work = state.dataplane.classify_images(images, name, ver, pick(k, DEFAULT_TOP_K))
    return JSONResponse(await unless_client_leaves(request, work))
