"""Smaller files for an exported ONNX model, each accepted only when it keeps the fp32 model's accuracy.

Three ways, tried in the order a recipe lists them; the first one the gate accepts is served:

- `int8`: ONNX Runtime's `quantize_dynamic` stores the MatMul/Gemm weights as int8 and quantizes the
  activations on the fly, per batch. About four times smaller, and faster on CPUs with int8 dot products.
- `int8-weights`: the large weights stored as int8 with one scale per output channel (per row for an
  embedding table), written back to fp32 by a Cast and a Mul that ONNX Runtime folds into constants when the
  session loads. About four times smaller too, but the arithmetic stays fp32: activations are not quantized,
  so it loses less than `int8`, and it runs at fp32's speed, not faster.
- `fp16-weights`: the large weights stored as float16 behind a Cast folded the same way: half the size, a
  weight error of at most 2^-11 of its magnitude, fp32 arithmetic and speed.

Each changes the numbers, so the 1e-4 parity of the fp32 export cannot hold: the gate is instead the
validation accuracy, compared with the fp32 file's on the same rows through the same runtime.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# The most accuracy (as a fraction: 0.003 = 0.3 points) a smaller file may lose on the validation split.
INT8_TOLERANCE = 0.003
COMPRESSIONS = ("int8", "int8-weights", "fp16-weights")
# Weights with fewer elements stay fp32: biases and norms are a rounding error of the file's size.
STORED_MIN_ELEMENTS = 4096

Feeds = dict[str, np.ndarray]


@dataclass
class QuantizationReport:
    """One smaller file tried: both files, both validation accuracies, and the decision (a card section)."""

    kind: str  # one of COMPRESSIONS
    method: str
    accepted: bool
    reason: str
    validation_accuracy_fp32: float
    validation_accuracy: float  # the smaller file's
    bytes_fp32: int
    bytes: int  # the smaller file's
    tolerance: float
    served: str  # what the version's model.onnx holds in the end: "fp32" or one of COMPRESSIONS

    def to_dict(self) -> dict[str, Any]:
        """Plain values for card.json; the smaller file's keys end with its kind, as in `bytes_int8`."""
        suffix = self.kind.replace("-", "_")
        return {
            "method": self.method,
            "accepted": self.accepted,
            "reason": self.reason,
            "validation_accuracy_fp32": self.validation_accuracy_fp32,
            f"validation_accuracy_{suffix}": self.validation_accuracy,
            "bytes_fp32": self.bytes_fp32,
            f"bytes_{suffix}": self.bytes,
            "tolerance": self.tolerance,
            "served": self.served,
        }


def parse_quantize(spec: str) -> tuple[str, ...]:
    """`"none"` -> (); `"int8,fp16-weights"` -> the kinds to try, in order (ValueError for an unknown one)."""
    kinds = tuple(k.strip() for k in spec.split(",") if k.strip())
    if kinds == ("none",):
        return ()
    unknown = [k for k in kinds if k not in COMPRESSIONS]
    if unknown or not kinds or len(set(kinds)) != len(kinds):
        known = ", ".join(COMPRESSIONS)
        raise ValueError(f"quantize must be 'none' or a list of {known} without repeats, got {spec!r}")
    return kinds


