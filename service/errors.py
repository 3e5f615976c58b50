"""Every failure the service reports on purpose: one base class carrying its HTTP status, one class per situation.

Kept free of any web framework so protocol-free modules (and the model-validation child process) can raise
them cheaply; `service.handlers` renders them.
"""

from __future__ import annotations


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


class ProtocolError(BadRequest, ValueError):
    """A V2 request (or a tensor in it) breaks the protocol: 400 with the message."""


class UnsafeName(BadRequest, ValueError):
    """A model name, version or path from a client that is malformed or would escape the repository: 400."""

    code = "invalid_name"


class LoadFailed(AxonError):
    """A load request ended with a selected version not serving; the reason says what still serves."""

    status_code = 400
    code = "load_failed"


class AuthError(AxonError):
    """A request refused for its credentials."""

    status_code = 401
    code = "unauthorized"


class Unauthorized(AuthError):
    """No bearer token, or not the right one: 401 with a Bearer challenge."""

    status_code = 401
    code = "unauthorized"


class Forbidden(AuthError):
    """The endpoint is closed to every client (management with no management token configured)."""

    status_code = 403
    code = "forbidden"


class ManyWorkers(AxonError):
    """The repository API under `AXON_WORKERS` > 1: a load would reach one worker only (409)."""

    status_code = 409
    code = "many_workers"


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


class FileNotFound(AxonError):
    """A model version has no such card or plot file (or the name is not one the API serves)."""

    status_code = 404
    code = "file_not_found"


class ModelNotReady(AxonError):
    """The model is known but still loading, unavailable, or being unloaded."""

    status_code = 503
    code = "model_not_ready"


class ClientGone(AxonError):
    """The client closed the connection before its answer was ready; its work was dropped."""

    status_code = 499  # nginx's "client closed request"
    code = "client_closed_request"


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


class NonFiniteOutput(InvalidInput):
    """The model answered NaN or infinity where the answer is JSON: strict JSON has no such numbers (README)."""

    code = "non_finite_output"


class RepositoryMissing(AxonError):
    """The model repository folder does not exist (a typo, or a start from another directory): nothing can serve."""

    status_code = 503
    code = "repository_missing"


class GpuUnavailable(AxonError, RuntimeError):
    """A GPU provider was required but the session came up without one: start-up fails and the process ends."""

    status_code = 503
    code = "gpu_unavailable"
