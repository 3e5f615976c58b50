"""What every task module provides: codecs built per version, jobs the data plane runs, and its spec.

A task module (`service.tasks.vision`, `text`, `anomaly`) holds everything one task knows: its codecs
(client values -> tensors, exactly as training prepared them), its answer building, its request and
answer types, and its lean handler. `service.tasks.TASKS` registers them; nothing else names a task.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from modelrepo.config import ModelConfig
from service.rows import Rows
from service.runtime import Tensors
from service.settings import Limits

if TYPE_CHECKING:
    from service.batcher import BatchResult
    from service.lean import LeanRoute
    from service.registry import ModelVersion


class Codec:
    """A version's pre-processing, built once when the version loads; subclasses add `encode(values) -> Tensors`.

    A codec whose per-request cost is mostly per-call overhead also implements `service.rows.RowCodec`, and its
    jobs queue `Rows`: the batcher then encodes and answers a whole batch at once (the text codec does).
    """

    def __init__(self, config: ModelConfig, version_dir: Path, limits: Limits) -> None:
        self.config = config
        self.limits = limits
        self.input = config.inputs[0].name

    @property
    def pad_values(self) -> dict[str, float]:
        """What the batcher pads each input with when rows of different lengths share a batch (none by default)."""
        return {}

    def check(self, inputs: Tensors, label: str) -> None:
        """Checks on raw (V2) tensors beyond the signature, for what would fail a whole batch; none by default."""


CodecFactory = Callable[[ModelConfig, Path, Limits], Codec]


class Request(Protocol):
    """What every task request names: the task its model must have, and which model and version."""

    @property
    def task(self) -> str:
        """The config task the model must have, also the endpoint's metric label."""

    @property
    def default_model(self) -> str:
        """The field of `settings.default_models` naming the model used when the request names none."""

    @property
    def model(self) -> str | None:
        """The model the request names, if any."""

    @property
    def version(self) -> int | None:
        """The version the request names, if any."""


class Job(Request, Protocol):
    """One task request, parsed and checked, as the data plane runs it (find, encode, batch, answer)."""

    @property
    def size(self) -> int:
        """Payload bytes: above `dataplane.OFFLOAD_BYTES` the encoding runs in a worker thread."""

    def encode(self, entry: ModelVersion) -> Tensors | Rows:
        """The model inputs for this request made with the version's own codec, or raw rows it encodes per batch."""

    def answer(self, entry: ModelVersion, result: BatchResult) -> Mapping[str, Any]:
        """The answer's task part from the request's outputs or row answers (the data plane adds `model`, `version`)."""


@dataclass(frozen=True)
class TaskSpec:
    """One task as the rest of the service sees it: its name, its codecs and its inference routes."""

    name: str
    codecs: Mapping[str, CodecFactory]  # preprocessing kind (config.json) -> the codec built for it
    routes: Sequence[LeanRoute]


def label_of(labels: list[str], index: int) -> str:
    """The name of class `index`, or its number when the config lists fewer labels."""
    return labels[index] if index < len(labels) else str(index)


SCORE_DIGITS = 6


def shown(score: float) -> float:
    """A score as answers carry it: 6 significant digits (the rest of a float64 is noise past float32 logits).

    Verdicts (`is_anomaly`, the best label) are decided on the unrounded value before this is applied.
    """
    return float(f"{score:.{SCORE_DIGITS}g}")
