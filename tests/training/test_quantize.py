"""int8 dynamic quantization: the 0.3-point gate, and a real quantize_dynamic run on a tiny BERT export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from tests.support.tiny_bert import CLS_ID, PAD_ID, tiny_bert
from training.export import export_verified
from training.models import build_model
from training.quantize import INT8_TOLERANCE, int8_gate, onnx_logits, quantize_checked


@pytest.mark.parametrize(
    ("fp32", "int8", "accepted"),
    [
        (0.900, 0.900, True),
        (0.900, 0.910, True),  # better is fine
        (0.900, 0.897, True),  # exactly 0.3 points lower
        (0.900, 0.8969, False),  # just beyond
        (0.990, 0.980, False),
    ],
)
def test_gate_accepts_within_three_tenths_of_a_point(fp32: float, int8: float, accepted: bool) -> None:
    assert INT8_TOLERANCE == 0.003
    ok, reason = int8_gate(fp32, int8)
    assert ok is accepted
    assert ("within 0.3 points" in reason) if accepted else ("fp32 file is served" in reason)


def test_quantize_dynamic_on_a_tiny_bert_stores_int8_weights_and_is_judged(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(
        "pretrained", encoder=str(tiny_bert(tmp_path / "bert")), max_length=32, cls_id=CLS_ID, pad_id=PAD_ID
    ).eval()
    cases = [tuple(t.numpy() for t in model.example_inputs(b, n)) for b, n in ((1, 4), (8, 24))]
    fp32 = tmp_path / "model.onnx"
    export_verified(model, fp32, cases)
    ids, mask = model.example_inputs(64, 20)
    feeds = [{"input_ids": ids.numpy(), "attention_mask": mask.numpy()}]
    with torch.no_grad():
        y = model(ids, mask).argmax(1).numpy()  # labels the fp32 model gets all right
    report = quantize_checked(fp32, tmp_path / "model.int8.onnx", feeds, y)
    graph = onnx.load(str(tmp_path / "model.int8.onnx")).graph
    assert any(w.data_type == onnx.TensorProto.INT8 for w in graph.initializer)
    assert any(node.op_type == "DynamicQuantizeLinear" for node in graph.node)
    assert report.validation_accuracy_fp32 == 1.0
    assert report.bytes_int8 < report.bytes_fp32 == fp32.stat().st_size
    assert report.accepted == (report.validation_accuracy_int8 >= 1.0 - INT8_TOLERANCE)
    assert report.served == ("int8" if report.accepted else "fp32")
    # Its logits are close to fp32's but not identical: the arithmetic did change.
    a, b = onnx_logits(fp32, feeds), onnx_logits(tmp_path / "model.int8.onnx", feeds)
    assert 0 < np.abs(a - b).max() < 0.5


def test_each_file_is_judged_on_its_own_predictions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in for the quantized file that predicts otherwise (another seed's weights) must lose the gate.
    import onnxruntime as ort

    from tests.support.tiny_models import VOCAB, text_model
    from training import quantize

    def other_weights(source: Path, target: Path) -> Path:
        text_model(target, seed=7)
        return target

    monkeypatch.setattr(quantize, "quantize_int8", other_weights)
    text_model(tmp_path / "model.onnx", seed=1)
    ids = np.array([[2, token, 0] for token in range(3, len(VOCAB))], dtype=np.int64)
    feeds = [{"input_ids": ids, "attention_mask": np.tile(np.array([1, 1, 0], dtype=np.int64), (len(ids), 1))}]

    def predictions(path: Path) -> np.ndarray:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(["logits"], feeds[0])[0].argmax(1)

    y = predictions(tmp_path / "model.onnx")  # labels the fp32 file gets all right
    report = quantize_checked(tmp_path / "model.onnx", tmp_path / "model.int8.onnx", feeds, y)
    int8_right = float((predictions(tmp_path / "model.int8.onnx") == y).mean())
    assert int8_right < 1.0 - INT8_TOLERANCE  # the two files do disagree on some rows
    assert report.validation_accuracy_fp32 == 1.0
    assert report.validation_accuracy_int8 == int8_right
    assert (report.accepted, report.served) == (False, "fp32")
