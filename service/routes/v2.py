"""Open Inference Protocol (KServe V2) REST: server and model metadata, model readiness, and inference.

Inference bodies are JSON or JSON followed by raw tensors (Triton's binary tensor data extension,
`Inference-Header-Content-Length`); either way the tensors go through the same per-model batcher as
the task endpoints (`Dataplane.infer`), after being checked against the model's signature; metadata and
readiness are the data plane's too, so these routes only translate. Health
probes (`/v2/health/*`) live in `routes/health.py`; the repository extension in `routes/repository.py`.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from service.dataplane import name_and_version
from service.explain.v2 import explain_call
from service.lean import Answer, Call, route, serve
from service.state import axon
from service.v2.binary import BINARY_CONTENT_TYPE, HEADER_LENGTH, decode_request, encode_response, parse_header_length
from service.v2.datamodels import ModelMetadataResponse, ModelReadyResponse, ServerMetadataResponse

router = APIRouter(prefix="/v2", tags=["v2"])

BINARY = BINARY_CONTENT_TYPE.encode()
HEADER_LENGTH_KEY = HEADER_LENGTH.lower().encode()


@router.get("", response_model=ServerMetadataResponse)
async def server_metadata(request: Request) -> dict[str, Any]:
    """`GET /v2`: server name, version and the protocol extensions it supports."""
    return axon(request).dataplane.server_metadata().model_dump()


@router.get("/models/{name}", response_model=ModelMetadataResponse)
async def model_metadata(name: str, request: Request) -> dict[str, Any]:
    """Tensors (datatype, shape with -1 for dynamic axes), ready versions and platform of the newest ready version."""
    return axon(request).dataplane.model_metadata(name).model_dump(exclude_none=True)


@router.get("/models/{name}/versions/{version}", response_model=ModelMetadataResponse)
async def model_version_metadata(name: str, version: str, request: Request) -> dict[str, Any]:
    """Metadata of one version."""
    return axon(request).dataplane.model_metadata(name, version).model_dump(exclude_none=True)


@router.get("/models/{name}/ready", response_model=ModelReadyResponse)
async def model_ready(name: str, request: Request) -> dict[str, Any]:
    """200 when some version of the model serves; 404 unknown model, 503 not ready."""
    return ModelReadyResponse(name=axon(request).dataplane.model_ready(name), ready=True).model_dump()


@router.get("/models/{name}/versions/{version}/ready", response_model=ModelReadyResponse)
async def model_version_ready(name: str, version: str, request: Request) -> dict[str, Any]:
    """200 when this version serves."""
    return ModelReadyResponse(name=axon(request).dataplane.model_ready(name, version), ready=True).model_dump()


async def infer_call(call: Call) -> Answer:
    """The lean handler of both infer routes: decode (numpy from bytes), check, batch, encode."""
    model, number = name_and_version(call.params["name"], call.params.get("version"))
    state = call.state
    header_length = parse_header_length(call.header("inference-header-content-length"))
    body = await call.body()
    start = time.perf_counter()
    wire, arrays = await call.offload(decode_request, body, header_length, size=len(body))
    asked = [output.name for output in wire.outputs or []]
    entry, result = await state.dataplane.infer("v2", model, number, arrays, time.perf_counter() - start, asked)
    assert entry.config is not None
    names = wire.output_names([t.name for t in entry.config.outputs])
    outputs = {n: result.outputs[n] for n in names}
    size = sum(a.nbytes for a in outputs.values())
    payload, length = await call.offload(encode_response, wire, entry.name, str(entry.version), outputs, size=size)
    if length is None:
        return Answer(payload)
    return Answer(payload, content_type=BINARY, headers=[(HEADER_LENGTH_KEY, b"%d" % length)])


INFER_DOC = {
    "requestBody": {
        "content": {
            "application/json": {"schema": {"type": "object", "description": "$inference_request"}},
            BINARY_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}},
        }
    }
}


@router.post("/models/{name}/infer", openapi_extra=INFER_DOC, response_class=JSONResponse)
async def infer(name: str, request: Request) -> Response:
    """Inference on the newest ready version: JSON tensors, or a JSON header plus binary tensors."""
    return await serve(request, infer_call)  # the app serves this path from service.lean; this documents it


@router.post("/models/{name}/versions/{version}/infer", openapi_extra=INFER_DOC, response_class=JSONResponse)
async def infer_version(name: str, version: str, request: Request) -> Response:
    """Inference on one version."""
    return await serve(request, infer_call)


@router.post("/models/{name}/explain", response_class=JSONResponse)
async def explain(name: str, request: Request) -> Response:
    """Explain with the newest ready version: the body of the model's task explain route (see `service.explain.v2`)."""
    return await serve(request, explain_call)  # served from the explanation lane (service.explain.routes)


@router.post("/models/{name}/versions/{version}/explain", response_class=JSONResponse)
async def explain_version(name: str, version: str, request: Request) -> Response:
    """Explain with one version."""
    return await serve(request, explain_call)


LEAN_ROUTES = [
    route("/v2/models/{name}/infer", infer_call),
    route("/v2/models/{name}/versions/{version}/infer", infer_call),
]
