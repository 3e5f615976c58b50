"""What every recipe shares: options, hyper-parameters, outcome, and the skeleton they all follow.

A recipe is split -> fit -> metrics -> publish. `fit_new` (seed, build, fit) and `conclude` (draw the
artefacts, write the version with its card, report the outcome) are that skeleton; a recipe module holds
only what is particular to its task: how it prepares and splits its data, which metrics and threshold it
computes, its parity cases and plots, and returns them as a `Fitted`.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from modelrepo.config import DynamicBatching, ModelConfig
from training import metrics as ev
from training.data.kinds import describe_files  # noqa: F401 - re-exported: recipes describe their data
from training.data.split import POOL_SPLIT, stratified_split
from training.models import build_model
from training.repository import AfterExport, Artefact, WrittenVersion, card_writer, write_version
from training.train import History, fit, predict, set_seed

SPLIT = POOL_SPLIT
SERVING = {"max_batch_size": 64, "dynamic_batching": DynamicBatching(max_queue_delay_ms=2.0)}


@dataclass
class Hyper:
    """Fit hyper-parameters shared by every recipe."""

    epochs: int = 20
    lr: float = 1e-3
    weight_decay: float = 1e-2
    batch_size: int = 64
    patience: int = 5


@dataclass
class RunOptions:
    """Where a run writes and how it runs."""

    repository: Path
    seed: int = 0
    dry_run: bool = False
    progress: bool = True


@dataclass
class Outcome:
    """What one recipe produced: the version written and its metrics."""

    name: str
    version: int
    path: Path
    metrics: dict[str, Any]
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)  # the headline figures for the CLI table
    model: nn.Module | None = field(default=None, repr=False)  # the trained model, for `train --checkpoint`


def accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Share of rows whose highest logit is the target class."""
    return float((logits.argmax(dim=1) == target).float().mean())


