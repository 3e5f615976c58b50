"""The lean inference path: V2 infer and the three task endpoints served as plain ASGI, ahead of FastAPI's router.

A py-spy profile at 64 concurrent V2 requests put 30% of the event loop in FastAPI/Starlette routing and
dependency injection, for routes that take a body the route parses itself anyway. This layer sits inside
the app's middleware (CORS, request id, access log, body limit all still run) and answers those few
routes directly: admission, the inference token, reading the body, one handler, prebuilt response
headers. Every other path, and any other method on these paths, goes on to FastAPI unchanged, which
still declares these routes for the OpenAPI docs (`serve` runs the same handler from there).

Admission (issue 8.7): requests in flight on these routes are counted from the moment they are
routed, before their body is read; past `max_requests_in_flight` the answer is 429 with Retry-After
at once, so HTTP work (reading, decoding, tokenizing) is bounded too, not only queued rows.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI
from pydantic import SecretStr
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.auth import check_inference
from service.batcher import client_gone, sole_request
from service.compression import MIN_COMPRESS_BYTES, accepted, compress
from service.dataplane import OFFLOAD_BYTES
from service.errors import AxonError, BadRequest, ClientGone, Overloaded, UnsupportedMediaType
from service.handlers import HTTP_CODES, error_body
from service.middleware import REQUEST_ID_HEADER, RequestContext, valid_id
from service.server import REQUESTS_IN_FLIGHT, write_answer

log = logging.getLogger("axon.lean")

JSON = b"application/json"
# Media types some lean route reads (no header at all is taken as JSON, as clients such as tritonclient send none).
BODY_TYPES = frozenset({"application/json", "multipart/form-data", "application/octet-stream"})


@dataclass
class Answer:
    """A finished response: body bytes, content type and any extra headers."""

    body: bytes
    status: int = 200
    content_type: bytes = JSON
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class Call:
    """One request on the lean path: its path parameters, headers, query and body, and the app state."""

    __slots__ = ("_body", "params", "receive", "scope", "state")

    def __init__(self, scope: Scope, receive: Receive, state: Any, params: dict[str, str]) -> None:
        self.scope = scope
        self.receive = receive
        self.state = state
        self.params = params
        self._body: bytes | None = None

    def header(self, name: str) -> str | None:
        """The first value of a header given in lower case, or None."""
        raw = name.encode("latin-1")
        for key, value in self.scope["headers"]:
            if key == raw:
                return str(value.decode("latin-1"))
        return None

    def query(self) -> dict[str, str]:
        """Query parameters (the last value of each wins)."""
        return dict(parse_qsl(self.scope.get("query_string", b"").decode("latin-1")))

    async def body(self) -> bytes:
        """The whole body (the body-limit middleware has bounded it); 415 for a media type no lean route reads."""
        if self._body is None:
            # --- issue 12.5: media type check, before a byte is read ---
            # Every lean route reads JSON; vision also multipart (and narrows to those two itself), V2 also
            # its binary extension. Anything else (text/plain, a form) is 415 here, not a 400/422 from parsing.
            kind = (self.header("content-type") or "").split(";")[0].strip().lower()
            if kind and kind not in BODY_TYPES and not kind.endswith("+json"):
                raise UnsupportedMediaType(
                    f"content type {kind!r} is not accepted; send application/json "
                    "(or multipart/form-data to /v1/vision/classify)"
                )
            # --- end of the media type check ---
            chunks = []
            more = True
            while more:
                message = await self.receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone("the client disconnected while sending its body")
                chunks.append(message.get("body", b""))
                more = message.get("more_body", False)
            self._body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return self._body

    async def offload(self, fn: Callable[..., Any], *args: Any, size: int, **kwargs: Any) -> Any:
        """Run `fn(*args)` inline when the work is small, in a worker thread when `size` bytes make it large.

        orjson and pydantic hold the GIL, but the interpreter switches threads every 5 ms, so a 16 MB body
        delays other clients by slices, never by its whole parse; the in-flight bound caps how many run.
        """
        return await asyncio.to_thread(fn, *args, **kwargs) if size > OFFLOAD_BYTES else fn(*args, **kwargs)


Handler = Callable[[Call], Awaitable[Answer]]


@dataclass(frozen=True)
class LeanRoute:
    """A path template (the metrics label; RequestContextMiddleware reads `scope["route"].path`) and its handler."""

    path: str
    pattern: re.Pattern[str]
    handler: Handler


def route(path: str, handler: Handler) -> LeanRoute:
    """A route for a template like `/v2/models/{name}/infer` (a parameter is one path segment)."""
    pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
    return LeanRoute(path, re.compile(f"^{pattern}$"), handler)


def encode_json(value: Any) -> bytes:
    """orjson with numpy support; NaN and infinity never reach here (non-finite rule, README)."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


