"""Text classification recipe: an rnn or transformer with its own WordPiece tokenizer."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from service.model_config import ModelConfig, TextPreprocessing
from training import metrics as ev
from training import plots
from training.data.split import stratified_split
from training.data.tokenizer import UNK_ID, encode_batch, save_tokenizer, train_tokenizer
from training.models import build_model
from training.models.bag import BagOfEmbeddings
from training.recipes.common import (
    SERVING, SPLIT, Hyper, Outcome, RunOptions, class_report, fit_with, hyper_dict, publish, split_sizes,
)
from training.train import History, predict, set_seed, trim_padding


class TokenDropout(Dataset):
    """Training texts with each real token replaced by [UNK] with probability `p`, afresh on every read.

    With a couple of thousand sentences a text model leans on a few memorised words; hiding random
    words makes it use the rest of the sentence too (word dropout, Iyyer et al. 2015).
    """

    def __init__(self, data: TensorDataset, p: float, unk_id: int) -> None:
        self.data, self.p, self.unk_id = data, p, unk_id

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        ids, mask, target = self.data[i]
        drop = (torch.rand(ids.shape) < self.p) & (mask == 1)
        drop[0] = False  # [CLS] stays: it is what keeps a row from being all padding
        return ids.masked_fill(drop, self.unk_id), mask, target


def train_text_classifier(
    name: str,
    family: str,
    texts: Sequence[str],
    y: np.ndarray,
    labels: Sequence[str],
    opts: RunOptions,
    *,
    dataset: dict[str, Any],
    model_cfg: dict[str, Any] | None = None,
    hyper: Hyper | None = None,
    vocab_size: int = 8000,
    lowercase: bool = True,
    max_length: int = 128,
    class_weighted: bool = False,
    token_dropout: float = 0.0,
    warm_embeddings: bool = False,
    freeze_embeddings: bool = False,
    restarts: int = 1,
    description: str = "",
) -> Outcome:
    """An `rnn` or `transformer` classifier on texts with integer labels, with its own WordPiece tokenizer."""
    started, hyper, model_cfg = time.perf_counter(), hyper or Hyper(), dict(model_cfg or {})
    parts = stratified_split(y, SPLIT, seed=opts.seed)
    train_idx, val_idx, test_idx = parts
    tokenizer = train_tokenizer([texts[i] for i in train_idx], vocab_size=vocab_size, lowercase=lowercase)

    def subset(idx: np.ndarray) -> TensorDataset:
        ids, mask = encode_batch(tokenizer, [texts[i] for i in idx], max_length)
        return TensorDataset(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(y[idx].astype(np.int64)))

    model_cfg.update(vocab_size=tokenizer.get_vocab_size(), num_classes=len(labels))
    if family == "transformer":
        model_cfg["max_length"] = max_length
    weight = None
    if class_weighted:
        # Inverse class frequency: the rare class (spam) costs as much in total as the common one.
        counts = np.bincount(y[train_idx], minlength=len(labels)).astype(np.float64)
        weight = torch.tensor(counts.sum() / (len(labels) * np.maximum(counts, 1)), dtype=torch.float32)

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, weight=weight)

    def macro_f1(logits: torch.Tensor, target: torch.Tensor) -> float:
        return ev.classification_metrics(target.numpy(), logits.argmax(1).numpy(), labels)["macro_f1"]

    train, val = subset(train_idx), subset(val_idx)
    if token_dropout:
        train = TokenDropout(train, token_dropout, UNK_ID)

    def candidate(seed: int) -> tuple[nn.Module, History, dict[str, Any]]:
        run = dataclasses.replace(opts, seed=seed)
        set_seed(seed)
        model = build_model(family, **model_cfg)
        warmup: dict[str, Any] = {}
        table = getattr(model, "embedding", None) or getattr(model, "token_embedding", None)  # rnn / transformer
        if warm_embeddings and table is not None:
            bag = BagOfEmbeddings(model_cfg["vocab_size"], table.embedding_dim, len(labels), 0, 0.5)
            bag_history = fit_with(bag, train, val, Hyper(epochs=30, lr=1e-2, weight_decay=0.0, batch_size=32, patience=5),
                               run, loss=loss, metric=macro_f1, collate=trim_padding)
            with torch.no_grad():
                table.weight.copy_(bag.embedding.weight)
            table.weight.requires_grad_(not freeze_embeddings)
            warmup = {"bag_of_embeddings_val_macro_f1": bag_history.best_metric, "epochs": bag_history.best_epoch}
        return model, fit_with(model, train, val, hyper, run, loss=loss, metric=macro_f1, collate=trim_padding), warmup

    # A few thousand texts make a run's outcome depend on its initialisation and batch order; training
    # `restarts` candidates and keeping the best on validation (never on test) steadies the result.
    seeds = [opts.seed + 1000 * r for r in range(1 if opts.dry_run else max(1, restarts))]
    candidates = [candidate(seed) for seed in seeds]
    restart_metrics = [round(c[1].best_metric, 4) for c in candidates]
    model, history, warmup = max(candidates, key=lambda c: c[1].best_metric)
    metrics = {
        split: class_report(predict(model, subset(idx), collate=trim_padding), y[idx], labels)
        for split, idx in (("validation", val_idx), ("test", test_idx))
    }
    config = ModelConfig(
        name=name, task="text", description=description, inputs=[], outputs=[], labels=list(labels),
        preprocessing=TextPreprocessing(max_length=max_length, lowercase=lowercase), **SERVING,
    )
    cases = _text_cases(tokenizer, [texts[i] for i in test_idx], max_length, getattr(model.config, "example_length", 16))
    with tempfile.TemporaryDirectory() as tmp:
        save_tokenizer(tokenizer, Path(tmp) / "tokenizer.json")
        artefacts = {
            "tokenizer.json": Path(tmp) / "tokenizer.json",
            "training_curves.png": plots.training_curves(history, Path(tmp) / "curves.png", "macro-F1"),
            "confusion_matrix.png": plots.confusion_matrix(
                metrics["test"]["confusion_matrix"], labels, Path(tmp) / "cm.png"
            ),
        }
        written = publish(
            model, config, cases, opts, family=family, dataset=dataset,
            split=split_sizes(parts, opts.seed, method="stratified", fractions=SPLIT),
            hyper=hyper_dict(dataclasses.asdict(model.config), hyper, vocab_size=vocab_size,
                              lowercase=lowercase, max_length=max_length, class_weighted=class_weighted,
                              token_dropout=token_dropout, warm_embeddings=warm_embeddings,
                              freeze_embeddings=freeze_embeddings, embedding_warmup=warmup,
                              restarts={"seeds": seeds, "best_val_macro_f1": restart_metrics}),
            metrics=metrics, history=history, artefacts=artefacts,
        )
    test = metrics["test"]
    summary = {"split": "test", "n": test["n"], "accuracy": test["accuracy"], "macro_f1": test["macro_f1"]}
    summary.update({f"f1_{k}": v for k, v in test["per_class_f1"].items()})
    summary["restart_val_f1"] = restart_metrics
    return Outcome(name, written.version, written.path, metrics, time.perf_counter() - started, summary, model)


def _text_cases(tokenizer: Any, texts: Sequence[str], max_length: int, example_length: int) -> list[tuple[np.ndarray, ...]]:
    """Parity inputs from real held-out texts: batch 1 at length 1, batch 1, a batch of many, the longest."""
    by_length = sorted(texts, key=len)
    longest = by_length[-min(8, len(by_length)):]
    cases = [encode_batch(tokenizer, texts[:1], 1), encode_batch(tokenizer, texts[:1], max_length),
             encode_batch(tokenizer, list(texts[:64]), max_length), encode_batch(tokenizer, longest, max_length)]
    if cases[-1][0].shape[1] <= example_length:
        raise ValueError(f"no held-out text is longer than the export example ({example_length} tokens)")
    return cases
