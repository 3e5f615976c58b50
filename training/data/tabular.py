"""Numeric CSV loaders, the thyroid anomaly data, and the scaling statistics that ship with a model."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

# Column order of ann-train.data (thyroid_ann/README.md); a model's features keep this order.
THYROID_FEATURES = [
    "age",
    "sex",
    "on_thyroxine",
    "query_on_thyroxine",
    "on_antithyroid_medication",
    "sick",
    "pregnant",
    "thyroid_surgery",
    "I131_treatment",
    "query_hypothyroid",
    "query_hyperthyroid",
    "lithium",
    "goitre",
    "tumor",
    "hypopituitary",
    "psych",
    "TSH",
    "T3",
    "TT4",
    "T4U",
    "FTI",
]
THYROID_CLASSES = (1, 2, 3)
ANOMALY_CLASS = 1  # hyperfunction; subnormal (2) and normal (3) count as normal


def _read_rows(path: Path, delimiter: str) -> list[list[str]]:
    """Non-empty rows with one trailing empty field dropped (thyroid lines end in a delimiter)."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = [[v.strip() for v in row] for row in csv.reader(f, delimiter=delimiter) if row]
    return [row[:-1] if row and row[-1] == "" else row for row in rows]


def _labels_array(values: list[str]) -> np.ndarray:
    """int64 when every label is an integer, else the labels as strings."""
    try:
        return np.asarray([int(v) for v in values], dtype=np.int64)
    except ValueError:
        return np.asarray(values, dtype=str)


def load_numeric_csv(
    path: str | os.PathLike[str],
    *,
    label_column: str | int | None,
    header: bool,
    delimiter: str = ",",
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Features float32 [N, F] in the file's column order, labels (or None) and feature names."""
    path = Path(path)
    rows = _read_rows(path, delimiter)
    if header and rows:  # noqa: SIM108 (the one-line form nests two conditional expressions)
        names = rows.pop(0)
    else:
        names = [f"column_{i}" for i in range(len(rows[0]))] if rows else []
    if not rows:
        raise ValueError(f"{path} holds no data rows")
    widths = {len(row) for row in rows}
    if widths != {len(names)}:
        raise ValueError(f"{path}: rows have {sorted(widths)} fields, expected {len(names)}")
    if label_column is None:
        label_at = None
    elif isinstance(label_column, int):
        label_at = label_column % len(names)
    elif label_column in names:
        label_at = names.index(label_column)
    else:
        raise KeyError(f"{path} has no column {label_column!r}; header is {names}")
    feature_at = [i for i in range(len(names)) if i != label_at]
    try:
        x = np.asarray([[float(row[i]) for i in feature_at] for row in rows], dtype=np.float32)
    except ValueError as err:
        raise ValueError(f"{path}: non-numeric feature value ({err})") from None
    labels = None if label_at is None else _labels_array([row[label_at] for row in rows])
    return x, labels, [names[i] for i in feature_at]


def load_thyroid(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """The ann-thyroid file: 21 features float32 [N, 21] and the class int64 in {1, 2, 3}."""
    x, cls, _ = load_numeric_csv(path, label_column=len(THYROID_FEATURES), header=False)
    if x.shape[1] != len(THYROID_FEATURES):
        raise ValueError(f"{path}: {x.shape[1]} features, expected {len(THYROID_FEATURES)}")
    if cls is None or cls.dtype != np.int64 or not np.isin(cls, THYROID_CLASSES).all():
        raise ValueError(f"{path}: the class column must hold 1, 2 or 3")
    return x, cls


def is_anomaly(cls: np.ndarray) -> np.ndarray:
    """True where a thyroid row is the anomaly class (1, hyperfunction)."""
    flags: np.ndarray = np.asarray(cls) == ANOMALY_CLASS
    return flags


def fit_scaler(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and scale (the std, or 1 where a column is constant) for `(x - mean) / scale`."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-12] = 1.0
    return mean.astype(np.float32), scale.astype(np.float32)
