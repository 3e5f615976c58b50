"""V2 wire types: the spec's examples parse, responses serialise as the spec shows, bad bodies are refused."""

from __future__ import annotations

import json

import pytest

from service.errors import ProtocolError
from service.v2.datamodels import (
    ErrorResponse,
    InferenceRequest,
    InferenceResponse,
    ModelMetadataResponse,
    RepositoryIndexEntry,
    RepositoryIndexRequest,
    RepositoryModelRequest,
    ResponseOutput,
    ServerMetadataResponse,
    TensorMetadata,
    parse_wire,
)

# The inference request example of inference_rest.md, verbatim.
SPEC_REQUEST = b"""{
  "id" : "42",
  "inputs" : [
    { "name" : "input0", "shape" : [ 2, 2 ], "datatype" : "UINT32", "data" : [ 1, 2, 3, 4 ] },
    { "name" : "input1", "shape" : [ 3 ], "datatype" : "BOOL", "data" : [ true ] }
  ],
  "outputs" : [ { "name" : "output0" } ]
}"""

# Triton's binary example puts model_name in the body: unknown fields are ignored, not refused.
TRITON_BINARY_HEADER = {
    "model_name": "mymodel",
    "inputs": [{"name": "input0", "shape": [2, 2], "datatype": "UINT32", "parameters": {"binary_data_size": 16}}],
    "outputs": [{"name": "output0", "parameters": {"binary_data": True}}],
}


def test_spec_request_example_parses():
    request = parse_wire(InferenceRequest, SPEC_REQUEST)
    assert request.id == "42"
    assert [t.name for t in request.inputs] == ["input0", "input1"]
    assert request.inputs[0].shape == [2, 2] and request.inputs[0].data == [1, 2, 3, 4]
    assert request.inputs[1].binary_data_size is None
    assert request.output_names(["output0", "other"]) == ["output0"]


def test_binary_parameters_are_read():
    request = parse_wire(InferenceRequest, TRITON_BINARY_HEADER)
    assert request.inputs[0].binary_data_size == 16
    assert request.inputs[0].data is None
    assert request.outputs[0].binary_data is True
    assert request.binary_outputs(["output0"]) == {"output0"}


def test_binary_outputs_follow_request_default_unless_an_output_overrides_it():
    request = parse_wire(
        InferenceRequest,
        {
            "parameters": {"binary_data_output": True},
            "inputs": [],
            "outputs": [{"name": "a"}, {"name": "b", "parameters": {"binary_data": False}}],
        },
    )
    assert request.binary_outputs(["a", "b"]) == {"a"}
    plain = parse_wire(InferenceRequest, {"inputs": []})
    assert plain.binary_outputs(["a", "b"]) == set()
    assert plain.output_names(["a", "b"]) == ["a", "b"]


def test_unknown_or_repeated_outputs_are_refused():
    request = parse_wire(InferenceRequest, {"inputs": [], "outputs": [{"name": "nope"}]})
    with pytest.raises(ProtocolError, match="unknown output 'nope'"):
        request.output_names(["logits"])
    twice = parse_wire(InferenceRequest, {"inputs": [], "outputs": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(ProtocolError, match="requested twice"):
        twice.output_names(["a"])


@pytest.mark.parametrize("size", [-1, "16", True, 1.5])
def test_binary_data_size_must_be_a_non_negative_integer(size):
    request = parse_wire(
        InferenceRequest,
        {
            "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": size}}],
        },
    )
    with pytest.raises(ProtocolError, match="binary_data_size must be a non-negative integer"):
        _ = request.inputs[0].binary_data_size  # a property that validates on access


def test_binary_flags_must_be_booleans():
    request = parse_wire(InferenceRequest, {"inputs": [], "outputs": [{"name": "a", "parameters": {"binary_data": 1}}]})
    with pytest.raises(ProtocolError, match="output 'a': binary_data must be true or false"):
        request.binary_outputs(["a"])
    request = parse_wire(InferenceRequest, {"parameters": {"binary_data_output": "yes"}, "inputs": []})
    with pytest.raises(ProtocolError, match="binary_data_output must be true or false"):
        request.binary_outputs(["a"])


