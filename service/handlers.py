"""The one error shape: every exception the app can see becomes `{"error": "<message>", "code": "<code>"}`.

FastAPI's validation errors, Starlette's 404/405 and the service's own `AxonError`s all share it, with the
status of the situation. The V2 protocol's error body is `{"error": "<message>"}`; V2 clients (tritonclient
included) read only `error`, so the same body serves them and the extra `code` stays for everyone else.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from service.errors import AxonError, InvalidInput

log = logging.getLogger("axon.errors")


def error_body(code: str, message: str) -> bytes:
    """The one error body as bytes (the lean inference path sends it without a Response object)."""
    return orjson.dumps({"error": message, "code": code})


def error_response(status_code: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error body of the service."""
    return JSONResponse({"error": message, "code": code}, status_code=status_code, headers=headers)


HTTP_CODES = {
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


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    code = HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.method} {request.url.path}"
    if exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, code, message, dict(exc.headers or {}))


def describe_validation(errors: list[dict[str, Any]]) -> str:
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
    # Starlette types every handler as taking Exception, though it calls each only with its own type.
    app.add_exception_handler(AxonError, _axon_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
