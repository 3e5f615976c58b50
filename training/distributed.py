"""Data-parallel training under `torchrun`: the process group, this process's rank, and its device.

`torchrun --nproc_per_node=N -m training train ...` starts N copies of the CLI with `RANK`,
`WORLD_SIZE`, `LOCAL_RANK` and the rendezvous address in their environment. `init_from_env` joins
them into one process group (gloo on CPU, nccl on GPU); `train.fit` then wraps the model in
DistributedDataParallel and shards the training data. Every rank runs every fit in lockstep; only
rank 0 evaluates, and the worker ranks stop when the recipe turns to evaluation and export
(`WorkerDone`), so exactly one process writes the repository.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import NoReturn

import torch
import torch.distributed as dist


class WorkerDone(Exception):
    """Raised on a worker rank when the run reaches work that only rank 0 does (evaluation, export)."""


@dataclass(frozen=True)
class Rank:
    """This process's place in the run: rank, world size, and the device its replica lives on."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that evaluates, logs and writes."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """More than one process takes part: gradients are averaged across them."""
        return self.world_size > 1


def launched() -> bool:
    """Whether `torchrun` (or any launcher that sets `WORLD_SIZE`) started more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env() -> Rank:
    """Join the process group `torchrun` describes in the environment; a no-op for a single process.

    nccl needs one GPU per process, so it is chosen only when CUDA is there; gloo runs anywhere.
    `AXON_DIST_BACKEND` overrides the choice (e.g. gloo on a GPU host, to compare).
    """
    if not launched():
        return Rank()
    cuda = torch.cuda.is_available()
    backend = os.environ.get("AXON_DIST_BACKEND") or ("nccl" if cuda else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return current()


def current() -> Rank:
    """The rank of this process in the initialised group, or a lone rank 0 when there is none."""
    if not (dist.is_available() and dist.is_initialized()):
        return Rank()
    nccl = dist.get_backend() == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    return Rank(dist.get_rank(), dist.get_world_size(), device)


def shutdown() -> None:
    """Leave the process group (every rank calls it once its part is done)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def leave() -> NoReturn:
    """End a worker rank whose share is done (it writes nothing): leave the group, then exit at once.

    Not through interpreter finalization: gloo's worker threads may still be releasing the last collective's
    tensors, and one that takes the GIL for that while the interpreter finalizes aborts the whole process
    (pytorch/pytorch#190489). Seen here as a rare SIGABRT of rank 1 under load (3 runs in about 220 with the
    two cores busy); torchrun then stopped rank 0 with SIGTERM and failed the run.
    """
    shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
