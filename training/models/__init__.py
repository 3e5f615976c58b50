"""The model families, by name, and checkpoints that rebuild their model alone.

`FAMILIES` is the one table of families: the CLI reads its names and tasks without importing PyTorch
(so `python -m training --help` stays fast), and the classes are imported on first use.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.models.protocol import ExportableModel

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Family:
    """A model family: the task it serves and where its config and model classes live."""

    task: str  # "image", "text", "tabular" or "series": the dataset kinds it trains on
    module: str
    config_name: str
    model_name: str

    @property
    def config_class(self) -> type:
        """The config dataclass (imports the family's module, and so PyTorch)."""
        cls: type = getattr(importlib.import_module(self.module), self.config_name)
        return cls

    @property
    def model_class(self) -> type[nn.Module]:
        """The `nn.Module` class, which satisfies `ExportableModel`."""
        cls: type[nn.Module] = getattr(importlib.import_module(self.module), self.model_name)
        return cls


# family name -> Family; the names are what the CLI and checkpoints use.
FAMILIES: dict[str, Family] = {
    "cnn": Family("image", "training.models.cnn", "CNNConfig", "CNNClassifier"),
    "rnn": Family("text", "training.models.recurrent", "RecurrentConfig", "RecurrentClassifier"),
    "transformer": Family("text", "training.models.transformer", "TransformerConfig", "TransformerClassifier"),
    "pretrained": Family("text", "training.models.pretrained", "PretrainedConfig", "PretrainedClassifier"),
    "dense-ae": Family("tabular", "training.models.autoencoder", "DenseAutoencoderConfig", "DenseAutoencoder"),
    "seq-ae": Family("series", "training.models.autoencoder", "SequenceAutoencoderConfig", "SequenceAutoencoder"),
}
_EXPORTS = {name: f.module for f in FAMILIES.values() for name in (f.config_name, f.model_name)}
_EXPORTS["BagOfEmbeddings"] = "training.models.bag"


def __getattr__(name: str) -> Any:
    # The classes load lazily, so importing the package (for FAMILIES) does not import PyTorch.
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def family(name: str) -> Family:
    """The family called `name`."""
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; choose one of {sorted(FAMILIES)}")
    return FAMILIES[name]


def build_model(name: str, **config_kwargs: Any) -> nn.Module:
    """A fresh model of family `name` built from its config's keyword arguments."""
    spec = family(name)
    return spec.model_class(spec.config_class(**config_kwargs))


def family_of(model: nn.Module) -> str:
    """The family name of a model instance."""
    for name, spec in FAMILIES.items():
        if type(model) is spec.model_class:
            return name
    raise ValueError(f"{type(model).__name__} is not one of the model families")


def config_dict(model: nn.Module) -> dict[str, Any]:
    """The family config dataclass a model was built from, as plain values (checkpoints, model cards)."""
    config: Any = model.config  # every family keeps its config here (ExportableModel.config)
    return dataclasses.asdict(config)


def save_checkpoint(model: nn.Module, name: str, path: str | Path) -> None:
    """Write the model's weights together with its family and config, so the file rebuilds it alone."""
    import torch

    model_class = family(name).model_class
    if not isinstance(model, model_class):
        raise ValueError(f"a {type(model).__name__} is not a {name!r} model ({model_class.__name__})")
    payload = {
        "family": name,
        "config": config_dict(model),
        "state_dict": model.state_dict(),
    }
    torch.save(payload, Path(path))


def model_from_checkpoint(path: str | Path) -> nn.Module:
    """The model saved by `save_checkpoint`, rebuilt from its stored config, in eval mode."""
    import torch

    # weights_only: a checkpoint holds tensors and plain config values, never code to execute.
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    model = build_model(payload["family"], **payload["config"])
    model.load_state_dict(payload["state_dict"])
    return model.eval()


__all__ = [
    "FAMILIES",
    "BagOfEmbeddings",
    "CNNClassifier",
    "CNNConfig",
    "DenseAutoencoder",
    "DenseAutoencoderConfig",
    "ExportableModel",
    "Family",
    "PretrainedClassifier",
    "PretrainedConfig",
    "RecurrentClassifier",
    "RecurrentConfig",
    "SequenceAutoencoder",
    "SequenceAutoencoderConfig",
    "TransformerClassifier",
    "TransformerConfig",
    "build_model",
    "family",
    "family_of",
    "model_from_checkpoint",
    "save_checkpoint",
]
