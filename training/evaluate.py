"""`python -m training evaluate`: a repository version scored through ONNX Runtime on a dataset.

Inputs are prepared by the same helpers the recipes train with (`training.data`), so a version is judged
on what it was trained on; the metrics are `training.metrics`, as in the model card.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.data.images import image_batch
from training.data.split import POOL_SPLIT, stratified_split
from training.metrics import (  # noqa: F401 - re-exported: `training.evaluate` has long held the metrics
    anomaly_metrics,
    classification_metrics,
    f1_best_threshold,
    in_windows,
    quantile_threshold,
    series_point_scores,
    window_detection,
)


def _batched(session: Any, feeds: dict[str, np.ndarray], output: str, batch: int = 256) -> np.ndarray:
    n = len(next(iter(feeds.values())))
    return np.concatenate(
        [session.run([output], {k: v[i : i + batch] for k, v in feeds.items()})[0] for i in range(0, n, batch)]
    )


def _text_logits(session: Any, folder: Path, config: Any, texts: Sequence[str], batch: int = 64) -> np.ndarray:
    """Logits of texts tokenized as in training and serving: truncated, each batch padded to its longest row."""
    from training.data.tokenizer import PAD_ID, encode_batch, load_tokenizer

    prep = config.preprocessing
    if prep.pad_id != PAD_ID:
        raise ValueError(f"the config pads with id {prep.pad_id}, Axon's tokenizers with {PAD_ID}")
    tokenizer = load_tokenizer(folder / prep.tokenizer)
    logits = []
    for i in range(0, len(texts), batch):
        ids, mask = encode_batch(tokenizer, texts[i : i + batch], prep.max_length)
        logits.append(session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0])
    return np.concatenate(logits)


def _images(config: Any, x: np.ndarray) -> np.ndarray:
    prep = config.preprocessing
    images = image_batch(x, invert=prep.invert)
    if images.shape[1:] != (prep.channels, prep.height, prep.width):
        raise ValueError(
            f"images are {images.shape[1:]}, the model expects {(prep.channels, prep.height, prep.width)} (C, H, W)"
        )
    mean = np.asarray(prep.mean, dtype=np.float32)[None, :, None, None]
    std = np.asarray(prep.std, dtype=np.float32)[None, :, None, None]
    return ((images - mean) / std).astype(np.float32)


def evaluate_version(
    repository: Path, name: str, version: int | None, data: dict[str, Any], *, split: str = "all", seed: int = 0
) -> dict[str, Any]:
    """Metrics of one repository version on a dataset, computed from ONNX Runtime's outputs."""
    import onnxruntime as ort

    from modelrepo.config import SeriesPreprocessing, TabularPreprocessing, read_config
    from modelrepo.layout import MODEL_FILE, versions

    model_dir = Path(repository) / name
    found = versions(model_dir)
    if not found or (version is not None and version not in found):
        raise SystemExit(
            f"model {name!r} has no version {version if version is not None else '(none)'} in {repository}"
        )
    folder = model_dir / str(version if version is not None else found[-1])
    config = read_config(folder / "config.json")
    session = ort.InferenceSession(str(folder / MODEL_FILE), providers=["CPUExecutionProvider"])
    if config.preprocessing is None:
        raise SystemExit(f"error: model {name!r} has no task: evaluate scores task models only")
    kind = config.preprocessing.kind
    header = {"model": name, "version": int(folder.name), "split": split}

    def rows(y: np.ndarray) -> np.ndarray:
        return stratified_split(y, POOL_SPLIT, seed=seed)[2] if split == "test" else np.arange(len(y))

    if kind in ("image", "text"):
        names = data["labels"]
        y = np.array([config.labels.index(names[i]) for i in data["y"]], dtype=np.int64)
        idx = rows(data["y"])
        if kind == "image":
            logits = _batched(session, {"image": _images(config, data["x"][idx])}, "logits")
        else:
            logits = _text_logits(session, folder, config, [data["texts"][i] for i in idx])
        return {**header, **classification_metrics(y[idx], logits.argmax(axis=1), config.labels)}
    assert config.anomaly is not None  # the config schema requires it for tabular and series models
    threshold = config.anomaly.threshold
    if kind == "tabular":
        prep = config.preprocessing
        assert isinstance(prep, TabularPreprocessing)
        y = np.asarray(data["y"]).astype(np.int64)
        idx = rows(y)
        z = ((data["x"][idx] - np.asarray(prep.mean)) / np.asarray(prep.scale)).astype(np.float32)
        scores = _batched(session, {"features": z}, "score")
        return {**header, **anomaly_metrics(y[idx], scores, threshold)}
    from modelrepo.scoring import cut_windows

    prep, series = config.preprocessing, data["series"]
    assert isinstance(prep, SeriesPreprocessing)
    z = ((series.values - prep.mean) / prep.std).astype(np.float32)
    windows = cut_windows(z, prep.window, prep.stride)[:, :, None]
    window_scores = _batched(session, {"window": windows}, "score")
    points = series_point_scores(window_scores, len(z), prep.window, prep.stride, config.anomaly.point_score)
    return {
        **header,
        "split": "whole series",
        **window_detection(points, threshold, series.windows, config.anomaly.merge_gap, config.anomaly.min_points),
        "point_roc_auc": anomaly_metrics(series.labels, points, threshold)["roc_auc"],
    }
