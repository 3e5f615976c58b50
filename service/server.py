"""The HTTP server under the app: uvicorn with connection limits it lacks, and a shutdown that loses no request.

uvicorn has a keep-alive timeout but no header or body read timeout, no header size or count limit for
httptools, and no cap on open connections, so a few hundred slow sockets could hold every file descriptor.
`GuardedProtocol` adds them to uvicorn's httptools protocol (passed as `uvicorn.Config(http=...)`) rather
than putting a proxy in front: the limits then hold wherever `python -m service` runs, and they cost a few
attribute updates per request. There is no timer per request: one sweep per server checks every
connection's deadline a few times a second.

`GracefulServer` changes uvicorn's shutdown, which closes the listening socket first (the kernel then
resets every connection still in the backlog) and closes connections whose request is still unread.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import resource
import socket
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle

from service.settings import HttpSettings

log = logging.getLogger("axon.server")

# Descriptors kept free for everything that is not a client connection: model files, logs, pipes of the
# model-validation child, the event loop's own. Generous: running out makes accept() fail for everyone.
FD_RESERVE = 128
# A stalled connection must be at least this old to be dropped for a new one: a client that has just
# connected has had no time to send its request yet.
EVICT_MIN_AGE_S = 1.0
SWEEP_INTERVAL_S = 0.1
# Objects a generation-0 collection waits for. At CPython's 700, 64 requests in flight hold enough live objects
# to cross it again and again: 134 gen-0 and 12 gen-1 collections per 8,800 V2 requests, each walking objects
# that are alive anyway (refcounting frees a request's objects), ~15 us of CPU per request; at 10,000, none.
GC_GEN0_THRESHOLD = 10_000
TICK_S = 0.5
# Pipelined requests parsed ahead of the one running, and the slice a large chunk is parsed in: together
# they bound what one connection can queue (under a thousand tiny requests); a Content-Length body is
# parsed whole.
MAX_PIPELINED = 8
PARSE_SLICE = 16 * 1024

# The scope extension through which the app sees how many requests this server process is handling (the set
# of their tasks: `len` is the count); the lean path runs a request alone on an idle batcher when it is 1.
REQUESTS_IN_FLIGHT = "axon.requests_in_flight"

# Where a connection is; small ints because they are compared on every request.
HEADERS, BODY, APP, IDLE = 1, 2, 3, 4


def canned_response(status: int, reason: str, code: str, message: str, *extra: str) -> bytes:
    """A complete `Connection: close` HTTP answer in the service's error shape, built once at start-up."""
    body = json.dumps({"error": message, "code": code}).encode()
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json", f"content-length: {len(body)}"]
    head += [*extra, "connection: close", "", ""]
    return "\r\n".join(head).encode() + body


