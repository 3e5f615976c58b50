"""ONNX export of every family: ONNX Runtime parity, tensor names and shapes, refusal to write a mismatch."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from training.export import (
    ExportError,
    ParityReport,
    check_parity,
    export_onnx,
    export_verified,
    fix_shape_metadata,
    tensor_specs,
)
from training.models import DenseAutoencoder, DenseAutoencoderConfig, build_model

BATCHES = (1, 3, 17)
LENGTHS = (1, 5, 40)  # 40 is longer than the export example (example_length 16)
TEXT = {"vocab_size": 60, "num_classes": 3}

# name -> (family, tiny config, expected output shapes as ONNX Runtime declares them)
CASES = {
    "cnn-gray": ("cnn", {"widths": (4, 8), "hidden": 8}, [["batch", 10]]),
    "cnn-rgb": (
        "cnn",
        {"widths": (4, 8), "hidden": 8, "in_channels": 3, "num_classes": 4, "image_size": (20, 24)},
        [["batch", 4]],
    ),
    "bigru": ("rnn", {**TEXT, "embed_dim": 8, "hidden_size": 8}, [["batch", 3]]),
    "lstm-2-layers": (
        "rnn",
        {**TEXT, "embed_dim": 8, "hidden_size": 8, "cell": "lstm", "bidirectional": False, "num_layers": 2},
        [["batch", 3]],
    ),
    "transformer": (
        "transformer",
        {**TEXT, "d_model": 16, "n_heads": 2, "n_layers": 2, "ff_dim": 32, "max_length": 64},
        [["batch", 3]],
    ),
    "dense-ae": ("dense-ae", {"n_features": 7, "hidden": (6,), "latent": 3}, [["batch", 7], ["batch"]]),
    "lstm-ae": ("seq-ae", {"window": 12, "hidden": 6, "latent": 3}, [["batch", 12, 1], ["batch"]]),
    "conv-ae": ("seq-ae", {"window": 13, "kind": "conv", "hidden": 6, "latent": 3}, [["batch", 13, 1], ["batch"]]),
}


@dataclass
class Exported:
    name: str
    model: nn.Module
    path: Path
    report: ParityReport
    text: bool


def parity_cases(model: nn.Module, text: bool) -> list[tuple[np.ndarray, ...]]:
    lengths = LENGTHS if text else (None,)
    return [tuple(t.numpy() for t in model.example_inputs(b, n)) for b in BATCHES for n in lengths]


@pytest.fixture(scope="module", params=sorted(CASES))
def exported(request, tmp_path_factory) -> Exported:
    torch.manual_seed(0)
    family, config, _ = CASES[request.param]
    model = build_model(family, **config)
    # Export from training mode: the exporter must switch to eval itself (dropout, BatchNorm) and restore.
    model.train()
    text = family in ("rnn", "transformer")
    path = tmp_path_factory.mktemp(request.param) / "model.onnx"
    report = export_verified(model, path, parity_cases(model, text))
    assert model.training
    return Exported(request.param, model.eval(), path, report, text)


def test_exported_file_is_readable_by_the_serving_user(exported: Exported) -> None:
    # The service often runs as another user (a container's uid) than the training job.
    assert exported.path.stat().st_mode & 0o777 == 0o644


def test_onnx_runtime_matches_pytorch_at_every_batch_and_length(exported: Exported) -> None:
    report = exported.report
    assert report.passed
    assert report.max_abs_diff <= 1e-4
    assert sorted({c.batch for c in report.cases}) == list(BATCHES)
    if exported.text:
        assert sorted({c.length for c in report.cases}) == list(LENGTHS)
    classifier = exported.model.output_names == ("logits",)
    for case in report.cases:
        assert set(case.output_diffs) == set(exported.model.output_names)
        assert case.argmax_equal is (True if classifier else None)


def test_parity_holds_on_fresh_inputs_too(exported: Exported) -> None:
    """Inputs the export never saw (another seed, batch 64) agree as well."""
    torch.manual_seed(123)
    cases = [tuple(t.numpy() for t in exported.model.example_inputs(64, 23 if exported.text else None))]
    assert check_parity(exported.model, exported.path, cases).max_abs_diff <= 1e-4


def test_tensors_are_named_and_no_dim_carries_an_example_size(exported: Exported) -> None:
    session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    model = exported.model
    assert tuple(i.name for i in session.get_inputs()) == model.input_names
    assert tuple(o.name for o in session.get_outputs()) == model.output_names
    assert [o.shape for o in session.get_outputs()] == CASES[exported.name][2]
    if exported.text:
        assert [i.shape for i in session.get_inputs()] == [["batch", "seq"], ["batch", "seq"]]
    else:
        assert session.get_inputs()[0].shape[0] == "batch"
        assert all(isinstance(d, int) for d in session.get_inputs()[0].shape[1:])


def test_shape_fix_replaces_literal_example_sizes(exported: Exported, tmp_path: Path) -> None:
    """An output declared with the example's batch (as the exporter once wrote for an LSTM AE) is repaired."""
    onnx_model = onnx.load(str(exported.path))
    for value in [*onnx_model.graph.input, *onnx_model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = 2  # the export example's batch, baked in
    inputs = exported.model.example_inputs(2)
    with torch.no_grad():
        outputs = exported.model(*inputs)
    fix_shape_metadata(onnx_model, exported.model, inputs, outputs if isinstance(outputs, tuple) else (outputs,))
    onnx.save(onnx_model, str(tmp_path / "fixed.onnx"))
    session = ort.InferenceSession(str(tmp_path / "fixed.onnx"), providers=["CPUExecutionProvider"])
    assert [o.shape for o in session.get_outputs()] == CASES[exported.name][2]
    assert all(i.shape[0] == "batch" for i in session.get_inputs())


def test_file_is_one_checked_opset_20_model(exported: Exported) -> None:
    assert [p.name for p in exported.path.parent.iterdir()] == ["model.onnx"]  # no side file, no temp left
    model = onnx.load(str(exported.path), load_external_data=False)
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain: o.version for o in model.opset_import}[""] == 20
    assert not model.graph.value_info
    assert all(not init.external_data for init in model.graph.initializer)


