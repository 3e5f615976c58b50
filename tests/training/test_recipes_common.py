"""What every recipe shares: a seeded fresh model, the recipe's patience, the anomaly metric, the seeded pool split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from training.recipes.common import Hyper, RunOptions, fit_new, fit_with, normal_fit, pool_parts, reconstruction_loss

AE = {"n_features": 3, "hidden": (4,), "latent": 2}


def _rows() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(16, 3, generator=g), torch.zeros(16, dtype=torch.int64))


def test_fit_new_starts_from_the_same_weights_for_the_same_seed(tmp_path: Path) -> None:
    opts = RunOptions(tmp_path, seed=3, dry_run=True, progress=False)
    states = []
    for draw in range(2):
        torch.manual_seed(100 + draw)  # whatever the global stream was before, the seed decides
        model, _ = fit_new(
            "dense-ae", AE, _rows(), _rows(), Hyper(epochs=1), opts, loss=reconstruction_loss, metric=normal_fit
        )
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_fit_with_stops_after_the_recipes_patience(tmp_path: Path) -> None:
    def mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (output.squeeze(1) - target.float()).pow(2).mean()

    history = fit_with(
        nn.Linear(3, 1),
        _rows(),
        _rows(),
        Hyper(epochs=6, patience=1, batch_size=8),
        RunOptions(tmp_path, progress=False),
        loss=mse,
        metric=lambda output, target: 0.0,  # never improves after epoch 1
    )
    assert history.to_dict()["epochs_run"] == 2


def test_normal_fit_scores_the_normal_rows_only() -> None:
    scores = torch.tensor([1.0, 3.0, 10.0])
    assert normal_fit((torch.zeros(3, 2), scores), torch.tensor([0, 0, 1])) == -2.0


def test_pool_parts_follow_the_seed() -> None:
    y = np.array([0] * 30 + [1] * 10)
    first = pool_parts(y, 1)
    assert all(np.array_equal(a, b) for a, b in zip(first, pool_parts(y, 1)))
    assert not np.array_equal(np.sort(first[2]), np.sort(pool_parts(y, 0)[2]))
