"""The lean inference path (service/lean.py): limits before work, strict JSON, the non-finite rule, admission,
bounded metric labels, and dropping a queued request whose client left without a watcher task."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.support.app_harness import metric, serving, tiny_settings
from tests.support.tiny_models import build_repository

ROW = [0.5] * 21


@pytest.fixture
def repo(tmp_path):
    return build_repository(tmp_path / "models")


def assert_error(response, status: int, code: str, message: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and message in body["error"], body


@pytest.mark.parametrize(
    "path, body, message",
    [
        # not strings / not numbers: without the count check first, pydantic walks every item (422, seconds)
        ("/v1/text/classify", {"texts": [1] * 200_000}, "200000 texts in one request; the limit is 64"),
        ("/v1/anomaly/score", {"samples": [1] * 200_000}, "200000 samples in one request; the limit is 1024"),
        ("/v1/anomaly/score", {"series": ["x"] * 200_000}, "the series has 200000 points; the limit is 100000"),
        ("/v1/vision/classify", {"images": [1] * 200_000}, "200000 images in one request; the limit is 64"),
    ],
)
async def test_counts_are_checked_before_any_item(repo, path, body, message):
    async with serving(tiny_settings(repo)) as (_, client):
        assert_error(await client.post(path, json=body), 413, "payload_too_large", message)


async def test_a_base64_image_is_sized_before_it_is_decoded(repo):
    async with serving(tiny_settings(repo, limits={"max_image_bytes": 30})) as (_, client):
        r = await client.post("/v1/vision/classify", json={"images": ["A" * 400]})
        assert_error(r, 413, "payload_too_large", "image 0 has about 300 bytes; the limit is 30")


@pytest.mark.parametrize(
    "path, raw",
    [
        ("/v1/text/classify", b'{"texts": ["\\ud800"]}'),  # a lone surrogate used to fail in the tokenizer (500)
        ("/v1/anomaly/score", b'{"samples": [[NaN' + b", 0.5" * 20 + b"]]}"),
        (
            "/v2/models/thyroid/infer",
            b'{"inputs": [{"name": "features", "shape": [1, 21], "datatype": "FP32", '
            b'"data": [NaN' + b", 0.5" * 20 + b"]}]}",
        ),
        ("/v2/models/digits/infer", b"[" * 150_000 + b"]" * 150_000),  # RecursionError (500) before
        ("/v1/text/classify", b"[" * 150_000 + b"]" * 150_000),
    ],
)
async def test_what_strict_json_refuses_is_400(repo, path, raw):
    async with serving(tiny_settings(repo)) as (_, client):
        r = await client.post(path, content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "bad_request"


@pytest.mark.parametrize(
    "body",
    [
        {"samples": [[1e20] * 21]},  # the reconstruction error overflows float32: the answer was not JSON
        {"series": [1e300] * 16, "model": "temperature"},
    ],
)
async def test_a_non_finite_answer_is_refused_not_sent(repo, body):
    async with serving(tiny_settings(repo)) as (_, client):
        r = await client.post("/v1/anomaly/score", json=body)
        assert_error(r, 422, "non_finite_output", "produced a non-finite value")


async def test_v2_json_never_carries_bare_nan(repo):
    body = {"inputs": [{"name": "features", "shape": [1, 21], "datatype": "FP32", "data": [3e38] * 21}]}
    async with serving(tiny_settings(repo)) as (_, client):
        r = await client.post("/v2/models/thyroid/infer", json=body)
        assert_error(r, 422, "non_finite_output", "ask for it as binary_data")
        body["outputs"] = [{"name": o, "parameters": {"binary_data": True}} for o in ("reconstruction", "score")]
        r = await client.post("/v2/models/thyroid/infer", json=body)
        assert r.status_code == 200, r.text  # binary tensors carry IEEE values as they are


async def test_past_the_in_flight_bound_the_answer_is_429_at_once(repo):
    async with serving(tiny_settings(repo, max_requests_in_flight=1)) as (app, client):
        release = asyncio.Event()
        sent = []

        async def slow_receive():  # a client still sending its body holds its place
            await release.wait()
            return {"type": "http.request", "body": json.dumps({"texts": ["hello"]}).encode(), "more_body": False}

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
            "headers": [(b"content-type", b"application/json")],
            "client": ("127.0.0.1", 1),
            "server": ("axon.test", 80),
        }
        first = asyncio.create_task(app(scope, slow_receive, send))
        while not app.state.axon.arrivals.count:
            await asyncio.sleep(0.001)
        r = await client.post("/v1/text/classify", json={"texts": ["hello"]})
        assert_error(r, 429, "overloaded", "1 inference requests are in flight (limit 1)")
        assert r.headers["retry-after"] == "1"
        assert (await client.get("/v2/health/live")).status_code == 200  # only inference is bounded
        release.set()
        await first
        assert sent[0]["status"] == 200, sent
        assert (await client.post("/v1/text/classify", json={"texts": ["hello"]})).status_code == 200


async def test_metric_labels_only_name_models_the_repository_knows(repo):
    async with serving(tiny_settings(repo)) as (_, client):
        for i in range(3):
            await client.post(f"/v2/models/junk{i}/infer", json={"inputs": []})
            await client.post("/v1/text/classify", json={"texts": ["hi"], "model": f"junk{i}"})
        text = (await client.get("/metrics")).text
    assert "junk" not in text
    assert metric(text, "axon_requests_total", model="unknown", endpoint="v2", status="404") == 3
    assert metric(text, "axon_requests_total", model="unknown", endpoint="text", status="404") == 3


async def test_a_queued_request_whose_client_left_is_dropped_by_the_server_flag(repo):
    """uvicorn's receive is a bound method of a cycle with `disconnected`: read it, no watcher task."""
    async with serving(tiny_settings(repo)) as (app, client):
        batcher = app.state.axon.registry.get("spam").batcher
        hold = asyncio.Event()
        run = batcher._workers[0].run  # the one instance's run function

        def blocked(batch):  # the first batch holds the worker while the second request queues
            asyncio.run_coroutine_threadsafe(hold.wait(), loop).result()
            return run(batch)

        loop = asyncio.get_running_loop()
        batcher._workers[0].run = blocked

        class Flow:
            def resume_reading(self):
                pass

        class Cycle:
            disconnected = False
            flow = Flow()

            async def receive(self):
                return {"type": "http.request", "body": b'{"texts": ["free cash now"]}', "more_body": False}

        sent = []

        async def send(message):
            sent.append(message)

        def scope():
            return {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "POST",
                "scheme": "http",
                "path": "/v1/text/classify",
                "raw_path": b"/v1/text/classify",
                "root_path": "",
                "query_string": b"",
                "client": ("127.0.0.1", 1),
                "server": ("axon.test", 80),
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"28")],
            }

        first = asyncio.create_task(client.post("/v1/text/classify", json={"texts": ["hello"]}))
        while not batcher.instances[0].running or batcher.queued_rows:
            await asyncio.sleep(0.001)
        cycle = Cycle()
        second = asyncio.create_task(app(scope(), cycle.receive, send))
        while not batcher.queued_rows:
            await asyncio.sleep(0.001)
        cycle.disconnected = True
        hold.set()
        assert (await first).status_code == 200
        await second
        text = (await client.get("/metrics")).text
    assert sent[0]["status"] == 499
    assert metric(text, "axon_batch_size_count", model="spam", version="1") == 1  # only the first was run


