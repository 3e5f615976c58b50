"""The `pretrained` family and its recipe, on a tiny randomly initialised BERT (no real weights needed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from modelrepo.config import read_config
from service.settings import Limits
from service.tasks.text import TextCodec
from tests.support.app_harness import serving, tiny_settings
from tests.support.tiny_bert import CLS_ID, PAD_ID, SEP_ID, tiny_bert
from training.data import text
from training.data.tokenizer import encode_batch
from training.export import export_verified
from training.models import build_model, model_from_checkpoint, save_checkpoint
from training.models.pretrained import PretrainedClassifier
from training.recipes.common import Hyper, RunOptions
from training.recipes.pretrained import encoder_tokenizer, train_pretrained_text_classifier
from training.repository import validate_repository

SMS = Path(__file__).resolve().parents[1] / "data" / "sms_spam" / "SMSSpamCollection.tsv"


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("bert"))


def model(encoder: Path, **overrides) -> PretrainedClassifier:
    torch.manual_seed(0)
    config = {"encoder": str(encoder), "num_classes": 3, "max_length": 32, "cls_id": CLS_ID, "pad_id": PAD_ID}
    built = build_model("pretrained", **(config | overrides))
    assert isinstance(built, PretrainedClassifier)
    return built.eval()


def batch(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and mask of token rows."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), PAD_ID, dtype=torch.int64)
    mask = torch.zeros((len(rows), width), dtype=torch.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), 1
    return ids, mask


ROWS = [[CLS_ID, 7, 8, 9, 10, SEP_ID], [CLS_ID, 11, 12, SEP_ID]]


# ----------------------------------------------------------------------------------------------- loading
def test_loads_the_encoder_from_its_folder_and_records_its_config(encoder: Path) -> None:
    m = model(encoder)
    assert m.config.encoder == str(encoder)
    assert m.config.encoder_config["hidden_size"] == 32 and m.config.encoder_config["num_hidden_layers"] == 2
    assert m.head.in_features == 32 and m.head.out_features == 3
    # The weights are the folder's, not a fresh initialisation.
    from safetensors.torch import load_file

    saved = load_file(str(encoder / "model.safetensors"))
    key = next(k for k in saved if k.endswith("word_embeddings.weight"))
    assert torch.equal(m.encoder.embeddings.word_embeddings.weight, saved[key])
    assert m(*batch(ROWS)).shape == (2, 3)


def test_a_folder_without_weights_is_a_clear_error(encoder: Path, tmp_path: Path) -> None:
    shutil.copy(encoder / "config.json", tmp_path / "config.json")
    with pytest.raises(FileNotFoundError, match=r"needs config\.json and model\.safetensors"):
        model(tmp_path)


def test_a_checkpoint_rebuilds_without_the_encoder_folder(encoder: Path, tmp_path: Path) -> None:
    folder = tiny_bert(tmp_path / "gone", seed=3)
    trained = model(folder)
    save_checkpoint(trained, "pretrained", tmp_path / "run.pt")
    shutil.rmtree(folder)
    rebuilt = model_from_checkpoint(tmp_path / "run.pt")
    inputs = batch(ROWS)
    torch.testing.assert_close(rebuilt(*inputs), trained(*inputs), rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------- pooling
def test_mean_and_cls_pooling_differ(encoder: Path) -> None:
    inputs = batch(ROWS)
    mean, cls = model(encoder, pooling="mean"), model(encoder, pooling="cls")
    cls.load_state_dict(mean.state_dict())  # same weights: only the pooling differs
    assert not torch.allclose(mean(*inputs), cls(*inputs), atol=1e-4)
    h = mean.encoder(input_ids=inputs[0], attention_mask=inputs[1]).last_hidden_state
    torch.testing.assert_close(cls(*inputs), cls.head(h[:, 0]))


def test_mean_pooling_ignores_padding(encoder: Path) -> None:
    m = model(encoder)
    short = ROWS[1]
    alone = m(*batch([short]))
    ids = torch.tensor([short + [PAD_ID] * 5])
    mask = torch.tensor([[1] * len(short) + [0] * 5])
    padded = m(ids, mask)
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=0)
    # Padding with other ids (never attended to) changes nothing either.
    ids[0, len(short) :] = 40
    torch.testing.assert_close(m(ids, mask), alone, atol=1e-5, rtol=0)
    # And beside a longer row in one batch.
    torch.testing.assert_close(m(*batch([ROWS[0], short]))[1:], alone, atol=1e-5, rtol=0)


def test_unknown_pooling_is_refused(encoder: Path) -> None:
    with pytest.raises(ValueError, match="pooling"):
        model(encoder, pooling="max")


# ----------------------------------------------------------------------------------------------- freezing
def _one_step(m: PretrainedClassifier) -> dict[str, torch.Tensor]:
    before = {k: v.clone() for k, v in m.state_dict().items()}
    m.train()
    optimizer = torch.optim.AdamW(m.parameters(), lr=1e-2)
    ids, mask = batch(ROWS)
    torch.nn.functional.cross_entropy(m(ids, mask), torch.tensor([0, 2])).backward()
    optimizer.step()
    return before


def _changed(m: PretrainedClassifier, before: dict[str, torch.Tensor], part: str) -> bool:
    return any(not torch.equal(v, before[k]) for k, v in m.state_dict().items() if part in k)


def test_freeze_layers_freezes_embeddings_and_the_lowest_layers_only(encoder: Path) -> None:
    m = model(encoder, freeze_layers=1)
    assert not any(p.requires_grad for p in m.encoder.embeddings.parameters())
    assert not any(p.requires_grad for p in m.encoder.encoder.layer[0].parameters())
    assert all(p.requires_grad for p in m.encoder.encoder.layer[1].parameters())
    before = _one_step(m)
    assert not _changed(m, before, "embeddings.") and not _changed(m, before, "encoder.layer.0.")
    assert _changed(m, before, "encoder.layer.1.") and _changed(m, before, "head.")


def test_freeze_encoder_trains_the_head_alone(encoder: Path) -> None:
    m = model(encoder, freeze_encoder=True)
    assert [n for n, p in m.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]
    before = _one_step(m)
    assert not _changed(m, before, "encoder.") and _changed(m, before, "head.")


def test_no_freezing_trains_everything(encoder: Path) -> None:
    m = model(encoder)
    before = _one_step(m)
    assert _changed(m, before, "embeddings.word") and _changed(m, before, "encoder.layer.0.")


def test_freezing_more_layers_than_there_are_is_refused(encoder: Path) -> None:
    with pytest.raises(ValueError, match="exceeds the encoder's 2 layers"):
        model(encoder, freeze_layers=3)
    every = model(encoder, freeze_layers=2)  # all of them is allowed
    assert not any(p.requires_grad for p in every.encoder.encoder.layer.parameters())
    assert all(p.requires_grad for p in every.head.parameters())


# ----------------------------------------------------------------------------------------------- export
def test_export_matches_pytorch_at_other_batch_sizes_and_lengths(encoder: Path, tmp_path: Path) -> None:
    m = model(encoder)
    cases = [tuple(t.numpy() for t in m.example_inputs(b, n)) for b, n in ((1, 3), (4, 20))]
    report = export_verified(m, tmp_path / "model.onnx", cases)
    assert report.passed and report.max_abs_diff <= 1e-4
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    dims = {i.name: i.shape for i in session.get_inputs()}
    assert dims == {"input_ids": ["batch", "seq"], "attention_mask": ["batch", "seq"]}
    for size, length in ((1, 5), (7, 29)):  # neither is a traced or checked shape
        ids, mask = m.example_inputs(size, length)
        got = session.run(["logits"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
        with torch.no_grad():
            want = m(ids, mask).numpy()
        assert got.shape == (size, 3)
        assert np.abs(got - want).max() <= 1e-4 and (got.argmax(1) == want.argmax(1)).all()


# ----------------------------------------------------------------------------------------------- recipe
@pytest.fixture(scope="module")
def trained(encoder: Path, tmp_path_factory: pytest.TempPathFactory):
    """A tiny model fine-tuned for one batch by the recipe, quantized, written into a fresh repository."""
    texts, names = text.load_sms_spam(SMS)
    labels = list(text.SMS_LABELS)
    y = np.array([labels.index(n) for n in names])
    repository = tmp_path_factory.mktemp("repo")
    outcome = train_pretrained_text_classifier(
        "tiny-spam",
        texts,
        y,
        labels,
        RunOptions(repository, dry_run=True, progress=False),
        dataset={"name": "sms excerpt"},
        encoder=encoder,
        weights={"package": "tiny", "licence": "test"},
        hyper=Hyper(epochs=1, batch_size=16),
        max_length=24,
        quantize="int8",
        interval_f1=["spam"],
    )
    return outcome, texts


def test_recipe_writes_a_valid_version_with_its_card(trained) -> None:
    outcome, _ = trained
    assert validate_repository(outcome.path.parents[1]) == []
    card = json.loads((outcome.path / "card.json").read_text())
    assert card["family"] == "pretrained" and card["weights"] == {"package": "tiny", "licence": "test"}
    assert card["parity"]["passed"] and card["parity"]["max_abs_diff"] <= 1e-4
    q = card["quantization"]
    assert q["served"] == ("int8" if q["accepted"] else "fp32") and q["bytes_int8"] < q["bytes_fp32"]
    served = card["model_onnx"]["bytes"]
    assert served == (q["bytes_int8"] if q["accepted"] else q["bytes_fp32"])
    test = card["metrics"]["test"]
    low, high = test["accuracy_ci95"]
    assert low <= test["accuracy"] <= high and "f1_spam_ci95" in test
    assert card["split"]["sizes"] == {"train": 240, "validation": 30, "test": 30}
    config = read_config(outcome.path / "config.json")
    assert config.preprocessing.lowercase is False and config.preprocessing.pad_id == PAD_ID
    assert config.preprocessing.max_length == 24 and config.labels == ["ham", "spam"]


def test_served_tokenizer_gives_exactly_the_training_ids(trained, encoder: Path) -> None:
    outcome, texts = trained
    config = read_config(outcome.path / "config.json")
    codec = TextCodec(config, outcome.path, Limits())
    samples = ["WIN Cash NOW!!", "héllo, see you later", texts[0], " ".join(texts[:3])]  # case, accents, truncation
    served = codec.encode(samples)
    ids, mask = encode_batch(encoder_tokenizer(encoder), samples, 24, PAD_ID)
    np.testing.assert_array_equal(served["input_ids"], ids)
    np.testing.assert_array_equal(served["attention_mask"], mask)
    assert ids.shape[1] == 24 and (ids[:, 0] == CLS_ID).all()
    # The version's tokenizer.json carries no truncation or padding of its own (the service sets them).
    saved = json.loads((outcome.path / "tokenizer.json").read_text())
    assert saved["truncation"] is None and saved["padding"] is None


async def test_the_text_endpoint_serves_the_trained_model(trained) -> None:
    outcome, _ = trained
    root = outcome.path.parents[1]
    settings = tiny_settings(root, default_models={"text": "tiny-spam"})
    async with serving(settings) as (_, client):
        response = await client.post("/v1/text/classify", json={"texts": ["WIN cash now", "ok see you later"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "tiny-spam" and body["version"] == outcome.version
    assert [set(p["scores"]) for p in body["predictions"]] == [{"ham", "spam"}] * 2
    # The answers are the served ONNX file's own on the same tokens.
    codec = TextCodec(read_config(outcome.path / "config.json"), outcome.path, Limits())
    session = ort.InferenceSession(str(outcome.path / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], codec.encode(["WIN cash now", "ok see you later"]))[0]
    assert [p["label"] for p in body["predictions"]] == [["ham", "spam"][i] for i in logits.argmax(1)]
