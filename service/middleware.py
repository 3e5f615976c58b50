"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs a task per request): request ids and body limits."""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
import time
from typing import NamedTuple

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.batcher import Arrivals
from service.handlers import error_response
from service.logs import request_id
from service.metrics import served_model

access_log = logging.getLogger("axon.access")
REQUEST_ID_HEADER = b"x-request-id"
MAX_REQUEST_ID = 128
# Readiness and liveness probes arrive every few seconds from every balancer: their lines are debug.
PROBE_PREFIX = "/v2/health/"
PROBE_SUFFIXES = ("/ready",)


class BodyTooLarge(HTTPException):
    """Raised from `receive` once the body passes the limit; FastAPI re-raises HTTPExceptions from body parsing."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than the limit of {limit} bytes")


class RequestContext:
    """Per-request bookkeeping: the X-Request-ID (taken or made), the log context, the arrival mark for the
    batchers, and at the end the HTTP metrics and the access line. The middleware below and the lean front
    door (service/lean.py) both use it, so a request is counted and logged the same way on either path."""

    def __init__(self, arrivals: Arrivals, log_requests: bool = True) -> None:
        self.arrivals = arrivals
        self.log_requests = log_requests

    def begin(self, incoming: str | None) -> Opened:
        """Start a request whose valid X-Request-ID is `incoming` (`incoming_id`), or None to make one."""
        rid = incoming or next_request_id()
        return Opened(
            rid,
            (REQUEST_ID_HEADER, rid.encode("ascii")),
            request_id.set(rid),
            served_model.set(None),
            self.arrivals.enter(),
            time.perf_counter(),
        )

    def end(self, opened: Opened, scope: Scope, status: int, sent: int) -> None:
        """Finish what `begin` started: metrics, the access line, the context restored."""
        self.arrivals.leave(opened.arrival)
        elapsed = time.perf_counter() - opened.start
        # The route template, not the raw path: unknown paths must not grow the label set.
        route = getattr(scope.get("route"), "path", "unmatched")
        state = getattr(getattr(scope.get("app"), "state", None), "axon", None)
        if state is not None:
            state.metrics.observe_http(scope["method"], route, status, elapsed)
        if self.log_requests:
            _log_access(scope["method"], scope["path"], route, status, elapsed, sent, served_model.get(), opened.rid)
        served_model.reset(opened.model)
        request_id.reset(opened.token)


class Opened(NamedTuple):
    """What `RequestContext.begin` set up for one request."""

    rid: str
    id_header: tuple[bytes, bytes]
    token: contextvars.Token[str]
    model: contextvars.Token[str | None]
    arrival: tuple[list[bool], contextvars.Token[list[bool] | None]]
    start: float


class RequestContextMiddleware:
    """Takes or makes the X-Request-ID, echoes it, logs the request, and marks it as arriving for the batchers."""

    def __init__(self, app: ASGIApp, context: RequestContext) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        opened = self.context.begin(incoming_id(scope))
        id_header = opened.id_header
        status = 500
        sent = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.context.end(opened, scope, status, sent)


def _log_access(
    method: str, path: str, route: str, status: int, elapsed: float, sent: int, model: str | None, rid: str
) -> None:
    """One access line; its parts are also fields (the JSON formatter writes `extra`), probes only at debug."""
    level = logging.DEBUG if route.startswith(PROBE_PREFIX) or route.endswith(PROBE_SUFFIXES) else logging.INFO
    if not access_log.isEnabledFor(level):
        return
    duration_ms = round(elapsed * 1000, 3)
    access_log.log(
        level,
        "%s %s %d %.1fms %dB%s",
        method,
        route,
        status,
        duration_ms,
        sent,
        f" model={model}" if model else "",
        extra={
            "method": method,
            "path": path,
            "route": route,
            "status": status,
            "duration_ms": duration_ms,
            "bytes": sent,
            "model": model,
            "request_id": rid,
        },
    )


# A per-process random prefix and a counter: unique across processes and restarts like a uuid4, and 32 hex
# characters like one, without 16 bytes from the OS per request (uuid4 was 3% of the loop at 2,000 req/s).
_ID_PREFIX = os.urandom(10).hex()
_ids = itertools.count(1)


def next_request_id() -> str:
    """A new request id: 20 random hex characters of this process, then a 12-digit hex counter."""
    return f"{_ID_PREFIX}{next(_ids) & 0xFFFFFFFFFFFF:012x}"


def incoming_id(scope: Scope) -> str | None:
    """The first valid X-Request-ID of the request, or None."""
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER and (rid := valid_id(value)):
            return rid
    return None


def valid_id(value: bytes) -> str | None:
    """A client's X-Request-ID value as text, or None if it is empty, too long or not printable ASCII."""
    text = value.decode("latin-1").strip()
    # A client's id goes into logs and headers: keep it short, printable and ASCII (a latin-1 byte
    # would come back UTF-8 encoded, a different id).
    if 0 < len(text) <= MAX_REQUEST_ID and text.isascii() and text.isprintable():
        return str(text)
    return None


class BodyLimitMiddleware:
    """Refuses bodies above `limit` bytes with 413: at once from Content-Length, else while reading chunks."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit():
                if int(value) > self.limit:
                    message = f"request body of {int(value)} bytes is larger than the limit of {self.limit} bytes"
                    response = error_response(413, "payload_too_large", message)
                    await response(scope, receive, send)
                    return
                # The server frames the body by Content-Length (h11 and httptools never deliver more), so the
                # server's own receive goes on unwrapped: cheaper, and the lean path can read its disconnect flag.
                await self.app(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, limited_receive, send)