@pytest.mark.parametrize(
    "body,where",
    [
        (b"{", "not valid JSON"),
        (b"[]", "must be a JSON object, got list"),
        (b'{"id": "1"}', "inputs: Field required"),
        (b'{"inputs": [{"name": "x", "shape": [1, 2.5], "datatype": "FP32", "data": [1]}]}', "inputs.0.shape.1"),
        (b'{"inputs": [{"name": "x", "shape": "1", "datatype": "FP32", "data": [1]}]}', "inputs.0.shape"),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": 1}]}', "inputs.0.data"),
        (b'{"inputs": [], "parameters": {"p": null}}', "parameters.p"),
        (b'{"inputs": [], "parameters": {"p": [1]}}', "parameters.p"),
        (b'{"inputs": [], "id": 42}', "id: Input should be a valid string"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_malformed_bodies_raise_one_protocol_error_naming_the_field(body, where):
    with pytest.raises(ProtocolError, match=where):
        parse_wire(InferenceRequest, body)


def test_response_serialises_like_the_spec_example():
    response = InferenceResponse(
        model_name="mymodel",
        id="42",
        outputs=[ResponseOutput(name="output0", shape=[3, 2], datatype="FP32", data=[1.0, 1.1, 2.0, 2.1, 3.0, 3.1])],
    )
    assert json.loads(response.model_dump_json(exclude_none=True)) == {
        "model_name": "mymodel",
        "id": "42",
        "outputs": [{"name": "output0", "shape": [3, 2], "datatype": "FP32", "data": [1.0, 1.1, 2.0, 2.1, 3.0, 3.1]}],
    }


def test_metadata_and_error_shapes():
    server = ServerMetadataResponse(name="axon", version="0.1.0", extensions=["binary_tensor_data"])
    assert server.model_dump() == {"name": "axon", "version": "0.1.0", "extensions": ["binary_tensor_data"]}
    model = ModelMetadataResponse(
        name="mnist-cnn",
        versions=["1"],
        platform="onnxruntime_onnx",
        inputs=[TensorMetadata(name="image", datatype="FP32", shape=[-1, 1, 28, 28])],
        outputs=[TensorMetadata(name="logits", datatype="FP32", shape=[-1, 10])],
    )
    dumped = model.model_dump(exclude_none=True)
    assert dumped["inputs"][0] == {"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]}
    assert "parameters" not in dumped
    assert ErrorResponse(error="model 'x' not found").model_dump() == {"error": "model 'x' not found"}
    with pytest.raises(ValueError):
        TensorMetadata(name="x", datatype="FLOAT32", shape=[1])


def test_repository_index_types():
    assert parse_wire(RepositoryIndexRequest, b"{}").ready is False
    assert parse_wire(RepositoryIndexRequest, b'{"ready": true}').ready is True
    entry = RepositoryIndexEntry(name="mnist-cnn", version="2", state="UNAVAILABLE", reason="truncated model.onnx")
    assert entry.model_dump() == {
        "name": "mnist-cnn",
        "version": "2",
        "state": "UNAVAILABLE",
        "reason": "truncated model.onnx",
    }
    with pytest.raises(ValueError):
        RepositoryIndexEntry(name="m", state="ready")


@pytest.mark.parametrize("key", ["config", "file:1/model.onnx"])
def test_load_requests_never_take_files_or_configs_from_a_client(key):
    with pytest.raises(ProtocolError, match="loaded only from the server's repository"):
        parse_wire(RepositoryModelRequest, {"parameters": {key: "x"}})
    assert parse_wire(RepositoryModelRequest, b"{}").parameters is None
    assert parse_wire(RepositoryModelRequest, {"parameters": {"unload_dependents": True}}).parameters
