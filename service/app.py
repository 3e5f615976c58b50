"""The application factory: every router, middleware and handler wired from one Settings object."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from PIL import Image

from service import __version__
from service.auth import add_cors, inference_dependency, local_management_allowed, management_dependency
from service.compression import CompressionMiddleware
from service.explain import routes as explain_routes
from service.grpc.server import GrpcServer
from service.handlers import install_error_handlers
from service.lean import Lane, LeanApp, LeanFront, LeanRouter, LeanRoutes
from service.middleware import BodyLimitMiddleware, RequestContext, RequestContextMiddleware
from service.openapi import install_docs
from service.routes import anomaly, health, metrics, models, repository, text, v2, vision
from service.settings import Settings
from service.state import AxonState
from service.tasks import lean_routes
from service.ui import install_ui

ROUTERS = (
    health.router,
    metrics.router,
    models.router,
    vision.router,
    text.router,
    anomaly.router,
    v2.extensions,
    v2.router,
)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service; models load in the background once the app starts (its lifespan)."""
    settings = settings if settings is not None else Settings()
    state = AxonState(settings)
    # Pillow's decompression-bomb guard is process-wide; it errors at twice this many pixels.
    Image.MAX_IMAGE_PIXELS = settings.limits.max_image_pixels
    # Between 1x and 2x that limit Pillow only warns; the codec refuses those images itself (413).
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

    # gRPC runs on the HTTP server's event loop, so both share the batchers; off unless AXON_GRPC_PORT is set.
    grpc_server = GrpcServer(state) if settings.grpc_port is not None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.load_task = asyncio.create_task(state.load_models(), name="load-models")
        if grpc_server is not None:
            await grpc_server.start()
        try:
            yield
        finally:
            # HTTP has drained by now; running RPCs get the same drain timeout, then the batchers drain.
            if grpc_server is not None:
                await grpc_server.stop(settings.drain_timeout_s)
            await state.stop()

    app = LeanApp(
        title="Axon",
        summary="ONNX models over HTTP with dynamic batching",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # service/openapi.py serves the docs pages with local assets
        redoc_url=None,
    )
    app.state.axon = state
    app.state.grpc = grpc_server
    install_error_handlers(app)
    install_docs(app)
    auth = settings.auth
    # No token configured: no dependency at all, so open inference pays nothing per request.
    inference = [Depends(inference_dependency(auth.inference_token))] if auth.inference_token else []
    # Health and metrics stay open for probes and scrapers unless asked otherwise.
    protected = ((health.router, auth.protect_health), (metrics.router, auth.protect_metrics))
    open_routers = [router for router, protect in protected if not protect]
    for router in ROUTERS:
        app.include_router(router, dependencies=[] if any(router is r for r in open_routers) else inference)
    if settings.ui:
        install_ui(app)  # static files, open like /docs: the page asks for the token itself
    local = local_management_allowed(auth.local_management, settings.host)
    app.include_router(repository.router, dependencies=[Depends(management_dependency(auth.management_token, local))])
    # Innermost: the inference routes are answered here, ahead of FastAPI's router (service/lean.py).
    # Explanations cost many passes each: their own lane and bound, so they cannot take plain inference's slots.
    lanes = [
        Lane("inference", [*v2.LEAN_ROUTES, *lean_routes()], settings.max_requests_in_flight),
        Lane("explanation", explain_routes(), settings.explain.max_in_flight),
    ]
    lean = LeanRouter(state, lanes, auth.inference_token)
    context = RequestContext(state.arrivals, log_requests=settings.access_log)
    limit = settings.limits.max_body_bytes
    app.add_middleware(LeanRoutes, router=lean)
    # Inside the body limit: gzip/deflate bodies are inflated within the same limit (service/compression.py).
    app.add_middleware(CompressionMiddleware, limit=limit)
    # Last added runs first: the request id exists before the body limit can refuse anything.
    app.add_middleware(BodyLimitMiddleware, limit=limit)
    app.add_middleware(RequestContextMiddleware, context=context)
    # Plain lean requests are served here, in one layer; the rest go down the three above (service/lean.py).
    app.add_middleware(LeanFront, router=lean, context=context, limit=limit)
    add_cors(app, settings.cors_origins)  # outermost: preflights are answered before auth or limits
    return app
