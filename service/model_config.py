"""The model repository's `config.json`: one schema, written by training and read by the service.

Layout (Triton-style)::

    models/<name>/config.json            the model's live config (task, tensors, batching, policy)
    models/<name>/<version>/model.onnx   one self-contained ONNX file per numeric version
    models/<name>/<version>/config.json  snapshot of the config this version was exported with
    models/<name>/<version>/...          artefacts: labels.txt, tokenizer.json, card.json, plots

A version carries its own snapshot because what it needs to reproduce its training inputs
(normalisation, tokenizer, threshold, labels, tensors) can change from one export to the next;
serving knobs (batching, version policy) belong to the model and come from the top-level file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CONFIG_FILE = "config.json"
MODEL_FILE = "model.onnx"

Task = Literal["vision", "text", "anomaly"]
# V2 / Triton datatype names; the numpy mapping lives in one dict in the service.
Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TensorSpec(_Strict):
    """One named input or output of the ONNX graph; -1 marks a dynamic dimension."""

    name: str
    datatype: Datatype
    dims: list[int]


class DynamicBatching(_Strict):
    """How long the batcher may hold the first request of a batch, and how many may queue."""

    max_queue_delay_ms: float = Field(2.0, ge=0)
    max_queue_size: int = Field(256, ge=1)


class LatestPolicy(_Strict):
    num_versions: int = Field(1, ge=1)


class SpecificPolicy(_Strict):
    versions: list[int]


class VersionPolicy(_Strict):
    """Which versions are served, as in Triton: the latest N (default 1), all, or specific ones."""

    latest: LatestPolicy | None = None
    all: dict | None = None
    specific: SpecificPolicy | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> VersionPolicy:
        chosen = [k for k in ("latest", "all", "specific") if getattr(self, k) is not None]
        if len(chosen) > 1:
            raise ValueError(f"version_policy takes one of latest/all/specific, got {chosen}")
        if not chosen:
            self.latest = LatestPolicy()
        return self

    def select(self, available: list[int]) -> list[int]:
        """The versions to serve out of those on disk, newest first."""
        newest_first = sorted(set(available), reverse=True)
        if self.all is not None:
            return newest_first
        if self.specific is not None:
            return [v for v in newest_first if v in set(self.specific.versions)]
        return newest_first[: self.latest.num_versions]


class ImagePreprocessing(_Strict):
    """Decode, convert to `channels`, resize to height x width, scale to [0, 1], then (x - mean) / std."""

    kind: Literal["image"] = "image"
    height: int = Field(ge=1)
    width: int = Field(ge=1)
    channels: Literal[1, 3]
    mean: list[float]
    std: list[float]
    # MNIST digits are light on dark; most photographed or scanned digits are dark on light.
    invert: bool = False


class TextPreprocessing(_Strict):
    """Tokenize with the version's own tokenizer file, truncate to max_length, pad to the batch's longest."""

    kind: Literal["text"] = "text"
    tokenizer: str = "tokenizer.json"
    max_length: int = Field(ge=1)
    pad_id: int = 0
    lowercase: bool = False


class TabularPreprocessing(_Strict):
    """Rows in `features` order, standardised as (x - mean) / scale before the model."""

    kind: Literal["tabular"] = "tabular"
    features: list[str]
    mean: list[float]
    scale: list[float]

    @model_validator(mode="after")
    def _same_length(self) -> TabularPreprocessing:
        if not (len(self.features) == len(self.mean) == len(self.scale)):
            raise ValueError("features, mean and scale must have the same length")
        return self


class SeriesPreprocessing(_Strict):
    """A univariate series normalised as (v - mean) / std and cut into windows of `window` points."""

    kind: Literal["series"] = "series"
    window: int = Field(ge=2)
    stride: int = Field(1, ge=1)
    mean: float
    std: float


Preprocessing = Annotated[
    ImagePreprocessing | TextPreprocessing | TabularPreprocessing | SeriesPreprocessing,
    Field(discriminator="kind"),
]


class AnomalySpec(_Strict):
    """The anomaly score is the model's `score` output (reconstruction error); above threshold = anomaly."""

    threshold: float
    score_output: str = "score"


class ModelConfig(_Strict):
    """`models/<name>/config.json`, also snapshotted into each version folder."""

    name: str
    task: Task
    platform: Literal["onnxruntime_onnx"] = "onnxruntime_onnx"
    description: str = ""
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    labels: list[str] = []
    preprocessing: Preprocessing
    anomaly: AnomalySpec | None = None
    max_batch_size: int = Field(64, ge=1)
    dynamic_batching: DynamicBatching = DynamicBatching()
    version_policy: VersionPolicy = VersionPolicy()

    @model_validator(mode="after")
    def _task_matches(self) -> ModelConfig:
        kind = self.preprocessing.kind
        allowed = {"vision": {"image"}, "text": {"text"}, "anomaly": {"tabular", "series"}}[self.task]
        if kind not in allowed:
            raise ValueError(f"task {self.task!r} cannot use {kind!r} preprocessing")
        if self.task == "anomaly" and self.anomaly is None:
            raise ValueError("an anomaly model needs an 'anomaly' section with its threshold")
        if self.task in ("vision", "text") and not self.labels:
            raise ValueError(f"a {self.task} model needs its labels")
        return self

    def serving_view(self, top: ModelConfig) -> ModelConfig:
        """This version snapshot with the model-level serving knobs of `top` applied."""
        return self.model_copy(
            update={
                "name": top.name,
                "max_batch_size": top.max_batch_size,
                "dynamic_batching": top.dynamic_batching,
                "version_policy": top.version_policy,
            }
        )


def read_config(path: Path) -> ModelConfig:
    """Parse and validate one config.json."""
    return ModelConfig.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))


def write_config(config: ModelConfig, path: Path) -> None:
    """Write config.json deterministically (sorted nothing, indented, trailing newline)."""
    Path(path).write_text(config.model_dump_json(indent=2, exclude_none=True) + "\n", encoding="utf-8")