def quantize_int8(source: Path, target: Path) -> Path:
    """Write `source` with int8 (QInt8) weights to `target` (ONNX Runtime dynamic quantization)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    return target


def _channel_axis(graph: Any, name: str) -> int | None:
    """The axis holding one output channel per index of initializer `name`, or None to leave it fp32.

    Only weights that every consumer reads as a MatMul's right side ([in, out]: axis 1), a Gemm's B (axis 1,
    or 0 with transB) or a Gather's table ([tokens, width]: axis 0) are stored smaller.
    """
    axes = set()
    for node in graph.node:
        for position, value in enumerate(node.input):
            if value != name:
                continue
            if node.op_type == "MatMul" and position == 1:
                axes.add(1)
            elif node.op_type == "Gemm" and position == 1:
                trans = next((a.i for a in node.attribute if a.name == "transB"), 0)
                axes.add(0 if trans else 1)
            elif node.op_type == "Gather" and position == 0:
                axes.add(0)
            else:
                return None
    return axes.pop() if len(axes) == 1 else None


def store_weights(source: Path, target: Path, kind: str, min_elements: int | None = None) -> Path:
    """Write `source` to `target` with its large weights stored as `kind` ("int8-weights" or "fp16-weights").

    Large: 2-D, with at least `min_elements` (default `STORED_MIN_ELEMENTS`) elements.

    Each stored weight is turned back into the fp32 tensor of the same name by nodes at the top of the graph
    (Cast, and for int8 a Mul by the per-channel scales). Their inputs are all constants, so ONNX Runtime's
    constant folding replaces them with fp32 initializers when the session loads: the model then computes
    exactly as an fp32 file holding the rounded weights would, at the same speed.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if kind not in ("int8-weights", "fp16-weights"):
        raise ValueError(f"store_weights stores int8-weights or fp16-weights, not {kind!r}")
    least = STORED_MIN_ELEMENTS if min_elements is None else min_elements
    model = onnx.load(str(source))
    graph = model.graph
    inputs = {value.name for value in graph.input}
    kept, restore = [], []
    for init in graph.initializer:
        axis = None
        large = len(init.dims) == 2 and int(np.prod(init.dims)) >= least
        if init.data_type == TensorProto.FLOAT and init.name not in inputs and large:
            axis = _channel_axis(graph, init.name)
        if axis is None:
            kept.append(init)
            continue
        w = numpy_helper.to_array(init)
        if kind == "fp16-weights":
            if not np.isfinite(w).all() or np.abs(w).max() > np.finfo(np.float16).max:
                kept.append(init)
                continue
            stored = numpy_helper.from_array(w.astype(np.float16), f"{init.name}__fp16")
            kept.append(stored)
            restore.append(helper.make_node("Cast", [stored.name], [init.name], to=TensorProto.FLOAT))
            continue
        # Symmetric int8, one scale per output channel: w ~ q * scale with q in [-127, 127].
        peak = np.abs(w).max(axis=1 - axis, keepdims=True)
        scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
        q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
        stored = numpy_helper.from_array(q, f"{init.name}__int8")
        scales = numpy_helper.from_array(scale, f"{init.name}__scale")
        kept += [stored, scales]
        restore += [
            helper.make_node("Cast", [stored.name], [f"{init.name}__int8_as_fp32"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [f"{init.name}__int8_as_fp32", scales.name], [init.name]),
        ]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(restore + nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(target))
    return target


def compress(source: Path, target: Path, kind: str) -> Path:
    """Write the `kind` (one of COMPRESSIONS) version of `source` to `target`."""
    if kind == "int8":
        return quantize_int8(source, target)
    return store_weights(source, target, kind)


METHODS = {
    "int8": "onnxruntime quantize_dynamic, QInt8 weights",
    "int8-weights": "int8 weights, one symmetric scale per output channel, restored to fp32 at load (fp32 arithmetic)",
    "fp16-weights": "float16 weights, restored to fp32 at load (fp32 arithmetic)",
}


def int8_gate(
    fp32_accuracy: float, int8_accuracy: float, tolerance: float = INT8_TOLERANCE, kind: str = "int8"
) -> tuple[bool, str]:
    """Accept the smaller file when it loses at most `tolerance` validation accuracy; say why either way."""
    drop = fp32_accuracy - int8_accuracy
    # A hair of slack for float rounding: 0.9 - 0.897 is not exactly 0.003 in binary.
    if drop <= tolerance + 1e-12:
        return True, (
            f"{kind} validation accuracy {int8_accuracy:.4f} is within {tolerance * 100:.1f} points "
            f"of fp32's {fp32_accuracy:.4f} (change {-drop * 100:+.2f} points)"
        )
    return False, (
        f"{kind} validation accuracy {int8_accuracy:.4f} is {drop * 100:.2f} points below fp32's "
        f"{fp32_accuracy:.4f}, more than the {tolerance * 100:.1f} allowed"
    )


def onnx_logits(path: Path, batches: Iterable[Feeds], output: str = "logits") -> np.ndarray:
    """One output of an ONNX file (ONNX Runtime, CPU provider) over batches of feeds, concatenated."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run([output], feeds)[0] for feeds in batches])


def onnx_accuracy(path: Path, batches: Sequence[Feeds], y: np.ndarray) -> float:
    """Share of rows whose highest logit (ONNX Runtime) is the label."""
    return float((onnx_logits(path, batches).argmax(1) == np.asarray(y)).mean())


def quantize_checked(
    fp32: Path,
    smaller: Path,
    batches: Sequence[Feeds],
    y: np.ndarray,
    tolerance: float = INT8_TOLERANCE,
    kind: str = "int8",
    fp32_accuracy: float | None = None,
) -> QuantizationReport:
    """Write the `kind` file of `fp32` to `smaller` and judge it on validation rows (`served` as if it decides).

    `fp32_accuracy` is the fp32 file's accuracy on the same rows when the caller has it already.
    """
    compress(fp32, smaller, kind)
    acc_fp32 = onnx_accuracy(fp32, batches, y) if fp32_accuracy is None else fp32_accuracy
    acc = onnx_accuracy(smaller, batches, y)
    accepted, reason = int8_gate(acc_fp32, acc, tolerance, kind)
    return QuantizationReport(
        kind=kind,
        method=METHODS[kind],
        accepted=accepted,
        reason=reason,
        validation_accuracy_fp32=acc_fp32,
        validation_accuracy=acc,
        bytes_fp32=fp32.stat().st_size,
        bytes=smaller.stat().st_size,
        tolerance=tolerance,
        served=kind if accepted else "fp32",
    )


def serve_smallest(
    fp32: Path, kinds: Sequence[str], batches: Sequence[Feeds], y: np.ndarray, tolerance: float = INT8_TOLERANCE
) -> list[QuantizationReport]:
    """Try each kind in order on the verified `fp32` file; the first accepted replaces it in place.

    Returns the reports of the kinds tried (stopping at the accepted one), each with `served` set to what
    the file holds in the end. With none accepted, `fp32` is left as it was.
    """
    reports: list[QuantizationReport] = []
    if not kinds:
        return reports
    baseline = onnx_accuracy(fp32, batches, y)  # once, not once per kind tried
    with tempfile.TemporaryDirectory(dir=fp32.parent) as tmp:
        for kind in kinds:
            smaller = Path(tmp) / f"model.{kind}.onnx"
            reports.append(quantize_checked(fp32, smaller, batches, y, tolerance, kind=kind, fp32_accuracy=baseline))
            if reports[-1].accepted:
                os.chmod(smaller, 0o644)
                os.replace(smaller, fp32)
                break
    for report in reports:
        report.served = reports[-1].served
    return reports
