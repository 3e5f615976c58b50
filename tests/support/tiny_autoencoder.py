"""A three-feature dense autoencoder and its config: the smallest model the repository writer and evaluate take."""

from __future__ import annotations

import torch

from modelrepo.config import AnomalySpec, ModelConfig, TabularPreprocessing
from training.models import build_model

NAME = "tiny-ae"
FEATURES = ["a", "b", "c"]


def tiny_autoencoder(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("dense-ae", n_features=len(FEATURES), hidden=(8,), latent=2).eval()


def tiny_autoencoder_config(threshold: float = 1.5) -> ModelConfig:
    return ModelConfig(
        name=NAME,
        task="anomaly",
        inputs=[],
        outputs=[],
        preprocessing=TabularPreprocessing(features=FEATURES, mean=[0.0] * 3, scale=[1.0] * 3),
        anomaly=AnomalySpec(threshold=threshold),
    )
