"""Liveness answers at once; readiness waits for every model, ignores or counts broken ones, and drops on shutdown."""

from __future__ import annotations

import asyncio

from service.app import create_app
from tests.support.app_harness import metric, serving, tiny_settings
from tests.support.tiny_models import add_model, build_repository


async def test_live_at_once_ready_only_after_loading_and_warm_up(tmp_path):
    root = build_repository(tmp_path / "models")
    async with serving(tiny_settings(root), wait_ready=False) as (app, client):
        assert (await client.get("/v2/health/live")).json() == {"live": True}
        before = await client.get("/v2/health/ready")
        assert before.status_code == 503 and before.json()["code"] == "not_ready"
        await app.state.axon.load_task
        after = await client.get("/v2/health/ready")
        assert after.status_code == 200 and after.json() == {"ready": True}
        models = (await client.get("/v1/models")).json()["models"]
        assert {m["state"] for m in models} == {"ready"}


async def test_a_broken_model_leaves_the_others_serving(tmp_path):
    root = build_repository(tmp_path / "models")
    add_model(root, "broken", "digits")
    (root / "broken" / "1" / "model.onnx").write_bytes(b"\x00" * 64)
    add_model(root, "bad-config", "digits")
    # A config with only a name is a plain model now (its tensors come from the graph); this one is invalid.
    (root / "bad-config" / "config.json").write_text('{"name": "bad-config", "max_batch_size": -1}')
    async with serving(tiny_settings(root)) as (_, client):
        assert (await client.get("/v2/health/ready")).status_code == 200
        models = {m["name"]: m for m in (await client.get("/v1/models")).json()["models"]}
        assert models["broken"]["state"] == "unavailable"
        assert "broken/1/model.onnx" in models["broken"]["versions"][0]["reason"]
        assert models["bad-config"]["versions"][0]["reason"].startswith("config.json: ")
        assert models["digits"]["state"] == "ready"
        ok = await client.post("/v1/text/classify", json={"texts": ["free cash"]})
        assert ok.status_code == 200


async def test_strict_readiness_waits_for_every_model(tmp_path):
    root = build_repository(tmp_path / "models")
    add_model(root, "broken", "digits")
    (root / "broken" / "1" / "model.onnx").write_bytes(b"\x00" * 64)
    async with serving(tiny_settings(root, strict_readiness=True)) as (_, client):
        r = await client.get("/v2/health/ready")
        assert r.status_code == 503 and "not every model is ready: model 'broken' version 1" in r.json()["error"]


async def test_shutdown_drops_readiness_at_once_and_finishes_queued_work(tmp_path):
    root = build_repository(tmp_path / "models")
    async with serving(tiny_settings(root)) as (app, client):
        state = app.state.axon
        pending = [
            asyncio.create_task(client.post("/v1/text/classify", json={"texts": ["free cash now"]})) for _ in range(20)
        ]
        await asyncio.sleep(0)
        while state.arrivals.count:  # until every request has reached its batch queue (or finished)
            await asyncio.sleep(0)
        state.draining = True
        r = await client.get("/v2/health/ready")
        assert r.status_code == 503 and r.json()["error"] == "the server is shutting down"
        assert (await client.get("/v2/health/live")).status_code == 200
        await state.stop()
        assert [p.status_code for p in await asyncio.gather(*pending)] == [200] * 20
        late = await client.post("/v1/text/classify", json={"texts": ["free cash now"]})
        assert late.status_code == 503 and late.json()["code"] == "model_not_ready"


async def test_required_gpu_missing_is_a_start_up_error(tmp_path):
    root = build_repository(tmp_path / "models")
    settings = tiny_settings(root, providers=["CUDAExecutionProvider", "CPUExecutionProvider"], require_gpu=True)
    async with serving(settings, wait_ready=False) as (app, client):
        fatal = []
        app.state.axon.on_fatal = fatal.append
        await app.state.axon.load_task
        r = await client.get("/v2/health/ready")
        models = (await client.get("/v1/models")).json()["models"]
    if fatal:  # no usable GPU here (the CPU CI machine)
        assert r.status_code == 503 and "start-up failed" in r.json()["error"] and "require_gpu" in fatal[0]
    else:  # a GPU machine: every version really runs on CUDA
        assert r.status_code == 200
        assert {m["versions"][0]["providers"][0] for m in models} == {"CUDAExecutionProvider"}


async def test_a_request_whose_client_left_is_not_computed(tmp_path):
    root = build_repository(tmp_path / "models")
    async with serving(tiny_settings(root)) as (app, client):
        body = b'{"texts": ["free cash now"]}'
        messages = [{"type": "http.request", "body": body, "more_body": False}, {"type": "http.disconnect"}]
        sent = []

        async def receive():
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/text/classify",
            "raw_path": b"/v1/text/classify",
            "root_path": "",
            "query_string": b"",
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 1),
            "server": ("axon.test", 80),
        }
        await app(scope, receive, send)
        text = (await client.get("/metrics")).text
    assert sent[0]["status"] == 499
    assert metric(text, "axon_requests_total", model="spam", endpoint="text", status="499") == 1
    assert metric(text, "axon_batch_size_count", model="spam", version="1") == 0


async def test_stopping_during_the_start_up_load_cancels_it(tmp_path, monkeypatch):
    # A SIGTERM while models still load: the load is cancelled, not waited for (it could take minutes).
    app = create_app(tiny_settings(build_repository(tmp_path / "models")))
    state = app.state.axon
    loading = asyncio.Event()

    async def never_done() -> None:
        loading.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(state.lifecycle, "load_all", never_done)

    async def start_and_stop() -> None:
        async with app.router.lifespan_context(app):
            await loading.wait()

    stopping = asyncio.create_task(start_and_stop())
    done, _ = await asyncio.wait([stopping], timeout=10)  # not wait_for: its cancel would end the load itself
    stopping.cancel()  # a no-op unless the stop hung on the load
    assert done, "the shutdown waited for the start-up load"
    assert state.load_task.cancelled() and not state.loaded


async def test_a_stop_cancelled_while_the_load_winds_down_is_cancelled(tmp_path, monkeypatch):
    # stop() awaits the cancelled start-up load; a cancel aimed at stop() itself must not be taken for the load's.
    app = create_app(tiny_settings(build_repository(tmp_path / "models")))
    state = app.state.axon
    loading, winding_down, release = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def slow_to_stop() -> None:
        loading.set()
        try:
            await asyncio.Event().wait()
        finally:
            winding_down.set()
            await release.wait()  # cleanup that takes a while

    monkeypatch.setattr(state.lifecycle, "load_all", slow_to_stop)
    state.load_task = asyncio.create_task(state.load_models())  # as the app's start-up does
    await asyncio.wait_for(loading.wait(), 10)
    stopping = asyncio.create_task(state.stop())
    await asyncio.wait_for(winding_down.wait(), 10)
    stopping.cancel()
    release.set()
    await asyncio.wait([stopping], timeout=10)
    assert stopping.cancelled()
