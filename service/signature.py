"""A model's signature: check raw client tensors against the `TensorSpec`s of its config before they queue.

The task endpoints build their tensors themselves; the V2 protocol hands over whatever a client
sends. Anything that would fail (or, worse, fail a whole shared batch) inside ONNX Runtime is refused
here with 400 and a message naming the tensor: unknown or missing names, a datatype other than the
declared one, the wrong rank, a fixed dimension with another size, zero rows, row counts that
disagree. What only a task knows (a text model's max length and vocabulary) its codec checks next
(`Codec.check`, called by the data plane).
"""

from __future__ import annotations

import numpy as np

from modelrepo.config import ModelConfig
from modelrepo.datatypes import NUMPY_TO_V2, V2_TO_NUMPY
from service.errors import BadRequest
from service.runtime import Tensors


def check_inputs(config: ModelConfig, inputs: Tensors, label: str) -> Tensors:
    """Return `inputs` in the config's order if they match its signature, else raise BadRequest."""
    declared = [spec.name for spec in config.inputs]
    if len(inputs) != len(declared) or any(name not in inputs for name in declared):
        unknown = sorted(set(inputs) - set(declared))
        if unknown:
            raise BadRequest(f"{label} has no input {unknown[0]!r}; its inputs are {declared}")
        missing = [name for name in declared if name not in inputs]
        raise BadRequest(f"{label} needs input {missing[0]!r}; its inputs are {declared}")
    rows: set[int] = set()
    for spec in config.inputs:
        array = inputs[spec.name]
        if array.dtype != V2_TO_NUMPY[spec.datatype]:
            got = "BYTES" if array.dtype.kind in "OSU" else _v2_name(array.dtype)
            raise BadRequest(f"{_where(spec.name, label)} is {spec.datatype}, got {got}")
        if array.ndim != len(spec.dims):
            raise BadRequest(
                f"{_where(spec.name, label)} has shape {_shape(spec.dims)}, got {list(array.shape)} (rank {array.ndim})"
            )
        for axis, (want, got) in enumerate(zip(spec.dims, array.shape)):
            if want >= 0 and want != got:
                raise BadRequest(
                    f"{_where(spec.name, label)} has shape {_shape(spec.dims)}, got {list(array.shape)} (axis {axis})"
                )
            if got == 0 and config.max_batch_size > 0:  # an empty request alone is the model's business
                raise BadRequest(f"{_where(spec.name, label)} has an empty axis {axis} in shape {list(array.shape)}")
        rows.add(array.shape[0] if array.ndim else 0)
    if len(rows) > 1 and config.max_batch_size > 0:  # only a batching model's first axis counts rows
        raise BadRequest(f"the inputs of {label} disagree on their number of rows: {sorted(rows)}")
    return {name: inputs[name] for name in declared}


def _where(name: str, label: str) -> str:
    # Built only for an error message: the check runs on every V2 request.
    return f"input '{name}' of {label}"


def check_outputs(config: ModelConfig, names: list[str], label: str) -> None:
    """Refuse (400) an output name the config does not declare."""
    declared = [spec.name for spec in config.outputs]
    unknown = [name for name in names if name not in declared]
    if unknown:
        raise BadRequest(f"{label} has no output {unknown[0]!r}; its outputs are {declared}")


def _shape(dims: list[int]) -> str:
    return "[" + ", ".join("-1" if d < 0 else str(d) for d in dims) + "]"


def _v2_name(dtype: np.dtype) -> str:
    return NUMPY_TO_V2.get(dtype, str(dtype))
