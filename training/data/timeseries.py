"""NAB-style time series: `timestamp,value` CSVs, their label windows, sliding windows and normalisation."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelrepo.scoring import cut_windows


@dataclass(frozen=True)
class NabSeries:
    """One series in file order, with NAB's anomaly windows as inclusive index ranges."""

    name: str  # NAB key, "<dir>/<file>.csv"
    timestamps: np.ndarray  # datetime64[s] [N]
    values: np.ndarray  # float64 [N]
    windows: list[tuple[int, int]]  # (start_index, end_index), both included
    labels: np.ndarray  # bool [N]: inside any window (NAB: start <= t <= end)
    anomaly_points: np.ndarray  # int64 indices of the points in combined_labels.json
    step: np.timedelta64  # the most common time step
    irregular_steps: np.ndarray  # int64 i where timestamps[i + 1] - timestamps[i] != step

    def __len__(self) -> int:
        return len(self.values)


def _read_series(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = [row for row in csv.reader(f) if row]
    if not rows or [h.strip() for h in rows[0]] != ["timestamp", "value"]:
        raise ValueError(f"{path}: expected the header 'timestamp,value'")
    try:
        timestamps = np.array([row[0] for row in rows[1:]], dtype="datetime64[s]")
        values = np.array([float(row[1]) for row in rows[1:]], dtype=np.float64)
    except (ValueError, IndexError) as err:
        raise ValueError(f"{path}: bad row ({err})") from None
    if len(values) < 2:
        raise ValueError(f"{path} needs at least 2 rows, has {len(values)}")
    if not np.isfinite(values).all():
        raise ValueError(f"{path}: values must be finite")
    return timestamps, values


def _label_entry(json_path: Path | None, default: Path, key: str) -> list[Any] | None:
    """The key's entry in a NAB label file; None when no file was given and the default is absent."""
    path = json_path if json_path is not None else default
    if json_path is None and not default.is_file():
        return None
    table = json.loads(Path(path).read_text(encoding="utf-8"))
    if key not in table:
        if json_path is None:
            return None
        raise KeyError(f"{path} has no entry {key!r}")
    entry: list[Any] = table[key]
    return entry


def _window_ranges(timestamps: np.ndarray, windows: list[Any], key: str) -> list[tuple[int, int]]:
    ranges = []
    for start, end in windows:
        inside = np.flatnonzero((timestamps >= np.datetime64(start, "s")) & (timestamps <= np.datetime64(end, "s")))
        if inside.size == 0:
            raise ValueError(f"{key}: label window {start} .. {end} holds no point of the series")
        ranges.append((int(inside[0]), int(inside[-1])))
    return ranges


def load_nab(
    csv_path: str | os.PathLike[str],
    windows_json: str | os.PathLike[str] | None = None,
    labels_json: str | os.PathLike[str] | None = None,
) -> NabSeries:
    """A NAB series; label files default to `<nab root>/labels/combined_{windows,labels}.json` beside `data/`."""
    csv_path = Path(csv_path)
    timestamps, values = _read_series(csv_path)
    key = f"{csv_path.parent.name}/{csv_path.name}"
    labels_dir = csv_path.resolve().parent.parent.parent / "labels"
    window_list = (
        _label_entry(Path(windows_json) if windows_json else None, labels_dir / "combined_windows.json", key) or []
    )
    point_list = (
        _label_entry(Path(labels_json) if labels_json else None, labels_dir / "combined_labels.json", key) or []
    )
    windows = _window_ranges(timestamps, window_list, key)
    labels = np.zeros(len(values), dtype=bool)
    for start, end in windows:
        labels[start : end + 1] = True
    points = np.array(point_list, dtype="datetime64[s]")
    anomaly_points = np.flatnonzero(np.isin(timestamps, points)).astype(np.int64)
    # NAB files are meant to have a regular step, but not all do (machine_temperature repeats an
    # hour); models see the values in file order, so irregular steps are reported, not "fixed".
    steps = np.diff(timestamps)
    kinds, counts = np.unique(steps, return_counts=True)
    step = kinds[np.argmax(counts)]
    irregular = np.flatnonzero(steps != step).astype(np.int64)
    return NabSeries(key, timestamps, values, windows, labels, anomaly_points, step, irregular)


def sliding_windows(values: np.ndarray, window: int, stride: int) -> np.ndarray:
    """(n_windows, window) windows exactly as the service cuts them; the last one ends on the last point."""
    return cut_windows(np.asarray(values), window, stride)


def fit_normaliser(values: np.ndarray) -> tuple[float, float]:
    """Mean and std of a series for `(v - mean) / std` (std 1 for a constant series)."""
    values = np.asarray(values, dtype=np.float64)
    std = float(values.std())
    return float(values.mean()), std if std > 1e-12 else 1.0


def normalise(values: np.ndarray, mean: float, std: float) -> np.ndarray:
    """`(v - mean) / std` as float32, the model's input scale."""
    return ((np.asarray(values, dtype=np.float64) - mean) / std).astype(np.float32)
