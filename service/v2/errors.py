"""The one exception the protocol modules raise: a request the V2 wire format cannot accept."""

from __future__ import annotations

from service.errors import BadRequest


class ProtocolError(BadRequest, ValueError):
    """A V2 request (or a tensor in it) breaks the protocol: 400 with the message."""
