"""Anomaly explanations from the autoencoder's own reconstruction, one forward pass per request.

A tabular row's score is its mean squared reconstruction error over standardised features, so each
feature's share of that squared error says how much of the score it carries. A flagged series segment is
explained by the window covering it that scored highest, and the points of that window whose squared
reconstruction error is largest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from typing_extensions import TypedDict

from modelrepo import scoring
from modelrepo.config import ModelConfig
from service.errors import InvalidInput
from service.explain import Runner
from service.lean import Answer, Call, encode_json, route
from service.tasks.anomaly import AnomalyRequest, Score, SeriesCodec, TabularCodec, Timestamp, request_counts
from service.tasks.base import shown
from service.tasks.request import pick, query_int, read_request

if TYPE_CHECKING:
    from service.registry import ModelVersion

PATH = "/v1/anomaly/explain"


# --- attribution (pure: the faithfulness benchmark runs these on an ONNX session) ---------------------


def error_shares(x: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    """(N, F): each feature's share of its row's squared reconstruction error (rows sum to 1)."""
    err = (x.astype(np.float64) - reconstruction.reshape(x.shape)) ** 2
    total = err.sum(-1, keepdims=True)
    return np.asarray(np.divide(err, total, out=np.zeros_like(err), where=total > 0))


def reconstruction_output(config: ModelConfig) -> str:
    """The output holding the reconstruction: the one that is not the score (422 when the model has none)."""
    assert config.anomaly is not None
    found = [o.name for o in config.outputs if o.name != config.anomaly.score_output]
    if not found:
        raise InvalidInput(f"model '{config.name}' outputs no reconstruction, so its scores cannot be explained")
    return "reconstruction" if "reconstruction" in found else found[0]


# --- answers and jobs -----------------------------------------------------------------------------


class FeatureContribution(TypedDict):
    """One input feature: its name, the value sent, and its share of the squared reconstruction error."""

    name: str
    value: float
    contribution: float


class SampleExplanation(TypedDict):
    """A row's score, verdict and per-feature contributions."""

    score: float
    is_anomaly: bool
    features: list[FeatureContribution]
    passes: int


@dataclass(frozen=True)
class ExplainSamples:
    """A tabular explanation job."""

    task: ClassVar[str] = "anomaly"
    default_model: ClassVar[str] = "anomaly"
    samples: list[list[float]]
    model: str | None
    version: int | None

    async def explain(self, entry: ModelVersion, run: Runner) -> dict[str, object]:
        """One pass for all rows; contributions from the reconstruction."""
        codec, config = entry.codec, entry.config
        if not isinstance(codec, TabularCodec):
            raise InvalidInput(f"model '{entry.name}' scores series; send 'series', not 'samples'")
        assert config is not None and config.anomaly is not None
        x = codec.encode(self.samples)[codec.input]
        outputs = await run({codec.input: x})
        shares = error_shares(x, outputs[reconstruction_output(config)])
        threshold = config.anomaly.threshold
        answers: list[SampleExplanation] = [
            {
                "score": shown(float(score)),
                "is_anomaly": bool(score > threshold),
                "features": [
                    {"name": n, "value": float(v), "contribution": float(c)}
                    for n, v, c in zip(codec.spec.features, row, share)
                ],
                "passes": 1,
            }
            for score, row, share in zip(outputs[config.anomaly.score_output], self.samples, shares)
        ]
        return {"threshold": threshold, "explanations": answers}


class PointContribution(TypedDict):
    """A point of the driving window and its share of that window's squared reconstruction error."""

    index: int
    contribution: float


class Window(TypedDict):
    """First and last point of a window, both included."""

    start: int
    end: int


class SegmentExplanation(TypedDict):
    """A flagged segment, the highest-scoring window covering it, and that window's largest-error points."""

    start: int
    end: int
    max_score: float
    window: Window
    points: list[PointContribution]


