"""Tensor datatypes: V2 / Triton names, their numpy dtypes and ONNX element types, in one table.

The service decodes V2 tensors and describes ONNX graphs with it; training names the tensors of
the files it exports with it. Every other mapping is derived from `_TABLE`.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]  # fmt: skip

# V2 name -> (numpy dtype, ONNX element type as ONNX Runtime spells it inside "tensor(...)").
# Little-endian explicitly: binary tensors on the wire are little-endian whatever the host is.
# BYTES tensors are numpy object arrays of `bytes` (what Triton's own client uses).
_TABLE: dict[str, tuple[str, str]] = {
    "BOOL": ("bool", "bool"),
    "UINT8": ("<u1", "uint8"),
    "UINT16": ("<u2", "uint16"),
    "UINT32": ("<u4", "uint32"),
    "UINT64": ("<u8", "uint64"),
    "INT8": ("<i1", "int8"),
    "INT16": ("<i2", "int16"),
    "INT32": ("<i4", "int32"),
    "INT64": ("<i8", "int64"),
    "FP16": ("<f2", "float16"),
    "FP32": ("<f4", "float"),
    "FP64": ("<f8", "double"),
    "BYTES": ("object", "string"),
}
assert set(_TABLE) == set(get_args(Datatype)), "the Datatype literal and the table name the same types"

V2_TO_NUMPY: dict[str, np.dtype] = {name: np.dtype(dtype) for name, (dtype, _) in _TABLE.items()}
NUMPY_TO_V2: dict[np.dtype, str] = {dtype: name for name, dtype in V2_TO_NUMPY.items()}
# "tensor(float)" (ONNX Runtime's `NodeArg.type`) -> "FP32".
ORT_TO_V2: dict[str, str] = {f"tensor({element})": name for name, (_, element) in _TABLE.items()}


def from_onnx(element: str) -> str | None:
    """The V2 name of an ONNX element type ("FLOAT", "float" or "tensor(float)"), or None when V2 has none."""
    text = element.lower()
    return ORT_TO_V2.get(text if text.startswith("tensor(") else f"tensor({text})")
