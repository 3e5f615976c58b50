"""The gRPC server's life: started in the app's lifespan on the HTTP server's event loop, stopped with its drain.

Limits are REST's: a message may be as large as a request body (`limits.max_body_bytes`), and at most
`max_requests_in_flight` RPCs run at once (grpc answers RESOURCE_EXHAUSTED past it). The standard
health service answers SERVING for the server ("") and `inference.GRPCInferenceService` exactly when
`/v2/health/ready` would, so it turns NOT_SERVING as soon as a shutdown signal drops readiness: Check
reads readiness on every call, Watch streams are told of a change within `FOLLOW_S`. Both are behind the
inference token when `auth.protect_health` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from service.grpc.proto import grpc_service_pb2_grpc as pb_grpc
from service.grpc.servicer import SERVICE_NAME, Servicer, answered
from service.state import AxonState

log = logging.getLogger("axon.grpc")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
FOLLOW_S = 0.5  # how often the status Watch streams report is brought in line with readiness


class ReadinessHealth(health_aio.HealthServicer):  # type: ignore[misc]
    """grpc.health.v1.Health whose answer for this server follows the app's readiness (and its auth).

    `""` and the V2 service share one status. Watch streams are served here, not by the standard servicer:
    its Watch drops a service's shared condition when any one watcher leaves, and the watchers still
    connected would never hear of a change again (grpc/grpc#43403, open, counts watchers to fix it). Each
    change here sets an event and replaces it.
    """

    def __init__(self, servicer: Servicer) -> None:
        super().__init__()
        self._servicer = servicer
        self._shown = self._status()  # what watchers were last told
        self._changed = asyncio.Event()
        self._final = False  # after the shutdown notice nothing changes the status again

    async def Check(self, request: health_pb2.HealthCheckRequest, context: Any) -> health_pb2.HealthCheckResponse:
        if request.service not in ("", SERVICE_NAME):
            return await super().Check(request, context)  # NOT_FOUND, as the standard service answers
        return await self._check(request, context)

    @answered("open")
    async def _check(self, request: health_pb2.HealthCheckRequest, context: Any) -> health_pb2.HealthCheckResponse:
        return health_pb2.HealthCheckResponse(status=self._status())

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        if request.service not in ("", SERVICE_NAME):
            await super().Watch(request, context)  # SERVICE_UNKNOWN, as the standard service answers
        else:
            await self._watch(request, context)

    @answered("open")
    async def _watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        self.update()  # a new watcher hears the status of now, not of the last tick
        told = None
        while True:  # until the client leaves or the server stops (the RPC is cancelled)
            changed = self._changed
            if self._shown != told:
                told = self._shown
                await context.write(health_pb2.HealthCheckResponse(status=told))
            await changed.wait()

    async def follow(self) -> None:
        """Keep the status Watch streams report in step with readiness, until cancelled."""
        while True:
            self.update()
            await asyncio.sleep(FOLLOW_S)

    def update(self) -> None:
        """Tell watchers the readiness status if it changed."""
        if not self._final:
            self._show(self._status())

    async def enter_graceful_shutdown(self) -> None:
        """NOT_SERVING for good: what watchers are told when the server begins to stop."""
        self._final = True
        self._show(NOT_SERVING)
        await super().enter_graceful_shutdown()

    def _show(self, status: health_pb2.HealthCheckResponse.ServingStatus) -> None:
        if status != self._shown:
            self._shown = status
            self._changed.set()
            self._changed = asyncio.Event()

    def _status(self) -> health_pb2.HealthCheckResponse.ServingStatus:
        return SERVING if self._servicer.state.readiness()[0] else NOT_SERVING

    def authorize(self, kind: str, context: Any) -> None:
        """The V2 servicer's rules (`answered` calls this): health is open unless `auth.protect_health`."""
        self._servicer.authorize(kind, context)


# AXON_GRPC_COMPRESSION -> grpcio's algorithm (gRPC falls back to identity for a client that does not accept it).
COMPRESSION = {
    "none": grpc.Compression.NoCompression,
    "deflate": grpc.Compression.Deflate,
    "gzip": grpc.Compression.Gzip,
}


class GrpcServer:
    """One grpc.aio server on `grpc_port`, serving the V2 service and the health service."""

    def __init__(self, state: AxonState) -> None:
        settings = state.settings
        assert settings.grpc_port is not None
        self.state = state
        self.address = f"{settings.host}:{settings.grpc_port}"
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._health: ReadinessHealth | None = None
        self._follow: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind and start serving (on the running event loop)."""
        settings = self.state.settings
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", settings.limits.max_body_bytes),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=settings.max_requests_in_flight,
            # For the whole server, not per ModelInfer as Triton does: grpcio's per-call set_compression
            # sends identity regardless (grpc/grpc#34690, seen with 1.85). Other answers are a few bytes.
            compression=COMPRESSION[settings.grpc_compression],
        )
        servicer = Servicer(self.state)
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
        self._health = ReadinessHealth(servicer)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        self.port = server.add_insecure_port(self.address)
        await server.start()
        self._server = server
        self._follow = asyncio.get_running_loop().create_task(self._health.follow(), name="grpc-health")
        log.info("serving gRPC (inference.GRPCInferenceService, grpc.health.v1.Health) on %s", self.address)

    async def stop(self, grace_s: float) -> None:
        """Refuse new RPCs, let running ones finish for at most `grace_s`, then close."""
        if self._server is None:
            return
        if self._follow is not None:
            self._follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follow
            self._follow = None
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        await self._server.stop(grace_s)
        self._server = None
