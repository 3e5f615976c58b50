"""Forward shapes, padding invariance and checkpoints of every model family (tiny configs)."""

from __future__ import annotations

import pickle

import pytest
import torch

from training.models import (
    FAMILIES,
    CNNClassifier,
    CNNConfig,
    build_model,
    family_of,
    model_from_checkpoint,
    save_checkpoint,
)

TEXT_KW = {"vocab_size": 40, "num_classes": 3}
TINY = {
    "cnn": {"widths": (4, 8), "hidden": 8},
    "rnn": {**TEXT_KW, "embed_dim": 8, "hidden_size": 6},
    "transformer": {**TEXT_KW, "d_model": 8, "n_heads": 2, "n_layers": 1, "ff_dim": 16, "max_length": 32},
    "dense-ae": {"n_features": 7, "hidden": (6,), "latent": 3},
    "seq-ae": {"window": 12, "hidden": 5, "latent": 3},
}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_families_are_the_six_named_ones() -> None:
    assert set(FAMILIES) == {"cnn", "rnn", "transformer", "pretrained", "dense-ae", "seq-ae"}
    assert {name: f.task for name, f in FAMILIES.items()} == {
        "cnn": "image",
        "rnn": "text",
        "transformer": "text",
        "pretrained": "text",  # tested on a tiny BERT in test_pretrained.py
        "dense-ae": "tabular",
        "seq-ae": "series",
    }


def test_every_family_declares_the_export_interface() -> None:
    from training.models import ExportableModel

    needed = {
        "cnn": {},
        "rnn": {"vocab_size": 50},
        "transformer": {"vocab_size": 50},
        "dense-ae": {"n_features": 4},
        "seq-ae": {"window": 8},
    }
    for name, kwargs in needed.items():
        model = build_model(name, **kwargs)
        assert isinstance(model, ExportableModel), name
        dims = model.dynamic_dims()
        assert set(dims) == set(model.input_names) | set(model.output_names), name  # every tensor named, no other
        assert all(axes.get(0) == "batch" for axes in dims.values()), name
        assert len(model.example_inputs(2)) == len(model.input_names), name
    assert not isinstance(object(), ExportableModel)
    for name, kwargs in TINY.items():
        assert family_of(build_model(name, **kwargs)) == name


@pytest.mark.parametrize(("channels", "size"), [(1, (28, 28)), (1, (12, 20)), (3, (32, 32)), (3, (9, 16))])
def test_cnn_logits_for_grayscale_and_rgb_at_several_sizes(channels: int, size: tuple[int, int]) -> None:
    model = build_model("cnn", **TINY["cnn"], in_channels=channels, num_classes=5).eval()
    logits = model(torch.randn(3, channels, *size))
    assert logits.shape == (3, 5)
    assert torch.isfinite(logits).all()


def test_cnn_refuses_images_below_its_minimum_size() -> None:
    model = CNNClassifier(CNNConfig(widths=(4, 8, 8), hidden=8))
    assert model.config.min_size == 8
    model(torch.randn(1, 1, 8, 8))  # the minimum itself is fine
    with pytest.raises(ValueError, match=r"smaller than the minimum 8x8"):
        model(torch.randn(1, 1, 7, 28))
    with pytest.raises(ValueError, match="expected 1 channel"):
        model(torch.randn(1, 3, 28, 28))


@pytest.mark.parametrize(
    ("family", "extra"),
    [
        ("rnn", {"cell": "gru", "bidirectional": True}),
        ("rnn", {"cell": "lstm", "bidirectional": True, "num_layers": 2}),
        ("rnn", {"cell": "lstm", "bidirectional": False}),
        ("transformer", {}),
    ],
)
def test_text_models_give_logits_for_padded_batches_of_any_length(family: str, extra: dict) -> None:
    model = build_model(family, **TINY[family], **extra).eval()
    for batch, length in [(1, 1), (4, 7), (2, 30)]:
        input_ids, attention_mask = model.example_inputs(batch, length)
        assert (input_ids[:, 0] == 2).all() and (attention_mask[:, 0] == 1).all()
        logits = model(input_ids, attention_mask)
        assert logits.shape == (batch, 3)
        assert torch.isfinite(logits).all()


@pytest.mark.parametrize(
    ("family", "extra"),
    [("rnn", {"cell": "gru"}), ("rnn", {"cell": "lstm", "num_layers": 2}), ("transformer", {})],
)
def test_padding_changes_nothing(family: str, extra: dict) -> None:
    """Other ids at padded positions, or more padding, leave a sentence's logits as they were."""
    model = build_model(family, **TINY[family], **extra).eval()
    input_ids, attention_mask = model.example_inputs(3, 10)  # the last row is padded after 5 tokens
    with torch.no_grad():
        logits = model(input_ids, attention_mask)
        scrambled = input_ids.clone()
        scrambled[attention_mask == 0] = 7
        assert torch.allclose(model(scrambled, attention_mask), logits, atol=1e-6)
        # The padded row alone, cut to its real tokens, as the service would send it in a batch of one.
        alone = model(input_ids[-1:, :5], attention_mask[-1:, :5])
        assert torch.allclose(alone, logits[-1:], atol=1e-5)
        # Padding the whole batch further to the right changes no row.
        wider_ids = torch.cat([input_ids, torch.zeros(3, 6, dtype=torch.int64)], dim=1)
        wider_mask = torch.cat([attention_mask, torch.zeros(3, 6, dtype=torch.int64)], dim=1)
        assert torch.allclose(model(wider_ids, wider_mask), logits, atol=1e-5)
    # The check above can fail: changing a real token does change the logits.
    changed = input_ids.clone()
    changed[0, 1] = (changed[0, 1] + 1) % 40 or 3
    assert not torch.allclose(model(changed, attention_mask)[0], logits[0])


