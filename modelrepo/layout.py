"""Where things are in a model repository: file names, version folders, and what counts as a model folder.

Layout (Triton-style)::

    <root>/<name>/config.json            the model's live config (task, tensors, batching, policy)
    <root>/<name>/<version>/model.onnx   one self-contained ONNX file per numeric version
    <root>/<name>/<version>/config.json  snapshot of the config this version was exported with
    <root>/<name>/<version>/...          artefacts: labels.txt, tokenizer.json, card.json, plots
"""

from __future__ import annotations

import re
from pathlib import Path

CONFIG_FILE = "config.json"
MODEL_FILE = "model.onnx"

MAX_NAME_LENGTH = 128
# Letters, digits, '_', '-', '.'; the first character is a letter, a digit or '_' (no '.', '..',
# hidden folders or option-like names). ASCII only: look-alike Unicode names would be a trap.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*", re.ASCII)


def is_model_name(name: object) -> bool:
    """Whether `name` is a name a model may have (a folder name that is safe to serve under)."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_NAME_LENGTH
        and ".." not in name
        and NAME_PATTERN.fullmatch(name) is not None
    )


def inside(root: Path | str, *parts: str) -> Path | None:
    """`root/parts...` with symlinks resolved if it stays inside the resolved root, else None."""
    base = Path(root).resolve()
    # resolve() follows every symlink that exists; is_relative_to then compares real locations
    target = base.joinpath(*parts).resolve()
    return target if target.is_relative_to(base) else None


def is_model_dir(root: Path | str, name: str) -> bool:
    """Whether `name` is a model of the repository: a model name, a folder inside `root`, holding a config.json
    or a numeric version folder with a model.onnx (a bare ONNX model, configured from its graph).

    The one rule for what counts as a model folder; any string is safe to pass (a client's, say).
    """
    if not is_model_name(name):
        return False
    folder = inside(root, name)  # a symlink to a folder elsewhere is not served
    # Hidden folders hold tooling state (.git, .cache) and fail the name rule;
    # a folder with neither config.json nor a version's model.onnx is not a model.
    if folder is None or not folder.is_dir():
        return False
    return (folder / CONFIG_FILE).is_file() or any((folder / str(v) / MODEL_FILE).is_file() for v in versions(folder))


def model_names(root: Path | str) -> list[str]:
    """Model folders under `root` (see `is_model_dir`), sorted."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [p.name for p in sorted(root.iterdir()) if is_model_dir(root, p.name)]


def versions(model_dir: Path) -> list[int]:
    """Numeric version folders of one model, ascending; anything else (plots, notes, .staging-*) is ignored."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
