"""ModelInfer tensors: raw and typed contents decode to the same arrays; bad sizes are refused before any array."""

from __future__ import annotations

import numpy as np
import pytest

from service.errors import ProtocolError
from service.grpc.proto import grpc_service_pb2 as pb
from service.grpc.tensors import decode_inputs, encode_outputs
from service.v2.binary import encode_tensor


def request(raw: bool, array: np.ndarray, datatype: str) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="m")
    tensor = message.inputs.add(name="x", datatype=datatype, shape=list(array.shape))
    if raw:
        message.raw_input_contents.append(encode_tensor(array))
    elif datatype == "BYTES":
        tensor.contents.bytes_contents.extend(array.reshape(-1).tolist())
    else:
        field = {"FP32": "fp32_contents", "INT64": "int64_contents", "BOOL": "bool_contents"}[datatype]
        getattr(tensor.contents, field).extend(array.reshape(-1).tolist())
    return message


@pytest.mark.parametrize("raw", [True, False])
@pytest.mark.parametrize(
    ("array", "datatype"),
    [
        (np.arange(6, dtype=np.float32).reshape(2, 3), "FP32"),
        (np.arange(4, dtype=np.int64).reshape(2, 2), "INT64"),
        (np.array([[True, False]]), "BOOL"),
        (np.array([b"ab", b""], dtype=object), "BYTES"),
    ],
)
def test_raw_and_typed_contents_decode_alike(raw, array, datatype):
    got = decode_inputs(request(raw, array, datatype))["x"]
    assert got.shape == array.shape and got.tolist() == array.tolist()


def test_wrong_sizes_and_mixed_forms_are_protocol_errors():
    short = request(False, np.zeros((2, 3), np.float32), "FP32")
    short.inputs[0].shape[:] = [3, 3]
    with pytest.raises(ProtocolError, match="needs 9 values, got 6"):
        decode_inputs(short)
    raw = request(True, np.zeros((2, 3), np.float32), "FP32")
    raw.inputs[0].shape[:] = [3, 3]
    with pytest.raises(ProtocolError, match="needs 36 bytes, got 24"):
        decode_inputs(raw)
    mixed = request(True, np.zeros(2, np.float32), "FP32")
    mixed.inputs.add(name="y", datatype="FP32", shape=[1]).contents.fp32_contents.append(1.0)
    with pytest.raises(ProtocolError, match="every input raw or none"):
        decode_inputs(mixed)
    both = request(True, np.zeros(2, np.float32), "FP32")
    both.inputs[0].contents.fp32_contents.extend([1.0, 2.0])
    with pytest.raises(ProtocolError, match="input 'x': contents must not be set when the inputs come in raw_input"):
        decode_inputs(both)
    half = pb.ModelInferRequest(model_name="m")
    half.inputs.add(name="x", datatype="FP16", shape=[1])
    with pytest.raises(ProtocolError, match="FP16 has no typed contents"):
        decode_inputs(half)


# Each datatype's InferTensorContents field as grpc_service.proto documents it; 64-bit values above 2**32.
TYPED = [
    ("BOOL", "bool_contents", [True, False]),
    ("INT8", "int_contents", [-128, 127]),
    ("INT16", "int_contents", [-32768, 32767]),
    ("INT32", "int_contents", [-(2**31), 2**31 - 1]),
    ("INT64", "int64_contents", [-(2**40), 2**40]),
    ("UINT8", "uint_contents", [0, 255]),
    ("UINT16", "uint_contents", [0, 65535]),
    ("UINT32", "uint_contents", [0, 2**32 - 1]),
    ("UINT64", "uint64_contents", [0, 2**40]),
    ("FP32", "fp32_contents", [1.5, -2.25]),
    ("FP64", "fp64_contents", [1e300, -0.5]),
    ("BYTES", "bytes_contents", [b"a", b""]),
]


@pytest.mark.parametrize(("datatype", "field", "values"), TYPED, ids=[t[0] for t in TYPED])
def test_every_datatype_decodes_from_its_own_contents_field(datatype, field, values):
    message = pb.ModelInferRequest(model_name="m")
    tensor = message.inputs.add(name="x", datatype=datatype, shape=[1, 2])
    getattr(tensor.contents, field).extend(values)
    got = decode_inputs(message)["x"]
    assert got.shape == (1, 2) and got.reshape(-1).tolist() == values


def typed(datatype: str, field: str, values: list, shape: list[int]) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="m")
    getattr(message.inputs.add(name="x", datatype=datatype, shape=shape).contents, field).extend(values)
    return message


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (typed("INT32", "int_contents", [1, 2, 3], [2]), "shape \\[2\\] needs 2 values, got 3"),
        (typed("INT8", "int_contents", [300], [1]), "input 'x': a value does not fit INT8"),
        (typed("UINT8", "uint_contents", [256], [1]), "input 'x': a value does not fit UINT8"),
        (typed("INT16", "int_contents", [40000], [1]), "input 'x': a value does not fit INT16"),
    ],
    ids=["too-many-values", "int8-overflow", "uint8-overflow", "int16-overflow"],
)
def test_typed_values_that_do_not_match_the_datatype_are_protocol_errors(message, reason):
    # Past these checks numpy raises ValueError or OverflowError, which gRPC would answer as UNKNOWN.
    with pytest.raises(ProtocolError, match=reason):
        decode_inputs(message)


def test_raw_contents_must_match_the_inputs_one_to_one_and_byte_for_byte():
    long = request(True, np.zeros(3, np.float32), "FP32")
    long.inputs[0].shape[:] = [2]
    with pytest.raises(ProtocolError, match="needs 8 bytes, got 12"):
        decode_inputs(long)
    extra = request(True, np.zeros(2, np.float32), "FP32")
    extra.raw_input_contents.append(encode_tensor(np.zeros(2, np.float32)))
    with pytest.raises(ProtocolError, match="holds 2 tensors for 1 inputs"):
        decode_inputs(extra)
    twice = typed("INT32", "int_contents", [1], [1])
    twice.inputs.add(name="x", datatype="INT32", shape=[1]).contents.int_contents.append(2)
    with pytest.raises(ProtocolError, match="input 'x' is given twice"):
        decode_inputs(twice)


def test_outputs_are_answered_raw():
    response = encode_outputs("m", "1", "id-1", {"y": np.array([[1.5, 2.5]], np.float32)})
    assert (response.model_name, response.model_version, response.id) == ("m", "1", "id-1")
    assert response.outputs[0].datatype == "FP32" and list(response.outputs[0].shape) == [1, 2]
    assert np.frombuffer(response.raw_output_contents[0], np.float32).tolist() == [1.5, 2.5]
