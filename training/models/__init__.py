"""The model families, by name, and checkpoints that rebuild their model alone."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.models.autoencoder import (
    DenseAutoencoder,
    DenseAutoencoderConfig,
    SequenceAutoencoder,
    SequenceAutoencoderConfig,
)
from training.models.cnn import CNNClassifier, CNNConfig
from training.models.recurrent import RecurrentClassifier, RecurrentConfig
from training.models.transformer import TransformerClassifier, TransformerConfig

# family name -> (config dataclass, model class); the names are what the CLI and checkpoints use.
FAMILIES: dict[str, tuple[type, type[nn.Module]]] = {
    "cnn": (CNNConfig, CNNClassifier),
    "rnn": (RecurrentConfig, RecurrentClassifier),
    "transformer": (TransformerConfig, TransformerClassifier),
    "dense-ae": (DenseAutoencoderConfig, DenseAutoencoder),
    "seq-ae": (SequenceAutoencoderConfig, SequenceAutoencoder),
}


def _family(name: str) -> tuple[type, type[nn.Module]]:
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; choose one of {sorted(FAMILIES)}")
    return FAMILIES[name]


def build_model(family: str, **config_kwargs: Any) -> nn.Module:
    """A fresh model of `family` built from its config's keyword arguments."""
    config_class, model_class = _family(family)
    return model_class(config_class(**config_kwargs))


def family_of(model: nn.Module) -> str:
    """The family name of a model instance."""
    for name, (_, model_class) in FAMILIES.items():
        if type(model) is model_class:
            return name
    raise ValueError(f"{type(model).__name__} is not one of the model families")


def save_checkpoint(model: nn.Module, family: str, path: str | Path) -> None:
    """Write the model's weights together with its family and config, so the file rebuilds it alone."""
    config_class, model_class = _family(family)
    if not isinstance(model, model_class):
        raise ValueError(f"a {type(model).__name__} is not a {family!r} model ({model_class.__name__})")
    payload = {
        "family": family,
        "config": dataclasses.asdict(model.config),
        "state_dict": model.state_dict(),
    }
    torch.save(payload, Path(path))


def model_from_checkpoint(path: str | Path) -> nn.Module:
    """The model saved by `save_checkpoint`, rebuilt from its stored config, in eval mode."""
    # weights_only: a checkpoint holds tensors and plain config values, never code to execute.
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    model = build_model(payload["family"], **payload["config"])
    model.load_state_dict(payload["state_dict"])
    return model.eval()


__all__ = [
    "FAMILIES",
    "CNNClassifier", "CNNConfig",
    "RecurrentClassifier", "RecurrentConfig",
    "TransformerClassifier", "TransformerConfig",
    "DenseAutoencoder", "DenseAutoencoderConfig",
    "SequenceAutoencoder", "SequenceAutoencoderConfig",
    "build_model", "family_of", "model_from_checkpoint", "save_checkpoint",
]
