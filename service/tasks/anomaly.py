"""The anomaly task: tabular rows or one time series in, reconstruction-error scores and verdicts out.

Rows and series are standardised with the statistics the model was exported with; a series is cut into
windows with `modelrepo.scoring`, the very function training calibrated the threshold with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, NotRequired

import numpy as np
from pydantic import BaseModel, ConfigDict, StrictFloat, StrictInt, StrictStr, model_validator, with_config
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from modelrepo import scoring
from modelrepo.config import ModelConfig, SeriesPreprocessing, TabularPreprocessing
from service.errors import InvalidInput, PayloadTooLarge
from service.lean import Answer, Call, encode_json, route
from service.runtime import Tensors
from service.settings import Limits
from service.tasks.base import Codec, TaskSpec, shown
from service.tasks.request import Counts, pick, query_int, read_request

if TYPE_CHECKING:
    from service.batcher import BatchResult
    from service.registry import ModelVersion

PATH = "/v1/anomaly/score"
Timestamp = StrictStr | StrictInt | StrictFloat


# --- codecs ---------------------------------------------------------------------------------------


def _finite(values: np.ndarray, what: str) -> None:
    if not np.isfinite(values).all():
        where = np.argwhere(~np.isfinite(values))[0].tolist()
        raise InvalidInput(f"{what} holds a non-finite value at {where}")


class TabularCodec(Codec):
    """Rows in the dataset's column order -> standardised float32 (N, F)."""

    def __init__(self, config: ModelConfig, version_dir: Path, limits: Limits) -> None:
        super().__init__(config, version_dir, limits)
        assert isinstance(config.preprocessing, TabularPreprocessing)
        self.spec = config.preprocessing
        self.mean = np.asarray(self.spec.mean, np.float64)
        # A constant column was exported with scale 0 or 1; never divide by zero.
        scale = np.asarray(self.spec.scale, np.float64)
        self.scale = np.where(scale == 0, 1.0, scale)

    def encode(self, samples: list[list[float]]) -> Tensors:
        """Check the shape and values of every row, then standardise."""
        if not samples:
            raise InvalidInput("'samples' must hold at least one row")
        if len(samples) > self.limits.max_samples:
            raise PayloadTooLarge(f"{len(samples)} samples in one request; the limit is {self.limits.max_samples}")
        n = len(self.spec.features)
        for i, row in enumerate(samples):
            if len(row) != n:
                raise InvalidInput(f"sample {i} has {len(row)} features; the model expects {n}")
        x = np.asarray(samples, dtype=np.float64)
        _finite(x, "'samples'")
        return {self.input: ((x - self.mean) / self.scale).astype(np.float32)}


class SeriesCodec(Codec):
    """A univariate series -> normalised windows (n_windows, window, 1) cut with `scoring.cut_windows`."""

    def __init__(self, config: ModelConfig, version_dir: Path, limits: Limits) -> None:
        super().__init__(config, version_dir, limits)
        assert isinstance(config.preprocessing, SeriesPreprocessing)
        self.spec = config.preprocessing
        self.trailing = list(config.inputs[0].dims[1:])

    def encode(self, series: list[float]) -> Tensors:
        """Check length and values, normalise, and cut into windows."""
        if len(series) > self.limits.max_series_length:
            raise PayloadTooLarge(f"the series has {len(series)} points; the limit is {self.limits.max_series_length}")
        if len(series) < self.spec.window:
            raise InvalidInput(f"the series has {len(series)} points; the model needs at least {self.spec.window}")
        values = np.asarray(series, dtype=np.float64)
        _finite(values, "'series'")
        std = self.spec.std if self.spec.std else 1.0
        windows = scoring.cut_windows((values - self.spec.mean) / std, self.spec.window, self.spec.stride)
        shape = [self.spec.window if d == -1 else d for d in self.trailing] if self.trailing else [self.spec.window]
        # A finite value past float32's range becomes inf here (no warning: it is expected); the model's answer
        # is then non-finite and refused with 422 by the data plane's check, as the lean tests show.
        with np.errstate(over="ignore"):
            return {self.input: windows.reshape(len(windows), *shape).astype(np.float32)}


