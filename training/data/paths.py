"""Where the datasets live and how to fingerprint them for the model card."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# training/data/paths.py -> parents[2] is the repository root.
REPO_ROOT = Path(__file__).resolve().parents[2]
_CHUNK = 1 << 20


def cache_dir() -> Path:
    """Where `python -m training datasets fetch` puts datasets when `$AXON_DATASETS` is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "axon" / "datasets"


def shared_datasets_dir() -> Path:
    """`../shared/datasets` beside the repository: where CI and the development machines keep them."""
    return REPO_ROOT.parent / "shared" / "datasets"


def default_datasets_dir() -> Path:
    """`$AXON_DATASETS` if set, else `../shared/datasets` when it exists (as in CI), else the cache folder."""
    env = os.environ.get("AXON_DATASETS")
    if env:
        return Path(env)
    shared = shared_datasets_dir()
    return shared if shared.is_dir() else cache_dir()


def _update(digest: hashlib._Hash, path: str | os.PathLike[str]) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of one file's bytes (what the dataset READMEs list)."""
    digest = hashlib.sha256()
    _update(digest, path)
    return digest.hexdigest()


def dataset_checksum(paths: list[Path]) -> str:
    """Hex sha256 over the bytes of the files in the given order (equals `file_sha256` for one file)."""
    if not paths:
        raise ValueError("dataset_checksum needs at least one file")
    digest = hashlib.sha256()
    for path in paths:
        _update(digest, path)
    return digest.hexdigest()
