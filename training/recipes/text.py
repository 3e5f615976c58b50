"""Text classification recipe: an rnn or transformer with its own WordPiece tokenizer."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from modelrepo.config import TextPreprocessing
from training import metrics as ev
from training import plots
from training.data.tokenizer import PAD_ID, UNK_ID, encode_batch, save_tokenizer, train_tokenizer
from training.models import build_model, config_dict
from training.models.bag import BagOfEmbeddings
from training.recipes.common import (
    SPLIT,
    Fitted,
    Hyper,
    Outcome,
    RunOptions,
    class_metrics,
    conclude,
    fit_with,
    hyper_dict,
    pool_parts,
    serving_config,
    split_sizes,
)
from training.repository import Artefact
from training.train import History, set_seed, trim_padding


class TokenDropout(Dataset[Any]):
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
    started, hyper = time.perf_counter(), hyper or Hyper()
    y = np.asarray(y).astype(np.int64)
    train_idx, val_idx, test_idx = parts = pool_parts(y, opts.seed)
    tokenizer = train_tokenizer([texts[i] for i in train_idx], vocab_size=vocab_size, lowercase=lowercase)
    model_cfg = {**(model_cfg or {}), "vocab_size": tokenizer.get_vocab_size(), "num_classes": len(labels)}
    if family == "transformer":
        model_cfg["max_length"] = max_length
    weight = None
    if class_weighted:
        # Inverse class frequency: the rare class (spam) costs as much in total as the common one.
        counts = np.bincount(y[train_idx], minlength=len(labels)).astype(np.float64)
        weight = torch.tensor(counts.sum() / (len(labels) * np.maximum(counts, 1)), dtype=torch.float32)
    subsets = {
        split: _encoded(tokenizer, texts, y, idx, max_length)
        for split, idx in (("train", train_idx), ("validation", val_idx), ("test", test_idx))
    }
    train = TokenDropout(subsets["train"], token_dropout, UNK_ID) if token_dropout else subsets["train"]
    run = partial(
        _candidate,
        family,
        model_cfg,
        train,
        subsets["validation"],
        hyper,
        loss=partial(F.cross_entropy, weight=weight),
        metric=partial(macro_f1_metric, labels=labels),
        warmup=(len(labels), freeze_embeddings) if warm_embeddings else None,
    )
    # A few thousand texts make a run's outcome depend on its initialisation and batch order; training
    # `restarts` candidates and keeping the best on validation (never on test) steadies the result.
    seeds = [opts.seed + 1000 * r for r in range(1 if opts.dry_run else max(1, restarts))]
    candidates = [run(dataclasses.replace(opts, seed=seed)) for seed in seeds]
    restart_metrics = [round(c[1].best_metric, 4) for c in candidates]
    model, history, warmup = max(candidates, key=lambda c: c[1].best_metric)
    metrics = class_metrics(
        model,
        {"validation": subsets["validation"], "test": subsets["test"]},
        {"validation": y[val_idx], "test": y[test_idx]},
        labels,
        collate=trim_padding,
    )
    test = metrics["test"]
    summary = {"split": "test", "n": test["n"], "accuracy": test["accuracy"], "macro_f1": test["macro_f1"]}
    summary.update({f"f1_{k}": v for k, v in test["per_class_f1"].items()})
    summary["restart_val_f1"] = restart_metrics
    return conclude(
        name,
        family,
        Fitted(
            model,
            history,
            metrics,
            serving_config(
                name,
                "text",
                description,
                TextPreprocessing(max_length=max_length, lowercase=lowercase),
                labels=list(labels),
            ),
            cases=text_cases(
                tokenizer, [texts[i] for i in test_idx], max_length, getattr(model.config, "example_length", 16)
            ),
            split=split_sizes(parts, opts.seed, method="stratified", fractions=SPLIT),
            hyper=hyper_dict(
                config_dict(model),
                hyper,
                vocab_size=vocab_size,
                lowercase=lowercase,
                max_length=max_length,
                class_weighted=class_weighted,
                token_dropout=token_dropout,
                warm_embeddings=warm_embeddings,
                freeze_embeddings=freeze_embeddings,
                embedding_warmup=warmup,
                restarts={"seeds": seeds, "best_val_macro_f1": restart_metrics},
            ),
            summary=summary,
            artefacts=partial(_artefacts, tokenizer, history, test["confusion_matrix"], labels),
        ),
        opts,
        dataset,
        started,
    )


def _encoded(tokenizer: Any, texts: Sequence[str], y: np.ndarray, idx: np.ndarray, max_length: int) -> TensorDataset:
    """The texts at `idx`, tokenized and padded to their longest, with their labels."""
    ids, mask = encode_batch(tokenizer, [texts[i] for i in idx], max_length)
    return TensorDataset(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(y[idx]))


def macro_f1_metric(logits: torch.Tensor, target: torch.Tensor, labels: Sequence[str]) -> float:
    """The validation metric text models stop on: macro-F1 (accuracy flatters the majority class)."""
    return float(ev.classification_metrics(target.numpy(), logits.argmax(1).numpy(), labels)["macro_f1"])


def _candidate(
    family: str,
    model_cfg: dict[str, Any],
    train: Dataset[Any],
    val: Dataset[Any],
    hyper: Hyper,
    opts: RunOptions,
    *,
    loss: Any,
    metric: Any,
    warmup: tuple[int, bool] | None,
) -> tuple[nn.Module, History, dict[str, Any]]:
    """One seeded candidate: optionally a bag-of-embeddings warm-up of its embedding table, then the fit.

    `warmup` is (number of classes, freeze the table afterwards) or None for no warm-up.
    """
    set_seed(opts.seed)
    model = build_model(family, **model_cfg)
    report: dict[str, Any] = {}
    table = getattr(model, "embedding", None) or getattr(model, "token_embedding", None)  # rnn / transformer
    if warmup is not None and table is not None:
        num_classes, freeze = warmup
        bag = BagOfEmbeddings(model_cfg["vocab_size"], table.embedding_dim, num_classes, 0, 0.5)
        bag_history = fit_with(
            bag,
            train,
            val,
            Hyper(epochs=30, lr=1e-2, weight_decay=0.0, batch_size=32, patience=5),
            opts,
            loss=loss,
            metric=metric,
            collate=trim_padding,
        )
        with torch.no_grad():
            table.weight.copy_(bag.embedding.weight)
        table.weight.requires_grad_(not freeze)
        report = {"bag_of_embeddings_val_macro_f1": bag_history.best_metric, "epochs": bag_history.best_epoch}
    return model, fit_with(model, train, val, hyper, opts, loss=loss, metric=metric, collate=trim_padding), report


def _artefacts(
    tokenizer: Any, history: History, confusion: list[list[int]], labels: Sequence[str], tmp: Path
) -> dict[str, Artefact]:
    save_tokenizer(tokenizer, tmp / "tokenizer.json")
    return {
        "tokenizer.json": tmp / "tokenizer.json",
        "training_curves.png": plots.training_curves(history, tmp / "curves.png", "macro-F1"),
        "confusion_matrix.png": plots.confusion_matrix(confusion, labels, tmp / "cm.png"),
    }


def text_cases(
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    example_length: int,
    pad_id: int = PAD_ID,
    shortest: int = 1,
) -> list[tuple[np.ndarray, ...]]:
    """Parity inputs from real held-out texts: batch 1 at its shortest, batch 1, a batch of many, the longest.

    `shortest` is the fewest tokens a row can have: 1 ([CLS]) here, 3 for BERT's `[CLS] word [SEP]`.
    """
    by_length = sorted(texts, key=len)
    longest = by_length[-min(8, len(by_length)) :]
    cases: list[tuple[np.ndarray, ...]] = [
        encode_batch(tokenizer, texts[:1], shortest, pad_id),
        encode_batch(tokenizer, texts[:1], max_length, pad_id),
        encode_batch(tokenizer, list(texts[:64]), max_length, pad_id),
        encode_batch(tokenizer, longest, max_length, pad_id),
    ]
    if cases[-1][0].shape[1] <= example_length:
        raise ValueError(f"no held-out text is longer than the export example ({example_length} tokens)")
    return cases
