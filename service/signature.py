"""A model's signature: check raw client tensors against the `TensorSpec`s of its config before they queue.

The task endpoints build their tensors themselves; the V2 protocol hands over whatever a client
sends. Anything that would fail (or, worse, fail a whole shared batch) inside ONNX Runtime is refused
here with 400 and a message naming the tensor: unknown or missing names, a datatype other than the
declared one, the wrong rank, a fixed dimension with another size, zero rows, row counts that
disagree, and for text models sequences longer than the model's max length or token ids outside its
vocabulary (an out-of-range id makes the embedding lookup fail for every request in the batch).
"""

from __future__ import annotations

import numpy as np

from service.errors import BadRequest
from service.model_config import ModelConfig, TextPreprocessing
from service.runtime import Tensors
from service.v2.datatypes import V2_TO_NUMPY


def check_inputs(config: ModelConfig, inputs: Tensors, label: str, vocab_size: int | None = None) -> Tensors:
    """Return `inputs` in the config's order if they match its signature, else raise BadRequest."""
    declared = [spec.name for spec in config.inputs]
    unknown = sorted(set(inputs) - set(declared))
    if unknown:
        raise BadRequest(f"{label} has no input {unknown[0]!r}; its inputs are {declared}")
    missing = [name for name in declared if name not in inputs]
    if missing:
        raise BadRequest(f"{label} needs input {missing[0]!r}; its inputs are {declared}")
    rows: set[int] = set()
    for spec in config.inputs:
        array = inputs[spec.name]
        where = f"input '{spec.name}' of {label}"
        if array.dtype != V2_TO_NUMPY[spec.datatype]:
            got = "BYTES" if array.dtype.kind in "OSU" else _v2_name(array.dtype)
            raise BadRequest(f"{where} is {spec.datatype}, got {got}")
        if array.ndim != len(spec.dims):
            raise BadRequest(f"{where} has shape {_shape(spec.dims)}, got {list(array.shape)} (rank {array.ndim})")
        for axis, (want, got) in enumerate(zip(spec.dims, array.shape)):
            if want >= 0 and want != got:
                raise BadRequest(f"{where} has shape {_shape(spec.dims)}, got {list(array.shape)} (axis {axis})")
            if got == 0:
                raise BadRequest(f"{where} has an empty axis {axis} in shape {list(array.shape)}")
        rows.add(array.shape[0] if array.ndim else 0)
    if len(rows) > 1:
        raise BadRequest(f"the inputs of {label} disagree on their number of rows: {sorted(rows)}")
    if isinstance(config.preprocessing, TextPreprocessing):
        _check_text(config.preprocessing, inputs, label, vocab_size)
    return {name: inputs[name] for name in declared}


def check_outputs(config: ModelConfig, names: list[str], label: str) -> None:
    """Refuse (400) an output name the config does not declare."""
    declared = [spec.name for spec in config.outputs]
    unknown = [name for name in names if name not in declared]
    if unknown:
        raise BadRequest(f"{label} has no output {unknown[0]!r}; its outputs are {declared}")


def _check_text(spec: TextPreprocessing, inputs: Tensors, label: str, vocab_size: int | None) -> None:
    for name, array in inputs.items():
        if array.ndim == 2 and array.shape[1] > spec.max_length:
            raise BadRequest(
                f"input '{name}' of {label} has {array.shape[1]} tokens per row; the limit is {spec.max_length}"
            )
    ids = next((a for n, a in inputs.items() if n != "attention_mask"), None)
    if vocab_size is not None and ids is not None and ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise BadRequest(
            f"token ids of {label} must lie in [0, {vocab_size}), got values in [{ids.min()}, {ids.max()}]"
        )


def _shape(dims: list[int]) -> str:
    return "[" + ", ".join("-1" if d < 0 else str(d) for d in dims) + "]"


def _v2_name(dtype: np.dtype) -> str:
    for name, candidate in V2_TO_NUMPY.items():
        if candidate == dtype:
            return name
    return str(dtype)
