"""The model repository's `config.json`: one schema, written by training and read by the service.

Where the files are is `modelrepo.layout`. A version carries its own snapshot because what it needs
to reproduce its training inputs (normalisation, tokenizer, threshold, labels, tensors) can change
from one export to the next; serving knobs (batching, version policy) belong to the model and come
from the top-level file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from modelrepo.datatypes import Datatype
from modelrepo.layout import MAX_NAME_LENGTH

# Every number and list in the schema has a ceiling: config.json is read by the server process, and a
# value such as max_batch_size = 10^12 once made warm-up try to allocate 76 TiB. The ceilings sit far
# above any model this service is meant for, and low enough that no single value can exhaust it.
MAX_CONFIG_BYTES = 4 * 1024 * 1024
MAX_BATCH_SIZE = 4096
MAX_QUEUE_SIZE = 65_536
MAX_QUEUE_DELAY_MS = 10_000.0
MAX_TENSORS = 64
MAX_RANK = 8
MAX_DIM = 65_536
MAX_ROW_ELEMENTS = 1 << 24  # fixed dims of one row: 16 Mi elements (64 MiB of FP32)
MAX_IMAGE_SIDE = 4096
MAX_SEQUENCE_LENGTH = 8192
MAX_SERIES_WINDOW = 65_536
MAX_FEATURES = 4096
MAX_LABELS = 65_536
MAX_VERSIONS = 1000
MAX_VERSION = 10**18 - 1  # versions fit an int64, as in Triton
MAX_TEXT = 4096  # description
MAX_NAME = 256  # tensor, feature and label names
MAX_INSTANCES = 64  # ONNX Runtime sessions of one version, over all its instance groups (each holds the weights)
MAX_GPU_ID = 1023

Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
# A file of the version folder, named plainly: no path separators, no '..', nothing hidden.
FileName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")]

# A new task adds its name here and the preprocessing kinds it may use to TASK_PREPROCESSING (and a
# preprocessing section below if it needs a new kind); the service's side of it is one task module.
Task = Literal["vision", "text", "anomaly"]
TASK_PREPROCESSING: dict[str, set[str]] = {"vision": {"image"}, "text": {"text"}, "anomaly": {"tabular", "series"}}
# Tasks whose answers name classes: their configs must list the labels.
LABELLED_TASKS = {"vision", "text"}
# The knobs that belong to the model, not to a version: the top-level config.json always supplies them,
# and training keeps an operator's values when it writes a new version.
SERVING_KNOBS = ("max_batch_size", "dynamic_batching", "version_policy", "instance_group")


class ConfigError(ValueError):
    """A config.json refused before its schema is even checked (too large, nested too deeply)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TensorSpec(_Strict):
    """One named input or output of the ONNX graph; -1 marks a dynamic dimension."""

    name: Name
    datatype: Datatype
    dims: list[Annotated[int, Field(ge=-1, le=MAX_DIM)]] = Field(max_length=MAX_RANK)
    # Requests whose dynamic non-batch axes differ may share a batch, padded with `pad_value`. Only the
    # model knows whether padding changes its answer (a mask input, a length input), so only a config says so.
    pad: bool = False
    pad_value: Finite = 0.0

    @model_validator(mode="after")
    def _sane_dims(self) -> TensorSpec:
        if 0 in self.dims:
            raise ValueError("a dimension is -1 (dynamic) or at least 1, never 0")
        fixed = 1
        for d in self.dims:
            fixed *= max(d, 1)
        if fixed > MAX_ROW_ELEMENTS:
            raise ValueError(f"the fixed dimensions hold {fixed} elements, more than {MAX_ROW_ELEMENTS}")
        return self


class DynamicBatching(_Strict):
    """How long the batcher may hold the first request of a batch, and how many may queue."""

    max_queue_delay_ms: float = Field(2.0, ge=0, le=MAX_QUEUE_DELAY_MS, allow_inf_nan=False)
    max_queue_size: int = Field(256, ge=1, le=MAX_QUEUE_SIZE)


class LatestPolicy(_Strict):
    num_versions: int = Field(1, ge=1, le=MAX_VERSIONS)


class SpecificPolicy(_Strict):
    versions: list[Annotated[int, Field(ge=1, le=MAX_VERSION)]] = Field(max_length=MAX_VERSIONS)