def parse_json(body: bytes) -> Any:
    """Strict JSON (RFC 8259): NaN/Infinity, lone surrogates and nesting past 1024 levels are refused with 400."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None


class LeanApp(FastAPI):
    """FastAPI whose own layers (error pages, telemetry, its body limit) wrap only its router.

    Starlette puts the app's middleware inside `ServerErrorMiddleware` and FastAPI adds two more layers
    around them; on the lean routes those layers only forwarded calls (5-7% of the loop at 2,500 req/s).
    Here the app's middleware (CORS, the lean front door, request context, body limit, compression, LeanRoutes)
    run outermost, once per request, and whatever LeanRoutes passes on meets FastAPI's full stack as before,
    errors included.
    The request id and access log now also cover the 500 pages FastAPI renders.
    """

    def build_middleware_stack(self) -> ASGIApp:
        user, self.user_middleware = self.user_middleware, []
        try:
            app = super().build_middleware_stack()
        finally:
            self.user_middleware = user
        for cls, args, kwargs in reversed(user):
            app = cls(app, *args, **kwargs)
        return app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan and websockets: FastAPI's own handling
            await super().__call__(scope, receive, send)
            return
        # FastAPI's OpenTelemetry hook is skipped on purpose: Axon exports Prometheus metrics, not OTel.
        if self.root_path:
            scope["root_path"] = self.root_path
        scope["app"] = self
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        await self.middleware_stack(scope, receive, send)


@dataclass
class Lane:
    """An admission lane: its routes share one bound on requests in flight (explanations get their own)."""

    name: str
    routes: list[LeanRoute]
    max_in_flight: int
    in_flight: int = 0


class LeanRouter:
    """The lean routes, their lanes and the inference token: matching and admission for both entry points.

    One match per request finds the route and its lane; each lane bounds its own requests in flight, so a
    costly kind of request (explanations) cannot take the slots of plain inference.
    """

    def __init__(self, state: Any, lanes: list[Lane], token: SecretStr | None) -> None:
        self.state = state
        self.lanes = lanes
        self.token = token
        pairs = [(r, lane) for lane in lanes for r in lane.routes]
        self._paths = {r.path: (r, lane) for r, lane in pairs if "{" not in r.path}
        self._patterns = [(r, lane) for r, lane in pairs if "{" in r.path]

    def match(self, scope: Scope) -> tuple[LeanRoute, Lane, dict[str, str]] | None:
        """The route serving this request, its lane and its parameters, or None (not a lean POST)."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        path = scope["path"]
        found = self._paths.get(path)
        if found is not None:
            return found[0], found[1], {}
        for r, lane in self._patterns:
            m = r.pattern.match(path)
            if m is not None:
                return r, lane, m.groupdict()
        return None

    async def respond(self, scope: Scope, receive: Receive, matched: tuple[LeanRoute, Lane, dict[str, str]]) -> Answer:
        """Admission, then the route's handler: the whole answer, errors included."""
        lean, lane, params = matched
        scope["route"] = lean
        if lane.in_flight >= lane.max_in_flight:
            return error_answer(
                Overloaded(
                    f"{lane.in_flight} {lane.name} requests are in flight (limit {lane.max_in_flight}); retry later"
                )
            )
        lane.in_flight += 1
        try:
            return await run(Call(scope, receive, self.state, params), lean.handler, self.token)
        finally:
            lane.in_flight -= 1


class LeanRoutes:
    """ASGI layer answering the inference routes behind the app's middleware; everything else goes to FastAPI.

    Most lean requests never get here: `LeanFront` serves them. These are the ones it passes on (a compressed
    or chunked body, one over the size limit), after the middleware has inflated, bounded or refused them.
    """

    def __init__(self, app: ASGIApp, router: LeanRouter) -> None:
        self.app = app
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        matched = self.router.match(scope)
        if matched is None:
            await self.app(scope, receive, send)
            return
        answer = await self.router.respond(scope, receive, matched)
        await send_answer(send, answer.status, head(answer, answer.body, answer.headers), answer.body)


