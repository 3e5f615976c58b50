"""The one mapping from the service's errors (HTTP statuses) to gRPC status codes."""

from __future__ import annotations

import grpc

from service.errors import AxonError

# By the HTTP status each AxonError carries, so a new error class needs no entry here.
# Unknown models are NOT_FOUND (Triton answers UNAVAILABLE; NOT_FOUND says what happened).
CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def grpc_code(error: AxonError) -> grpc.StatusCode:
    """The gRPC status of an error: by its HTTP status, INTERNAL for anything unlisted (500)."""
    return CODES.get(error.status_code, grpc.StatusCode.INTERNAL)
