"""Text classification by fine-tuning a pretrained encoder (family `pretrained`), optionally served as int8.

The split is the from-scratch text recipe's (`pool_parts`), so the two kinds of model are judged on the same
rows. The tokenizer is the encoder's own `tokenizer.json`: a fine-tuned BERT only understands the ids it
was pretrained with.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from tokenizers import Tokenizer
from torch.utils.data import TensorDataset

from modelrepo.config import TextPreprocessing
from training import metrics as ev
from training import plots
from training.data.paths import file_sha256
from training.data.tokenizer import encode_batch, save_tokenizer
from training.models import build_model, config_dict
from training.quantize import Feeds, onnx_logits, parse_quantize, serve_smallest
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
from training.recipes.text import macro_f1_metric, text_cases
from training.repository import Artefact
from training.train import History, set_seed, trim_padding

DRY_RUN_ROWS = 64  # a dry run scores this many validation / test rows: it proves the pipeline, not the model
ONNX_BATCH = 64  # rows per ONNX Runtime call when scoring a split, each batch padded to its longest row


def encoder_tokenizer(folder: Path) -> Tokenizer:
    """The encoder's `tokenizer.json` with its truncation and padding switched off (the service sets its own)."""
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def special_id(tokenizer: Tokenizer, token: str) -> int:
    """The id of a special token the recipe relies on, or a clear error."""
    found = tokenizer.token_to_id(token)
    if found is None:
        raise ValueError(f"the encoder's tokenizer.json has no {token} token")
    return int(found)


def weights_source(folder: Path, distribution: str, model_id: str) -> dict[str, Any]:
    """The card's `weights` section: the package the weights were installed from, the model id and its licence.

    The licence is read from the model's own README front matter (`license: apache-2.0`), not assumed.
    """
    readme = folder / "README.md"
    licence = None
    if readme.is_file():
        found = re.search(r"^license:\s*(\S+)", readme.read_text(encoding="utf-8"), re.MULTILINE)
        licence = found.group(1) if found else None
    try:
        version: str | None = metadata.version(distribution)
    except metadata.PackageNotFoundError:
        version = None
    weights = folder / "model.safetensors"
    sha = file_sha256(weights) if weights.is_file() else None
    return {"package": distribution, "version": version, "model_id": model_id, "licence": licence, "sha256": sha}


def train_pretrained_text_classifier(
    name: str,
    texts: Sequence[str],
    y: np.ndarray,
    labels: Sequence[str],
    opts: RunOptions,
    *,
    dataset: dict[str, Any],
    encoder: Path,
    weights: dict[str, Any] | None = None,
    hyper: Hyper | None = None,
    pooling: str = "mean",
    max_length: int = 64,
    freeze_layers: int = 0,
    freeze_encoder: bool = False,
    dropout: float = 0.1,
    quantize: str = "none",
    interval_f1: Sequence[str] = (),
    description: str = "",
) -> Outcome:
    """Fine-tune the encoder in `encoder` (Hugging Face layout) with a linear head on texts with integer labels.

    `weights` is the card's record of where the encoder came from; `interval_f1` names the classes whose
    test F1 gets a bootstrap interval; `quantize` lists the smaller files to try in order ("int8",
    "int8,int8-weights", ...; see `training.quantize`): the first that passes `int8_gate` is served.
    """
    parse_quantize(quantize)  # a bad list fails before the training, not after it
    started, hyper, encoder = time.perf_counter(), hyper or Hyper(), Path(encoder)
    y = np.asarray(y).astype(np.int64)
    train_idx, val_idx, test_idx = parts = pool_parts(y, opts.seed)
    tokenizer = encoder_tokenizer(encoder)
    pad_id, cls_id = special_id(tokenizer, "[PAD]"), special_id(tokenizer, "[CLS]")
    if opts.dry_run:
        val_idx, test_idx = val_idx[:DRY_RUN_ROWS], test_idx[:DRY_RUN_ROWS]
    train = _encoded_with(tokenizer, texts, y, train_idx, max_length, pad_id)
    val = _encoded_with(tokenizer, texts, y, val_idx, max_length, pad_id)
    set_seed(opts.seed)
    model = build_model(
        "pretrained",
        encoder=str(encoder),
        num_classes=len(labels),
        pooling=pooling,
        dropout=dropout,
        freeze_layers=freeze_layers,
        freeze_encoder=freeze_encoder,
        max_length=max_length,
        pad_id=pad_id,
        cls_id=cls_id,
    )
    history = fit_with(
        model,
        train,
        val,
        hyper,
        opts,
        loss=F.cross_entropy,
        metric=partial(macro_f1_metric, labels=labels),
        collate=trim_padding,
    )
    # Validation from PyTorch (what early stopping saw); test from the served ONNX file, in `_served`.
    metrics = class_metrics(model, {"validation": val}, {"validation": y[val_idx]}, labels, collate=trim_padding)
    summary: dict[str, Any] = {"split": "test"}
    test_texts = [texts[i] for i in test_idx]
    scorer = partial(
        _served,
        feeds=partial(_feeds, tokenizer, max_length=max_length, pad_id=pad_id),
        val=([texts[i] for i in val_idx], y[val_idx]),
        test=(test_texts, y[test_idx]),
        labels=labels,
        quantize=quantize,
        interval_f1=interval_f1,
        metrics=metrics,
        summary=summary,
        weights=weights or {"folder": str(encoder)},
    )
    return conclude(
        name,
        "pretrained",
        Fitted(
            model,
            history,
            metrics,
            serving_config(
                name,
                "text",
                description,
                # lowercase=False: BERT's own normalizer lowercases (and strips accents) inside tokenizer.json.
                TextPreprocessing(max_length=max_length, pad_id=pad_id, lowercase=False),
                labels=list(labels),
            ),
            cases=text_cases(
                tokenizer, test_texts, max_length, config_dict(model)["example_length"], pad_id, shortest=3
            ),
            split=split_sizes(parts, opts.seed, method="stratified", fractions=SPLIT),
            hyper=hyper_dict(
                config_dict(model),
                hyper,
                pooling=pooling,
                max_length=max_length,
                freeze_layers=freeze_layers,
                freeze_encoder=freeze_encoder,
                dropout=dropout,
                quantize=quantize,
                optimiser="AdamW, cosine decay over the planned epochs, early stopping on validation macro-F1",
            ),
            summary=summary,
            artefacts=partial(_artefacts, tokenizer, history, metrics, labels),
            after_export=scorer,
        ),
        opts,
        dataset,
        started,
    )