def test_tensor_specs_mark_dynamic_dims_with_minus_one(exported: Exported) -> None:
    inputs, outputs = tensor_specs(exported.path)
    if exported.text:
        assert [(s.name, s.datatype, s.dims) for s in inputs] == [
            ("input_ids", "INT64", [-1, -1]),
            ("attention_mask", "INT64", [-1, -1]),
        ]
    else:
        (spec,) = inputs
        example = exported.model.example_inputs(2)[0]
        assert (spec.datatype, spec.dims) == ("FP32", [-1, *example.shape[1:]])
    for spec, name in zip(outputs, exported.model.output_names):
        assert spec.name == name and spec.datatype == "FP32" and spec.dims[0] == -1
        assert all(d > 0 for d in spec.dims[1:])


def test_report_is_json_for_the_model_card(exported: Exported) -> None:
    card = json.loads(json.dumps(exported.report.to_dict()))
    assert card["passed"] is True and card["atol"] == 1e-4
    assert len(card["cases"]) == len(exported.report.cases)
    assert {"batch", "length", "max_abs_diff", "argmax_equal"} <= set(card["cases"][0])
    # A card whose parity was never checked says so: no case is no proof.
    assert ParityReport(atol=1e-4).to_dict()["passed"] is False


class NoisyAutoencoder(DenseAutoencoder):
    """A denoising autoencoder whose input noise was left on at inference: eager and ONNX draw different noise."""

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return super().forward(features + 0.1 * torch.randn_like(features))


def test_export_verified_refuses_a_model_onnx_runtime_disagrees_with(tmp_path: Path) -> None:
    model = NoisyAutoencoder(DenseAutoencoderConfig(n_features=5, hidden=(4,), latent=2))
    cases = [tuple(t.numpy() for t in model.example_inputs(b)) for b in (1, 8)]
    with pytest.raises(ExportError, match=r"disagree: max \|diff\| .* > atol 0.0001") as error:
        export_verified(model, tmp_path / "model.onnx", cases)
    assert error.value.report is not None and not error.value.report.passed
    assert error.value.report.max_abs_diff > 1e-2
    assert list(tmp_path.iterdir()) == []  # nothing written, temporary file removed


def test_export_verified_never_overwrites_and_needs_cases(tmp_path: Path) -> None:
    model = build_model("dense-ae", n_features=4, hidden=(3,), latent=2)
    cases = [tuple(t.numpy() for t in model.example_inputs(3))]
    existing = tmp_path / "model.onnx"
    existing.write_bytes(b"version 1")
    with pytest.raises(FileExistsError):
        export_verified(model, existing, cases)
    assert existing.read_bytes() == b"version 1"
    with pytest.raises(ValueError, match="at least one parity case"):
        export_verified(model, tmp_path / "other.onnx", [])


