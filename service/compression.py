"""gzip and deflate bodies, as `tritonclient` sends and accepts them (`request_compression_algorithm`,
`response_compression_algorithm`).

A request with `Content-Encoding: gzip|deflate` reaches the app decompressed, chunk by chunk, and the
body limit counts the *decompressed* bytes: each chunk is inflated at most up to what the limit still
allows, so a gzip bomb is refused (413) as soon as it passes the limit, never inflated in full. A
response is compressed when the request's `Accept-Encoding` names gzip or deflate ("deflate" is the
zlib format, as in HTTP and tritonclient). Other encodings are refused with 415.
"""

from __future__ import annotations

import zlib

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.handlers import error_response
from service.middleware import BodyTooLarge

# zlib's wbits: 16 + MAX_WBITS reads and writes the gzip wrapper, MAX_WBITS the zlib one ("deflate").
WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
# Answers smaller than this go out as they are: compressing them costs more than it saves.
MIN_COMPRESS_BYTES = 256


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1").strip().lower())
    return None


def accepted(accept_encoding: str | None) -> str | None:
    """The encoding to answer with: gzip or deflate if the client accepts it (q=0 refuses), else None."""
    if not accept_encoding:
        return None
    offered = {}
    for item in accept_encoding.split(","):
        name, _, params = item.strip().partition(";")
        q = params.strip().removeprefix("q=")
        try:
            offered[name.strip()] = float(q) if params.strip().startswith("q=") else 1.0
        except ValueError:
            offered[name.strip()] = 0.0
    return next((e for e in ("gzip", "deflate") if offered.get(e, 0.0) > 0), None)


def compress(body: bytes, encoding: str) -> bytes:
    """A whole answer in `encoding` (gzip or deflate)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, WBITS[encoding])
    return compressor.compress(body) + compressor.flush()


class CompressionMiddleware:
    """Inflates gzip/deflate request bodies within `limit` decompressed bytes; compresses answers on request."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        encoding = _header(scope, b"content-encoding")
        answer = accepted(_header(scope, b"accept-encoding"))
        if encoding in (None, "identity") and answer is None:
            await self.app(scope, receive, send)  # the common case: nothing wrapped
            return
        if encoding not in (None, "identity"):
            if encoding not in WBITS:
                message = f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or none"
                await error_response(415, "unsupported_media_type", message)(scope, receive, send)
                return
            # Downstream sees a plain body of unknown length (the limit middleware's chunked path).
            headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-encoding", b"content-length")]
            scope = {**scope, "headers": headers}
            receive = self._inflating(receive, encoding)
        if answer is not None:
            send = _deflating(send, answer)
        await self.app(scope, receive, send)

    def _inflating(self, receive: Receive, encoding: str) -> Receive:
        inflater = zlib.decompressobj(WBITS[encoding])
        produced = 0

        async def inflated() -> Message:
            nonlocal produced
            message = await receive()
            if message["type"] != "http.request":
                return message
            try:
                # At most one byte past the limit: enough to know it is passed, never the bomb's full size.
                chunk = inflater.decompress(message.get("body", b""), self.limit - produced + 1)
                produced += len(chunk)
                if produced > self.limit:
                    raise BodyTooLarge(self.limit)
                if not message.get("more_body", False):
                    chunk += inflater.flush()
                    if not inflater.eof:
                        raise HTTPException(400, f"the {encoding} body ends before its end of stream")
            except zlib.error as exc:
                raise HTTPException(400, f"the {encoding} body is corrupt: {exc}") from None
            return {**message, "body": chunk}

        return inflated


def _deflating(send: Send, encoding: str) -> Send:
    """A `send` compressing the answer's body (whole answers and streamed ones alike)."""
    start: Message | None = None
    compressor = None

    async def compressed(message: Message) -> None:
        nonlocal start, compressor
        if message["type"] == "http.response.start":
            start = message
            return
        if message["type"] != "http.response.body" or start is None:
            await send(message)
            return
        body, more = message.get("body", b""), message.get("more_body", False)
        if compressor is None:
            headers = MutableHeaders(raw=list(start["headers"]))
            if "content-encoding" in headers or (not more and len(body) < MIN_COMPRESS_BYTES):
                await send(start)
                start = None  # pass the rest through untouched
                await send(message)
                return
            headers["content-encoding"] = encoding
            headers.add_vary_header("Accept-Encoding")
            if more:
                compressor = zlib.compressobj(6, zlib.DEFLATED, WBITS[encoding])
                del headers["content-length"]
            else:
                body = compress(body, encoding)
                headers["content-length"] = str(len(body))
                await send({**start, "headers": headers.raw})
                await send({**message, "body": body})
                return
            await send({**start, "headers": headers.raw})
        out = compressor.compress(body) + (b"" if more else compressor.flush())
        await send({**message, "body": out})

    return compressed
