"""Open Inference Protocol (KServe V2) REST: server and model metadata, model readiness, and inference.

Inference bodies are JSON or JSON followed by raw tensors (Triton's binary tensor data extension,
`Inference-Header-Content-Length`); either way the tensors go through the same per-model batcher as
the task endpoints (`Dataplane.infer`), after being checked against the model's signature. Health
probes (`/v2/health/*`) live in `routes/health.py`; the repository extension in `routes/repository.py`.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from service.errors import ModelNotReady, VersionNotFound
from service.naming import validate_model_name, validate_version
from service.registry import ModelState, ModelVersion, batch_policy
from service.lean import Answer, Call, route, serve
from service.state import axon
from service.v2.binary import BINARY_CONTENT_TYPE, HEADER_LENGTH, decode_request, encode_response, parse_header_length
from service.v2.datamodels import ModelMetadataResponse, ModelReadyResponse, ServerMetadataResponse, TensorMetadata

router = APIRouter(prefix="/v2", tags=["v2"])

BINARY = BINARY_CONTENT_TYPE.encode()
HEADER_LENGTH_KEY = HEADER_LENGTH.lower().encode()
SERVER_NAME = "axon"
# Triton's names for the extensions this server implements.
EXTENSIONS = ["binary_tensor_data", "model_repository"]


def _name_and_version(name: str, version: str | None) -> tuple[str, int | None]:
    """Client-given name and version, checked before anything looks them up (400 when malformed)."""
    return validate_model_name(name), (None if version is None else validate_version(version))


def _pick(request: Request, name: str, version: int | None) -> ModelVersion:
    """The version metadata describes: the one asked for, else the newest ready (else the newest) one."""
    entries = axon(request).registry.versions(name)
    if version is not None:
        found = [e for e in entries if e.version == version]
        if not found:
            raise VersionNotFound(f"model '{name}' has no version {version}")
        return found[0]
    return next((e for e in entries if e.state is ModelState.READY), entries[0])


@router.get("", response_model=ServerMetadataResponse)
async def server_metadata(request: Request) -> dict:
    """`GET /v2`: server name, version and the protocol extensions it supports."""
    return {"name": SERVER_NAME, "version": request.app.version, "extensions": EXTENSIONS}


def _model_metadata(request: Request, name: str, version: str | None) -> dict:
    model, number = _name_and_version(name, version)
    entry = _pick(request, model, number)
    config = entry.config
    if config is None:
        raise ModelNotReady(f"{entry.label} has no usable config: {entry.reason}")
    ready = [str(e.version) for e in axon(request).registry.versions(model) if e.state is ModelState.READY]
    policy = batch_policy(config, axon(request).settings)
    metadata = ModelMetadataResponse(
        name=model,
        versions=ready,
        platform=config.platform,
        inputs=[TensorMetadata(name=t.name, datatype=t.datatype, shape=t.dims) for t in config.inputs],
        outputs=[TensorMetadata(name=t.name, datatype=t.datatype, shape=t.dims) for t in config.outputs],
        parameters={
            "task": config.task,
            "state": entry.state.value,
            "max_batch_size": policy.max_batch_size,
            "providers": ",".join(entry.providers),
        },
    )
    return metadata.model_dump(exclude_none=True)


@router.get("/models/{name}", response_model=ModelMetadataResponse)
async def model_metadata(name: str, request: Request) -> dict:
    """Tensors (datatype, shape with -1 for dynamic axes), ready versions and platform of the newest ready version."""
    return _model_metadata(request, name, None)


@router.get("/models/{name}/versions/{version}", response_model=ModelMetadataResponse)
async def model_version_metadata(name: str, version: str, request: Request) -> dict:
    """Metadata of one version."""
    return _model_metadata(request, name, version)


def _model_ready(request: Request, name: str, version: str | None) -> dict:
    model, number = _name_and_version(name, version)
    axon(request).registry.get(model, number)  # 404 unknown, 503 (with the reason) not ready
    return ModelReadyResponse(name=model, ready=True).model_dump()


@router.get("/models/{name}/ready", response_model=ModelReadyResponse)
async def model_ready(name: str, request: Request) -> dict:
    """200 when some version of the model serves; 404 unknown model, 503 not ready."""
    return _model_ready(request, name, None)


@router.get("/models/{name}/versions/{version}/ready", response_model=ModelReadyResponse)
async def model_version_ready(name: str, version: str, request: Request) -> dict:
    """200 when this version serves."""
    return _model_ready(request, name, version)


async def infer_call(call: Call) -> Answer:
    """The lean handler of both infer routes: decode (numpy from bytes), check, batch, encode."""
    model, number = _name_and_version(call.params["name"], call.params.get("version"))
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


LEAN_ROUTES = [
    route("/v2/models/{name}/infer", infer_call),
    route("/v2/models/{name}/versions/{version}/infer", infer_call),
]
