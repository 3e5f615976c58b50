"""Dynamic int8 quantization of an exported ONNX file, accepted only when it keeps the fp32 model's accuracy.

ONNX Runtime's `quantize_dynamic` stores the MatMul/Gemm weights as int8 (activations are quantized on the
fly, per batch), which shrinks a BERT-sized file about four times and speeds it up on CPUs with int8 dot
products. It changes the arithmetic, so the 1e-4 parity of the fp32 export cannot hold: the gate is instead
the validation accuracy, compared with the fp32 file's on the same rows through the same runtime.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

# The most accuracy (as a fraction: 0.003 = 0.3 points) an int8 file may lose on the validation split.
INT8_TOLERANCE = 0.003
QUANTIZE_CHOICES = ("none", "int8")

Feeds = dict[str, np.ndarray]


@dataclass
class QuantizationReport:
    """The card's `quantization` section: both files, both validation accuracies, and the decision."""

    method: str
    accepted: bool
    reason: str
    validation_accuracy_fp32: float
    validation_accuracy_int8: float
    bytes_fp32: int
    bytes_int8: int
    tolerance: float
    served: str  # "int8" or "fp32": what the version's model.onnx holds

    def to_dict(self) -> dict[str, Any]:
        """Plain values for card.json."""
        return asdict(self)


def quantize_int8(source: Path, target: Path) -> Path:
    """Write `source` with int8 (QInt8) weights to `target` (ONNX Runtime dynamic quantization)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    return target


def int8_gate(fp32_accuracy: float, int8_accuracy: float, tolerance: float = INT8_TOLERANCE) -> tuple[bool, str]:
    """Accept the int8 file when it loses at most `tolerance` validation accuracy; say why either way."""
    drop = fp32_accuracy - int8_accuracy
    # A hair of slack for float rounding: 0.9 - 0.897 is not exactly 0.003 in binary.
    if drop <= tolerance + 1e-12:
        return True, (
            f"int8 validation accuracy {int8_accuracy:.4f} is within {tolerance * 100:.1f} points "
            f"of fp32's {fp32_accuracy:.4f} (change {-drop * 100:+.2f} points)"
        )
    return False, (
        f"int8 validation accuracy {int8_accuracy:.4f} is {drop * 100:.2f} points below fp32's "
        f"{fp32_accuracy:.4f}, more than the {tolerance * 100:.1f} allowed: the fp32 file is served"
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
    fp32: Path, int8: Path, batches: Sequence[Feeds], y: np.ndarray, tolerance: float = INT8_TOLERANCE
) -> QuantizationReport:
    """Quantize `fp32` into `int8` and judge it on validation rows; the caller serves whichever was accepted."""
    quantize_int8(fp32, int8)
    acc_fp32, acc_int8 = onnx_accuracy(fp32, batches, y), onnx_accuracy(int8, batches, y)
    accepted, reason = int8_gate(acc_fp32, acc_int8, tolerance)
    return QuantizationReport(
        method="onnxruntime quantize_dynamic, QInt8 weights",
        accepted=accepted,
        reason=reason,
        validation_accuracy_fp32=acc_fp32,
        validation_accuracy_int8=acc_int8,
        bytes_fp32=fp32.stat().st_size,
        bytes_int8=int8.stat().st_size,
        tolerance=tolerance,
        served="int8" if accepted else "fp32",
    )