class LeanFront:
    """The lean routes' front door, outside the request-context, body-limit and compression middleware.

    A py-spy profile at 64 clients put those three layers at 10-20 us of the event loop's ~100 us per V2
    request: three coroutines, three scans of the headers, a `send` wrapper per request. A lean request with a
    plain body of declared length within the limit (every client the benchmarks know) is served here in one
    layer that does what they would: the request id and access line (`RequestContext`, shared with the
    middleware), and gzip/deflate answers on Accept-Encoding. Anything else (a Content-Encoding, a chunked
    body, a Content-Length over the limit) goes down the middleware, which inflates, bounds or refuses it and
    hands it to `LeanRoutes`: one implementation of each rule, and the same answers either way (tested).
    """

    def __init__(self, app: ASGIApp, router: LeanRouter, context: RequestContext, limit: int) -> None:
        self.app = app
        self.router = router
        self.context = context
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        matched = self.router.match(scope)
        if matched is None:
            await self.app(scope, receive, send)
            return
        length = rid = accept = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"accept-encoding":
                accept = value
            elif name == REQUEST_ID_HEADER:
                rid = rid or valid_id(value)
            elif name == b"content-encoding" or name == b"transfer-encoding":
                length = None
                break
        if length is None or not length.isdigit() or int(length) > self.limit:
            await self.app(scope, receive, send)
            return
        encoding = accepted(accept.decode("latin-1").strip().lower()) if accept is not None else None
        opened = self.context.begin(rid)
        status, sent = 500, 0
        try:
            answer = await self.router.respond(scope, receive, matched)
            body, extra = answer.body, answer.headers
            if encoding is not None and len(body) >= MIN_COMPRESS_BYTES:
                body = compress(body, encoding)
                extra = [*extra, (b"content-encoding", encoding.encode()), (b"vary", b"Accept-Encoding")]
            status, sent = answer.status, len(body)
            headers = head(answer, body, [*extra, opened.id_header])
            if not write_answer(receive, send, status, headers, body):
                await send_answer(send, status, headers, body)
        finally:
            self.context.end(opened, scope, status, sent)


async def run(call: Call, handler: Handler, token: SecretStr | None) -> Answer:
    """Auth, the handler, and every failure as the service's one error body."""
    gone = None
    reset = client_gone.set(None)
    # The server's own count (service.server); other servers (test transports) do not say: never alone there.
    in_flight = call.scope.get("extensions", {}).get(REQUESTS_IN_FLIGHT)
    alone = sole_request.set(in_flight is not None and len(in_flight) == 1)
    try:
        if token is not None:
            check_inference(call.header("authorization"), token)
        await call.body()  # before any watcher listens: the body messages are the handler's
        gone = _cheap_disconnect_check(call.receive)
        client_gone.set(gone)
        if gone is not None:
            return await handler(call)
        return await _unless_client_leaves(call, handler(call))
    except AxonError as exc:
        if exc.status_code >= 500 and exc.status_code != 503:
            log.error("%s: %s", exc.code, exc.message)
        return error_answer(exc)
    except HTTPException as exc:  # the body limit refuses from inside `receive`
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return Answer(error_body(HTTP_CODES.get(exc.status_code, "http_error"), message), exc.status_code)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if gone is not None and gone() and task is not None and not task.cancelling():
            # The batcher dropped this request because its client left: nobody reads the answer.
            return error_answer(ClientGone("the client disconnected before the answer was ready"))
        raise
    except Exception:
        log.exception("unhandled error on %s %s", call.scope["method"], call.scope["path"])
        return Answer(error_body("internal", "internal server error"), 500)
    finally:
        client_gone.reset(reset)
        sole_request.reset(alone)


def error_answer(exc: AxonError) -> Answer:
    """The one error body, with the error's status and headers (Retry-After, WWW-Authenticate...)."""
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
    return Answer(error_body(exc.code, exc.message), exc.status_code, headers=headers)


def head(answer: Answer, body: bytes, extra: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The answer's headers for `body` as sent (it may be the compressed form of `answer.body`)."""
    return [(b"content-type", answer.content_type), (b"content-length", b"%d" % len(body)), *extra]


async def send_answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """Two ASGI messages with the headers built by hand (no Response object per request)."""
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def serve(request: Request, handler: Handler) -> Response:
    """Run a lean handler from a FastAPI route (the declaration that documents it), same behaviour."""
    state = request.app.state.axon
    answer = await run(Call(request.scope, request.receive, state, dict(request.path_params)), handler, None)
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in answer.headers}
    return Response(answer.body, answer.status, headers=headers, media_type=answer.content_type.decode())


def _cheap_disconnect_check(receive: Receive) -> Callable[[], bool] | None:
    """uvicorn's receive is a bound method of its request cycle, which keeps a `disconnected` flag: read it."""
    cycle = getattr(receive, "__self__", None)
    resume = getattr(getattr(cycle, "flow", None), "resume_reading", None)
    if cycle is None or not isinstance(getattr(cycle, "disconnected", None), bool) or resume is None:
        return None
    # uvicorn pauses reading once 64 KiB of body is buffered and resumes only inside its receive(); nobody
    # calls receive after the body here, so resume now, or a client that leaves would never be noticed.
    resume()
    return lambda: cycle.disconnected


async def _unless_client_leaves(call: Call, work: Awaitable[Answer]) -> Answer:
    """Other servers (and test transports): a watcher task cancels the work when the disconnect arrives."""
    current = asyncio.current_task()
    gone = False

    async def watch() -> None:
        nonlocal gone
        try:
            # The body is fully read by now, so the next message is the disconnect (or the response end).
            while (await call.receive())["type"] != "http.disconnect":
                pass
        except Exception:  # a server that cannot tell us: then we simply do not watch
            return
        gone = True
        assert current is not None
        current.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if gone and current is not None:
            current.uncancel()
            raise ClientGone("the client disconnected before the answer was ready") from None
        raise
    finally:
        watcher.cancel()
