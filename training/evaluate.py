"""Metrics for the model card: classifiers, tabular anomaly scores, and series anomaly windows.

Series figures go through `service.scoring` so a threshold is judged on exactly the per-point
scores and segments the service reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import metrics

from service.scoring import point_scores, segments


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class F1 and the confusion matrix (rows = truth, columns = prediction)."""
    classes = list(range(len(labels)))
    per_class = metrics.f1_score(y_true, y_pred, labels=classes, average=None, zero_division=0)
    return {
        "n": int(len(y_true)),
        "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
        "macro_f1": float(metrics.f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)),
        "per_class_f1": {label: float(f) for label, f in zip(labels, per_class)},
        "confusion_matrix": metrics.confusion_matrix(y_true, y_pred, labels=classes).tolist(),
    }


def anomaly_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """ROC-AUC and PR-AUC of the scores (1 = anomaly), and precision/recall/F1 at the threshold."""
    y_true = np.asarray(y_true).astype(int)
    flagged = (np.asarray(scores) > threshold).astype(int)
    both = len(np.unique(y_true)) == 2
    precision, recall, f1, _ = metrics.precision_recall_fscore_support(
        y_true, flagged, average="binary", zero_division=0
    )
    return {
        "n": int(len(y_true)),
        "anomalies": int(y_true.sum()),
        # AUCs are undefined with one class present (a dry run's single batch); say so rather than crash.
        "roc_auc": float(metrics.roc_auc_score(y_true, scores)) if both else None,
        "pr_auc": float(metrics.average_precision_score(y_true, scores)) if both else None,
        "threshold": float(threshold),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "flagged": int(flagged.sum()),
    }


def quantile_threshold(normal_scores: np.ndarray, quantile: float) -> float:
    """The `quantile` of scores known to be normal: about (1 - quantile) of normal data is flagged."""
    return float(np.quantile(np.asarray(normal_scores, dtype=np.float64), quantile))


def f1_best_threshold(y_true: np.ndarray, scores: np.ndarray) -> float:
    """The score cut with the best F1 for class 1 (midway to the next score, so it generalises a little)."""
    scores = np.asarray(scores, dtype=np.float64)
    precision, recall, cuts = metrics.precision_recall_curve(y_true, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    cut = float(cuts[int(np.argmax(f1[:-1]))])
    # The curve flags score >= cut; the service flags score > threshold, so step below the cut.
    lower = scores[scores < cut]
    return float((cut + lower.max()) / 2) if lower.size else float(np.nextafter(cut, -np.inf))


def in_windows(n_points: int, windows: Sequence[tuple[int, int]]) -> np.ndarray:
    """Boolean mask of the points inside any (start, end) window, both ends included."""
    mask = np.zeros(n_points, dtype=bool)
    for start, end in windows:
        mask[start : end + 1] = True
    return mask


def series_point_scores(window_scores: np.ndarray, n_points: int, window: int, stride: int) -> np.ndarray:
    """Per-point scores exactly as the service computes them."""
    return point_scores(np.asarray(window_scores, dtype=np.float64), n_points, window, stride)


def window_detection(
    scores: np.ndarray, threshold: float, windows: Sequence[tuple[int, int]]
) -> dict[str, Any]:
    """Which label windows hold at least one point above threshold, and the segments outside every window."""
    found = segments(np.asarray(scores), threshold)
    labelled = in_windows(len(scores), windows)
    hit = [bool((scores[start : end + 1] > threshold).any()) for start, end in windows]
    false_alarms = [s for s in found if not labelled[s.start : s.end + 1].any()]
    return {
        "threshold": float(threshold),
        "windows_total": len(windows),
        "windows_hit": int(sum(hit)),
        "hit": hit,
        "segments": len(found),
        "false_alarms": len(false_alarms),
        "false_alarm_points": int(sum(s.end - s.start + 1 for s in false_alarms)),
    }


# ------------------------------------------------------------------ a repository version, through ORT
def _batched(session: Any, feeds: dict[str, np.ndarray], output: str, batch: int = 256) -> np.ndarray:
    n = len(next(iter(feeds.values())))
    return np.concatenate([
        session.run([output], {k: v[i : i + batch] for k, v in feeds.items()})[0] for i in range(0, n, batch)
    ])


def _text_logits(session: Any, folder: Path, config: Any, texts: Sequence[str], batch: int = 64) -> np.ndarray:
    """Tokenize exactly as the service does (truncate, no padding, pad each batch to its longest row)."""
    from tokenizers import Tokenizer

    prep = config.preprocessing
    tokenizer = Tokenizer.from_file(str(folder / prep.tokenizer))
    tokenizer.enable_truncation(prep.max_length)
    tokenizer.no_padding()
    rows = [e.ids for e in tokenizer.encode_batch(list(texts))]
    logits = []
    for i in range(0, len(rows), batch):
        chunk = rows[i : i + batch]
        width = max(len(r) for r in chunk)
        ids = np.full((len(chunk), width), prep.pad_id, dtype=np.int64)
        mask = np.zeros((len(chunk), width), dtype=np.int64)
        for j, row in enumerate(chunk):
            ids[j, : len(row)], mask[j, : len(row)] = row, 1
        logits.append(session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0])
    return np.concatenate(logits)


