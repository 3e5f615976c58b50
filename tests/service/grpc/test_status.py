"""Every AxonError maps to a gRPC status in one table, by its HTTP status."""

from __future__ import annotations

import grpc

from service import errors
from service.grpc.status import grpc_code


def test_each_error_class_gets_the_status_its_http_status_means():
    assert grpc_code(errors.ModelNotFound("x")) is grpc.StatusCode.NOT_FOUND
    assert grpc_code(errors.VersionNotFound("x")) is grpc.StatusCode.NOT_FOUND
    assert grpc_code(errors.ProtocolError("x")) is grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_code(errors.InvalidInput("x")) is grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_code(errors.Unauthorized("x")) is grpc.StatusCode.UNAUTHENTICATED
    assert grpc_code(errors.Forbidden("x")) is grpc.StatusCode.PERMISSION_DENIED
    assert grpc_code(errors.Overloaded("x")) is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert grpc_code(errors.PayloadTooLarge("x")) is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert grpc_code(errors.ModelNotReady("x")) is grpc.StatusCode.UNAVAILABLE
    assert grpc_code(errors.DeadlineExceeded("x")) is grpc.StatusCode.DEADLINE_EXCEEDED
    assert grpc_code(errors.InferenceFailed("x")) is grpc.StatusCode.INTERNAL


def test_no_error_class_falls_through_to_internal_by_accident():
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.AxonError)]
    for cls in classes:
        if cls.status_code != 500:
            assert grpc_code(cls.__new__(cls)) is not grpc.StatusCode.INTERNAL, cls.__name__
