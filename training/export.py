"""ONNX export that proves itself: dynamo export, shape metadata fix, and ONNX Runtime parity with PyTorch.

`export_verified` is the one entry point for writing a servable `model.onnx`: it exports next to the
target, runs ONNX Runtime (CPU provider) and eager PyTorch on the caller's cases, and only moves the file
into place when every case matches.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from modelrepo.config import TensorSpec
from modelrepo.datatypes import from_onnx
from training.models.protocol import ExportableModel

# Opset 23 emits the ONNX Attention op, which ONNX Runtime 1.31 on CPU rejects with a key-padding mask.
DEFAULT_OPSET = 20
DEFAULT_ATOL = 1e-4

Case = Sequence[np.ndarray]


class _TorchvisionAbsent(logging.Filter):
    """Drops the exporter's "torchvision is not installed. Skipping torchvision::<op>" warnings.

    torch's ONNX exporter builds its op registry on every export and logs one such line per
    torchvision op when torchvision is absent. Axon's models use no torchvision op, and torchvision is
    not a dependency, so the lines say nothing; every other message of that logger still passes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("torchvision is not installed")


_REGISTRY_LOGGER = "torch.onnx._internal.exporter._registration"
if not any(isinstance(f, _TorchvisionAbsent) for f in logging.getLogger(_REGISTRY_LOGGER).filters):
    logging.getLogger(_REGISTRY_LOGGER).addFilter(_TorchvisionAbsent())


class ExportError(RuntimeError):
    """An export that failed its parity check; nothing was written."""

    def __init__(self, message: str, report: ParityReport | None = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class ParityCase:
    """ONNX Runtime versus eager PyTorch on one input batch."""

    batch: int
    length: int | None  # sequence length for text models, None where the model has no dynamic length
    max_abs_diff: float  # over every output; inf when shapes differ or a value is not finite
    output_diffs: dict[str, float]
    argmax_equal: bool | None  # classifiers only: identical predicted class on every row


@dataclass
class ParityReport:
    """Parity figures of one export, as recorded in the model card."""

    atol: float
    cases: list[ParityCase] = field(default_factory=list)

    @property
    def max_abs_diff(self) -> float:
        """The largest difference over every case and output."""
        return max((c.max_abs_diff for c in self.cases), default=0.0)

    @property
    def passed(self) -> bool:
        """True when there are cases and each is within `atol` with identical argmax."""
        return bool(self.cases) and all(c.max_abs_diff <= self.atol and c.argmax_equal is not False for c in self.cases)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (non-finite differences written as None)."""

        def finite(x: float) -> float | None:
            return x if math.isfinite(x) else None

        cases = []
        for c in self.cases:
            row = asdict(c)
            row["max_abs_diff"] = finite(c.max_abs_diff)
            row["output_diffs"] = {k: finite(v) for k, v in c.output_diffs.items()}
            cases.append(row)
        return {
            "runtime": f"onnxruntime {ort.__version__} CPUExecutionProvider",
            "atol": self.atol,
            "max_abs_diff": finite(self.max_abs_diff),
            "passed": self.passed,
            "cases": cases,
        }


def _dynamic_shapes(model: ExportableModel) -> tuple[dict[int, torch.export.Dim], ...]:
    """`torch.export` Dims for each input, one shared Dim object per axis name."""
    config = model.config
    dims: dict[str, torch.export.Dim] = {}
    shapes = []
    for name in model.input_names:
        axes = {}
        for axis, axis_name in model.dynamic_dims().get(name, {}).items():
            if axis_name not in dims:
                # A learned position table bounds the sequence axis; the batch axis is unbounded.
                upper = getattr(config, "max_length", None) if axis_name == "seq" else None
                dims[axis_name] = (
                    torch.export.Dim(axis_name, min=1, max=upper) if upper else (torch.export.Dim(axis_name, min=1))
                )
            axes[axis] = dims[axis_name]
        shapes.append(axes)
    return tuple(shapes)


def _set_shape(value: onnx.ValueInfoProto, shape: Sequence[int], dynamic: dict[int, str]) -> None:
    dims = value.type.tensor_type.shape.dim
    del dims[:]
    for axis, size in enumerate(shape):
        dim = dims.add()
        if axis in dynamic:
            dim.dim_param = dynamic[axis]
        else:
            dim.dim_value = int(size)


def fix_shape_metadata(
    onnx_model: onnx.ModelProto, model: ExportableModel, inputs: Sequence[torch.Tensor], outputs: Sequence[torch.Tensor]
) -> None:
    """Declare every input/output dim as the model says: named if dynamic, its eager size otherwise.

    The dynamo exporter can write the example's size into an output's shape (seen on the LSTM
    autoencoder); ONNX Runtime then warns on every run and clients read a wrong contract. Intermediate
    `value_info` can carry the same stale sizes, and quantisation trips on it, so it is dropped.
    """
    dynamic = model.dynamic_dims()
    del onnx_model.graph.value_info[:]
    for value, tensor in zip(onnx_model.graph.input, inputs):
        _set_shape(value, tensor.shape, dynamic.get(value.name, {}))
    for value, tensor in zip(onnx_model.graph.output, outputs):
        _set_shape(value, tensor.shape, dynamic.get(value.name, {}))


def _as_tuple(outputs: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return outputs if isinstance(outputs, tuple) else (outputs,)


def export_onnx(
    model: ExportableModel,
    path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    example_batch: int = 2,
    example_length: int | None = None,
) -> None:
    """Export `model` in eval mode to one self-contained ONNX file with named tensors and dynamic axes."""
    if not isinstance(model, ExportableModel):
        raise TypeError(f"{type(model).__name__} lacks the ExportableModel interface (names, example inputs, dims)")
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{type(model).__name__} is not a torch.nn.Module, which the ONNX exporter traces")
    # Size-1 example dims get specialised to constants by torch.export: trace with at least 2.
    if example_batch < 2 or (example_length is not None and example_length < 2):
        raise ValueError("export examples need a batch (and length) of at least 2")
    was_training = model.training
    model.eval()
    try:
        inputs = model.example_inputs(example_batch, example_length)
        with torch.no_grad():
            outputs = _as_tuple(model(*inputs))
        with warnings.catch_warnings():
            # Known noise of torch 2.13's exporter on RNN modules (flat weights re-assigned while tracing,
            # a deprecated size check in its own generated code); parity below is the real test.
            warnings.filterwarnings("ignore", message=r"The tensor attributes .* were assigned during export")
            warnings.filterwarnings("ignore", message=r"_check_is_size will be removed", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
            # Inputs sharing an axis share its Dim; the exporter says so once per extra input.
            warnings.filterwarnings("ignore", message=r".*will not be used, since it shares the same shape")
            torch.onnx.export(
                model,
                inputs,
                str(path),
                input_names=list(model.input_names),
                output_names=list(model.output_names),
                dynamic_shapes=_dynamic_shapes(model),
                opset_version=opset,
                dynamo=True,
                external_data=False,  # one file: the repository ships model.onnx alone
                verbose=False,
            )
    finally:
        model.train(was_training)
    onnx_model = onnx.load(str(path))
    onnx.checker.check_model(onnx_model, full_check=True)
    fix_shape_metadata(onnx_model, model, inputs, outputs)
    onnx.checker.check_model(onnx_model, full_check=True)
    onnx.save(onnx_model, str(path))


def tensor_specs(onnx_path: str | Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The graph's inputs and outputs as `TensorSpec`s, -1 for every symbolic dimension."""
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}

    def spec(value: onnx.ValueInfoProto) -> TensorSpec:
        tensor_type = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim]
        datatype = from_onnx(onnx.TensorProto.DataType.Name(tensor_type.elem_type))
        if datatype is None:
            raise ExportError(f"tensor {value.name!r} has an ONNX element type the repository format cannot describe")
        return TensorSpec(name=value.name, datatype=datatype, dims=dims)

    inputs = [spec(v) for v in graph.input if v.name not in initializers]
    return inputs, [spec(v) for v in graph.output]