# --- answers --------------------------------------------------------------------------------------


@with_config(ConfigDict(extra="forbid"))
class Score(TypedDict):
    """One sample's (or point's) anomaly score and verdict; a series point carries its timestamp when given."""

    score: float
    is_anomaly: bool
    timestamp: NotRequired[Timestamp]


@with_config(ConfigDict(extra="forbid"))
class Segment(TypedDict):
    """A run of anomalous points, both ends included (and their timestamps when the request gave them)."""

    start: int
    end: int
    max_score: float
    start_timestamp: NotRequired[Timestamp]
    end_timestamp: NotRequired[Timestamp]


class SampleScores(TypedDict):
    """The task part of a tabular answer."""

    threshold: float
    results: list[Score]


class SeriesScores(SampleScores):
    """The task part of a series answer: per-point scores and the anomalous segments."""

    segments: list[Segment]


@with_config(ConfigDict(extra="forbid"))
class AnomalyResponse(TypedDict):
    """Scores in input order; `segments` only for a series."""

    model: str
    version: int
    threshold: float
    results: list[Score]
    segments: NotRequired[list[Segment]]


def sample_scores(scores: np.ndarray, threshold: float) -> list[Score]:
    """Tabular answers: each row's reconstruction error and whether it is above the threshold."""
    results: list[Score] = [{"score": shown(float(s)), "is_anomaly": bool(s > threshold)} for s in scores]
    return results


def series_scores(
    window_scores: np.ndarray,
    n_points: int,
    spec: SeriesPreprocessing,
    threshold: float,
    merge_gap: int = 0,
    min_points: int = 1,
    point_score: scoring.PointScore = "mean",
) -> tuple[list[Score], list[Segment]]:
    """Series answers: per-point scores (`point_score` over covering windows) and the alarm segments.

    The points and segments are `scoring.point_scores` and `scoring.alarms` with the model's `point_score`,
    `merge_gap` and `min_points`, the rule its card's figures were counted with; a point is anomalous when it
    lies in one of them.
    """
    points = scoring.point_scores(window_scores.astype(np.float64), n_points, spec.window, spec.stride, point_score)
    alarms = scoring.alarms(points, threshold, merge_gap, min_points)
    flagged = scoring.alarm_mask(n_points, alarms)
    found: list[Segment] = [{"start": s.start, "end": s.end, "max_score": shown(s.max_score)} for s in alarms]
    results: list[Score] = [{"score": shown(float(s)), "is_anomaly": bool(f)} for s, f in zip(points, flagged)]
    return results, found


# --- requests -------------------------------------------------------------------------------------


class AnomalyRequest(BaseModel):
    """Either `samples` (rows in the dataset's column order) or `series` (+ optional `timestamps`)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    samples: list[list[StrictFloat]] | None = None
    series: list[StrictFloat] | None = None
    timestamps: list[Timestamp] | None = None
    model: str | None = None
    version: int | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> AnomalyRequest:
        if (self.samples is None) == (self.series is None):
            raise ValueError("send exactly one of 'samples' (tabular rows) or 'series' (one time series)")
        if self.timestamps is not None and self.series is None:
            raise ValueError("'timestamps' go with 'series'")
        return self


def _threshold(entry: ModelVersion) -> tuple[float, str]:
    assert entry.config is not None and entry.config.anomaly is not None
    return entry.config.anomaly.threshold, entry.config.anomaly.score_output


@dataclass(frozen=True)
class ScoreSamples:
    """A tabular anomaly job: rows in the dataset's column order."""

    task: ClassVar[str] = "anomaly"
    default_model: ClassVar[str] = "anomaly"  # AXON_DEFAULT_MODELS__ANOMALY
    samples: list[list[float]]
    model: str | None
    version: int | None

    @property
    def size(self) -> int:
        """Bytes of the rows as float64."""
        return 8 * sum(map(len, self.samples))

    def encode(self, entry: ModelVersion) -> Tensors:
        """Standardise the rows (a series model is told to get a series)."""
        if not isinstance(entry.codec, TabularCodec):
            raise InvalidInput(f"model '{entry.name}' scores series; send 'series', not 'samples'")
        return entry.codec.encode(self.samples)

    def answer(self, entry: ModelVersion, result: BatchResult) -> SampleScores:
        """Each row's score against the model's threshold."""
        threshold, output = _threshold(entry)
        return {"threshold": threshold, "results": sample_scores(result.outputs[output], threshold)}


