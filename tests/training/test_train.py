"""The fit loop in one process: seeding, thread count, loaders, padding trim, early stopping and the kept weights."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from training.train import configure_threads, fit, make_loader, set_seed, trim_padding


def _mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((output - target) ** 2).mean()


def _data(rows: int = 8) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(rows, 3, generator=g), torch.randn(rows, 1, generator=g))


def _fit(model: nn.Module, metric, **kw) -> object:
    data = _data()
    return fit(model, data, data, loss=_mse, metric=metric, batch_size=4, lr=0.1, progress=False, **kw)


@pytest.fixture
def deterministic_setting():
    """set_seed switches torch's global deterministic mode: put back what the test found."""
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def test_set_seed_repeats_python_numpy_and_torch_draws_and_asks_for_deterministic_kernels(deterministic_setting):
    def draws() -> tuple:
        return random.random(), float(np.random.rand()), torch.rand(3).tolist()

    set_seed(11)
    first = draws()
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    set_seed(11)
    assert draws() == first
    set_seed(12)
    assert draws()[2] != first[2]


def test_one_thread_unless_the_environment_asks_for_more(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("AXON_TRAIN_THREADS", raising=False)
        torch.set_num_threads(2)
        assert configure_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("AXON_TRAIN_THREADS", "2")
        assert configure_threads() == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_trim_padding_keeps_the_longest_rows_tokens():
    batch = [
        (torch.tensor([2, 5, 0, 0, 0]), torch.tensor([1, 1, 0, 0, 0]), torch.tensor(0)),
        (torch.tensor([2, 5, 6, 0, 0]), torch.tensor([1, 1, 1, 0, 0]), torch.tensor(1)),
    ]
    ids, mask, target = trim_padding(batch)
    assert ids.tolist() == [[2, 5, 0], [2, 5, 6]]
    assert mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    assert target.tolist() == [0, 1]


def test_a_shuffling_loader_follows_its_seed_alone():
    data = TensorDataset(torch.arange(10))

    def order(seed: int, global_seed: int) -> list[int]:
        torch.manual_seed(global_seed)  # the global stream must not matter
        return next(iter(make_loader(data, 10, shuffle=True, seed=seed)))[0].tolist()

    assert order(3, global_seed=0) == order(3, global_seed=1)
    assert order(3, global_seed=0) != order(4, global_seed=0)
    assert sorted(order(3, global_seed=0)) == list(range(10)) != order(3, global_seed=0)
    assert next(iter(make_loader(data, 10, shuffle=False)))[0].tolist() == list(range(10))


def test_early_stopping_keeps_the_first_best_epoch_and_waits_patience_epochs():
    torch.manual_seed(0)
    history = _fit(nn.Linear(3, 1), lambda output, target: 0.5, epochs=10, patience=2)
    # A flat metric: epoch 1 is the best (a tie is no improvement), then two stale epochs end the run.
    assert history.best_epoch == 1
    assert len(history.train_loss) == len(history.val_metric) == 3
    assert history.to_dict()["epochs_run"] == 3


def test_fit_restores_the_best_epochs_weights_and_returns_an_eval_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.Linear(8, 1))
    scores, seen = iter([3.0, 1.0, 2.0]), []

    def metric(output: torch.Tensor, target: torch.Tensor) -> float:
        seen.append((model.training, copy.deepcopy(model.state_dict())))
        return next(scores)

    history = _fit(model, metric, epochs=3, patience=5)
    assert history.best_epoch == 1 and history.val_metric == [3.0, 1.0, 2.0]
    assert [training for training, _ in seen] == [False] * 3  # validation runs without dropout
    best, last = seen[0][1], seen[-1][1]
    assert all(torch.equal(model.state_dict()[k], best[k]) for k in best)
    assert not all(torch.equal(last[k], best[k]) for k in best)  # training did move the weights
    assert not model.training


def test_a_dry_run_is_one_training_batch_and_one_validation_batch():
    sizes = []

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        sizes.append(len(target))
        return _mse(output, target)

    data = _data()
    history = fit(
        nn.Linear(3, 1), data, data, loss=loss, metric=lambda o, t: 0.0, batch_size=2, dry_run=True, progress=False
    )
    assert sizes == [2, 8]  # one training batch of 2, then the validation rows (one batch of up to 256)
    assert history.to_dict()["epochs_run"] == 1