def test_transformer_refuses_sequences_beyond_its_position_table() -> None:
    model = build_model("transformer", **TINY["transformer"])
    assert model(*model.example_inputs(1, 32)).shape == (1, 3)  # the whole table is usable
    with pytest.raises(ValueError, match="exceeds max_length 32"):
        model(*model.example_inputs(1, 33))


def test_dense_autoencoder_scores_each_row_by_its_mean_squared_error() -> None:
    model = build_model("dense-ae", **TINY["dense-ae"]).eval()
    (features,) = model.example_inputs(5)
    reconstruction, score = model(features)
    assert reconstruction.shape == (5, 7) and score.shape == (5,)
    assert torch.allclose(score, ((reconstruction - features) ** 2).mean(dim=1))


@pytest.mark.parametrize("kind", ["lstm", "conv"])
@pytest.mark.parametrize("window", [12, 13])
def test_sequence_autoencoder_scores_each_window(kind: str, window: int) -> None:
    model = build_model("seq-ae", **{**TINY["seq-ae"], "window": window}, kind=kind).eval()
    (windows,) = model.example_inputs(4)
    assert windows.shape == (4, window, 1)
    reconstruction, score = model(windows)
    assert reconstruction.shape == (4, window, 1) and score.shape == (4,)
    assert torch.allclose(score, ((reconstruction - windows) ** 2).mean(dim=(1, 2)))
    with pytest.raises(ValueError, match=f"windows of {window} points"):
        model(torch.randn(2, window + 1, 1))


def test_autoencoder_training_objective_lowers_the_score() -> None:
    """score.mean() is a usable loss: a few steps of AdamW on one batch make it smaller."""
    model = build_model("dense-ae", **TINY["dense-ae"], dropout=0.0)
    (features,) = model.example_inputs(32)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = model(features)[1].mean().item()
    for _ in range(30):
        optimiser.zero_grad()
        loss = model(features)[1].mean()
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.8 * first


def test_unknown_family_and_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown model family 'mlp'"):
        build_model("mlp")
    with pytest.raises(ValueError, match="cell must be"):
        build_model("rnn", vocab_size=10, cell="rnn")
    with pytest.raises(ValueError, match="not divisible"):
        build_model("transformer", vocab_size=10, d_model=10, n_heads=3)


@pytest.mark.parametrize("family", sorted(TINY))
def test_checkpoint_rebuilds_the_model_alone(family: str, tmp_path) -> None:
    model = build_model(family, **TINY[family]).eval()
    inputs = model.example_inputs(3)
    path = tmp_path / "model.pt"
    save_checkpoint(model, family, path)
    loaded = model_from_checkpoint(path)
    assert type(loaded) is type(model) and loaded.config == model.config
    assert not loaded.training
    with torch.no_grad():
        expected, actual = model(*inputs), loaded(*inputs)
    for e, a in zip(
        expected if isinstance(expected, tuple) else (expected,), actual if isinstance(actual, tuple) else (actual,)
    ):
        assert torch.equal(e, a)


def test_checkpoint_refuses_a_model_of_another_family(tmp_path) -> None:
    with pytest.raises(ValueError, match="not a 'rnn' model"):
        save_checkpoint(build_model("cnn", **TINY["cnn"]), "rnn", tmp_path / "x.pt")


class NotATensor:
    """Any pickled object besides tensors and plain values: loading it would run code."""


def test_checkpoint_loading_refuses_pickled_objects(tmp_path) -> None:
    model = build_model("dense-ae", **TINY["dense-ae"])
    save_checkpoint(model, "dense-ae", tmp_path / "model.pt")
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    torch.save({**payload, "extra": NotATensor()}, tmp_path / "hostile.pt")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        model_from_checkpoint(tmp_path / "hostile.pt")


def test_bag_of_embeddings_averages_the_real_tokens_only() -> None:
    from training.models import BagOfEmbeddings

    bag = BagOfEmbeddings(vocab_size=20, dim=4, num_classes=2, pad_id=0, dropout=0.0).eval()
    ids = torch.tensor([[2, 5, 6]])
    padded = torch.tensor([[2, 5, 6, 0, 0]])
    with torch.no_grad():
        alone = bag(ids, torch.ones(1, 3, dtype=torch.int64))
        with_padding = bag(padded, torch.tensor([[1, 1, 1, 0, 0]]))
    assert torch.allclose(alone, with_padding, atol=1e-6)