async def test_a_500_page_from_fastapi_carries_the_request_id_and_is_counted(repo):
    # The app's middleware run outside FastAPI's error layer (LeanApp): its 500 page passes through them.
    async with serving(tiny_settings(repo)) as (app, _):

        async def boom() -> None:
            raise RuntimeError("a bug")

        app.router.add_api_route("/boom", boom)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://axon.test") as client:
            r = await client.get("/boom", headers={"X-Request-ID": "bug-1"})
            text = (await client.get("/metrics")).text
    assert_error(r, 500, "internal", "internal server error")
    assert r.headers["x-request-id"] == "bug-1"
    assert metric(text, "axon_http_requests_total", method="GET", route="/boom", status="500") == 1


def _chunked(body: bytes):
    """The same body with no Content-Length (sent chunked), which the front door passes to the middleware."""

    async def chunks():
        yield body

    return chunks()


@pytest.mark.parametrize(
    "path, body, headers",
    [
        ("/v2/models/thyroid/infer", {"inputs": [{"name": "features", "shape": [1, 21], "datatype": "FP32",
                                                  "data": ROW}]}, {}),
        ("/v2/models/nosuch/infer", {"inputs": []}, {}),
        ("/v2/models/thyroid/infer", b"{not json", {}),
        ("/v1/text/classify", {"texts": ["free cash now"] * 8}, {"accept-encoding": "gzip"}),
        ("/v1/text/classify", {"texts": ["free cash now"] * 8}, {"accept-encoding": "deflate;q=1, gzip;q=0"}),
        ("/v1/text/classify", {"texts": ["free cash now"] * 8}, {"accept-encoding": "identity"}),
        ("/v1/text/classify", {"texts": ["hi"]}, {"x-request-id": "trace-7"}),
        ("/v1/text/classify", {"texts": ["hi"]}, {"x-request-id": "a\tb", "content-type": "text/plain"}),
    ],
)  # fmt: skip
async def test_the_front_door_and_the_middleware_give_the_same_answer(repo, monkeypatch, path, body, headers):
    from service.lean import LeanRoutes

    behind: list[str] = []  # lean requests served behind the middleware rather than by the front door
    inner = LeanRoutes.__call__

    async def spy(self, scope, receive, send):
        if self.router.match(scope) is not None:
            behind.append(scope["path"])
        await inner(self, scope, receive, send)

    monkeypatch.setattr(LeanRoutes, "__call__", spy)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": "application/json", "accept-encoding": "", **headers}
    async with serving(tiny_settings(repo)) as (_, client):
        front = await client.post(path, content=raw, headers=headers)
        assert behind == []
        middle = await client.post(path, content=_chunked(raw), headers=headers)
        assert behind == [path]
        counted = metric((await client.get("/metrics")).text, "axon_http_requests_total", status=str(front.status_code))
    assert front.status_code == middle.status_code and front.status_code in (200, 400, 404, 415, 422)
    assert front.content == middle.content  # httpx has inflated both
    for name in ("content-type", "content-encoding", "vary"):
        assert front.headers.get(name) == middle.headers.get(name), name
    assert front.headers.get("content-encoding") == {"gzip": "gzip", "deflate;q=1, gzip;q=0": "deflate"}.get(
        headers["accept-encoding"]
    )
    for r in (front, middle):
        echoed = r.headers.get_list("x-request-id")
        assert len(echoed) == 1
        assert echoed[0] == "trace-7" if headers.get("x-request-id") == "trace-7" else len(echoed[0]) == 32
    assert counted >= 2  # both counted under the route's template
