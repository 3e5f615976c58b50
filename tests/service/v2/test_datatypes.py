"""The V2 datatype mapping and the JSON `data` codec."""

from __future__ import annotations

import numpy as np
import pytest

from service.errors import ProtocolError
from service.v2.datatypes import (
    NUMPY_TO_V2,
    V2_TO_NUMPY,
    element_count,
    from_json,
    itemsize,
    numpy_dtype,
    to_json,
    v2_datatype,
)

SIZES = {
    "BOOL": 1,
    "UINT8": 1,
    "UINT16": 2,
    "UINT32": 4,
    "UINT64": 8,
    "INT8": 1,
    "INT16": 2,
    "INT32": 4,
    "INT64": 8,
    "FP16": 2,
    "FP32": 4,
    "FP64": 8,
}


def test_mapping_and_inverse_cover_every_v2_datatype():
    assert set(V2_TO_NUMPY) == set(SIZES) | {"BYTES"}
    for name, dtype in V2_TO_NUMPY.items():
        assert NUMPY_TO_V2[dtype] == name
        assert v2_datatype(dtype) == name


@pytest.mark.parametrize("name,size", sorted(SIZES.items()))
def test_itemsize_matches_the_spec_table(name, size):
    assert itemsize(name) == size


def test_bytes_has_no_fixed_itemsize_and_strings_map_to_bytes():
    assert itemsize("BYTES") is None
    assert v2_datatype(np.dtype("<U5")) == "BYTES"
    assert v2_datatype(np.dtype("S3")) == "BYTES"


def test_native_and_big_endian_dtypes_map_to_the_same_name():
    assert v2_datatype(np.float32) == "FP32"
    assert v2_datatype(np.dtype(">i8")) == "INT64"


def test_unknown_datatype_and_dtype_are_refused():
    with pytest.raises(ProtocolError, match="unsupported datatype 'FLOAT'"):
        numpy_dtype("FLOAT")
    with pytest.raises(ProtocolError, match="no V2 datatype"):
        v2_datatype(np.complex64)


def test_element_count_refuses_negative_absurd_and_non_integer_dims():
    assert element_count([2, 3, 4]) == 24
    assert element_count([0, 5]) == 0
    assert element_count([]) == 1
    with pytest.raises(ProtocolError, match="negative"):
        element_count([2, -1])
    with pytest.raises(ProtocolError, match="more than the limit of 100"):
        element_count([11, 10], max_elements=100)
    with pytest.raises(ProtocolError, match="more than the limit"):
        element_count([2**62, 2**62])  # would overflow int64: Python ints keep it exact
    with pytest.raises(ProtocolError, match="not an integer"):
        element_count([2.0, 3])
    with pytest.raises(ProtocolError, match="not an integer"):
        element_count([True])


@pytest.mark.parametrize("data", [[1, 2, 3, 4, 5, 6], [[1, 2, 3], [4, 5, 6]], [[[1], [2], [3]], [[4], [5], [6]]]])
def test_flat_and_nested_data_give_the_same_row_major_array(data):
    array = from_json(data, "INT32", [2, 3])
    assert array.dtype == np.int32
    assert array.tolist() == [[1, 2, 3], [4, 5, 6]]


@pytest.mark.parametrize("name", ["FP16", "FP32", "FP64"])
def test_floats_accept_integers_and_keep_values(name):
    array = from_json([1, 2.5, -3], name, [3])
    assert array.dtype == V2_TO_NUMPY[name]
    assert array.tolist() == [1.0, 2.5, -3.0]


def test_bool_and_bytes():
    assert from_json([True, False], "BOOL", [2]).tolist() == [True, False]
    array = from_json([["a", "é"]], "BYTES", [1, 2])
    assert array.dtype == object and array.shape == (1, 2)
    assert array.tolist() == [[b"a", "é".encode()]]


def test_empty_tensor():
    assert from_json([], "INT64", [0, 3]).shape == (0, 3)


@pytest.mark.parametrize(
    "data,name,shape,message",
    [
        ([1, 2, 3], "FP32", [2, 2], "has 3 elements but shape \\[2, 2\\] needs 4"),
        ([[1, 2], [3]], "FP32", [3], "not a regular FP32 array"),
        ([1.5], "INT64", [1], "floating-point values, not INT64"),
        ([256], "UINT8", [1], "outside the UINT8 range"),
        ([-1], "UINT32", [1], "outside the UINT32 range"),
        ([2**64], "UINT64", [1], "not a regular|outside|mixed"),
        ([1, "2"], "FP32", [2], "string values, not FP32"),
        ([True], "FP32", [1], "boolean values, not FP32"),
        ([1], "BOOL", [1], "integer values, not BOOL"),
        ([None], "FP32", [1], "mixed or non-numeric"),
        ([{"a": 1}], "INT8", [1], "mixed or non-numeric"),
        ([1e300], "FP32", [1], "too large for FP32"),
        ([70000], "FP16", [1], "too large for FP16"),
        ([1], "BYTES", [1], "must hold strings, got int"),
        ([["a"], "b"], "BYTES", [2], "must hold strings"),
        (5, "INT64", [1], "must be a JSON array"),
        ([1], "COMPLEX", [1], "unsupported datatype"),
    ],
)
def test_bad_data_is_refused_with_a_clear_message(data, name, shape, message):
    with pytest.raises(ProtocolError, match=message):
        from_json(data, name, shape)


def test_max_elements_is_checked_before_parsing():
    with pytest.raises(ProtocolError, match="more than the limit"):
        from_json([0] * 10, "FP32", [10], max_elements=5)


def test_to_json_is_flat_row_major_with_python_scalars():
    array = np.arange(6, dtype=np.float16).reshape(2, 3)
    out = to_json(array)
    assert out == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert all(type(v) is float for v in out)
    assert to_json(np.array([[True], [False]])) == [True, False]
    assert to_json(np.array([b"x", "y"], dtype=object)) == ["x", "y"]


def test_to_json_refuses_bytes_that_are_not_utf8():
    with pytest.raises(ProtocolError, match="binary_data"):
        to_json(np.array([b"\xff"], dtype=object))


@pytest.mark.parametrize("name", sorted(SIZES))
def test_round_trip_json(name):
    original = np.arange(6).reshape(3, 2).astype(V2_TO_NUMPY[name])
    back = from_json(to_json(original), name, [3, 2])
    assert back.dtype == original.dtype
    np.testing.assert_array_equal(back, original)
