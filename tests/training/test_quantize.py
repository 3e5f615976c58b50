"""Smaller files: the 0.3-point gate, real quantize_dynamic and stored-weight runs on a tiny BERT export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from tests.support.tiny_bert import CLS_ID, PAD_ID, tiny_bert
from training import quantize
from training.export import export_verified
from training.models import build_model
from training.quantize import INT8_TOLERANCE, int8_gate, onnx_logits, parse_quantize, quantize_checked, store_weights


def _tiny_bert_export(tmp_path: Path) -> tuple[torch.nn.Module, Path]:
    """A seeded tiny BERT classifier and its verified fp32 export, `tmp_path / "model.onnx"`."""
    torch.manual_seed(0)
    model = build_model(
        "pretrained", encoder=str(tiny_bert(tmp_path / "bert")), max_length=32, cls_id=CLS_ID, pad_id=PAD_ID
    ).eval()
    cases = [tuple(t.numpy() for t in model.example_inputs(b, n)) for b, n in ((1, 4), (8, 24))]
    fp32 = tmp_path / "model.onnx"
    export_verified(model, fp32, cases)
    return model, fp32


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
    assert ("within 0.3 points" in reason) if accepted else ("more than the 0.3 allowed" in reason)


def test_quantize_dynamic_on_a_tiny_bert_stores_int8_weights_and_is_judged(tmp_path: Path) -> None:
    model, fp32 = _tiny_bert_export(tmp_path)
    ids, mask = model.example_inputs(64, 20)
    feeds = [{"input_ids": ids.numpy(), "attention_mask": mask.numpy()}]
    with torch.no_grad():
        y = model(ids, mask).argmax(1).numpy()  # labels the fp32 model gets all right
    report = quantize_checked(fp32, tmp_path / "model.int8.onnx", feeds, y)
    graph = onnx.load(str(tmp_path / "model.int8.onnx")).graph
    assert any(w.data_type == onnx.TensorProto.INT8 for w in graph.initializer)
    assert any(node.op_type == "DynamicQuantizeLinear" for node in graph.node)
    assert report.validation_accuracy_fp32 == 1.0
    assert report.bytes < report.bytes_fp32 == fp32.stat().st_size
    assert report.accepted == (report.validation_accuracy >= 1.0 - INT8_TOLERANCE)
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
    assert report.validation_accuracy == int8_right
    assert (report.accepted, report.served) == (False, "fp32")


# ------------------------------------------------------------------------------------- stored weights
def _matmul_and_gather(path: Path, weight: np.ndarray, table: np.ndarray) -> Path:
    """y = x @ weight, and rows = table[ids]: one weight of each kind `store_weights` shrinks."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "weight"], ["y"]),
            helper.make_node("Gather", ["table", "ids"], ["rows"], axis=0),
        ],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, weight.shape[0]]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, [None]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, weight.shape[1]]),
            helper.make_tensor_value_info("rows", TensorProto.FLOAT, [None, table.shape[1]]),
        ],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(table, "table")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), str(path))
    return path


def _restored(path: Path, weight: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The weight and table as the file's session computes with them (identity rows in, every id)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    eye = np.eye(weight.shape[0], dtype=np.float32)
    y, rows = session.run(["y", "rows"], {"x": eye, "ids": np.arange(len(table), dtype=np.int64)})
    return y, rows


def test_int8_weights_keep_one_scale_per_output_channel(tmp_path: Path) -> None:
    # Columns (MatMul) and rows (Gather) four orders of magnitude apart: one scale for the whole tensor would
    # round the small ones to zero; one per channel keeps each within half a step of its own peak / 127.
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((8, 4)) * np.array([1000.0, 1.0, 0.1, 0.01])).astype(np.float32)
    table = (rng.standard_normal((5, 6)) * np.array([[100.0], [1.0], [0.01], [1.0], [3.0]])).astype(np.float32)
    source = _matmul_and_gather(tmp_path / "fp32.onnx", weight, table)
    target = store_weights(source, tmp_path / "int8w.onnx", "int8-weights", min_elements=1)
    stored = {i.name: i.data_type for i in onnx.load(str(target)).graph.initializer}
    assert stored["weight__int8"] == stored["table__int8"] == onnx.TensorProto.INT8
    assert "weight" not in stored and "table" not in stored
    y, rows = _restored(target, weight, table)
    column_step = np.abs(weight).max(axis=0) / 127
    row_step = np.abs(table).max(axis=1, keepdims=True) / 127
    assert (np.abs(y - weight) <= column_step / 2 * 1.001).all()
    assert (np.abs(rows - table) <= row_step / 2 * 1.001).all()
    assert np.count_nonzero(y[:, 3]) == 8 and np.count_nonzero(rows[2]) == 6  # the small channels survive
    assert np.abs(y - weight).max() > 0  # and it is a rounding, not a copy


