"""Binary tensor extension: bytes from Triton's own client decode, our responses decode in Triton's client."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import tritonclient.http as triton

from service.errors import ProtocolError
from service.v2.binary import decode_request, decode_tensor, encode_response, encode_tensor, parse_header_length
from service.v2.datamodels import InferenceRequest, parse_wire

Client = triton.InferenceServerClient


def _input(name, array, datatype, binary):
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def _body(header: dict, *chunks: bytes) -> tuple[bytes, int]:
    head = json.dumps(header).encode()
    return head + b"".join(chunks), len(head)


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_request_decodes_to_the_same_arrays(binary):
    rng = np.random.default_rng(0)
    arrays = {
        "image": (rng.random((2, 1, 28, 28), dtype=np.float32), "FP32"),
        "input_ids": (rng.integers(0, 1000, (2, 7)), "INT64"),
        "mask": (np.array([[True, False, True]]), "BOOL"),
        "half": (rng.random(5).astype(np.float16), "FP16"),
        "small": (np.array([-3, 4], dtype=np.int8), "INT8"),
        "big": (np.array([2**64 - 1], dtype=np.uint64), "UINT64"),
        "text": (np.array([[b"ham", "caf\u00e9".encode()], [b"", b"spam"]], dtype=object), "BYTES"),
    }
    inputs = [_input(name, array, datatype, binary) for name, (array, datatype) in arrays.items()]
    body, header_length = Client.generate_request_body(inputs, request_id="req-7")
    assert (header_length is not None) == binary

    request, decoded = decode_request(body, header_length)

    assert request.id == "req-7"
    assert list(decoded) == list(arrays)
    for name, (array, _) in arrays.items():
        assert decoded[name].shape == array.shape
        if array.dtype == object:
            assert decoded[name].tolist() == array.tolist()
        else:
            assert decoded[name].dtype == array.dtype
            np.testing.assert_array_equal(decoded[name], array)


def test_tritonclient_asks_for_binary_outputs_by_default():
    body, header_length = Client.generate_request_body([_input("x", np.zeros((1, 2), np.float32), "FP32", True)])
    request, _ = decode_request(body, header_length)
    assert request.binary_outputs(["logits"]) == {"logits"}


@pytest.mark.parametrize("binary", [True, False])
def test_encoded_response_decodes_in_tritonclient(binary):
    outputs = {
        "reconstruction": np.random.default_rng(1).random((3, 21), dtype=np.float32),
        "score": np.array([0.5, 1.5, 2.5], dtype=np.float64),
        "flags": np.array([True, False, True]),
        "labels": np.array([b"ham", b"spam", b"ham"], dtype=object),
    }
    requested = [triton.InferRequestedOutput(name, binary_data=binary) for name in outputs]
    body, header_length = Client.generate_request_body(
        [_input("features", np.zeros((3, 21), np.float32), "FP32", True)],
        outputs=requested,
        request_id="abc",
    )
    request, _ = decode_request(body, header_length)

    response_body, response_header_length = encode_response(request, "thyroid-autoencoder", "3", outputs)

    assert (response_header_length is not None) == binary
    result = Client.parse_response_body(response_body, header_length=response_header_length)
    meta = result.get_response()
    assert (meta["model_name"], meta["model_version"], meta["id"]) == ("thyroid-autoencoder", "3", "abc")
    for name, array in outputs.items():
        got = result.as_numpy(name)
        assert got.shape == array.shape
        if array.dtype == object:
            assert [v if isinstance(v, bytes) else v.encode() for v in got.tolist()] == array.tolist()
        else:
            assert got.dtype == array.dtype
            np.testing.assert_array_equal(got, array)
    if binary:
        sizes = {o["name"]: o["parameters"]["binary_data_size"] for o in meta["outputs"]}
        assert sizes["reconstruction"] == 3 * 21 * 4 and sizes["score"] == 24 and sizes["flags"] == 3
        assert sizes["labels"] == 3 * 4 + len(b"hamspamham")
        assert len(response_body) == response_header_length + sum(sizes.values())


def test_a_non_ascii_request_id_is_escaped_so_the_header_length_counts_characters():
    body, header_length = Client.generate_request_body(
        [_input("x", np.zeros((1, 2), np.float32), "FP32", True)],
        outputs=[triton.InferRequestedOutput("y", binary_data=True)],
        request_id="réq-✓",
    )
    request, _ = decode_request(body, header_length)
    response_body, response_header_length = encode_response(request, "m", "1", {"y": np.ones((1, 2), np.float32)})
    assert response_header_length is not None
    head = response_body[:response_header_length]
    assert head.isascii() and b"\\u00e9" in head  # bytes == characters, for clients that count either
    result = Client.parse_response_body(response_body, header_length=response_header_length)
    assert result.get_response()["id"] == "réq-✓"
    assert result.as_numpy("y").tolist() == [[1.0, 1.0]]


def test_json_only_response_omits_version_and_id_when_absent():
    request = parse_wire(InferenceRequest, {"inputs": []})
    body, header_length = encode_response(request, "m", None, {"y": np.array([[1, 2]], np.int64)})
    assert header_length is None
    assert json.loads(body) == {
        "model_name": "m",
        "outputs": [{"name": "y", "datatype": "INT64", "shape": [1, 2], "data": [1, 2]}],
    }


def test_spec_binary_example_decodes():
    header = {
        "model_name": "mymodel",
        "inputs": [
            {"name": "input0", "shape": [2, 2], "datatype": "UINT32", "parameters": {"binary_data_size": 16}},
            {"name": "input1", "shape": [3], "datatype": "BOOL", "parameters": {"binary_data_size": 3}},
        ],
        "outputs": [{"name": "output0", "parameters": {"binary_data": True}}],
    }
    body, length = _body(header, struct.pack("<4I", 1, 2, 3, 4), b"\x01\x00\x01")
    _, arrays = decode_request(body, length)
    assert arrays["input0"].tolist() == [[1, 2], [3, 4]]
    assert arrays["input1"].tolist() == [True, False, True]


def _one(shape, datatype, size):
    return {"inputs": [{"name": "x", "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": size}}]}


@pytest.mark.parametrize(
    "header,payload,message",
    [
        (_one([2, 2], "FP32", 12), b"\0" * 12, "shape \\[2, 2\\] of FP32 needs 16 bytes, got 12"),
        (_one([2], "FP32", 12), b"\0" * 12, "shape \\[2\\] of FP32 needs 8 bytes, got 12"),
        (_one([2, 2], "FP32", 16), b"\0" * 8, "declares 16 binary bytes but only 8 remain"),
        (_one([2], "FP32", 8), b"\0" * 9, "1 bytes after the last tensor belong to no input"),
        (_one([-1, 2], "FP32", 8), b"\0" * 8, "negative dimension"),
        (_one([1 << 40, 1 << 40], "FP32", 8), b"\0" * 8, "more than the limit"),
        (_one([2], "BOOL", 2), b"\x01\x02", "BOOL tensor holds a byte other than 0 or 1"),
        (_one([2], "BYTES", 8), struct.pack("<I", 1) + b"a\0\0\0", "ends after 1 of 2 elements"),
        (_one([2], "BYTES", 5), struct.pack("<I", 1) + b"a", "BYTES needs at least 8 bytes, got 5"),
        (_one([1], "BYTES", 6), struct.pack("<I", 5) + b"ab", "declares 5 bytes but only 2 remain"),
        (_one([1], "BYTES", 7), struct.pack("<I", 1) + b"abc", "2 bytes after its 1 elements"),
        (_one([1], "FLOAT", 4), b"\0" * 4, "unsupported datatype"),
    ],
)
def test_bad_binary_requests_are_refused(header, payload, message):
    body, length = _body(header, payload)
    for _ in range(2):  # a refused header is not remembered: the same body is refused the same way again
        with pytest.raises(ProtocolError, match=message):
            decode_request(body, length)


def test_a_forged_bytes_shape_is_refused_before_anything_is_allocated():
    # issue 8.2: 170 bytes declaring 2^28 BYTES elements used to allocate a 2 GiB object array first
    body, length = _body(_one([1 << 28], "BYTES", 0), b"")
    with pytest.raises(ProtocolError, match="needs at least 1073741824 bytes, got 0"):
        decode_request(body, length)


def test_json_data_longer_than_the_body_could_hold_is_refused_before_numpy():
    header = {"inputs": [{"name": "x", "shape": [1 << 27], "datatype": "FP32", "data": [[1.0]]}]}
    with pytest.raises(ProtocolError, match="declares 134217728 elements in"):
        decode_request(json.dumps(header).encode())


def test_error_names_the_input():
    body, length = _body(_one([3], "INT32", 8), b"\0" * 8)
    with pytest.raises(ProtocolError, match="input 'x': shape \\[3\\] of INT32 needs 12 bytes"):
        decode_request(body, length)


def test_max_elements_refuses_before_reading():
    body, length = _body(_one([100, 100], "UINT8", 10000), b"\0" * 10000)
    with pytest.raises(ProtocolError, match="10000 elements, more than the limit of 1000"):
        decode_request(body, length, max_elements=1000)


@pytest.mark.parametrize(
    "inputs,message",
    [
        ([{"name": "x", "shape": [1], "datatype": "FP32"}], "neither 'data' nor binary_data_size"),
        (
            [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1], "parameters": {"binary_data_size": 4}}],
            "both 'data' and binary_data_size",
        ),
        ([{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}] * 2, "input 'x' is given twice"),
        ([{"name": "x", "shape": [2], "datatype": "FP32", "data": [1]}], "input 'x': 'data' has 1 elements"),
    ],
)
def test_inconsistent_inputs_are_refused(inputs, message):
    body, length = _body({"inputs": inputs}, b"\0" * 4 if "parameters" in inputs[0] else b"")
    with pytest.raises(ProtocolError, match=message):
        decode_request(body, length)


def test_header_length_beyond_body_and_bad_header_values():
    with pytest.raises(ProtocolError, match="body has only 2 bytes"):
        decode_request(b"{}", 10)
    assert parse_header_length(None) is None
    assert parse_header_length(" 42 ") == 42
    for bad in ["-1", "abc", "1e3", "\u0663"]:
        with pytest.raises(ProtocolError, match="non-negative integer"):
            parse_header_length(bad)


def test_binary_input_without_header_length_is_missing_bytes():
    body, _ = _body(_one([1], "FP32", 4), b"\0\0\0\0")
    with pytest.raises(ProtocolError):
        decode_request(body, None)  # the trailing bytes make the whole body invalid JSON


def test_unaligned_tensor_is_copied_to_an_aligned_array():
    header = {
        "inputs": [
            {"name": "a", "shape": [1], "datatype": "UINT8", "parameters": {"binary_data_size": 1}},
            {"name": "b", "shape": [2], "datatype": "FP64", "parameters": {"binary_data_size": 16}},
        ]
    }
    body, length = _body(header, b"\x07", struct.pack("<2d", 1.5, -2.0))
    _, arrays = decode_request(body, length)
    assert arrays["b"].flags.aligned
    assert arrays["b"].tolist() == [1.5, -2.0]


def test_encode_tensor_is_little_endian_row_major():
    array = np.array([[1, 2], [3, 4]], dtype=">i4")  # big-endian input still goes out little-endian
    assert encode_tensor(array) == struct.pack("<4i", 1, 2, 3, 4)
    assert encode_tensor(np.array([[1, 2], [3, 4]], np.int32).T) == struct.pack("<4i", 1, 3, 2, 4)
    assert encode_tensor(np.array(["é"], dtype=object)) == struct.pack("<I", 2) + "é".encode()
    assert decode_tensor(struct.pack("<I", 1) + b"a" + struct.pack("<I", 0), "BYTES", [2]).tolist() == [b"a", b""]
    back = decode_tensor(encode_tensor(np.arange(6, dtype=np.float16).reshape(2, 3)), "FP16", [2, 3])
    assert back.tolist() == [[0, 1, 2], [3, 4, 5]]


def _repeated(datatype: str, raw: bytes, shape: list[int]) -> tuple[bytes, int]:
    header = {
        "inputs": [{"name": "x", "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": len(raw)}}]
    }
    return _body(header, raw)


def test_a_repeated_header_decodes_each_body_to_its_own_arrays():
    first, length = _repeated("FP32", np.arange(6, dtype="<f4").tobytes(), [2, 3])
    second, _ = _repeated("FP32", np.arange(6, 12, dtype="<f4").tobytes(), [2, 3])
    for _ in range(2):  # the second time round every header is a known one
        _, a = decode_request(first, length)
        _, b = decode_request(second, length)
        np.testing.assert_array_equal(a["x"], np.arange(6, dtype=np.float32).reshape(2, 3))
        np.testing.assert_array_equal(b["x"], np.arange(6, 12, dtype=np.float32).reshape(2, 3))
        assert a["x"].flags.aligned and a["x"].dtype == np.float32


def test_a_known_header_still_refuses_a_body_of_another_length():
    body, length = _repeated("FP32", np.zeros(4, dtype="<f4").tobytes(), [4])
    decode_request(body, length)
    with pytest.raises(ProtocolError, match="declares 16 binary bytes but only 15 remain"):
        decode_request(body[:-1], length)
    with pytest.raises(ProtocolError, match="1 bytes after the last tensor belong to no input"):
        decode_request(body + b"\0", length)


def test_a_known_bool_header_still_checks_every_body_s_bytes():
    good, length = _repeated("BOOL", b"\x01\x00\x01", [3])
    bad, _ = _repeated("BOOL", b"\x01\x02\x01", [3])
    assert decode_request(good, length)[1]["x"].tolist() == [True, False, True]
    with pytest.raises(ProtocolError, match="input 'x': a BOOL tensor holds a byte other than 0 or 1"):
        decode_request(bad, length)


def test_a_known_answer_header_still_carries_each_answer_s_own_sizes_and_bytes():
    wire = parse_wire(InferenceRequest, {"inputs": [], "parameters": {"binary_data_output": True}})
    first = {"scores": np.arange(4, dtype=np.float32).reshape(1, 4)}
    wider = {"scores": np.arange(8, dtype=np.float32).reshape(2, 4)}
    text = {"scores": np.array([b"ham"], dtype=object)}
    longer = {"scores": np.array([b"spam spam"], dtype=object)}
    for _ in range(2):  # the second time round the fixed-width headers are known ones
        for outputs in (first, wider, text, longer):
            body, length = encode_response(wire, "m", "1", outputs)
            header = json.loads(body[:length])
            (described,) = header["outputs"]
            raw = encode_tensor(outputs["scores"])
            assert described["shape"] == list(outputs["scores"].shape)
            assert described["parameters"] == {"binary_data_size": len(raw)}
            assert body[length:] == raw


def test_a_known_answer_header_sends_big_endian_and_strided_outputs_little_endian_row_major():
    wire = parse_wire(InferenceRequest, {"inputs": [], "parameters": {"binary_data_output": True}})
    outputs = {
        "big": np.array([[1, 2]], dtype=">i4"),
        "transposed": np.array([[1, 2], [3, 4]], dtype=np.int16).T,
        "flags": np.array([True, False]),
    }
    for _ in range(2):  # the second answer reuses the header built for the first
        body, length = encode_response(wire, "m", "1", outputs)
        sizes = [o["parameters"]["binary_data_size"] for o in json.loads(body[:length])["outputs"]]
        assert sizes == [8, 8, 2]
        assert body[length:] == struct.pack("<2i", 1, 2) + struct.pack("<4h", 1, 3, 2, 4) + b"\x01\x00"
