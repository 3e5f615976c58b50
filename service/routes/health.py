"""Liveness and readiness probes (V2 paths, so load balancers and KServe probe them unchanged)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.handlers import error_response
from service.state import axon

router = APIRouter(prefix="/v2/health", tags=["health"])


@router.get("/live")
async def live() -> dict[str, bool]:
    """200 as long as the process answers, also while models load or the server drains."""
    return {"live": True}


@router.get("/ready", responses={503: {"description": "loading, shutting down or start-up failed"}})
async def ready(request: Request) -> JSONResponse:
    """200 once every model that should load has loaded and warmed up; 503 while starting or shutting down."""
    is_ready, why = axon(request).readiness()
    if not is_ready:
        return error_response(503, "not_ready", why)
    return JSONResponse({"ready": True})