def test_fp16_weights_round_each_weight_to_half_precision(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    weight, table = rng.standard_normal((8, 4)).astype(np.float32), rng.standard_normal((5, 6)).astype(np.float32)
    source = _matmul_and_gather(tmp_path / "fp32.onnx", weight, table)
    target = store_weights(source, tmp_path / "fp16w.onnx", "fp16-weights", min_elements=1)
    stored = {i.name: i.data_type for i in onnx.load(str(target)).graph.initializer}
    assert stored == {"weight__fp16": onnx.TensorProto.FLOAT16, "table__fp16": onnx.TensorProto.FLOAT16}
    y, rows = _restored(target, weight, table)
    assert np.array_equal(y, weight.astype(np.float16).astype(np.float32))
    assert np.array_equal(rows, table.astype(np.float16).astype(np.float32))


def test_small_weights_and_other_consumers_stay_fp32(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    weight, table = rng.standard_normal((8, 4)).astype(np.float32), rng.standard_normal((5, 6)).astype(np.float32)
    source = _matmul_and_gather(tmp_path / "fp32.onnx", weight, table)
    # 32 and 30 elements, under a floor of 31: only the MatMul weight is stored small.
    target = store_weights(source, tmp_path / "w.onnx", "int8-weights", min_elements=31)
    names = {i.name for i in onnx.load(str(target)).graph.initializer}
    assert names == {"weight__int8", "weight__scale", "table"}
    y, rows = _restored(target, weight, table)
    assert np.array_equal(rows, table) and not np.array_equal(y, weight)
    with pytest.raises(ValueError, match="int8-weights or fp16-weights"):
        store_weights(source, tmp_path / "x.onnx", "int8")


@pytest.mark.parametrize("kind", ["int8-weights", "fp16-weights"])
def test_stored_weights_fold_into_fp32_constants_when_the_session_loads(tmp_path: Path, kind: str) -> None:
    # The claim behind "fp32 speed": after ONNX Runtime's graph optimisations no int8 or fp16 weight and no
    # restoring Cast/Mul is left, so each run computes with plain fp32 initializers.
    import onnxruntime as ort

    model, fp32 = _tiny_bert_export(tmp_path)
    target = store_weights(fp32, tmp_path / "small.onnx", kind, min_elements=1)
    written = onnx.load(str(target)).graph
    small = onnx.TensorProto.INT8 if kind == "int8-weights" else onnx.TensorProto.FLOAT16
    assert sum(i.data_type == small for i in written.initializer) >= 12  # every matrix of the tiny encoder
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(target), options, providers=["CPUExecutionProvider"])
    optimised = onnx.load(str(tmp_path / "optimised.onnx")).graph
    assert not any(i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.FLOAT16) for i in optimised.initializer)
    assert not any(any(v.endswith(("__int8", "__fp16", "__scale")) for v in n.input) for n in optimised.node)
    ids, mask = model.example_inputs(16, 20)
    feeds = [{"input_ids": ids.numpy(), "attention_mask": mask.numpy()}]
    diff = np.abs(onnx_logits(fp32, feeds) - onnx_logits(target, feeds)).max()
    assert 0 < diff < (0.05 if kind == "int8-weights" else 0.005)


@pytest.mark.parametrize(
    ("spec", "kinds"),
    [
        ("none", ()),
        ("int8", ("int8",)),
        ("int8,int8-weights, fp16-weights", ("int8", "int8-weights", "fp16-weights")),
    ],
)
def test_quantize_lists_name_the_kinds_in_order(spec: str, kinds: tuple[str, ...]) -> None:
    assert parse_quantize(spec) == kinds


@pytest.mark.parametrize("spec", ["", "int4", "int8,int8", "none,int8", "fp16"])
def test_quantize_lists_refuse_unknown_or_repeated_kinds(spec: str) -> None:
    with pytest.raises(ValueError, match="quantize must be"):
        parse_quantize(spec)


def test_the_report_names_its_keys_after_its_kind() -> None:
    report = quantize.QuantizationReport(
        kind="int8-weights",
        method=quantize.METHODS["int8-weights"],
        accepted=True,
        reason="r",
        validation_accuracy_fp32=0.9,
        validation_accuracy=0.9,
        bytes_fp32=100,
        bytes=26,
        tolerance=INT8_TOLERANCE,
        served="int8-weights",
    )
    d = report.to_dict()
    assert (d["validation_accuracy_int8_weights"], d["bytes_int8_weights"], d["bytes_fp32"]) == (0.9, 26, 100)
    assert "validation_accuracy" not in d and "kind" not in d


def test_the_first_smaller_file_that_passes_is_served_and_the_refused_ones_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.tiny_models import VOCAB, text_model

    # "int8" writes another seed's weights (it must be refused); the others write the same model, marked.
    def stand_in(source: Path, target: Path, kind: str) -> Path:
        if kind == "int8":
            text_model(target, seed=7)
            return target
        model = onnx.load(str(source))
        model.doc_string = kind
        onnx.save(model, str(target))
        return target

    def other_seed(source: Path, target: Path, kind: str) -> Path:
        text_model(target, seed=7)
        return target

    monkeypatch.setattr(quantize, "compress", stand_in)
    fp32 = tmp_path / "model.onnx"
    text_model(fp32, seed=1)
    ids = np.array([[2, token, 0] for token in range(3, len(VOCAB))], dtype=np.int64)
    feeds = [{"input_ids": ids, "attention_mask": np.tile(np.array([1, 1, 0], dtype=np.int64), (len(ids), 1))}]
    y = onnx_logits(fp32, feeds).argmax(1)
    reports = quantize.serve_smallest(fp32, ("int8", "fp16-weights", "int8-weights"), feeds, y)
    assert [(r.kind, r.accepted) for r in reports] == [("int8", False), ("fp16-weights", True)]  # stops there
    assert {r.served for r in reports} == {"fp16-weights"}
    assert onnx.load(str(fp32)).doc_string == "fp16-weights"  # the accepted file took its place
    assert list(tmp_path.iterdir()) == [fp32]  # and nothing is left over

    # None passes: the file stays as it was, and every report says so.
    original = fp32.read_bytes()
    monkeypatch.setattr(quantize, "compress", other_seed)
    reports = quantize.serve_smallest(fp32, ("int8", "int8-weights"), feeds, y)
    assert [(r.kind, r.accepted, r.served) for r in reports] == [
        ("int8", False, "fp32"),
        ("int8-weights", False, "fp32"),
    ]
    assert fp32.read_bytes() == original
