"""The model card (`card.json`): what a version was trained on, how, and how well it did."""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

CARD_FILE = "card.json"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def software_versions() -> dict[str, str | None]:
    """Versions of the libraries that shaped the exported file."""
    ort = _version("onnxruntime-gpu") or _version("onnxruntime")
    return {
        "python": platform.python_version(),
        "torch": _version("torch"),
        "onnx": _version("onnx"),
        "onnxscript": _version("onnxscript"),
        "onnxruntime": ort,
    }


def dataset_entry(name: str, files: dict[str, str], checksum: str, **extra: Any) -> dict[str, Any]:
    """The card's `dataset` section: a name, each file with its sha256, and one combined checksum."""
    return {"name": name, "files": files, "sha256": checksum, **extra}


def build_card(
    *,
    name: str,
    version: int,
    family: str,
    dataset: dict[str, Any],
    split: dict[str, Any],
    hyperparameters: dict[str, Any],
    parameters: int,
    metrics: dict[str, Any],
    training: dict[str, Any],
    parity: dict[str, Any],
    model_sha256: str,
    model_bytes: int,
) -> dict[str, Any]:
    """One dict with every field the issue asks a card to carry."""
    return {
        "name": name,
        "version": version,
        "family": family,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": dataset,
        "split": split,
        "hyperparameters": hyperparameters,
        "parameters": parameters,
        "metrics": metrics,
        "training": training,
        "parity": parity,
        "model_onnx": {"sha256": model_sha256, "bytes": model_bytes},
        "software": software_versions(),
    }


def write_card(card: dict[str, Any], path: Path) -> Path:
    """Write card.json, indented, NaN-free (json allows none)."""
    Path(path).write_text(json.dumps(card, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return Path(path)


def read_card(path: Path) -> dict[str, Any]:
    """Load a card.json."""
    card: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return card
