"""The seeded fit loop: AdamW, early stopping on a validation metric, best weights restored.

Plain functions in the pytorch/examples style. A batch is a tuple of tensors whose last item is the
target; everything before it is passed to the model positionally.

Under `torchrun` (see `training.distributed`) the same loop trains with DistributedDataParallel:
`batch_size` stays the global batch and each of the N processes takes 1/N of it from its
DistributedSampler shard. DDP averages the gradients of the N equal local batches, which is the
gradient of the global batch's mean loss, so the learning rate means what it means in one process.
Only rank 0 evaluates; the figures it finds are shared so that every rank stops at the same epoch
and keeps the same best weights.
"""

from __future__ import annotations

import copy
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from training import distributed
from training.distributed import Rank

# (model output, target) -> scalar loss to minimise.
LossFn = Callable[[Any, torch.Tensor], torch.Tensor]
# (outputs concatenated over the validation set, targets) -> a figure where higher is better.
MetricFn = Callable[[Any, torch.Tensor], float]
Collate = Callable[[list[tuple[torch.Tensor, ...]]], tuple[torch.Tensor, ...]]


@dataclass
class History:
    """Per-epoch figures of one fit, and which epoch's weights were kept."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_metric: list[float] = field(default_factory=list)
    best_epoch: int = 0
    best_metric: float = float("-inf")
    seconds: float = 0.0
    world_size: int = 1  # processes that trained it data-parallel (torchrun), 1 for a plain run

    def to_dict(self) -> dict[str, Any]:
        """Plain figures for the model card."""
        return {
            "epochs_run": len(self.train_loss),
            "best_epoch": self.best_epoch,
            "best_val_metric": self.best_metric,
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "val_metric": self.val_metric,
            "seconds": round(self.seconds, 2),
            "world_size": self.world_size,
        }


def set_seed(seed: int) -> None:
    """Seed Python, numpy and torch, and ask torch for deterministic kernels where it has them."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # warn_only: a few CPU kernels have no deterministic variant; a warning beats a crash.
    torch.use_deterministic_algorithms(True, warn_only=True)


def configure_threads() -> int:
    """One intra-op thread unless `AXON_TRAIN_THREADS` asks for more: reproducible, and fast on shared cores.

    A thread count that followed the machine's load would change float reduction order, and with it
    the trained weights, from one run to the next. One thread also measured fastest where cores are
    shared: a CNN step took 0.25 s on one thread and 0.8-1.6 s on two busy cores, because OpenMP
    workers spin waiting for a core. Small models gain little from a second thread anyway.
    """
    threads = int(os.environ.get("AXON_TRAIN_THREADS", "1"))
    torch.set_num_threads(threads)
    return threads


def trim_padding(batch: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """Collate (input_ids, attention_mask, target) rows and cut the padding columns no row needs."""
    ids, mask, target = (torch.stack(items) for items in zip(*batch))
    longest = int(mask.sum(dim=1).max())
    return ids[:, :longest], mask[:, :longest], target


def make_loader(
    data: Dataset[Any],
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    collate: Collate | None = None,
    rank: Rank | None = None,
) -> DataLoader[Any]:
    """A single-process loader whose shuffling depends only on `seed`; under DDP, this rank's shard of it.

    DistributedSampler permutes with `seed + epoch` (set by `fit`) and deals rank r the positions
    r, r+N, r+2N, ...: the k-th local batches of all ranks together are the k-th contiguous slice of
    N*batch_size positions of that permutation, i.e. one global batch.
    """
    if rank is not None and rank.active:
        sampler: DistributedSampler[Any] = DistributedSampler(
            data, num_replicas=rank.world_size, rank=rank.rank, shuffle=shuffle, seed=seed
        )
        return DataLoader(data, batch_size=batch_size, sampler=sampler, collate_fn=collate)
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator, collate_fn=collate)


def _forward(
    model: nn.Module, batch: Sequence[torch.Tensor], device: torch.device | None = None
) -> tuple[Any, torch.Tensor]:
    if device is not None and device.type != "cpu":
        batch = [t.to(device, non_blocking=True) for t in batch]
    *inputs, target = batch
    return model(*inputs), target


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader[Any],
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    *,
    grad_clip: float | None = 1.0,
    max_batches: int | None = None,
    progress: tqdm | None = None,
    device: torch.device | None = None,
) -> float:
    """One pass over `loader`; returns the mean training loss."""
    model.train()
    total, count = 0.0, 0
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        optimizer.zero_grad(set_to_none=True)
        output, target = _forward(model, batch, device)
        loss = loss_fn(output, target)
        loss.backward()  # type: ignore[no-untyped-call]  # PyTorch leaves Tensor.backward unannotated
        if grad_clip is not None:
            # Recurrent models on short noisy batches occasionally spike; clipping keeps AdamW steady.
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        total += float(loss.detach()) * len(target)
        count += len(target)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{total / count:.4f}")
    return total / max(count, 1)


def _concat(outputs: list[Any]) -> Any:
    if isinstance(outputs[0], torch.Tensor):
        return torch.cat(outputs)
    return tuple(torch.cat(parts) for parts in zip(*outputs))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader[Any],
    loss_fn: LossFn,
    *,
    max_batches: int | None = None,
    device: torch.device | None = None,
) -> tuple[float, Any, torch.Tensor]:
    """Mean loss, the model's outputs concatenated over the loader, and the targets."""
    model.eval()
    total, count, outputs, targets = 0.0, 0, [], []
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        output, target = _forward(model, batch, device)
        total += float(loss_fn(output, target)) * len(target)
        count += len(target)
        outputs.append(output)
        targets.append(target)
    return total / max(count, 1), _concat(outputs), torch.cat(targets)


