"""V2 tensor datatypes: the numpy mapping, element sizes, and the JSON `data` codec.

From the Open Inference Protocol, "Tensor Data"::

    Tensor data must be presented in row-major order of the tensor elements. Element values must be
    given in "linear" order without any stride or padding between elements. Tensor elements may be
    presented in their nature multi-dimensional representation, or as a flattened one-dimensional
    representation.

    | Data Type | Size (bytes) |    BOOL 1, UINT8 1, UINT16 2, UINT32 4, UINT64 8, INT8 1, INT16 2,
    |           |              |    INT32 4, INT64 8, FP16 2, FP32 4, FP64 8, BYTES variable (max 2^32)

BYTES tensors are held as numpy object arrays of `bytes` (what Triton's own client uses).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from modelrepo.datatypes import NUMPY_TO_V2, V2_TO_NUMPY
from service.errors import ProtocolError

# The one table (numpy dtypes, little-endian explicitly) lives with the repository format.
# Default cap on elements per tensor: far above any real request (1 GiB of FP32 is 2^28 elements),
# low enough that a forged shape cannot make the server allocate without limit.
MAX_ELEMENTS = 1 << 28


def numpy_dtype(datatype: str) -> np.dtype:
    """The numpy dtype for a V2 datatype name, or ProtocolError if the name is not a V2 datatype."""
    try:
        return V2_TO_NUMPY[datatype]
    except (KeyError, TypeError):
        raise ProtocolError(f"unsupported datatype {datatype!r}; expected one of {', '.join(V2_TO_NUMPY)}") from None


def v2_datatype(dtype: np.dtype | type) -> str:
    """The V2 datatype name for a numpy dtype (strings and bytes map to BYTES)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "OSU":
        return "BYTES"
    name = NUMPY_TO_V2.get(dtype.newbyteorder("<") if dtype.byteorder in "<>=" else dtype)
    if name is None:
        raise ProtocolError(f"numpy dtype {dtype} has no V2 datatype")
    return name


def itemsize(datatype: str) -> int | None:
    """Bytes per element of a V2 datatype; None for BYTES, whose elements vary in length."""
    dtype = numpy_dtype(datatype)
    return None if datatype == "BYTES" else dtype.itemsize


def element_count(shape: Sequence[int], max_elements: int = MAX_ELEMENTS) -> int:
    """Product of a request shape, refusing negative, non-integer or absurdly large dimensions."""
    if not isinstance(shape, (list, tuple)):
        raise ProtocolError(f"shape must be a list of integers, got {shape!r}")
    count = 1
    for dim in shape:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise ProtocolError(f"shape {list(shape)} has a dimension that is not an integer")
        if dim < 0:
            raise ProtocolError(f"shape {list(shape)} has a negative dimension")
        count *= int(dim)  # Python ints: a forged shape cannot overflow this product
    if count > max_elements:
        raise ProtocolError(f"shape {list(shape)} has {count} elements, more than the limit of {max_elements}")
    return count


def from_json(data: Any, datatype: str, shape: Sequence[int], max_elements: int = MAX_ELEMENTS) -> np.ndarray:
    """Turn a JSON `data` array (flat or nested, row-major) into an array of the declared shape and type."""
    dtype = numpy_dtype(datatype)
    count = element_count(shape, max_elements)
    if not isinstance(data, list):
        raise ProtocolError(f"'data' must be a JSON array, got {type(data).__name__}")
    array = _bytes_array(data) if datatype == "BYTES" else _numeric_array(data, datatype, dtype)
    if array.size != count:
        raise ProtocolError(f"'data' has {array.size} elements but shape {list(shape)} needs {count}")
    return array.reshape(tuple(int(d) for d in shape))


def to_json(array: np.ndarray) -> list[Any]:
    """A flat, row-major JSON-able list of an array's elements (BYTES decoded as UTF-8 strings)."""
    flat = np.asarray(array).reshape(-1)
    if flat.dtype.kind not in "OSU":
        return flat.tolist()
    out = []
    for item in flat.tolist():
        if isinstance(item, bytes):
            try:
                item = item.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError(
                    "a BYTES element is not valid UTF-8 and cannot be sent as JSON; ask for binary_data"
                ) from None
        elif not isinstance(item, str):
            raise ProtocolError(f"a BYTES element is a {type(item).__name__}, not bytes or str")
        out.append(item)
    return out


def _numeric_array(data: list[Any], datatype: str, dtype: np.dtype) -> np.ndarray:
    """Parse numbers or booleans with numpy, then check their kind and range against the datatype."""
    try:
        raw = np.asarray(data)
    except (ValueError, OverflowError):
        # numpy refuses ragged nesting ("inhomogeneous shape") and integers beyond 64 bits
        raise ProtocolError(
            f"'data' is not a regular {datatype} array (ragged nesting or values out of range)"
        ) from None
    if raw.size == 0:
        return raw.astype(dtype)
    if datatype == "BOOL":
        allowed = "b"
    elif dtype.kind in "iu":
        allowed = "iu"  # a JSON 1.0 is a float: refused for integer tensors rather than truncated
    else:
        allowed = "iuf"
    if raw.dtype.kind not in allowed:
        raise ProtocolError(f"'data' holds {_describe(raw)} values, not {datatype}")
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if raw.min() < info.min or raw.max() > info.max:
            raise ProtocolError(f"'data' has values outside the {datatype} range [{info.min}, {info.max}]")
        return raw.astype(dtype)
    if dtype.kind == "f":
        with np.errstate(over="ignore"):
            converted = raw.astype(dtype)
        if np.any(np.isinf(converted) & np.isfinite(raw)):
            raise ProtocolError(f"'data' has values too large for {datatype}")
        return converted
    return raw.astype(dtype)


def _bytes_array(data: list[Any]) -> np.ndarray:
    """Collect strings from flat or regularly nested lists into an object array of UTF-8 bytes."""
    try:
        # dtype=object keeps strings whole; a ragged nesting leaves lists as elements, refused below
        raw = np.array(data, dtype=object)
    except ValueError:
        raise ProtocolError("BYTES 'data' is not a regular array (ragged nesting)") from None
    flat = raw.reshape(-1)
    for i, item in enumerate(flat):
        if not isinstance(item, str):
            kind = "a ragged nesting" if isinstance(item, list) else type(item).__name__
            raise ProtocolError(f"BYTES 'data' must hold strings, got {kind}")
        flat[i] = item.encode("utf-8")
    return flat


def _describe(raw: np.ndarray) -> str:
    return {"b": "boolean", "i": "integer", "u": "integer", "f": "floating-point", "U": "string"}.get(
        raw.dtype.kind, "mixed or non-numeric"
    )
