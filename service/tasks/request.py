"""Reading a task request on the lean path: strict JSON, list lengths before items, body fields before query."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from service.errors import InvalidInput, PayloadTooLarge
from service.handlers import describe_validation
from service.lean import parse_json

M = TypeVar("M", bound=BaseModel)
# A list field -> (limit, message template with {n} and {limit}).
Counts = dict[str, tuple[int, str]]


def read_request(model: type[M], body: bytes, counts: Counts | None = None) -> M:
    """Strict JSON (orjson), then list lengths against their limits, then pydantic: counts before per-item work.

    A list longer than its limit is refused with 413 before any of its items is looked at (issue 8.1).
    """
    payload = parse_json(body)
    if isinstance(payload, dict):
        for name, (limit, message) in (counts or {}).items():
            value = payload.get(name)
            if isinstance(value, list) and len(value) > limit:
                raise PayloadTooLarge(message.format(n=len(value), limit=limit))
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        raise InvalidInput(describe_validation([{**e, "loc": ("body", *e["loc"])} for e in errors])) from None


def int_field(values: Mapping[str, str], name: str, where: str) -> int | None:
    """An integer query parameter or form field, or None when absent (422 naming `where.name` when not an integer)."""
    if name not in values:
        return None
    try:
        return int(values[name])
    except ValueError:
        raise InvalidInput(f"{where}.{name}: Input should be a valid integer, got {values[name]!r}") from None


def query_int(query: Mapping[str, str], name: str) -> int | None:
    """An integer query parameter, or None when absent."""
    return int_field(query, name, "query")


def pick(*values: Any) -> Any:
    """The first value that is not None (body fields win over query parameters)."""
    return next((v for v in values if v is not None), None)
