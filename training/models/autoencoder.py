"""Autoencoders for anomaly detection: the score is the reconstruction error, computed in the model.

Both return `(reconstruction, score)`. Training minimises `score.mean()` and serving reads `score`, so
the definition of the anomaly score exists once, here, and the ONNX export carries it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn


def _squared_error(x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Per-row mean squared error over every non-batch dimension: [B, ...] -> [B]."""
    return (reconstruction - x).pow(2).flatten(1).mean(dim=1)


@dataclass
class DenseAutoencoderConfig:
    """Hyper-parameters of `DenseAutoencoder`."""

    n_features: int
    # A funnel narrow enough that the net must learn the normal rows' correlations instead of copying
    # its input (21 thyroid features -> 8): rows breaking those correlations reconstruct badly.
    hidden: tuple[int, ...] = (64, 32)
    latent: int = 8
    dropout: float = 0.1  # light: the bottleneck is the main regulariser

    def __post_init__(self) -> None:
        self.hidden = tuple(self.hidden)


def _mlp(sizes: list[int], dropout: float) -> nn.Sequential:
    """Linear layers with GELU and dropout between them, none after the last."""
    layers: list[nn.Module] = []
    for i, (cin, cout) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(cin, cout))
        if i < len(sizes) - 2:
            layers += [nn.GELU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class DenseAutoencoder(nn.Module):
    """A mirrored MLP encoder/decoder over standardised tabular rows: features -> (reconstruction, score)."""

    input_names: tuple[str, ...] = ("features",)
    output_names: tuple[str, ...] = ("reconstruction", "score")

    def __init__(self, config: DenseAutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        sizes = [config.n_features, *config.hidden, config.latent]
        self.encoder = _mlp(sizes, config.dropout)
        self.decoder = _mlp(sizes[::-1], config.dropout)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction [B, F] and per-row mean squared error [B] of standardised rows [B, F]."""
        reconstruction = self.decoder(self.encoder(features))  # (B, F)
        return reconstruction, _squared_error(features, reconstruction)

    def example_inputs(self, batch: int = 2, length: int | None = None) -> tuple[torch.Tensor, ...]:
        """Random standardised rows (`length` is ignored)."""
        return (torch.randn(batch, self.config.n_features),)

    def dynamic_dims(self) -> dict[str, dict[int, str]]:
        """Named dynamic axes of every input and output: only the batch."""
        return {"features": {0: "batch"}, "reconstruction": {0: "batch"}, "score": {0: "batch"}}


@dataclass
class SequenceAutoencoderConfig:
    """Hyper-parameters of `SequenceAutoencoder`."""

    window: int  # points per window; fixed by the export (only the batch axis is dynamic)
    # "lstm" reads the window step by step; "conv" sees local shapes at once and is faster on a CPU.
    kind: Literal["lstm", "conv"] = "lstm"
    hidden: int = 32
    # Much smaller than the window: the code can hold the window's overall shape but not its noise or
    # an unusual excursion, which is what makes those reconstruct badly.
    latent: int = 8
    dropout: float = 0.0  # the latent bottleneck regularises; dropout blurs reconstructions of normal data

    def __post_init__(self) -> None:
        if self.kind not in ("lstm", "conv"):
            raise ValueError(f"kind must be 'lstm' or 'conv', got {self.kind!r}")
        if self.window < 2:
            raise ValueError(f"window must be at least 2, got {self.window}")


class _LSTMCodec(nn.Module):
    """LSTM encoder to a latent code, latent repeated over the window, LSTM decoder."""

    def __init__(self, c: SequenceAutoencoderConfig) -> None:
        super().__init__()
        self.encoder = nn.LSTM(1, c.hidden, batch_first=True)
        self.to_latent = nn.Linear(c.hidden, c.latent)
        self.decoder = nn.LSTM(c.latent, c.hidden, batch_first=True)
        self.dropout = nn.Dropout(c.dropout)
        self.out = nn.Linear(c.hidden, 1)

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.encoder(window)  # h: (1, B, H)
        z = self.to_latent(self.dropout(h[-1]))  # (B, L)
        repeated = z.unsqueeze(1).expand(-1, window.shape[1], -1)  # (B, W, L)
        decoded, _ = self.decoder(repeated)  # (B, W, H)
        return self.out(self.dropout(decoded))  # (B, W, 1)


class _ConvCodec(nn.Module):
    """Two stride-2 1-D convolutions to a latent code, two transposed convolutions back, cropped to W."""

    def __init__(self, c: SequenceAutoencoderConfig) -> None:
        super().__init__()
        self.window = c.window
        self.reduced = (c.window + 3) // 4  # ceil(W / 4): the length after two stride-2 convolutions
        self.encoder = nn.Sequential(
            nn.Conv1d(1, c.hidden, 5, stride=2, padding=2),
            nn.GELU(),
            nn.Conv1d(c.hidden, c.hidden, 5, stride=2, padding=2),
            nn.GELU(),
            nn.Flatten(),
            nn.Dropout(c.dropout),
            nn.Linear(c.hidden * self.reduced, c.latent),
        )
        self.expand = nn.Linear(c.latent, c.hidden * self.reduced)
        self.decoder = nn.Sequential(
            nn.GELU(),
            nn.ConvTranspose1d(c.hidden, c.hidden, 4, stride=2, padding=1),
            nn.GELU(),
            nn.ConvTranspose1d(c.hidden, 1, 4, stride=2, padding=1),
        )

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        z = self.encoder(window.transpose(1, 2))  # (B, 1, W) -> (B, L)
        x = self.expand(z).unflatten(1, (-1, self.reduced))  # (B, H, W/4)
        x = self.decoder(x)[:, :, : self.window]  # (B, 1, 4 * ceil(W/4)) cropped to (B, 1, W)
        return x.transpose(1, 2)  # (B, W, 1)


class SequenceAutoencoder(nn.Module):
    """An LSTM or 1-D conv autoencoder over normalised series windows: window -> (reconstruction, score)."""

    input_names: tuple[str, ...] = ("window",)
    output_names: tuple[str, ...] = ("reconstruction", "score")

    def __init__(self, config: SequenceAutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        self.codec = _LSTMCodec(config) if config.kind == "lstm" else _ConvCodec(config)

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction [B, W, 1] and mean squared error over the window [B] of windows [B, W, 1]."""
        if window.shape[1] != self.config.window:
            raise ValueError(f"expected windows of {self.config.window} points, got {window.shape[1]}")
        reconstruction = self.codec(window)  # (B, W, 1)
        return reconstruction, _squared_error(window, reconstruction)

    def example_inputs(self, batch: int = 2, length: int | None = None) -> tuple[torch.Tensor, ...]:
        """Random normalised windows of the configured length (`length` is ignored)."""
        return (torch.randn(batch, self.config.window, 1),)

    def dynamic_dims(self) -> dict[str, dict[int, str]]:
        """Named dynamic axes of every input and output: only the batch."""
        return {"window": {0: "batch"}, "reconstruction": {0: "batch"}, "score": {0: "batch"}}