def _max_abs_diff(expected: np.ndarray, actual: np.ndarray) -> float:
    if expected.shape != actual.shape:
        return math.inf
    if expected.size == 0:
        return 0.0
    diff = float(np.max(np.abs(expected.astype(np.float64) - actual.astype(np.float64))))
    return diff if math.isfinite(diff) else math.inf  # NaN anywhere must fail, never compare as "small"


def check_parity(
    model: ExportableModel, onnx_path: str | Path, cases: Sequence[Case], atol: float = DEFAULT_ATOL
) -> ParityReport:
    """Run ONNX Runtime (CPU provider) and eager PyTorch on the same inputs and compare every output."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    seq_axis = {axis for axis, name in model.dynamic_dims().get(model.input_names[0], {}).items() if name == "seq"}
    report = ParityReport(atol=atol)
    was_training = model.training
    model.eval()
    try:
        for case in cases:
            arrays = [np.ascontiguousarray(a) for a in case]
            with torch.no_grad():
                expected = [t.numpy() for t in _as_tuple(model(*(torch.from_numpy(a) for a in arrays)))]
            actual = session.run(list(model.output_names), dict(zip(model.input_names, arrays)))
            diffs = {n: _max_abs_diff(e, a) for n, e, a in zip(model.output_names, expected, actual)}
            argmax_equal = None
            if model.output_names == ("logits",):
                argmax_equal = expected[0].shape == actual[0].shape and bool(
                    np.array_equal(expected[0].argmax(-1), actual[0].argmax(-1))
                )
            report.cases.append(
                ParityCase(
                    batch=int(arrays[0].shape[0]),
                    length=int(arrays[0].shape[1]) if 1 in seq_axis else None,
                    max_abs_diff=max(diffs.values()),
                    output_diffs=diffs,
                    argmax_equal=argmax_equal,
                )
            )
    finally:
        model.train(was_training)
    return report


def export_verified(
    model: ExportableModel,
    path: str | Path,
    cases: Sequence[Case],
    *,
    atol: float = DEFAULT_ATOL,
    **export_kwargs: Any,
) -> ParityReport:
    """Export to `path` only if ONNX Runtime matches eager PyTorch on every case; else raise `ExportError`."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; a new export goes into a new version folder")
    if not cases:
        raise ValueError("export_verified needs at least one parity case")
    # Same folder as the target, so the final move is an atomic rename on one file system.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".onnx.tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        export_onnx(model, tmp, **export_kwargs)
        report = check_parity(model, tmp, cases, atol=atol)
        if not report.passed:
            worst = max(report.cases, key=lambda c: c.max_abs_diff)
            raise ExportError(
                f"ONNX Runtime and PyTorch disagree: max |diff| {report.max_abs_diff:.3g} > atol {atol:g} "
                f"or argmax differs (worst case: batch {worst.batch}, length {worst.length}, "
                f"argmax equal {worst.argmax_equal}); {path} not written",
                report,
            )
        # mkstemp makes 0600 files; the service (another user in a container) must be able to read the model.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        return report
    finally:
        tmp.unlink(missing_ok=True)