class VersionPolicy(_Strict):
    """Which versions are served, as in Triton: the latest N (default 1), all, or specific ones."""

    latest: LatestPolicy | None = None
    all: dict[str, object] | None = Field(None, max_length=0)  # Triton writes `"all": {}`; it has no fields
    specific: SpecificPolicy | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> VersionPolicy:
        chosen = [k for k in ("latest", "all", "specific") if getattr(self, k) is not None]
        if len(chosen) > 1:
            raise ValueError(f"version_policy takes one of latest/all/specific, got {chosen}")
        if not chosen:
            self.latest = LatestPolicy(num_versions=1)
        return self

    def select(self, available: list[int]) -> list[int]:
        """The versions to serve out of those on disk, newest first."""
        newest_first = sorted(set(available), reverse=True)
        if self.all is not None:
            return newest_first
        if self.specific is not None:
            return [v for v in newest_first if v in set(self.specific.versions)]
        assert self.latest is not None  # the validator picks `latest` when no kind is given
        return newest_first[: self.latest.num_versions]


class InstanceGroup(_Strict):
    """Triton's `instance_group`: `count` sessions on the CPU, or `count` on each GPU listed in `gpus`.

    KIND_AUTO (the default) runs on the first of AXON_PROVIDERS that loads, on AXON_GPU_DEVICE_ID, as a
    model without instance groups always has; KIND_GPU without `gpus` means that same device.
    """

    name: str = Field("", max_length=MAX_NAME)
    kind: Literal["KIND_AUTO", "KIND_CPU", "KIND_GPU"] = "KIND_AUTO"
    count: int = Field(1, ge=1, le=MAX_INSTANCES)
    gpus: list[Annotated[int, Field(ge=0, le=MAX_GPU_ID)]] = Field([], max_length=MAX_INSTANCES)

    @model_validator(mode="after")
    def _gpus_for_gpu_kind(self) -> InstanceGroup:
        if self.gpus and self.kind != "KIND_GPU":
            raise ValueError(f"gpus are listed only for kind KIND_GPU, not {self.kind}")
        if len(set(self.gpus)) != len(self.gpus):
            raise ValueError(f"gpus lists a device twice: {self.gpus}")
        return self

    @property
    def instances(self) -> int:
        """Sessions this group asks for: `count` per listed GPU."""
        return self.count * max(1, len(self.gpus))


def _instances_bounded(groups: list[InstanceGroup]) -> list[InstanceGroup]:
    total = sum(g.instances for g in groups)
    if total > MAX_INSTANCES:
        raise ValueError(f"instance_group asks for {total} sessions, more than {MAX_INSTANCES}")
    return groups


InstanceGroups = Annotated[
    list[InstanceGroup], Field(min_length=1, max_length=MAX_INSTANCES), AfterValidator(_instances_bounded)
]


class ImagePreprocessing(_Strict):
    """Decode, convert to `channels`, resize to height x width, scale to [0, 1], then (x - mean) / std."""

    kind: Literal["image"] = "image"
    height: int = Field(ge=1, le=MAX_IMAGE_SIDE)
    width: int = Field(ge=1, le=MAX_IMAGE_SIDE)
    channels: Literal[1, 3]
    mean: list[Finite] = Field(max_length=3)
    std: list[Positive] = Field(max_length=3)
    # MNIST digits are light on dark; most photographed or scanned digits are dark on light.
    invert: bool = False

    @model_validator(mode="after")
    def _per_channel(self) -> ImagePreprocessing:
        if not (len(self.mean) == len(self.std) == self.channels):
            raise ValueError(f"mean and std need one value per channel ({self.channels})")
        return self


class TextPreprocessing(_Strict):
    """Tokenize with the version's own tokenizer file, truncate to max_length, pad to the batch's longest."""

    kind: Literal["text"] = "text"
    tokenizer: FileName = "tokenizer.json"
    max_length: int = Field(ge=1, le=MAX_SEQUENCE_LENGTH)
    pad_id: int = Field(0, ge=0, le=2**31 - 1)
    lowercase: bool = False


class TabularPreprocessing(_Strict):
    """Rows in `features` order, standardised as (x - mean) / scale before the model."""

    kind: Literal["tabular"] = "tabular"
    features: list[Name] = Field(min_length=1, max_length=MAX_FEATURES)
    mean: list[Finite] = Field(max_length=MAX_FEATURES)
    # 0 marks a constant column (the codec divides it by 1), so only negatives and non-finite values are refused.
    scale: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(max_length=MAX_FEATURES)

    @model_validator(mode="after")
    def _same_length(self) -> TabularPreprocessing:
        if not (len(self.features) == len(self.mean) == len(self.scale)):
            raise ValueError("features, mean and scale must have the same length")
        return self


class SeriesPreprocessing(_Strict):
    """A univariate series normalised as (v - mean) / std and cut into windows of `window` points."""

    kind: Literal["series"] = "series"
    window: int = Field(ge=2, le=MAX_SERIES_WINDOW)
    stride: int = Field(1, ge=1, le=MAX_SERIES_WINDOW)
    mean: Finite
    std: Positive


