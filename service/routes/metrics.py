"""Prometheus scrape endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE

from service.state import axon

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Counters, histograms and gauges of this app in the Prometheus text format."""
    return Response(axon(request).metrics.render(), media_type=CONTENT_TYPE)