@torch.no_grad()
def predict(model: nn.Module, data: Dataset[Any], *, batch_size: int = 256, collate: Collate | None = None) -> Any:
    """The model's outputs over a dataset, in order (targets ignored).

    Prediction is evaluation, which only rank 0 does: a worker rank that gets here has finished its
    share of the run (every fit before it) and leaves with `WorkerDone`.
    """
    if not distributed.current().is_main:
        raise distributed.WorkerDone
    model.eval()
    outputs = [_forward(model, batch)[0] for batch in make_loader(data, batch_size, shuffle=False, collate=collate)]
    return _concat(outputs)


def fit(
    model: nn.Module,
    train_data: Dataset[Any],
    val_data: Dataset[Any],
    *,
    loss: LossFn,
    metric: MetricFn,
    epochs: int = 20,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    batch_size: int = 64,
    patience: int = 5,
    seed: int = 0,
    dry_run: bool = False,
    collate: Collate | None = None,
    grad_clip: float | None = 1.0,
    progress: bool = True,
) -> History:
    """Train with AdamW, stop when the validation metric stops improving, and keep the best weights.

    Under `torchrun` the model is trained with DistributedDataParallel (see the module docstring);
    `batch_size` is the global batch and must divide evenly among the processes.
    """
    rank = distributed.current()
    configure_threads()
    # Rank 0 keeps the single-process stream; the others draw their own dropout and augmentation,
    # so a run reproduces for a given seed and number of processes.
    set_seed(seed + rank.rank)
    train_loader = make_loader(
        train_data, _local_batch(batch_size, rank), shuffle=True, seed=seed, collate=collate, rank=rank
    )
    val_loader = make_loader(val_data, max(batch_size, 256), shuffle=False, collate=collate)
    net = model.to(rank.device)
    # DDP broadcasts rank 0's weights when it wraps the model: every replica starts the same.
    trained: nn.Module = _ddp(net, rank) if rank.active else net
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    # Cosine decay over the planned epochs: early stopping may cut it short, which is fine.
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    max_batches = 1 if dry_run else None
    epochs = 1 if dry_run else epochs
    progress = progress and rank.is_main
    history, best_state, stale = History(world_size=rank.world_size), copy.deepcopy(net.state_dict()), 0
    started = time.perf_counter()
    steps = 1 if dry_run else len(train_loader)
    for epoch in range(1, epochs + 1):
        if isinstance(train_loader.sampler, DistributedSampler):
            train_loader.sampler.set_epoch(epoch)
        bar = tqdm(total=steps, desc=f"epoch {epoch}/{epochs}", leave=False, disable=not progress)
        train_loss = train_one_epoch(
            trained,
            train_loader,
            optimizer,
            loss,
            grad_clip=grad_clip,
            max_batches=max_batches,
            progress=bar,
            device=rank.device,
        )
        bar.close()
        scheduler.step()
        if rank.is_main:
            val_loss, outputs, targets = evaluate(net, val_loader, loss, max_batches=max_batches, device=rank.device)
            score = float(metric(outputs, targets))
        else:
            val_loss = score = 0.0
        if rank.active:
            train_loss, val_loss, score = _shared_figures(train_loss, val_loss, score, rank)
        history.train_loss.append(train_loss)
        history.val_loss.append(val_loss)
        history.val_metric.append(score)
        if progress:
            tqdm.write(
                f"epoch {epoch:3d}  train_loss {train_loss:.4f}  val_loss {val_loss:.4f}  val_metric {score:.4f}"
            )
        if score > history.best_metric:
            history.best_metric, history.best_epoch, stale = score, epoch, 0
            best_state = copy.deepcopy(net.state_dict())
        else:
            stale += 1
            if stale >= patience:
                break
    net.load_state_dict(best_state)
    # Export, parity checks and the repository work on CPU tensors.
    net.to("cpu")
    net.eval()
    history.seconds = time.perf_counter() - started
    return history


def _local_batch(batch_size: int, rank: Rank) -> int:
    """This process's share of the global batch."""
    if batch_size % rank.world_size:
        raise ValueError(
            f"the batch size {batch_size} is the global batch: it must divide evenly among {rank.world_size} processes"
        )
    return batch_size // rank.world_size


def _ddp(net: nn.Module, rank: Rank) -> DistributedDataParallel:
    device_ids = [rank.device.index] if rank.device.type == "cuda" else None
    return DistributedDataParallel(net, device_ids=device_ids)


def _shared_figures(train_loss: float, val_loss: float, score: float, rank: Rank) -> tuple[float, float, float]:
    """The epoch's figures every rank agrees on: the mean of the ranks' training losses, rank 0's validation.

    One all-reduce: worker ranks contribute zeros for the validation figures they never computed.
    Ranks hold equally many samples (DistributedSampler pads), so the mean of their means is the
    mean over the global batch.
    """
    figures = torch.tensor([train_loss / rank.world_size, val_loss, score], dtype=torch.float64, device=rank.device)
    torch.distributed.all_reduce(figures)
    return float(figures[0]), float(figures[1]), float(figures[2])
