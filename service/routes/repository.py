"""Triton's model repository extension: index, load and unload (management API, token-protected).

Clients name models only; a name is checked (`service.naming`) before anything touches the disk, and
no file, path, URL or config is ever taken from a request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from service.naming import validate_model_name
from service.state import axon
from service.v2.datamodels import RepositoryIndexEntry, RepositoryIndexRequest, RepositoryModelRequest, parse_wire

router = APIRouter(prefix="/v2/repository", tags=["repository"])
T = TypeVar("T")
Body = TypeVar("Body", bound=BaseModel)


async def _body(request: Request, cls: type[Body]) -> Body:
    """The optional JSON body (an empty body is the empty request)."""
    raw = await request.body()
    return parse_wire(cls, raw) if raw.strip() else cls()


async def _finish(work: Awaitable[T]) -> T:
    # A load or unload half done would leave a version warmed but never swapped in: let it finish
    # even if the client hangs up.
    return await asyncio.shield(asyncio.ensure_future(work))


@router.post("/index", response_model=list[RepositoryIndexEntry])
async def repository_index(request: Request) -> JSONResponse:
    """Every model on disk or loaded, per version, with its state (READY, LOADING, UNAVAILABLE) and reason;
    `{"ready": true}` keeps only the ready ones."""
    body = await _body(request, RepositoryIndexRequest)
    return JSONResponse(await axon(request).lifecycle.index(ready_only=body.ready))


@router.get("/index", response_model=list[RepositoryIndexEntry])
async def repository_index_get(request: Request) -> JSONResponse:
    """The same index for clients that GET it."""
    return JSONResponse(await axon(request).lifecycle.index())


@router.post("/models/{name}/load")
async def load_model(name: str, request: Request) -> JSONResponse:
    """(Re)load a model from the repository: new or changed versions are validated, warmed and swapped in."""
    validate_model_name(name)
    await _body(request, RepositoryModelRequest)
    axon(request).check_single_process()
    entries = await _finish(axon(request).lifecycle.load(name))
    return JSONResponse({"name": name, "versions": [str(e.version) for e in entries]})


@router.post("/models/{name}/unload")
async def unload_model(name: str, request: Request) -> JSONResponse:
    """Take a model out of service once its queued requests have finished."""
    validate_model_name(name)
    await _body(request, RepositoryModelRequest)
    axon(request).check_single_process()
    await _finish(axon(request).lifecycle.unload(name))
    return JSONResponse({"name": name})