@dataclass(frozen=True)
class ExplainSeries:
    """A series explanation job."""

    task: ClassVar[str] = "anomaly"
    default_model: ClassVar[str] = "series"
    series: list[float]
    timestamps: list[Timestamp] | None
    model: str | None
    version: int | None

    async def explain(self, entry: ModelVersion, run: Runner) -> dict[str, object]:
        """One pass over every window; per segment its driving window and points."""
        codec, config = entry.codec, entry.config
        if not isinstance(codec, SeriesCodec):
            raise InvalidInput(f"model '{entry.name}' scores tabular samples; send 'samples', not 'series'")
        assert config is not None and config.anomaly is not None
        spec, threshold = codec.spec, config.anomaly.threshold
        windows = codec.encode(self.series)[codec.input]
        outputs = await run({codec.input: windows})
        window_scores = outputs[config.anomaly.score_output].astype(np.float64)
        flat = windows.reshape(len(windows), -1)
        err = (flat.astype(np.float64) - outputs[reconstruction_output(config)].reshape(flat.shape)) ** 2
        starts = scoring.window_starts(len(self.series), spec.window, spec.stride)
        points = scoring.point_scores(
            window_scores, len(self.series), spec.window, spec.stride, config.anomaly.point_score
        )
        found: list[SegmentExplanation] = []
        alarms = scoring.alarms(points, threshold, config.anomaly.merge_gap, config.anomaly.min_points)
        for seg in alarms:  # the task's own alarm rule, so explained segments are the scored ones
            covering = np.flatnonzero((starts <= seg.end) & (starts + spec.window > seg.start))
            w = int(covering[np.argmax(window_scores[covering])])
            share = err[w] / err[w].sum() if err[w].sum() > 0 else np.zeros_like(err[w])
            top = np.argsort(-share, kind="stable")[: run.settings.max_points]
            found.append({
                "start": seg.start,
                "end": seg.end,
                "max_score": seg.max_score,
                "window": {"start": int(starts[w]), "end": int(starts[w]) + spec.window - 1},
                "points": [{"index": int(starts[w] + i), "contribution": float(share[i])} for i in top],
            })  # fmt: skip
        flagged = scoring.alarm_mask(len(points), alarms)
        results: list[Score] = [{"score": shown(float(s)), "is_anomaly": bool(f)} for s, f in zip(points, flagged)]
        if self.timestamps is not None:
            for row, ts in zip(results, self.timestamps):
                row["timestamp"] = ts
        return {"threshold": threshold, "results": results, "segments": found, "passes": len(windows)}


class AnomalyExplainResponse(TypedDict, total=False):
    """`explanations` for `samples` (per row), or `results`, `segments` and `passes` for a `series`."""

    model: str
    version: int
    threshold: float
    explanations: list[SampleExplanation]
    results: list[Score]
    segments: list[SegmentExplanation]
    passes: int


async def explain_call(call: Call, model: str | None = None, version: int | None = None) -> Answer:
    """Lean handler: the score body (`samples` or `series`)."""
    settings = call.state.settings
    # One pass per row, as scoring costs: rows are bounded like /v1/anomaly/score's, not by max_items.
    counts = request_counts(settings.limits)
    body = await call.body()
    req = await call.offload(read_request, AnomalyRequest, body, counts, size=len(body))
    query = call.query()
    name = pick(model, req.model, query.get("model"))
    number = pick(version, req.version, query_int(query, "version"))
    if req.samples is not None:
        job: ExplainSamples | ExplainSeries = ExplainSamples(req.samples, name, number)
    else:
        assert req.series is not None
        if req.timestamps is not None and len(req.timestamps) != len(req.series):
            raise InvalidInput(f"'timestamps' has {len(req.timestamps)} entries but 'series' has {len(req.series)}")
        job = ExplainSeries(req.series, req.timestamps, name, number)
    return Answer(encode_json(await call.state.dataplane.explain(job)))


ROUTES = [route(PATH, explain_call)]
