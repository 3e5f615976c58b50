"""Every failure the service reports, one exception class per situation, and the handlers that render them.

Whatever goes wrong, the client receives `{"error": "<message>", "code": "<code>"}` with the status
of the situation: FastAPI's validation errors, Starlette's 404/405 and our own errors all share it.
The V2 protocol's error body is `{"error": "<message>"}`; V2 clients (tritonclient included) read only
`error`, so the same body serves them and the extra `code` stays for everyone else.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from service.auth import AuthError
from service.naming import UnsafeName
from service.v2.errors import ProtocolError

log = logging.getLogger("axon.errors")


class AxonError(Exception):
    """Base of every error the service reports on purpose; carries its HTTP status and a stable code."""

    status_code: int = 500
    code: str = "internal"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(AxonError):
    """The body cannot be parsed at all (malformed JSON, broken multipart)."""

    status_code = 400
    code = "bad_request"


class InvalidInput(AxonError):
    """The body parses but its content is wrong: type, feature count, empty list, undecodable image..."""

    status_code = 422
    code = "invalid_input"


class WrongTask(InvalidInput):
    """A task endpoint was asked to use a model of another task."""

    code = "wrong_task"


class ModelNotFound(AxonError):
    """No model of that name is in the repository."""

    status_code = 404
    code = "model_not_found"


class VersionNotFound(AxonError):
    """The model exists but not in that version."""

    status_code = 404
    code = "version_not_found"


class ModelNotReady(AxonError):
    """The model is known but still loading, unavailable, or being unloaded."""

    status_code = 503
    code = "model_not_ready"


class ShuttingDown(AxonError):
    """The process is draining after SIGTERM and takes no new work."""

    status_code = 503
    code = "shutting_down"


class Overloaded(AxonError):
    """The model's queue is full; the client should retry after a moment."""

    status_code = 429
    code = "overloaded"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class PayloadTooLarge(AxonError):
    """A size or count limit was exceeded (body bytes, image bytes or pixels, texts, samples...)."""

    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(AxonError):
    """The body or an image is in a format the endpoint does not take."""

    status_code = 415
    code = "unsupported_media_type"


class DeadlineExceeded(AxonError):
    """The request did not get its result within the request timeout."""

    status_code = 504
    code = "deadline_exceeded"


class InferenceFailed(AxonError):
    """ONNX Runtime failed on a batch: a server-side fault, never the client's input."""

    status_code = 500
    code = "inference_failed"


def error_response(status_code: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error body of the service."""
    return JSONResponse({"error": message, "code": code}, status_code=status_code, headers=headers)


_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


async def _axon_error(request: Request, exc: AxonError) -> JSONResponse:
    if exc.status_code >= 500 and exc.status_code != 503:
        log.error("%s: %s", exc.code, exc.message)
    return error_response(exc.status_code, exc.code, exc.message, exc.headers)


async def _refused(request: Request, exc: ProtocolError | UnsafeName | AuthError) -> JSONResponse:
    # Errors of modules that know nothing of HTTP (V2 wire format, names) or of AxonError (auth).
    if isinstance(exc, AuthError):
        return error_response(exc.status_code, exc.code, exc.message, exc.headers)
    code = "invalid_name" if isinstance(exc, UnsafeName) else "bad_request"
    return error_response(400, code, exc.message)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.method} {request.url.path}"
    if exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, code, message, dict(exc.headers or {}))


def describe_validation(errors: list[dict]) -> str:
    """One readable line out of pydantic's error list: `body.texts.0: Input should be a valid string`."""
    parts = []
    for err in errors[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body" or len(err.get("loc", ())) == 1)
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", "invalid"))
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(400, "bad_request", "request body is not valid JSON")
    return error_response(422, InvalidInput.code, describe_validation(errors))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception type the app can see to the one error shape."""
    app.add_exception_handler(AxonError, _axon_error)
    for refusal in (ProtocolError, UnsafeName, AuthError):
        app.add_exception_handler(refusal, _refused)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
