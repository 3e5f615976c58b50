"""`inference.GRPCInferenceService`: each RPC translates its message and calls the protocol-free core.

Errors, auth and limits are REST's: an AxonError becomes its gRPC status (`service.grpc.status`) with
the same message; the bearer token travels in the `authorization` metadata and is checked by the same
functions as REST (`service.auth`); inference goes through `Dataplane.infer`, hence the same batchers,
signature checks and metrics (endpoint label `grpc`). Shared memory, streaming, trace and log settings
stay UNIMPLEMENTED (the generated base class answers so).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format

from service.auth import check_inference, check_management, is_loopback, local_management_allowed
from service.dataplane import name_and_version
from service.errors import AxonError, ModelNotFound, ModelNotReady, VersionNotFound
from service.grpc.proto import grpc_service_pb2 as pb
from service.grpc.proto import grpc_service_pb2_grpc as pb_grpc
from service.grpc.proto import model_config_pb2
from service.grpc.status import grpc_code
from service.grpc.tensors import decode_inputs, encode_outputs
from service.naming import validate_model_name
from service.state import AxonState
from service.v2.datamodels import RepositoryModelRequest, parse_wire

Request = TypeVar("Request")
Response = TypeVar("Response")
SERVICE_NAME = "inference.GRPCInferenceService"
Rpc = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Any]]


def metadata_value(context: grpc.aio.ServicerContext, key: str) -> str | None:
    """One invocation metadata value (keys arrive lower-cased), or None."""
    for item in context.invocation_metadata() or ():
        if item.key == key:
            return str(item.value)
    return None


def peer_host(peer: str) -> str:
    """The address of a gRPC peer string: 'ipv4:127.0.0.1:5000' -> 127.0.0.1, 'ipv6:[::1]:5000' -> ::1."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    return ""


def answered(kind: str) -> Callable[[Rpc], Rpc]:
    """Wrap an RPC: check its credentials (`inference`, `management` or `open`), map AxonErrors to statuses."""

    def wrap(rpc: Rpc) -> Rpc:
        @functools.wraps(rpc)
        async def call(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                self.authorize(kind, context)
                return await rpc(self, request, context)
            except AxonError as exc:
                await context.abort(grpc_code(exc), exc.message)

        return call

    return wrap


class Servicer(pb_grpc.GRPCInferenceServiceServicer):
    """The V2 gRPC service over one app's state (data plane, lifecycle, settings)."""

    def __init__(self, state: AxonState) -> None:
        self.state = state
        self.dataplane = state.dataplane
        auth = state.settings.auth
        self._inference_token = auth.inference_token
        self._management_token = auth.management_token
        self._local = local_management_allowed(auth.local_management, state.settings.host)
        self._health_open = not auth.protect_health

    def authorize(self, kind: str, context: grpc.aio.ServicerContext) -> None:
        """REST's rules: inference needs the inference token if set; management its token or a local peer."""
        if kind == "open" and self._health_open:
            return
        authorization = metadata_value(context, "authorization")
        if kind == "management":
            # No browser speaks raw gRPC (a page cannot send its trailers-based POSTs without a proxy),
            # so a loopback peer is local here; REST also has to rule out browser pages.
            if self._local and is_loopback(peer_host(context.peer())):
                return
            check_management(authorization, self._management_token, self._local)
            return
        check_inference(authorization, self._inference_token)

    # --- health and metadata ------------------------------------------------------------------------

    @answered("open")
    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    @answered("open")
    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.state.readiness()[0])

    @answered("inference")
    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
        try:
            self.dataplane.model_ready(request.name, request.version or None)
        except (ModelNotFound, VersionNotFound, ModelNotReady):
            return pb.ModelReadyResponse(ready=False)  # Triton answers a boolean here, not an error
        return pb.ModelReadyResponse(ready=True)

    @answered("inference")
    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Any) -> pb.ServerMetadataResponse:
        meta = self.dataplane.server_metadata()
        return pb.ServerMetadataResponse(name=meta.name, version=meta.version, extensions=meta.extensions)

    @answered("inference")
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:
        meta = self.dataplane.model_metadata(request.name, request.version or None)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta.name,
            versions=meta.versions,
            platform=meta.platform,
            inputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in meta.inputs],
            outputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in meta.outputs],
        )

    @answered("inference")
    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Any) -> pb.ModelConfigResponse:
        config = self.dataplane.model_config(request.name, request.version or None)
        return pb.ModelConfigResponse(config=json_format.ParseDict(config, model_config_pb2.ModelConfig()))

    @answered("inference")
    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context: Any) -> pb.ModelStatisticsResponse:
        stats = self.dataplane.model_statistics(request.name or None, request.version or None)
        answer: pb.ModelStatisticsResponse = json_format.ParseDict(stats, pb.ModelStatisticsResponse())
        return answer

    # --- inference ----------------------------------------------------------------------------------

    @answered("inference")
    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        model, number = name_and_version(request.model_name, request.model_version or None)
        start = time.perf_counter()
        arrays = decode_inputs(request)
        asked = [o.name for o in request.outputs]
        entry, result = await self.dataplane.infer("grpc", model, number, arrays, time.perf_counter() - start, asked)
        assert entry.config is not None
        names = asked or [t.name for t in entry.config.outputs]
        version = "" if entry.version is None else str(entry.version)
        return encode_outputs(entry.name, version, request.id, {n: result.outputs[n] for n in names})

    # --- the repository extension (management) ------------------------------------------------------

    @answered("management")
    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: Any) -> pb.RepositoryIndexResponse:
        rows = await self.state.lifecycle.index(ready_only=request.ready)
        index = pb.RepositoryIndexResponse.ModelIndex
        return pb.RepositoryIndexResponse(models=[index(**row) for row in rows])

    @answered("management")
    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Any
    ) -> pb.RepositoryModelLoadResponse:
        self.state.check_single_process()  # a load reaches one worker only: refused under AXON_WORKERS>1
        name = self._model_request(request)
        await _finish(self.state.lifecycle.load(name))
        return pb.RepositoryModelLoadResponse()

    @answered("management")
    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Any
    ) -> pb.RepositoryModelUnloadResponse:
        self.state.check_single_process()  # a load reaches one worker only: refused under AXON_WORKERS>1
        name = self._model_request(request)
        await _finish(self.state.lifecycle.unload(name))
        return pb.RepositoryModelUnloadResponse()

    @staticmethod
    def _model_request(request: Any) -> str:
        """The model name, after REST's refusal of client-sent configs and files (`RepositoryModelRequest`)."""
        validate_model_name(request.model_name)
        parse_wire(RepositoryModelRequest, {"parameters": dict.fromkeys(request.parameters, True)})
        return str(request.model_name)


async def _finish(work: Awaitable[Any]) -> Any:
    # As REST: a load or unload half done would leave a version warmed but never swapped in.
    return await asyncio.shield(asyncio.ensure_future(work))