Preprocessing = Annotated[
    ImagePreprocessing | TextPreprocessing | TabularPreprocessing | SeriesPreprocessing,
    Field(discriminator="kind"),
]


class AnomalySpec(_Strict):
    """The anomaly score is the model's `score` output (reconstruction error); above threshold = anomaly."""

    threshold: Finite
    score_output: Name = "score"
    # Series only (`modelrepo.scoring.alarms`): how point scores above the threshold become alarms.
    merge_gap: int = Field(0, ge=0, le=MAX_SERIES_WINDOW)
    """Runs above the threshold separated by at most this many points are one alarm (0: never joined)."""
    min_points: int = Field(1, ge=1, le=MAX_SERIES_WINDOW)
    """An alarm shorter than this many points (after joining) is dropped, its points not anomalous."""
    point_score: Literal["mean", "max"] = "mean"
    """A series point's score from the windows covering it: their mean (the default) or their maximum."""


class ModelConfig(_Strict):
    """`models/<name>/config.json`, also snapshotted into each version folder."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH)]
    # No task: a plain V2 model (any ONNX graph), served over the V2 protocol only.
    task: Task | None = None
    platform: Literal["onnxruntime_onnx"] = "onnxruntime_onnx"
    description: str = Field("", max_length=MAX_TEXT)
    # Empty (left out): derived from the ONNX graph when the version loads, as Triton's auto-complete does.
    inputs: list[TensorSpec] = Field([], max_length=MAX_TENSORS)
    outputs: list[TensorSpec] = Field([], max_length=MAX_TENSORS)
    labels: list[Name] = Field([], max_length=MAX_LABELS)
    preprocessing: Preprocessing | None = None
    anomaly: AnomalySpec | None = None
    # As in Triton: 0 means the model does not batch (its first axis is not a batch axis).
    max_batch_size: int = Field(64, ge=0, le=MAX_BATCH_SIZE)
    dynamic_batching: DynamicBatching = DynamicBatching()
    version_policy: VersionPolicy = VersionPolicy()
    instance_group: InstanceGroups = [InstanceGroup()]

    @model_validator(mode="after")
    def _task_matches(self) -> ModelConfig:
        if self.task is None:
            if self.preprocessing is not None or self.labels or self.anomaly is not None:
                raise ValueError("preprocessing, labels and anomaly belong to a task; this config names none")
            return self
        if self.preprocessing is None:
            raise ValueError(f"a {self.task} model needs its preprocessing section")
        if self.max_batch_size == 0:
            raise ValueError(f"a {self.task} model batches: max_batch_size is at least 1")
        kind = self.preprocessing.kind
        if kind not in TASK_PREPROCESSING[self.task]:
            raise ValueError(f"task {self.task!r} cannot use {kind!r} preprocessing")
        if self.task == "anomaly" and self.anomaly is None:
            raise ValueError("an anomaly model needs an 'anomaly' section with its threshold")
        if (
            kind == "tabular"
            and self.anomaly is not None
            and (self.anomaly.merge_gap, self.anomaly.min_points, self.anomaly.point_score) != (0, 1, "mean")
        ):
            raise ValueError(
                "merge_gap, min_points and point_score turn a series' windows into alarms; a tabular model has rows"
            )
        if self.task in LABELLED_TASKS and not self.labels:
            raise ValueError(f"a {self.task} model needs its labels")
        return self

    def with_serving_knobs(self, top: ModelConfig) -> ModelConfig:
        """This config with the model-level serving knobs (SERVING_KNOBS) of `top`."""
        return self.model_copy(update={knob: getattr(top, knob) for knob in SERVING_KNOBS})

    def serving_view(self, top: ModelConfig) -> ModelConfig:
        """This version snapshot as the service serves it: the model's name and serving knobs from `top`."""
        return self.with_serving_knobs(top).model_copy(update={"name": top.name})


def read_config(path: Path, name: str | None = None) -> ModelConfig:
    """Parse and validate one config.json; a ValueError (never RecursionError) says what is wrong.

    With `name` (the model folder's), a config.json that leaves out its name gets that one.
    """
    with Path(path).open("rb") as f:
        raw = f.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"the file is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        document = json.loads(raw.decode("utf-8"))
    except RecursionError:
        # The C parser gives up at the interpreter's recursion limit; no real config nests past a few levels.
        raise ConfigError("the file is nested too deeply to be a model config") from None
    if name is not None and isinstance(document, dict):
        document.setdefault("name", name)
    return ModelConfig.model_validate(document)


def write_config(config: ModelConfig, path: Path) -> None:
    """Write config.json deterministically (sorted nothing, indented, trailing newline)."""
    Path(path).write_text(config.model_dump_json(indent=2, exclude_none=True) + "\n", encoding="utf-8")
