"""Pydantic wire types of the Open Inference Protocol (KServe V2) REST API and Triton's repository extension.

Each class quotes the spec's grammar (kserve/open-inference-protocol, `inference_rest.md`; Triton
`extension_model_repository.md`, `extension_binary_data.md`). Requests ignore unknown fields, as
standard clients send extras (Triton's own examples put `model_name` in the request body); responses
are serialised with `exclude_none=True` so optional fields the server does not use stay absent.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from modelrepo.datatypes import Datatype
from service.errors import ProtocolError

# $parameter = $string : $string | $number | $boolean   (strict: no silent coercion between them)
ParameterValue = StrictBool | StrictInt | StrictFloat | StrictStr
Parameters = dict[str, ParameterValue]

# Triton's model states, as its repository index reports them.
ModelState = Literal["READY", "LOADING", "UNLOADING", "UNAVAILABLE"]


class _Wire(BaseModel):
    # `model_name`/`model_version` are protocol field names, not pydantic internals.
    model_config = ConfigDict(extra="ignore", protected_namespaces=())


class TensorMetadata(_Wire):
    """A model input or output::

    $metadata_tensor = { "name" : $string, "datatype" : $string, "shape" : [ $number, ... ] }

    Variable-size dimensions are -1.
    """

    name: str
    datatype: Datatype
    shape: list[int]


class ServerMetadataResponse(_Wire):
    """`GET /v2`::

    $metadata_server_response = { "name" : $string, "version" : $string, "extensions" : [ $string, ... ] }
    """

    name: str
    version: str
    extensions: list[str] = []


class ServerLiveResponse(_Wire):
    """`GET /v2/health/live`: `$live_server_response = { "live" : $bool }`."""

    live: bool


class ServerReadyResponse(_Wire):
    """`GET /v2/health/ready`: `{ "ready" : $bool }` (the spec's table repeats "live" by mistake)."""

    ready: bool


class ModelReadyResponse(_Wire):
    """`GET /v2/models/<name>[/versions/<v>]/ready`: `$ready_model_response = { "name" : $string, "ready": $bool }`."""

    name: str
    ready: bool


class ModelMetadataResponse(_Wire):
    """`GET /v2/models/<name>[/versions/<v>]`::

    $metadata_model_response = {
      "name" : $string, "versions" : [ $string, ... ] #optional, "platform" : $string,
      "inputs" : [ $metadata_tensor, ... ], "outputs" : [ $metadata_tensor, ... ] }
    """

    name: str
    versions: list[str] | None = None
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: Parameters | None = None


class RequestInput(_Wire):
    """One input tensor of an inference request::

    $request_input = { "name" : $string, "shape" : [ $number, ... ], "datatype" : $string,
                       "parameters" : $parameters #optional, "data" : $tensor_data }

    "Each dimension must be an integer representable as an unsigned 64-bit integer value." With the
    binary extension, `parameters.binary_data_size` replaces `data` and the bytes follow the JSON.
    """

    name: str
    shape: list[StrictInt]
    datatype: str  # checked against the V2 names when decoded, with the protocol's error message
    parameters: Parameters | None = None
    data: list[Any] | None = None

    @property
    def binary_data_size(self) -> int | None:
        """Bytes of this tensor after the JSON header, or None when it is given as JSON `data`."""
        size = (self.parameters or {}).get("binary_data_size")
        if size is None:
            return None
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ProtocolError(f"input '{self.name}': binary_data_size must be a non-negative integer")
        return size


class RequestOutput(_Wire):
    """One requested output: `$request_output = { "name" : $string, "parameters" : $parameters #optional }`.

    Binary extension: `"binary_data" : $bool` asks for this output as raw bytes after the JSON.
    """

    name: str
    parameters: Parameters | None = None

    @property
    def binary_data(self) -> bool | None:
        """This output's own binary_data choice, or None when it defers to the request's."""
        value = (self.parameters or {}).get("binary_data")
        if value is not None and not isinstance(value, bool):
            raise ProtocolError(f"output '{self.name}': binary_data must be true or false")
        return value


class InferenceRequest(_Wire):
    """`POST /v2/models/<name>[/versions/<v>]/infer`::

    $inference_request = { "id" : $string #optional, "parameters" : $parameters #optional,
                           "inputs" : [ $request_input, ... ], "outputs" : [ $request_output, ... ] #optional }

    "If not specified all outputs produced by the model will be returned." Binary extension:
    `parameters.binary_data_output` sends every output as binary unless an output says otherwise.
    """

    id: str | None = None
    parameters: Parameters | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None

    def output_names(self, available: list[str]) -> list[str]:
        """The outputs to return, in the order asked (all of `available` when none are asked)."""
        if not self.outputs:
            return list(available)
        names = [output.name for output in self.outputs]
        unknown = [name for name in names if name not in available]
        if unknown:
            raise ProtocolError(f"unknown output {unknown[0]!r}; the model has {available}")
        if len(set(names)) != len(names):
            raise ProtocolError("an output is requested twice")
        return names

    def binary_outputs(self, names: list[str]) -> set[str]:
        """Which of `names` go back as binary: an output's `binary_data`, else `binary_data_output`."""
        default = (self.parameters or {}).get("binary_data_output", False)
        if not isinstance(default, bool):
            raise ProtocolError("binary_data_output must be true or false")
        own = {output.name: output.binary_data for output in self.outputs or []}
        return {name for name in names if (default if own.get(name) is None else own[name])}


class ResponseOutput(_Wire):
    """One output tensor of a response::

    $response_output = { "name" : $string, "shape" : [ $number, ... ], "datatype" : $string,
                         "parameters" : $parameters #optional, "data" : $tensor_data }

    A binary output carries `parameters.binary_data_size` and no `data`.
    """

    name: str
    shape: list[int]
    datatype: Datatype
    parameters: Parameters | None = None
    data: list[Any] | None = None


class InferenceResponse(_Wire):
    """The inference answer::

    $inference_response = { "model_name" : $string, "model_version" : $string #optional,
                            "id" : $string, "parameters" : $parameters #optional,
                            "outputs" : [ $response_output, ... ] }
    """

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


class ErrorResponse(_Wire):
    """Every failure: `$inference_error_response = { "error": <error message string> }`."""

    error: str


class RepositoryIndexRequest(_Wire):
    """`POST /v2/repository/index`: `$repository_index_request = { "ready" : $boolean #optional }`."""

    ready: bool = False


class RepositoryIndexEntry(_Wire):
    """One row of `$repository_index_response = [ { "name" : $string, "version" : $string #optional,
    "state" : $string, "reason" : $string }, ... ]`."""

    name: str
    version: str | None = None
    state: ModelState
    reason: str = ""


class RepositoryModelRequest(_Wire):
    """Body of `/v2/repository/models/<name>/load` and `/unload`: `{ "parameters" : $parameters #optional }`.

    Triton also lets a load carry a config override and model files (`config`, `file:<path>`); this
    server never takes files, paths or configs from a client, so those parameters are refused.
    """

    parameters: Parameters | None = None

    @model_validator(mode="after")
    def _no_client_files(self) -> RepositoryModelRequest:
        for key in self.parameters or {}:
            if key == "config" or key.startswith("file:"):
                raise ValueError(
                    f"parameter {key!r} is not accepted: models are loaded only from the server's repository"
                )
        return self


WireT = TypeVar("WireT", bound=BaseModel)


def parse_wire(cls: type[WireT], payload: bytes | str | dict[str, Any]) -> WireT:
    """Validate a JSON body (raw or already decoded) as `cls`, turning pydantic's errors into one ProtocolError."""
    if not isinstance(payload, dict):
        try:
            # strict orjson then validate: faster than model_validate_json on large `data` arrays, and it
            # refuses NaN/Infinity, lone surrogates and nesting past 1024 levels (400, never a 500)
            payload = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(f"the body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise ProtocolError(f"the body must be a JSON object, got {type(payload).__name__}")
    try:
        return cls.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        message = first["msg"].removeprefix("Value error, ")
        raise ProtocolError(f"invalid {cls.__name__}: {where}: {message}{more}") from None


__all__ = [
    "ErrorResponse",
    "InferenceRequest",
    "InferenceResponse",
    "ModelMetadataResponse",
    "ModelReadyResponse",
    "ModelState",
    "Parameters",
    "RepositoryIndexEntry",
    "RepositoryIndexRequest",
    "RepositoryModelRequest",
    "RequestInput",
    "RequestOutput",
    "ResponseOutput",
    "ServerLiveResponse",
    "ServerMetadataResponse",
    "ServerReadyResponse",
    "TensorMetadata",
    "parse_wire",
]
