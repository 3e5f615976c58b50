"""ModelInfer tensors: request inputs (raw_input_contents or typed contents) to numpy, outputs to raw bytes.

Raw contents use the binary tensor extension's byte layout, so they go through the same checked
decoder as REST's binary bodies (`decode_tensor`: declared shape x itemsize must equal the bytes).
Answers are always raw (`raw_output_contents`), as Triton's server does; tritonclient reads either.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from service.errors import ProtocolError
from service.grpc.proto import grpc_service_pb2 as pb
from service.v2.binary import decode_tensor, encode_tensor
from service.v2.datatypes import MAX_ELEMENTS, element_count, numpy_dtype, v2_datatype

# Which InferTensorContents field carries each datatype (FP16 and BF16 have none: raw only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def _typed(tensor: pb.ModelInferRequest.InferInputTensor, max_elements: int) -> np.ndarray:
    shape = [int(d) for d in tensor.shape]
    count = element_count(shape, max_elements)
    datatype = tensor.datatype
    dtype = numpy_dtype(datatype)
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise ProtocolError(f"input '{tensor.name}': {datatype} has no typed contents; send raw_input_contents")
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise ProtocolError(f"input '{tensor.name}': shape {shape} needs {count} values, got {len(values)}")
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    try:
        return np.array(values, dtype=dtype).reshape(shape)
    except OverflowError:
        raise ProtocolError(f"input '{tensor.name}': a value does not fit {datatype}") from None


def decode_inputs(request: pb.ModelInferRequest, max_elements: int = MAX_ELEMENTS) -> dict[str, np.ndarray]:
    """The request's input arrays by name; every shape and size is checked before an array is made."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise ProtocolError(
            f"raw_input_contents holds {len(raw)} tensors for {len(request.inputs)} inputs; "
            "send every input raw or none"
        )
    arrays: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        if tensor.name in arrays:
            raise ProtocolError(f"input '{tensor.name}' is given twice")
        if raw:
            if tensor.HasField("contents"):  # as Triton and KServe: one form per input, never two to choose from
                raise ProtocolError(
                    f"input '{tensor.name}': contents must not be set when the inputs come in raw_input_contents"
                )
            arrays[tensor.name] = decode_tensor(raw[i], tensor.datatype, [int(d) for d in tensor.shape], max_elements)
        else:
            arrays[tensor.name] = _typed(tensor, max_elements)
    return arrays


def encode_outputs(
    model: str, version: str, request_id: str, outputs: Mapping[str, np.ndarray]
) -> pb.ModelInferResponse:
    """The answer with every output as raw little-endian bytes (BYTES: length-prefixed elements)."""
    response = pb.ModelInferResponse(model_name=model, model_version=version, id=request_id)
    for name, array in outputs.items():
        array = np.asarray(array)
        response.outputs.add(name=name, datatype=v2_datatype(array.dtype), shape=list(array.shape))
        response.raw_output_contents.append(encode_tensor(array))
    return response