class ServerConfig(uvicorn.Config):
    """uvicorn's config plus the connection limits `GuardedProtocol` reads."""

    def __init__(self, app: Any, *, http: HttpSettings, max_connections: int, **kwargs: Any) -> None:
        keep_alive = http.keep_alive_s
        super().__init__(app, http=GuardedProtocol, timeout_keep_alive=keep_alive, **kwargs)  # type: ignore[arg-type]
        self.limits = http
        self.max_connections = max_connections
        self.full = canned_response(
            503, "Service Unavailable", "overloaded", "too many open connections; retry shortly", "retry-after: 1"
        )
        self.headers_too_large = canned_response(
            431,
            "Request Header Fields Too Large",
            "headers_too_large",
            f"request line and headers exceed {http.max_header_bytes} bytes or {http.max_headers} fields",
        )
        self.header_timeout = canned_response(
            408, "Request Timeout", "request_timeout", f"headers not received within {http.header_timeout_s} s"
        )
        self.body_timeout = canned_response(
            408, "Request Timeout", "request_timeout", f"body not received within {http.body_timeout_s} s"
        )


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing a request that has already been answered."""


class _OneWrite:
    """A request cycle's view of its transport: the status line and headers wait for the first body write.

    uvicorn writes them as soon as `http.response.start` arrives and the body on `http.response.body`: two
    send() calls and two TCP segments per answer, ~8% of the event loop at 2,000 req/s. Held here, a small
    answer leaves in one write; the ASGI app sends both messages in one step, so nothing waits longer.
    A close flushes what is held; HEAD answers (which write no body) never get this wrapper.
    """

    __slots__ = ("held", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self.held is None:
            if data.startswith(b"HTTP/1.1 100 "):  # the interim 100 Continue must go at once
                self.transport.write(data)
                return
            self.held = data
            return
        if self.held:
            data, self.held = self.held + data, b""
        self.transport.write(data)

    def close(self) -> None:
        if self.held:
            self.transport.write(self.held)
            self.held = b""
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def write_answer(
    receive: Callable[..., Any], send: Callable[..., Any], status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> bool:
    """Write a whole answer in one go on uvicorn's request cycle, as its `send` would for the two ASGI messages.

    `send` builds the head from a message dict, checks every header against two regular expressions and
    tracks the body length, twice per answer: ~7 us of a ~90 us V2 request on the loop. The lean path's
    headers are its own (constant names, numbers, request ids checked as printable ASCII), so it writes the
    bytes and completes the cycle the same way. Returns False, having written nothing, unless `send` is
    uvicorn's own (no middleware wraps it: CORS adds headers there), the cycle has not started answering and
    the client is reading (else `send` waits for it to drain).
    """
    cycle: Any = getattr(send, "__self__", None)
    same_cycle = getattr(receive, "__self__", None) is cycle  # both bound to one request's cycle
    if type(cycle) is not RequestResponseCycle or not same_cycle:
        return False
    if cycle.response_started or cycle.disconnected or cycle.flow.write_paused or cycle.access_log:
        return False
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    content = [STATUS_LINE[status]]
    for name, value in (*cycle.default_headers, *headers):
        content += (name, b": ", value, b"\r\n")
    if not cycle.keep_alive:
        content.append(b"connection: close\r\n")
    content += (b"\r\n", body)
    transport = cycle.transport
    # Nothing is held before the answer starts (an interim 100 Continue goes out at once): write past the wrapper.
    raw = transport.transport if isinstance(transport, _OneWrite) else transport
    raw.write(b"".join(content))
    cycle.chunked_encoding = False
    cycle.expected_content_length = 0
    cycle.response_complete = True
    cycle.message_event.set()
    if not cycle.keep_alive:
        transport.close()
    cycle.on_response()
    return True


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body deadlines, header limits and a connection cap."""

    config: ServerConfig

    def __init__(self, config: ServerConfig, server_state: Any, app_state: dict[str, Any], _loop: Any = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = config.limits
        self.header_timeout_s = limits.header_timeout_s
        self.body_timeout_s = limits.body_timeout_s
        self.max_header_bytes = limits.max_header_bytes
        self.max_headers = limits.max_headers
        self.phase = HEADERS
        self.since = 0.0  # when the current phase began (eviction picks the oldest stalled connection)
        self.deadline = 0.0  # when the current phase times out (HEADERS and BODY only)
        self.header_bytes = 0  # request line and complete headers, as the parser reports them
        self.raw_bytes = 0  # bytes of chunks that ended with the headers still incomplete
        self.header_count = 0
        self.messages = 0  # requests begun on this connection (a chunk may hold several when pipelined)
        self.unparsed = b""  # bytes read but held back while MAX_PIPELINED requests wait
        self.body_left = 0  # bytes of the current Content-Length body not parsed yet
        self.answered: bytes | None = None  # the canned answer already sent; nothing more is read
        self.draining = False
        self.closing_cycle: RequestResponseCycle | None = None  # marked last while draining (`_mark_last`)
        self.write_stalled_at: float | None = None  # since when the client has not read what we wrote
        self.write_timeout_s = limits.write_timeout_s
        self.keep_alive_s = limits.keep_alive_s

    # Connection cap -------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        now = self.loop.time()
        if len(self.connections) >= self.config.max_connections and not self._evict_stalled(now):
            # Refuse at once: the descriptor is freed now instead of the client starving in the backlog.
            self.transport = transport
            self.answered = self.config.full
            transport.write(self.config.full)
            transport.close()
            return
        super().connection_made(transport)
        self.since = now
        self.deadline = now + self.header_timeout_s

    def _evict_stalled(self, now: float) -> bool:
        """Drop the connection that has waited longest without sending a whole request head, if any."""
        oldest: GuardedProtocol | None = None
        for conn in self.connections:
            if not isinstance(conn, GuardedProtocol) or conn.phase not in (HEADERS, IDLE) or conn.answered is not None:
                continue
            if now - conn.since >= EVICT_MIN_AGE_S and (oldest is None or conn.since < oldest.since):
                oldest = conn
        if oldest is None:
            return False
        oldest.close_stalled()
        return True

    # Parsing ----------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.answered is not None:
            return
        if self.unparsed:  # parsing is held back until the pipeline drains; reading stays paused meanwhile
            self.unparsed += data
            self.flow.pause_reading()
            return
        if self.phase == IDLE:
            # uvicorn drops the keep-alive timer on any byte, even one that starts no request (a stray
            # CRLF): from here the header deadline holds, counted from this first byte.
            self.phase = HEADERS
            self.since = self.loop.time()
            self.deadline = self.since + self.header_timeout_s
        if len(data) <= PARSE_SLICE and not self.pipeline:
            self._parse(data)
        else:
            self._parse_bounded(data)
        if self.draining:
            self._mark_last()

    def _parse_bounded(self, data: bytes) -> None:
        """Parse in slices, holding back the rest once `MAX_PIPELINED` requests wait behind a running one.

        httptools parses a whole chunk at once, and uvicorn queues every pipelined request it finds: a
        client that pipelines without reading would otherwise grow that queue without bound.
        """
        offset = 0  # bytes slices: httptools is slower on memoryviews than the copies cost
        while offset < len(data):
            if len(self.pipeline) >= MAX_PIPELINED or self.answered is not None or self.transport.is_closing():
                self.unparsed = data[offset:]
                self.flow.pause_reading()
                return
            # The rest of a Content-Length body cannot start a request: parse it in one go.
            size = self.body_left if self.phase == BODY and self.body_left > PARSE_SLICE else PARSE_SLICE
            self._parse(data[offset : offset + size])
            offset += size

    def _parse(self, data: bytes) -> None:
        before, begun = self.phase, self.messages
        super().data_received(data)
        if before == HEADERS and self.phase == HEADERS and self.messages == begun and self.answered is None:
            # The same request head before and after, so all of this chunk was head: the parser buffers a
            # header line until it ends, and this bounds that buffer before a callback could.
            self.raw_bytes += len(data)
            if self.raw_bytes > self.max_header_bytes:
                self.answer(self.config.headers_too_large)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {REQUESTS_IN_FLIGHT: self.tasks}  # type: ignore[dict-item]  # ASGI types say dict
        if self.closing_cycle is not None:  # draining, and a request follows the one marked last: it is not
            if not self.closing_cycle.response_started:
                self.closing_cycle.keep_alive = True
            self.closing_cycle = None
        if self.phase != HEADERS:  # a pipelined request parsed while the previous one runs: its own deadline
            self.phase = HEADERS
            self.since = self.loop.time()
            self.deadline = self.since + self.header_timeout_s
        self.header_bytes = self.raw_bytes = self.header_count = self.body_left = 0
        self.messages += 1

    def on_url(self, url: bytes) -> None:
        self.header_bytes += len(url)
        if self.header_bytes > self.max_header_bytes:
            self.answered = self.config.headers_too_large
            raise _Refused
        self.url += url  # uvicorn's own on_url, inlined: this runs for every request

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > self.max_header_bytes or self.header_count > self.max_headers:
            self.answered = self.config.headers_too_large
            raise _Refused
        # uvicorn's own on_header, inlined: this runs for every header of every request.
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        elif name == b"content-length":
            self.body_left = int(value)  # llhttp has checked it is a number
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.phase = BODY
        self.deadline = self.loop.time() + self.body_timeout_s
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope and self.scope["method"] != "HEAD":
            cycle.transport = _OneWrite(self.transport)  # type: ignore[assignment]

    def on_body(self, body: bytes) -> None:
        self.body_left -= len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self.phase = APP
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if self.answered is not None:  # a callback refused the request: send that answer instead
            self.transport.write(self.answered)
            self.transport.close()
            return
        super().send_400_response(msg)

    def on_response_complete(self) -> None:
        # uvicorn's own, but for the keep-alive timer it arms after every answer (a timer made and cancelled
        # per request): the sweep closes a connection idle for longer than the keep-alive instead (`check`).
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        if self.unparsed:  # uvicorn has just resumed reading; held-back requests come first
            if len(self.pipeline) < MAX_PIPELINED and not self.transport.is_closing():
                held, self.unparsed = self.unparsed, b""
                self._parse_bounded(held)
                if self.draining:
                    self._mark_last()
            if self.unparsed:
                self.flow.pause_reading()
        elif (
            self.draining
            and not self.pipeline
            and self.cycle.response_complete
            and not self.transport.is_closing()
            and not self._more_coming()
        ):
            self.transport.close()  # the last request of a draining connection is answered
        # With a pipelined request already parsed the phase has moved on; only a finished one goes idle.
        if self.phase == APP and self.cycle.response_complete:
            self.phase = IDLE
            self.since = self.loop.time()

    def pause_writing(self) -> None:
        self.write_stalled_at = self.loop.time()  # only when the write buffer is full: no cost per request
        super().pause_writing()

    def resume_writing(self) -> None:
        self.write_stalled_at = None
        super().resume_writing()

    def timeout_keep_alive_handler(self) -> None:
        # A client that never read its answer would keep a plain close() waiting on the write buffer.
        if not self.transport.is_closing():
            if self.transport.get_write_buffer_size():
                self.transport.abort()
            else:
                self.transport.close()

    # Deadlines ----------------------------------------------------------------------------------
    def check(self, now: float) -> None:
        """Close this connection if its head or body is overdue, or its client stopped reading (the sweep calls it)."""
        if self.answered is not None or self.transport.is_closing():
            return
        if self.write_stalled_at is not None and now - self.write_stalled_at > self.write_timeout_s:
            # The client reads none of its answer: drop it, which also ends the app's wait to send.
            self.answered = b""
            self.transport.abort()
            return
        if self.phase == IDLE:
            if now - self.since > self.keep_alive_s:
                self.timeout_keep_alive_handler()
            return
        if now <= self.deadline:
            return
        if self.flow.read_paused:  # the service is not reading (pipelining, an unread body): not the client's delay
            self.deadline = now + (self.header_timeout_s if self.phase == HEADERS else self.body_timeout_s)
            return
        if self.phase == HEADERS:
            self.close_stalled()
        elif self.phase == BODY:
            cycle = self.cycle
            if cycle is not None and not cycle.response_started:
                cycle.disconnected = True  # the app's receive() now ends; its late answer is dropped
                cycle.message_event.set()
                self.answer(self.config.body_timeout)
            else:
                self.transport.close()

    def close_stalled(self) -> None:
        """Close a connection that is between requests or still sending a request head."""
        if self._head_arriving():
            self.answer(self.config.header_timeout)
        else:
            self.answered = b""
            self.transport.close()

    def answer(self, response: bytes) -> None:
        """Send a canned answer and close; nothing more is read from this connection."""
        self.answered = response
        self.transport.write(response)
        self.transport.close()

    # Shutdown -----------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Close if no request is in progress or waiting unread; otherwise answer it, then close."""
        self.draining = True
        if self.cycle is not None and not self.cycle.response_complete:
            self._mark_last()  # else on_response_complete closes after the last
        elif not self._more_coming():
            self.transport.close()

    def _mark_last(self) -> None:
        """While draining: the newest request parsed is this connection's last, unless more of one waits, so its
        answer says `connection: close` and closes. Decided once a whole chunk is parsed, never per request
        head: the rest of the chunk (or the kernel) may hold pipelined requests, lost if the answer ahead of
        them closed the connection. A request that arrives after all takes the mark over (`on_message_begin`).
        """
        cycle = self.cycle
        if cycle is None or cycle.response_started or not cycle.keep_alive or self._more_coming():
            return  # no answer to mark, too late to say it, the client's own close, or more to come
        cycle.keep_alive = False
        self.closing_cycle = cycle

    def _more_coming(self) -> bool:
        """Whether part of another request is held back, arriving (a head is answered or hits its deadline), or
        waiting unread in the kernel."""
        return bool(self.unparsed) or self._head_arriving() or self._unread_input()

    def _head_arriving(self) -> bool:
        """Whether some of a request head has been read and the rest has not."""
        return self.phase == HEADERS and self.header_bytes + self.raw_bytes > 0

    def _unread_input(self) -> bool:
        """Whether the kernel holds bytes of this connection not yet read (a request sent but not seen)."""
        sock = self.transport.get_extra_info("socket")
        if sock is None or self.transport.is_closing():
            return False
        # uvloop hands out a pseudo-socket that cannot recv; a duplicate descriptor can peek.
        with socket.socket(fileno=os.dup(sock.fileno())) as dup:
            try:
                return bool(dup.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
            except OSError:
                return False


class GracefulServer(uvicorn.Server):
    """uvicorn.Server with deadline sweeps, readiness-first signals, and a shutdown that adopts the backlog.

    The first signal drops readiness (`on_signal`) and waits `delay_s` while still serving; then every
    connection in the listen backlog is accepted before the listener closes, and every request whose
    bytes arrived is answered (for at most `timeout_graceful_shutdown`).
    """

    def __init__(
        self,
        config: ServerConfig,
        on_signal: Callable[[], None],
        delay_s: float,
        tick: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        self._on_signal = on_signal
        self._delay_s = delay_s
        self._tick = tick  # called on the event loop every TICK_S (a worker publishes its state)
        self._signalled = False
        self._sweeper: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.exit_code = 0

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._signalled:  # a second signal: stop waiting for running requests
            self.force_exit = True
            return
        self._signalled = True
        # Only flag-setting here: a signal handler must not take locks (logging does).
        self._on_signal()
        if self._delay_s > 0:
            timer = threading.Timer(self._delay_s, self._begin_exit)
            timer.daemon = True
            timer.start()
        else:
            self._begin_exit()

    def _begin_exit(self) -> None:
        self.should_exit = True

    def fail(self, reason: str) -> None:
        """End the process with a non-zero status (a start-up error such as a required GPU missing)."""
        log.critical("exiting: %s", reason)
        self.exit_code = 1
        self.should_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self._sweeper = asyncio.create_task(self._sweep(), name="connection-deadlines")
        if self._tick is not None:
            self._ticker = asyncio.create_task(self._ticks(self._tick), name="worker-tick")

    async def _ticks(self, tick: Callable[[], None]) -> None:
        while True:
            try:
                tick()
            except Exception:  # a full disk must not stop the worker serving; the next tick retries
                log.exception("worker state not published")
            await asyncio.sleep(TICK_S)

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        connections = self.server_state.connections
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            now = loop.time()
            for conn in list(connections):
                if isinstance(conn, GuardedProtocol):
                    conn.check(now)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self._adopt_backlog()
        try:
            await super().shutdown(sockets)  # closes idle connections, then waits for the rest
        finally:
            if self._sweeper is not None:
                self._sweeper.cancel()
            if self._ticker is not None and self._tick is not None:
                self._ticker.cancel()
                try:
                    self._tick()  # the last state: draining, every request counted
                except Exception:
                    log.exception("worker state not published")

    async def _adopt_backlog(self) -> None:
        """Accept every connection waiting in the listen backlog, then close the listeners in the same step.

        Closing a listener makes the kernel reset the connections queued on it, although their clients
        may already have sent a whole request.
        """
        loop = asyncio.get_running_loop()
        config = self.config

        def protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state
            )

        # Duplicates, because uvloop's listener objects cannot accept; they share the same queue.
        listeners = [socket.socket(fileno=os.dup(s.fileno())) for server in self.servers for s in server.sockets]
        adopted = 0
        try:
            while True:
                waiting: list[socket.socket] = []
                for listener in listeners:
                    listener.setblocking(False)
                    while True:
                        try:
                            waiting.append(listener.accept()[0])
                        except OSError:  # empty (EAGAIN), or no descriptor left
                            break
                if not waiting:
                    for server in self.servers:
                        server.close()  # in the same step as the empty accept: nothing can slip in between
                    break
                for conn in waiting:
                    await loop.connect_accepted_socket(protocol, conn)
                adopted += len(waiting)
        finally:
            for listener in listeners:
                listener.close()
        if adopted:
            log.info("accepted %d connections from the backlog before closing the listener", adopted)


def tune_collector() -> None:
    """Collect once, freeze what start-up made (full collections skip it) and raise the gen-0 threshold."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])


def raise_fd_limit() -> int:
    """Raise the soft open-file limit to the hard one (a common soft 1024 wastes what the host allows)."""
    infinity = resource.RLIM_INFINITY
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != infinity and (hard == infinity or soft < hard):
        target = hard if hard != infinity else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft if soft != infinity else 1 << 20


def connection_cap(wanted: int, fd_limit: int) -> int:
    """Connections the process can hold without running out of descriptors for everything else."""
    return max(1, min(wanted, fd_limit - FD_RESERVE))
