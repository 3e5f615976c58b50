"""Discovery: which models and versions the repository folder holds, without loading anything.

A model is a folder with `config.json`; its versions are numeric sub-folders, filtered by the
model's version policy. A broken config or a missing file yields a descriptor that carries the
reason instead of an exception, so one bad model never hides the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from service.model_config import CONFIG_FILE, MODEL_FILE, ConfigError, ModelConfig, read_config
from service.naming import UnsafeName, is_model_name, resolve_inside


@dataclass(frozen=True)
class ModelDescriptor:
    """One servable version found on disk (or a model that could not be read, with `error` set)."""

    name: str
    version: int | None
    path: Path
    config: ModelConfig | None
    error: str | None = None

    @property
    def model_file(self) -> Path:
        """The version's ONNX file."""
        return self.path / MODEL_FILE


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}: {first['msg']}" if where else first["msg"]
    if isinstance(exc, ConfigError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def versions_on_disk(model_dir: Path) -> list[int]:
    """Numeric version folders of one model; anything else (plots, notes, .tmp) is ignored."""
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def discover_model(model_dir: Path) -> list[ModelDescriptor]:
    """The versions of one model folder that its policy selects, newest first."""
    name = model_dir.name
    try:
        top = read_config(model_dir / CONFIG_FILE)
    except (OSError, ValueError) as exc:
        return [ModelDescriptor(name, None, model_dir, None, f"config.json: {_reason(exc)}")]
    if top.name != name:
        error = f"config.json names the model {top.name!r} but its folder is {name!r}"
        return [ModelDescriptor(name, None, model_dir, None, error)]
    selected = top.version_policy.select(versions_on_disk(model_dir))
    if not selected:
        return [ModelDescriptor(name, None, model_dir, top, "no numeric version folder matches the version policy")]
    return [_describe_version(model_dir / str(v), name, v, top) for v in selected]


def _describe_version(path: Path, name: str, version: int, top: ModelConfig) -> ModelDescriptor:
    snapshot = path / CONFIG_FILE
    try:
        config = read_config(snapshot).serving_view(top) if snapshot.exists() else top
    except (OSError, ValueError) as exc:
        return ModelDescriptor(name, version, path, None, f"version {version} config.json: {_reason(exc)}")
    if not (path / MODEL_FILE).is_file():
        return ModelDescriptor(name, version, path, config, f"version {version} has no {MODEL_FILE}")
    try:
        # A version folder or model file may be a symlink; it must still resolve inside the repository.
        resolve_inside(path.parent.parent, name, str(version), MODEL_FILE)
    except UnsafeName:
        return ModelDescriptor(name, version, path, config, f"version {version} leads outside the model repository")
    return ModelDescriptor(name, version, path, config)


def is_model_dir(root: Path | str, name: str) -> bool:
    """Whether `name` is a model of the repository: a safe name, a folder inside `root`, a config.json in it.

    The one rule for what counts as a model folder; any string is safe to pass (a client's, say).
    """
    if not is_model_name(name):
        return False
    try:
        folder = resolve_inside(root, name)  # a symlink to a folder elsewhere is not served
    except UnsafeName:
        return False
    # Hidden folders hold tooling state (.git, .cache) and fail the name rule; a folder without config.json is not a model.
    return folder.is_dir() and (folder / CONFIG_FILE).is_file()


def model_names(root: Path) -> list[str]:
    """Model folders under `root` (see `is_model_dir`), sorted."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [p.name for p in sorted(root.iterdir()) if is_model_dir(root, p.name)]


def discover(root: Path) -> list[ModelDescriptor]:
    """Every model folder under `root` (sorted by name) and the versions its policy selects."""
    return [d for name in model_names(root) for d in discover_model(Path(root) / name)]
