"""Helpers shared by the task routes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from service.errors import AxonError, BadRequest, InvalidInput
from service.handlers import describe_validation

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class ClientGone(AxonError):
    """The client closed the connection before its answer was ready; its work was dropped."""

    status_code = 499
    code = "client_closed_request"


async def unless_client_leaves(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it (and so its place in a batch queue) if the client disconnects first."""
    current = asyncio.current_task()
    gone = False

    async def watch() -> None:
        nonlocal gone
        try:
            # The body is fully read by now, so the next message is the disconnect (or the response end).
            while (await request.receive())["type"] != "http.disconnect":
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


def parse_json(model: type[M], body: bytes) -> M:
    """Validate a JSON body by hand (routes that also take multipart), with the service's error shape."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors()
        if any(e["type"] == "json_invalid" for e in errors):
            raise BadRequest("request body is not valid JSON") from None
        raise InvalidInput(describe_validation([{**e, "loc": ("body", *e["loc"])} for e in errors])) from None


def pick(*values: Any) -> Any:
    """The first value that is not None (body fields win over query parameters)."""
    return next((v for v in values if v is not None), None)