def _encoded_with(
    tokenizer: Tokenizer, texts: Sequence[str], y: np.ndarray, idx: np.ndarray, max_length: int, pad_id: int
) -> TensorDataset:
    """The texts at `idx`, tokenized and padded with the encoder's [PAD], with their labels."""
    ids, mask = encode_batch(tokenizer, [texts[i] for i in idx], max_length, pad_id)
    return TensorDataset(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(y[idx]))


def _feeds(tokenizer: Tokenizer, texts: Sequence[str], *, max_length: int, pad_id: int) -> list[Feeds]:
    """ONNX Runtime feeds for texts, `ONNX_BATCH` at a time, tokenized as the service does."""
    batches = []
    for i in range(0, len(texts), ONNX_BATCH):
        ids, mask = encode_batch(tokenizer, texts[i : i + ONNX_BATCH], max_length, pad_id)
        batches.append({"input_ids": ids, "attention_mask": mask})
    return batches


def _served(
    onnx_path: Path,
    *,
    feeds: Any,
    val: tuple[Sequence[str], np.ndarray],
    test: tuple[Sequence[str], np.ndarray],
    labels: Sequence[str],
    quantize: str,
    interval_f1: Sequence[str],
    metrics: dict[str, Any],
    summary: dict[str, Any],
    weights: dict[str, Any],
) -> dict[str, Any]:
    """After the fp32 export passed parity: quantize if asked, then score the served file on the test split.

    Fills `metrics["test"]` and `summary` in place (the CLI table reads them) and returns the card sections.
    """
    sections: dict[str, Any] = {"weights": weights}
    # The smaller file, where one passes, is what the version serves: a fine-tuned MiniLM is ~90 MB in fp32, and
    # the model repository is committed to git, where every version of every model stays in the history.
    kinds = parse_quantize(quantize)
    reports = serve_smallest(onnx_path, kinds, feeds(val[0]), val[1]) if kinds else []  # no tokenizing for none
    if reports:
        # The card's `quantization` is the file that decided (the one served, or the last refused);
        # the ones refused before it are listed in the order they were tried.
        sections["quantization"] = reports[-1].to_dict()
        if len(reports) > 1:
            sections["quantization_refused"] = [r.to_dict() for r in reports[:-1]]
    texts, y = test
    predicted = onnx_logits(onnx_path, feeds(texts)).argmax(1)
    test_metrics = ev.classification_metrics(y, predicted, labels)
    correct = int((predicted == y).sum())
    test_metrics["accuracy_ci95"] = list(ev.wilson_interval(correct, len(y)))
    for label in interval_f1:
        k = list(labels).index(label)
        f1 = partial(_class_f1, k=k)
        test_metrics[f"f1_{label}_ci95"] = list(ev.bootstrap_interval(y, predicted, f1, seed=0))
    test_metrics["computed_on"] = "the served model.onnx with ONNX Runtime (CPUExecutionProvider)"
    metrics["test"] = test_metrics
    summary.update({"n": len(y), "accuracy": test_metrics["accuracy"], "macro_f1": test_metrics["macro_f1"]})
    summary.update({f"f1_{k}": v for k, v in test_metrics["per_class_f1"].items()})
    if reports:
        summary["served"] = reports[-1].served
    sections["metrics"] = metrics
    return sections


def _class_f1(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> float:
    return float(f1_score(y_true, y_pred, labels=[k], average="macro", zero_division=0))


def _artefacts(
    tokenizer: Tokenizer, history: History, metrics: dict[str, Any], labels: Sequence[str], tmp: Path
) -> dict[str, Artefact]:
    save_tokenizer(tokenizer, tmp / "tokenizer.json")
    files: dict[str, Artefact] = {
        "tokenizer.json": tmp / "tokenizer.json",
        "training_curves.png": plots.training_curves(history, tmp / "curves.png", "macro-F1"),
    }
    # Drawn before the export: the test figures (from the served file) do not exist yet, validation's do.
    files["confusion_matrix_validation.png"] = plots.confusion_matrix(
        metrics["validation"]["confusion_matrix"], labels, tmp / "cm.png"
    )
    return files
