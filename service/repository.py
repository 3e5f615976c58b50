"""Discovery: which models and versions the repository folder holds, without loading anything.

A model is a folder with `config.json` or with only numeric version folders holding `model.onnx`
(`modelrepo.layout.is_model_dir`); its versions are numeric sub-folders, filtered by the model's
version policy. A model without config.json gets the default config (no task, tensors left empty):
the loader completes it from the graph. A broken config or a missing file yields a descriptor that carries the
reason instead of an exception, so one bad model never hides the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from modelrepo.config import ConfigError, ModelConfig, read_config
from modelrepo.layout import CONFIG_FILE, MODEL_FILE, model_names, versions
from service.errors import UnsafeName
from service.naming import resolve_inside


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


def discover_model(model_dir: Path) -> list[ModelDescriptor]:
    """The versions of one model folder that its policy selects, newest first."""
    name = model_dir.name
    try:
        top = (
            read_config(model_dir / CONFIG_FILE, name)
            if (model_dir / CONFIG_FILE).exists()
            else ModelConfig.model_validate({"name": name})
        )
    except (OSError, ValueError) as exc:
        return [ModelDescriptor(name, None, model_dir, None, f"config.json: {_reason(exc)}")]
    if top.name != name:
        error = f"config.json names the model {top.name!r} but its folder is {name!r}"
        return [ModelDescriptor(name, None, model_dir, None, error)]
    selected = top.version_policy.select(versions(model_dir))
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


def discover(root: Path) -> list[ModelDescriptor]:
    """Every model folder under `root` (`modelrepo.layout.model_names`) and the versions its policy selects."""
    return [d for name in model_names(root) for d in discover_model(Path(root) / name)]