def _images(config: Any, x: np.ndarray) -> np.ndarray:
    prep = config.preprocessing
    images = x.astype(np.float32) / 255.0
    images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    if images.shape[1:] != (prep.channels, prep.height, prep.width):
        raise ValueError(f"images are {images.shape[1:]}, the model expects "
                         f"{(prep.channels, prep.height, prep.width)} (C, H, W)")
    if prep.invert:
        images = 1.0 - images
    mean = np.asarray(prep.mean, dtype=np.float32)[None, :, None, None]
    std = np.asarray(prep.std, dtype=np.float32)[None, :, None, None]
    return ((images - mean) / std).astype(np.float32)


def evaluate_version(
    repository: Path, name: str, version: int | None, data: dict[str, Any], *, split: str = "all", seed: int = 0
) -> dict[str, Any]:
    """Metrics of one repository version on a dataset, computed from ONNX Runtime's outputs."""
    import onnxruntime as ort

    from service.model_config import MODEL_FILE, read_config
    from training.data.split import stratified_split
    from training.recipes import SPLIT
    from training.repository import versions

    model_dir = Path(repository) / name
    found = versions(model_dir)
    if not found or (version is not None and version not in found):
        raise SystemExit(f"model {name!r} has no version {version if version is not None else '(none)'} in {repository}")
    folder = model_dir / str(version if version is not None else found[-1])
    config = read_config(folder / "config.json")
    session = ort.InferenceSession(str(folder / MODEL_FILE), providers=["CPUExecutionProvider"])
    kind = config.preprocessing.kind
    header = {"model": name, "version": int(folder.name), "split": split}

    def rows(y: np.ndarray) -> np.ndarray:
        return stratified_split(y, SPLIT, seed=seed)[2] if split == "test" else np.arange(len(y))

    if kind in ("image", "text"):
        names = data["labels"]
        y = np.array([config.labels.index(names[i]) for i in data["y"]], dtype=np.int64)
        idx = rows(data["y"])
        if kind == "image":
            logits = _batched(session, {"image": _images(config, data["x"][idx])}, "logits")
        else:
            logits = _text_logits(session, folder, config, [data["texts"][i] for i in idx])
        return {**header, **classification_metrics(y[idx], logits.argmax(axis=1), config.labels)}
    threshold = config.anomaly.threshold
    if kind == "tabular":
        prep = config.preprocessing
        y = np.asarray(data["y"]).astype(np.int64)
        idx = rows(y)
        z = ((data["x"][idx] - np.asarray(prep.mean)) / np.asarray(prep.scale)).astype(np.float32)
        scores = _batched(session, {"features": z}, "score")
        return {**header, **anomaly_metrics(y[idx], scores, threshold)}
    from service.scoring import cut_windows

    prep, series = config.preprocessing, data["series"]
    z = ((series.values - prep.mean) / prep.std).astype(np.float32)
    windows = cut_windows(z, prep.window, prep.stride)[:, :, None]
    points = series_point_scores(_batched(session, {"window": windows}, "score"), len(z), prep.window, prep.stride)
    return {**header, "split": "whole series", **window_detection(points, threshold, series.windows),
            "point_roc_auc": anomaly_metrics(series.labels, points, threshold)["roc_auc"]}
