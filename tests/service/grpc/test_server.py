"""The gRPC server in the app's lifespan, in process: REST's limits (message size, RPCs in flight) and its drain.

`tests/service/grpc/test_shutdown.py` checks the shutdown of a real process on SIGTERM; here an RPC is held
inside the data plane, so what the server does with an RPC in flight is decided by events, not timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.app import create_app
from service.grpc.proto import grpc_service_pb2 as pb
from service.grpc.proto import grpc_service_pb2_grpc as pb_grpc
from service.grpc.server import ReadinessHealth
from service.grpc.servicer import SERVICE_NAME
from tests.support.app_harness import tiny_settings
from tests.support.tiny_models import N_FEATURES, build_repository

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def rows(n: int) -> pb.ModelInferRequest:
    """A raw FP32 request of n tabular rows for the tiny `thyroid` model (84 bytes a row)."""
    tensor = pb.ModelInferRequest.InferInputTensor(name="features", datatype="FP32", shape=[n, N_FEATURES])
    data = np.full((n, N_FEATURES), 0.5, np.float32).tobytes()
    return pb.ModelInferRequest(model_name="thyroid", inputs=[tensor], raw_input_contents=[data])


async def watched(watch: grpc.aio.UnaryStreamCall, status: int) -> None:
    """Read a Watch stream until it reports `status` (a change reaches watchers within `FOLLOW_S`)."""
    while (await watch.read()).status != status:
        pass


class Held:
    """The data plane's `infer`, held until released: an RPC in flight for as long as a test needs it."""

    def __init__(self, infer) -> None:
        self.infer, self.entered, self.release = infer, asyncio.Event(), asyncio.Event()

    async def __call__(self, *args, **kwargs):
        self.entered.set()
        await self.release.wait()
        return await self.infer(*args, **kwargs)


@asynccontextmanager
async def grpc_app(
    tmp_path, hold: bool = False, may_load: asyncio.Event | None = None, **settings
) -> AsyncIterator[tuple[object, grpc.aio.Channel]]:
    """The app with gRPC on a free port and a channel to it, models loaded; `app.held` holds every ModelInfer
    when `hold`; with `may_load` the start-up load (and so readiness) waits for that event instead."""
    app = create_app(tiny_settings(build_repository(tmp_path / "models"), grpc_port=0, **settings))
    if hold:
        app.held = Held(app.state.axon.dataplane.infer)
        app.state.axon.dataplane.infer = app.held
    if may_load is not None:
        lifecycle = app.state.axon.lifecycle
        load_all = lifecycle.load_all

        async def load_when_told() -> None:
            await may_load.wait()
            await load_all()

        lifecycle.load_all = load_when_told
    async with app.router.lifespan_context(app):
        if may_load is None:
            await app.state.axon.load_task
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.state.grpc.port}") as channel:
            yield app, channel


async def test_a_message_larger_than_a_request_body_may_be_is_refused(tmp_path):
    async with grpc_app(tmp_path, limits={"max_body_bytes": 4096}) as (_, channel):
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        fits = await stub.ModelInfer(rows(40))  # 3360 bytes of tensor
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ModelInfer(rows(60))  # 5040 bytes
    assert len(fits.raw_output_contents) == 2
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_rpcs_past_max_requests_in_flight_are_refused_at_once(tmp_path):
    async with grpc_app(tmp_path, hold=True, max_requests_in_flight=1) as (app, channel):
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        first = asyncio.ensure_future(stub.ModelInfer(rows(1)))
        await asyncio.wait_for(app.held.entered.wait(), 10)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ServerLive(pb.ServerLiveRequest())
        app.held.release.set()
        answer = await first
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert answer.model_name == "thyroid"


async def test_an_rpc_in_flight_at_shutdown_gets_its_answer(tmp_path):
    app = create_app(tiny_settings(build_repository(tmp_path / "models"), grpc_port=0))
    held = Held(app.state.axon.dataplane.infer)
    app.state.axon.dataplane.infer = held
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    await app.state.axon.load_task
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.state.grpc.port}") as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        await asyncio.wait_for(watched(watch, SERVING), 10)
        call = asyncio.ensure_future(pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(rows(1)))
        await asyncio.wait_for(held.entered.wait(), 10)
        stopping = asyncio.create_task(lifespan.__aexit__(None, None, None))  # what SIGTERM leads to
        # Health watchers hear of the shutdown first; the RPC in flight then finishes within the drain timeout.
        assert (await asyncio.wait_for(watch.read(), 10)).status == NOT_SERVING
        watch.cancel()
        held.release.set()
        answer = await asyncio.wait_for(call, 10)
    await asyncio.wait_for(stopping, 10)
    assert answer.model_name == "thyroid" and len(answer.outputs) == 2


async def test_health_watchers_follow_readiness_like_check(tmp_path):
    # Watch, like Check, says NOT_SERVING while the models load and SERVING once the server is ready.
    may_load = asyncio.Event()
    async with grpc_app(tmp_path, may_load=may_load) as (_, channel):
        health = health_pb2_grpc.HealthStub(channel)
        watches = [health.Watch(health_pb2.HealthCheckRequest(service=s)) for s in ("", SERVICE_NAME)]
        assert [(await w.read()).status for w in watches] == [NOT_SERVING, NOT_SERVING]
        may_load.set()
        await asyncio.wait_for(asyncio.gather(*(watched(w, SERVING) for w in watches)), 30)
        for watch in watches:
            watch.cancel()


async def test_a_watcher_leaving_does_not_silence_the_others(tmp_path, monkeypatch):
    # The standard servicer drops a service's shared condition when any one watcher leaves: the watchers still
    # there would never hear of a change again.
    left, watch = asyncio.Event(), ReadinessHealth.Watch

    async def observed(self, request, context):
        try:
            await watch(self, request, context)
        finally:
            left.set()  # the server has finished the leaving watcher's stream

    monkeypatch.setattr(ReadinessHealth, "Watch", observed)
    may_load = asyncio.Event()
    async with grpc_app(tmp_path, may_load=may_load) as (_, channel):
        health = health_pb2_grpc.HealthStub(channel)
        leaving, staying = (health.Watch(health_pb2.HealthCheckRequest(service="")) for _ in range(2))
        assert [(await w.read()).status for w in (leaving, staying)] == [NOT_SERVING, NOT_SERVING]
        leaving.cancel()
        await asyncio.wait_for(left.wait(), 10)
        may_load.set()
        await asyncio.wait_for(watched(staying, SERVING), 30)
        staying.cancel()


async def test_health_watch_needs_the_token_when_health_is_protected(tmp_path):
    auth = {"inference_token": "grpc-token", "protect_health": True}
    async with grpc_app(tmp_path, auth=auth) as (_, channel):
        health = health_pb2_grpc.HealthStub(channel)
        refused = health.Watch(health_pb2.HealthCheckRequest(service=""))
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await refused.read()
        allowed = health.Watch(
            health_pb2.HealthCheckRequest(service=""), metadata=(("authorization", "Bearer grpc-token"),)
        )
        await asyncio.wait_for(watched(allowed, SERVING), 10)
        allowed.cancel()
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