def reconstruction_loss(output: tuple[torch.Tensor, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """The autoencoder's own score averaged over the batch: per-row mean squared reconstruction error."""
    return output[1].mean()


def normal_fit(output: tuple[torch.Tensor, torch.Tensor], target: torch.Tensor) -> float:
    """Higher is better: minus the mean score of the normal rows."""
    return -float(output[1][target == 0].mean())


def split_sizes(parts: Sequence[np.ndarray], seed: int, **extra: Any) -> dict[str, Any]:
    """The card's split section: seed and the size of each part."""
    names = ("train", "validation", "test")
    return {"seed": seed, "sizes": {n: len(p) for n, p in zip(names, parts)}, **extra}


def publish(
    model: nn.Module,
    config: ModelConfig,
    cases: Sequence[Sequence[np.ndarray]],
    opts: RunOptions,
    *,
    family: str,
    dataset: dict[str, Any],
    split: dict[str, Any],
    hyper: dict[str, Any],
    metrics: dict[str, Any],
    history: History,
    artefacts: dict[str, Path | str | bytes],
    after_export: AfterExport | None = None,
) -> WrittenVersion:
    """Write the trained model as a new repository version with its card, artefacts and configs."""
    card = card_writer(
        name=config.name,
        family=family,
        dataset=dataset,
        split=split,
        hyperparameters=hyper,
        parameters=sum(p.numel() for p in model.parameters()),
        metrics=metrics,
        training={**history.to_dict(), "dry_run": opts.dry_run, "torch_threads": torch.get_num_threads()},
    )
    return write_version(
        opts.repository, model, config, cases, artefacts=artefacts, card=card, after_export=after_export
    )


def hyper_dict(family_cfg: dict[str, Any], hyper: Hyper, **extra: Any) -> dict[str, Any]:
    """The card's hyper-parameters: the model config, the fit settings and recipe extras."""
    return {"model": family_cfg, "fit": dataclasses.asdict(hyper), **extra}


def fit_with(
    model: nn.Module, train: Dataset[Any], val: Dataset[Any], hyper: Hyper, opts: RunOptions, **kw: Any
) -> History:
    """`train.fit` with a recipe's hyper-parameters and run options."""
    return fit(
        model,
        train,
        val,
        epochs=hyper.epochs,
        lr=hyper.lr,
        weight_decay=hyper.weight_decay,
        batch_size=hyper.batch_size,
        patience=hyper.patience,
        seed=opts.seed,
        dry_run=opts.dry_run,
        progress=opts.progress,
        **kw,
    )


def class_report(logits: torch.Tensor, y: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Classification metrics of logits against integer labels."""
    return ev.classification_metrics(y, logits.argmax(dim=1).numpy(), labels)


# ------------------------------------------------------------------------------------------ skeleton
@dataclass
class Fitted:
    """What a recipe's own part produces; `conclude` publishes it as a version."""

    model: nn.Module
    history: History
    metrics: dict[str, Any]
    config: ModelConfig  # tensors are filled in from the export
    cases: Sequence[Sequence[np.ndarray]]  # held-out inputs that prove ONNX Runtime / PyTorch parity
    split: dict[str, Any]  # the card's split section
    hyper: dict[str, Any]  # the card's hyper-parameters
    summary: dict[str, Any]  # headline figures for the CLI table
    artefacts: Callable[[Path], dict[str, Artefact]]  # writes plots and files into a scratch folder
    # Runs on the verified model.onnx (may quantize it, score it) and returns card sections; see write_version.
    after_export: AfterExport | None = None


def serving_config(name: str, task: str, description: str, preprocessing: Any, **fields: Any) -> ModelConfig:
    """The version's config before export, with the serving knobs every default model starts with."""
    return ModelConfig(
        name=name,
        task=task,
        description=description,
        inputs=[],
        outputs=[],
        preprocessing=preprocessing,
        **fields,
        **SERVING,
    )


def pool_parts(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train / validation / test indices of a pool: stratified, seeded, `SPLIT` fractions."""
    train_idx, val_idx, test_idx = stratified_split(y, SPLIT, seed=seed)
    return train_idx, val_idx, test_idx


def rows(idx: np.ndarray, *arrays: np.ndarray) -> TensorDataset:
    """The rows `idx` of aligned arrays as a TensorDataset (inputs first, target last)."""
    return TensorDataset(*(torch.from_numpy(a[idx]) for a in arrays))


def fit_new(
    family: str,
    model_cfg: dict[str, Any],
    train: Dataset[Any],
    val: Dataset[Any],
    hyper: Hyper,
    opts: RunOptions,
    **kw: Any,
) -> tuple[nn.Module, History]:
    """A fresh seeded model of `family`, fitted with early stopping on the validation metric."""
    set_seed(opts.seed)
    model = build_model(family, **model_cfg)
    return model, fit_with(model, train, val, hyper, opts, **kw)


def class_metrics(
    model: nn.Module,
    parts: dict[str, Dataset[Any]],
    y: dict[str, np.ndarray],
    labels: Sequence[str],
    collate: Any = None,
) -> dict[str, Any]:
    """Classification metrics of a classifier on each named part."""
    return {
        split: class_report(predict(model, data, collate=collate), y[split], labels) for split, data in parts.items()
    }


def conclude(
    name: str, family: str, fitted: Fitted, opts: RunOptions, dataset: dict[str, Any], started: float
) -> Outcome:
    """Publish a fitted model as the next version (artefacts drawn in a scratch folder) and report it."""
    with tempfile.TemporaryDirectory() as tmp:
        written = publish(
            fitted.model,
            fitted.config,
            fitted.cases,
            opts,
            family=family,
            dataset=dataset,
            split=fitted.split,
            hyper=fitted.hyper,
            metrics=fitted.metrics,
            history=fitted.history,
            artefacts=fitted.artefacts(Path(tmp)),
            after_export=fitted.after_export,
        )
    return Outcome(
        name, written.version, written.path, fitted.metrics, time.perf_counter() - started, fitted.summary, fitted.model
    )