@dataclass(frozen=True)
class ScoreSeries:
    """A time-series anomaly job: the points and, optionally, one timestamp per point."""

    task: ClassVar[str] = "anomaly"
    default_model: ClassVar[str] = "series"  # AXON_DEFAULT_MODELS__SERIES
    series: list[float]
    timestamps: list[Timestamp] | None
    model: str | None
    version: int | None

    def __post_init__(self) -> None:
        if self.timestamps is not None and len(self.timestamps) != len(self.series):
            raise InvalidInput(
                f"'timestamps' has {len(self.timestamps)} entries but 'series' has {len(self.series)} points"
            )

    @property
    def size(self) -> int:
        """Bytes of the series as float64."""
        return 8 * len(self.series)

    def encode(self, entry: ModelVersion) -> Tensors:
        """Normalise and cut into windows (a tabular model is told to get samples)."""
        if not isinstance(entry.codec, SeriesCodec):
            raise InvalidInput(f"model '{entry.name}' scores tabular samples; send 'samples', not 'series'")
        return entry.codec.encode(self.series)

    def answer(self, entry: ModelVersion, result: BatchResult) -> SeriesScores:
        """Per-point scores, the anomalous segments, and the timestamps the request gave."""
        threshold, output = _threshold(entry)
        config = entry.config
        assert config is not None and config.anomaly is not None
        assert isinstance(config.preprocessing, SeriesPreprocessing)
        rule = config.anomaly
        results, found = series_scores(
            result.outputs[output],
            len(self.series),
            config.preprocessing,
            threshold,
            rule.merge_gap,
            rule.min_points,
            rule.point_score,
        )
        if self.timestamps is not None:
            for row, ts in zip(results, self.timestamps):
                row["timestamp"] = ts
            for seg in found:
                seg["start_timestamp"], seg["end_timestamp"] = (
                    self.timestamps[seg["start"]],
                    self.timestamps[seg["end"]],
                )
        return {"threshold": threshold, "results": results, "segments": found}


def request_counts(limits: Limits) -> Counts:
    """The list lengths of a score (or explain) body, checked before any value is looked at."""
    return {
        "samples": (limits.max_samples, "{n} samples in one request; the limit is {limit}"),
        "series": (limits.max_series_length, "the series has {n} points; the limit is {limit}"),
        "timestamps": (limits.max_series_length, "'timestamps' has {n} entries; the limit is {limit}"),
    }


async def score_call(call: Call) -> Answer:
    """The lean handler: strict JSON, list lengths checked before any value is looked at."""
    counts = request_counts(call.state.settings.limits)
    body = await call.body()
    req = await call.offload(read_request, AnomalyRequest, body, counts, size=len(body))
    query = call.query()
    name, version = pick(req.model, query.get("model")), pick(req.version, query_int(query, "version"))
    if req.samples is not None:
        job: ScoreSamples | ScoreSeries = ScoreSamples(req.samples, name, version)
    else:
        assert req.series is not None
        job = ScoreSeries(req.series, req.timestamps, name, version)
    result = await call.state.dataplane.predict(job)
    return Answer(encode_json(result))


TASK = TaskSpec("anomaly", codecs={"tabular": TabularCodec, "series": SeriesCodec}, routes=[route(PATH, score_call)])
