"""The one exception the protocol modules raise: a request the V2 wire format cannot accept."""

from __future__ import annotations


class ProtocolError(ValueError):
    """A V2 request (or a tensor in it) breaks the protocol; the HTTP layer answers 400 with the message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
