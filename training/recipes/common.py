"""What every recipe shares: options, hyper-parameters, outcome, the fit call and publishing a version."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from service.model_config import DynamicBatching, ModelConfig
from training import metrics as ev
from training.data.split import POOL_SPLIT
from training.data.kinds import describe_files  # noqa: F401 - re-exported: recipes describe their data
from training.repository import WrittenVersion, card_writer, write_version
from training.train import History, fit


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
    return {"seed": seed, "sizes": {n: int(len(p)) for n, p in zip(names, parts)}, **extra}


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
    return write_version(opts.repository, model, config, cases, artefacts=artefacts, card=card)


def hyper_dict(family_cfg: dict[str, Any], hyper: Hyper, **extra: Any) -> dict[str, Any]:
    """The card's hyper-parameters: the model config, the fit settings and recipe extras."""
    return {"model": family_cfg, "fit": dataclasses.asdict(hyper), **extra}


def fit_with(model: nn.Module, train: Dataset, val: Dataset, hyper: Hyper, opts: RunOptions, **kw: Any) -> History:
    """`train.fit` with a recipe's hyper-parameters and run options."""
    return fit(
        model, train, val,
        epochs=hyper.epochs, lr=hyper.lr, weight_decay=hyper.weight_decay, batch_size=hyper.batch_size,
        patience=hyper.patience, seed=opts.seed, dry_run=opts.dry_run, progress=opts.progress, **kw,
    )


def class_report(logits: torch.Tensor, y: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Classification metrics of logits against integer labels."""
    return ev.classification_metrics(y, logits.argmax(dim=1).numpy(), labels)
