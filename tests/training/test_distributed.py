"""Data-parallel training: two gloo processes on CPU against a plain one-process loop, and `torchrun` end to end.

The reference loop below shares no code with `training.train`: it walks the permutation that
DistributedSampler documents (`torch.randperm(n)` seeded with `seed + epoch`) in slices of the
global batch, with one model, AdamW, clipping and cosine decay written out here. Two processes
taking half of each slice and averaging their gradients must land on the same weights.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from tests.support.data_roots import root
from training.distributed import Rank

WORLD = 2
N_TRAIN, N_VAL, GLOBAL_BATCH, EPOCHS, SEED, LR = 100, 40, 16, 4, 7, 5e-2
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data() -> tuple[torch.utils.data.TensorDataset, torch.utils.data.TensorDataset]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N_TRAIN + N_VAL, 4, generator=g)
    y = (x @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]]) + 0.1 * torch.randn(N_TRAIN + N_VAL, 1, generator=g)).tanh()
    ds = torch.utils.data.TensorDataset
    return ds(x[:N_TRAIN], y[:N_TRAIN]), ds(x[N_TRAIN:], y[N_TRAIN:])


def _model() -> nn.Module:
    torch.manual_seed(SEED)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


def _mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((output - target) ** 2).mean()


def _neg_mse(output: torch.Tensor, target: torch.Tensor) -> float:
    return -float(_mse(output, target))


def _worker(rank: int, port: int, out: str) -> None:
    """One of the two processes: fit twice with the same seed, record what it saw."""
    import torch.distributed as dist

    from training.train import fit

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    calls = []

    def metric(output: torch.Tensor, target: torch.Tensor) -> float:
        calls.append(len(target))
        return _neg_mse(output, target)

    train, val = _data()
    runs = []
    for _ in range(2):  # the second fit checks reproducibility, and that fits follow each other in lockstep
        model = _model()
        history = fit(
            model,
            train,
            val,
            loss=_mse,
            metric=metric,
            epochs=EPOCHS,
            lr=LR,
            batch_size=GLOBAL_BATCH,
            patience=EPOCHS,
            seed=SEED,
            progress=False,
        )
        runs.append({"state": model.state_dict(), "history": history.to_dict()})
    torch.save({"runs": runs, "metric_calls": calls}, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


def _reference(order_seed: int = SEED) -> tuple[dict[str, torch.Tensor], list[float], list[float]]:
    """The same training in one process with the global batch, written without `training.train`.

    Returns the best epoch's weights, the validation scores and each epoch's mean training loss over the rows.
    """
    torch.set_num_threads(1)
    train, val = _data()
    (x, y), (vx, vy) = train.tensors, val.tensors
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS)
    best, best_state, scores, train_losses = float("-inf"), None, [], []
    for epoch in range(1, EPOCHS + 1):
        perm = torch.randperm(N_TRAIN, generator=torch.Generator().manual_seed(order_seed + epoch))
        total = 0.0
        for start in range(0, N_TRAIN, GLOBAL_BATCH):
            idx = perm[start : start + GLOBAL_BATCH]
            opt.zero_grad()
            loss = _mse(model(x[idx]), y[idx])
            total += loss.item() * len(idx)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        sched.step()
        train_losses.append(total / N_TRAIN)
        with torch.no_grad():
            scores.append(_neg_mse(model(vx), vy))
        if scores[-1] > best:
            best, best_state = scores[-1], copy.deepcopy(model.state_dict())
    return best_state, scores, train_losses


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_two_processes_match_one_process_with_the_same_global_batch(two_ranks):
    state, scores, train_losses = _reference()
    ddp = two_ranks[0]["runs"][0]
    assert ddp["history"]["world_size"] == WORLD
    assert ddp["history"]["val_metric"] == pytest.approx(scores, abs=1e-5)
    # Each rank's mean loss over its half, averaged: the mean over the global batch's rows.
    assert ddp["history"]["train_loss"] == pytest.approx(train_losses, abs=1e-5)
    assert _max_diff(ddp["state"], state) < 1e-4
    # The tolerance is far below what a different batch order alone would give: the test can fail.
    other, _, _ = _reference(order_seed=SEED + 100)
    assert _max_diff(other, state) > 1e-2


def test_a_run_reproduces_and_every_rank_ends_with_the_same_weights(two_ranks):
    first, second = two_ranks[0]["runs"]
    assert all(torch.equal(first["state"][k], second["state"][k]) for k in first["state"])
    worker = two_ranks[1]["runs"][0]
    assert all(torch.equal(first["state"][k], worker["state"][k]) for k in first["state"])


def test_only_rank_0_evaluates_and_all_ranks_share_its_figures(two_ranks):
    assert two_ranks[0]["metric_calls"] == [N_VAL] * (2 * EPOCHS)
    assert two_ranks[1]["metric_calls"] == []
    for key in ("train_loss", "val_loss", "val_metric", "best_epoch"):
        assert two_ranks[1]["runs"][0]["history"][key] == two_ranks[0]["runs"][0]["history"][key]


def test_the_global_batch_must_divide_among_the_processes():
    from training.train import _local_batch

    assert _local_batch(64, Rank(0, 2)) == 32
    with pytest.raises(ValueError, match="batch size 64 is the global batch: it must divide evenly among 3"):
        _local_batch(64, Rank(0, 3))


def test_predict_on_a_worker_rank_ends_that_rank(monkeypatch):
    from training import distributed, train

    monkeypatch.setattr(distributed, "current", lambda: Rank(1, 2))
    with pytest.raises(distributed.WorkerDone):
        train.predict(nn.Linear(2, 1), torch.utils.data.TensorDataset(torch.zeros(3, 2), torch.zeros(3)))


def test_torchrun_trains_and_only_rank_0_writes_the_repository(tmp_path):
    data = root("thyroid_ann") / "thyroid_ann" / "ann-train.data"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    # `python -m torch.distributed.run` is the `torchrun` script, found through the interpreter.
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={WORLD}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{_free_port()}",
        "-m",
        "training",
        "train",
        "thyroid-ddp",
        "--family",
        "dense-ae",
        "--dataset",
        "thyroid",
        "--data",
        str(data),
        "--repository",
        str(tmp_path),
        "--epochs",
        "2",
        "--batch-size",
        "128",
        "--quiet",
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "thyroid-ddp").iterdir() if p.is_dir()) == ["1"]
    card = json.loads((tmp_path / "thyroid-ddp" / "1" / "card.json").read_text())
    assert card["training"]["world_size"] == WORLD
    assert done.stdout.count("thyroid-ddp") == 1  # one table line: the worker printed nothing


def test_only_train_runs_under_torchrun(monkeypatch, capsys, tmp_path):
    from training.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["rebuild", "--dry-run", "--repository", str(tmp_path)]) == 2
    assert "only `train` runs under torchrun, not `rebuild`" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_worker_rank_leaves_with_its_output_flushed_and_status_0():
    # Piped stdout is block-buffered: without the flush before os._exit the line would be lost.
    code = "from training import distributed; print('share done'); distributed.leave(); print('not reached')"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "share done\n")


def test_only_a_world_of_two_or_more_is_a_launch(monkeypatch):
    from training.distributed import launched

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not launched()
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun --nproc_per_node=1 sets it too
    assert not launched()
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launched()