def test_export_refuses_a_size_one_example(tmp_path: Path) -> None:
    model = build_model("dense-ae", n_features=4, hidden=(3,), latent=2)
    with pytest.raises(ValueError, match="at least 2"):
        export_onnx(model, tmp_path / "model.onnx", example_batch=1)


def test_export_logs_no_torchvision_notice(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # torch's exporter warns once per torchvision op on every export when torchvision is absent.
    model = DenseAutoencoder(DenseAutoencoderConfig(n_features=4, hidden=(3,), latent=2))
    with caplog.at_level(logging.DEBUG):
        export_onnx(model, tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").is_file() and caplog.records  # the exporter did log; the notice is not among it
    assert not [r for r in caplog.records if "torchvision is not installed" in r.getMessage()]


def test_export_needs_the_exportable_model_interface(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="Linear lacks the ExportableModel interface"):
        export_onnx(nn.Linear(2, 2), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_parity_fails_when_the_predicted_class_differs_even_within_atol(tmp_path: Path) -> None:
    # The last layer gives constant logits: class 1 leads class 0 by 5e-5 in the exported file.
    model = build_model("cnn", widths=(4, 8), hidden=8, num_classes=3).eval()
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0, 5e-5, -1.0]))
    export_onnx(model, tmp_path / "model.onnx")
    # Eager PyTorch now prefers class 0 by as little: every value still within atol 1e-4 of the file's.
    with torch.no_grad():
        last.bias.copy_(torch.tensor([5e-5, 0.0, -1.0]))
    cases = [tuple(t.numpy() for t in model.example_inputs(2))]
    report = check_parity(model, tmp_path / "model.onnx", cases)
    assert report.max_abs_diff <= report.atol == 1e-4
    assert report.cases[0].argmax_equal is False
    assert not report.passed  # export_verified refuses to write whatever does not pass


class NaNScoreAutoencoder(DenseAutoencoder):
    """An autoencoder whose score is NaN (log of a negative number) in eager PyTorch and in ONNX Runtime alike."""

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        reconstruction, score = super().forward(features)
        return reconstruction, score + torch.log(-1.0 - features.abs().sum(dim=1))


def test_a_nan_output_fails_parity_even_when_both_runtimes_give_it(tmp_path: Path) -> None:
    # The reconstruction agrees; a NaN score must still fail, however `max` orders NaN among the outputs.
    model = NaNScoreAutoencoder(DenseAutoencoderConfig(n_features=5, hidden=(4,), latent=2))
    cases = [tuple(t.numpy() for t in model.example_inputs(3))]
    with pytest.raises(ExportError, match="disagree") as error:
        export_verified(model, tmp_path / "model.onnx", cases)
    (case,) = error.value.report.cases
    assert case.output_diffs["reconstruction"] <= 1e-4
    assert case.output_diffs["score"] == case.max_abs_diff == float("inf")
    assert error.value.report.to_dict()["max_abs_diff"] is None  # not finite: written as null in the card
    assert list(tmp_path.iterdir()) == []


class ColumnScoreAutoencoder(DenseAutoencoder):
    """The same network with its score as a column [B, 1]: the shape bug a squeeze forgotten in export would give."""

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        reconstruction, score = super().forward(features)
        return reconstruction, score.unsqueeze(1)


def test_parity_fails_when_an_output_has_another_shape_even_if_its_values_agree(tmp_path: Path) -> None:
    config = DenseAutoencoderConfig(n_features=4, hidden=(3,), latent=2)
    column = ColumnScoreAutoencoder(config)
    export_onnx(column, tmp_path / "model.onnx")
    plain = DenseAutoencoder(config)
    plain.load_state_dict(column.state_dict())
    # Batch 1: score [1] against [1, 1] holds the same single number, and would broadcast to a zero difference.
    report = check_parity(plain, tmp_path / "model.onnx", [tuple(t.numpy() for t in plain.example_inputs(1))])
    assert report.cases[0].output_diffs["reconstruction"] <= 1e-4
    assert report.cases[0].output_diffs["score"] == float("inf")
    assert not report.passed
