"""The committed default models: each loads in ONNX Runtime and its configs match its ONNX file."""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from modelrepo.config import read_config
from training.card import read_card
from training.data.paths import REPO_ROOT, file_sha256
from training.export import tensor_specs
from training.recipes import DEFAULTS
from training.repository import validate_repository, versions

MODELS = REPO_ROOT / "models"
# The tensor contract clients rely on (README / brief).
CONTRACT = {
    "mnist-cnn": ("vision", {"image": [-1, 1, 28, 28]}, {"logits": [-1, 10]}),
    "sms-spam-transformer": ("text", {"input_ids": [-1, -1], "attention_mask": [-1, -1]}, {"logits": [-1, 2]}),
    "sentiment-gru": ("text", {"input_ids": [-1, -1], "attention_mask": [-1, -1]}, {"logits": [-1, 2]}),
    "sms-spam-minilm": ("text", {"input_ids": [-1, -1], "attention_mask": [-1, -1]}, {"logits": [-1, 2]}),
    "sentiment-minilm": ("text", {"input_ids": [-1, -1], "attention_mask": [-1, -1]}, {"logits": [-1, 2]}),
    "thyroid-autoencoder": ("anomaly", {"features": [-1, 21]}, {"reconstruction": [-1, 21], "score": [-1]}),
    "machine-temperature-autoencoder": ("anomaly", {"window": None}, {"reconstruction": None, "score": [-1]}),
}
LABELS = {
    "mnist-cnn": [str(d) for d in range(10)],
    "sms-spam-transformer": ["ham", "spam"],
    "sentiment-gru": ["negative", "positive"],
    "sms-spam-minilm": ["ham", "spam"],
    "sentiment-minilm": ["negative", "positive"],
}


def _latest(name: str) -> Path:
    return MODELS / name / str(versions(MODELS / name)[-1])


def test_every_default_model_is_committed_and_the_repository_is_valid():
    committed = {name for name, recipe in DEFAULTS.items() if recipe.committed}
    built_locally = set(DEFAULTS) - committed  # `rebuild` may have written them here; git ignores them
    assert {p.name for p in MODELS.iterdir() if p.is_dir()} - built_locally == committed
    assert validate_repository(MODELS) == []


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_default_model_matches_its_contract_and_onnx_file(name):
    task, inputs, outputs = CONTRACT[name]
    folder = _latest(name)
    top, snapshot = read_config(MODELS / name / "config.json"), read_config(folder / "config.json")
    onnx_inputs, onnx_outputs = tensor_specs(folder / "model.onnx")
    for config in (top, snapshot):
        assert config.name == name and config.task == task
        assert config.inputs == onnx_inputs and config.outputs == onnx_outputs
    assert [t.name for t in onnx_inputs] == list(inputs) and [t.name for t in onnx_outputs] == list(outputs)
    if name == "machine-temperature-autoencoder":
        window = snapshot.preprocessing.window
        inputs, outputs = {"window": [-1, window, 1]}, {"reconstruction": [-1, window, 1], "score": [-1]}
    assert {t.name: t.dims for t in onnx_inputs} == inputs
    assert {t.name: t.dims for t in onnx_outputs} == outputs
    assert all(
        t.datatype == ("INT64" if t.name in ("input_ids", "attention_mask") else "FP32")
        for t in onnx_inputs + onnx_outputs
    )
    if name in LABELS:
        assert snapshot.labels == LABELS[name]
        assert (folder / "labels.txt").read_text().split() == LABELS[name]
    if task == "text":
        assert (folder / snapshot.preprocessing.tokenizer).is_file()
    if task == "anomaly":
        assert snapshot.anomaly is not None and snapshot.anomaly.threshold > 0


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_default_model_card_names_its_onnx_file_and_artefacts_exist(name):
    folder = _latest(name)
    card = read_card(folder / "card.json")
    assert card["model_onnx"]["sha256"] == file_sha256(folder / "model.onnx")
    assert card["parity"]["passed"] is True and card["parity"]["max_abs_diff"] <= 1e-4
    assert card["dataset"]["sha256"] and card["dataset"]["files"]
    assert card["training"]["dry_run"] is False
    assert list(folder.glob("*.png")), "plots are missing"
    # "A few MB at most" for the from-scratch families. A 6-layer, 384-wide pretrained encoder is ~90 MB in fp32
    # and ~23 MB with int8 weights; a smaller file is served only where it passed its validation gate, and the
    # served file is what the card says. GitHub refuses files over 100 MB.
    if card["family"] == "pretrained":
        q = card["quantization"]
        served = q["served"]
        assert (served != "fp32") == q["accepted"]
        assert served != "fp32", "an fp32 pretrained model (~90 MB) is not committed: mark its recipe committed=False"
        limit = 25
        assert (folder / "model.onnx").stat().st_size < limit * 2**20
        assert (folder / "model.onnx").stat().st_size == q[f"bytes_{served.replace('-', '_')}"]
        assert all(not r["accepted"] and r["served"] == served for r in card.get("quantization_refused", []))
    else:
        assert (folder / "model.onnx").stat().st_size < 5 * 2**20


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_default_model_runs_in_onnx_runtime_at_batch_1_and_many(name):
    folder = _latest(name)
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    config = read_config(folder / "config.json")
    rng = np.random.default_rng(0)
    for batch in (1, 5):
        feeds = {}
        for spec in config.inputs:
            dims = [batch if i == 0 else (7 if d == -1 else d) for i, d in enumerate(spec.dims)]
            if spec.datatype == "INT64":
                feeds[spec.name] = (
                    rng.integers(3, 50, size=dims) if spec.name == "input_ids" else np.ones(dims)
                ).astype(np.int64)
            else:
                feeds[spec.name] = rng.normal(size=dims).astype(np.float32)
        outputs = session.run(None, feeds)
        assert all(o.shape[0] == batch and np.isfinite(o).all() for o in outputs)
