"""A recurrent text classifier: embedding, (bi)GRU or LSTM layers, masked mean+max pooling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from training.models.masking import example_text_batch, masked_max, masked_mean


@dataclass
class RecurrentConfig:
    """Hyper-parameters of `RecurrentClassifier`."""

    vocab_size: int
    num_classes: int = 2
    embed_dim: int = 128
    hidden_size: int = 128
    cell: Literal["gru", "lstm"] = "gru"  # GRU: fewer parameters, as good on short sentences
    bidirectional: bool = True  # a sentence's sentiment often hinges on its last words: read both ways
    num_layers: int = 1  # one layer is enough for sentence classification; more overfit small data
    # Dropout on embeddings, between layers and before the head; small text datasets overfit quickly.
    dropout: float = 0.3
    pad_id: int = 0
    cls_id: int = 2  # [CLS], prepended by the tokenizer's post-processor and never masked
    example_length: int = 16  # sequence length of `example_inputs` (the export example)

    def __post_init__(self) -> None:
        if self.cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be 'gru' or 'lstm', got {self.cell!r}")


def _reverse_index(mask: torch.Tensor) -> torch.Tensor:
    """Per-row index [B,T] that reverses each row's real tokens in place and leaves padding where it is."""
    lengths = mask.sum(dim=1, keepdim=True)  # (B, 1)
    t = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)  # (1, T)
    return torch.where(t < lengths, lengths - 1 - t, t)  # (B, T); its own inverse


def _gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class _RecurrentLayer(nn.Module):
    """One forward RNN and, if bidirectional, one RNN over each row's real tokens reversed.

    `nn.GRU(bidirectional=True)` would start its backward pass on the padding, so a sentence's logits
    would depend on how long its batch-mates are; `pack_padded_sequence` avoids that but does not
    export to ONNX. Reversing each row within its own length keeps padding after the real tokens in both
    directions, so with right padding the real positions never see it.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, bidirectional: bool) -> None:
        super().__init__()
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.forward_rnn = rnn(input_size, hidden_size, batch_first=True)
        self.backward_rnn = rnn(input_size, hidden_size, batch_first=True) if bidirectional else None

    def forward(self, x: torch.Tensor, reverse: torch.Tensor) -> torch.Tensor:
        out, _ = self.forward_rnn(x)  # (B, T, H)
        if self.backward_rnn is None:
            return out
        back, _ = self.backward_rnn(_gather_time(x, reverse))
        return torch.cat([out, _gather_time(back, reverse)], dim=-1)  # (B, T, 2H)


class RecurrentClassifier(nn.Module):
    """Embedding, stacked (bi)GRU/LSTM layers and a head on masked mean+max pooling: tokens -> logits."""

    input_names: tuple[str, ...] = ("input_ids", "attention_mask")
    output_names: tuple[str, ...] = ("logits",)

    def __init__(self, config: RecurrentConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=config.pad_id)
        directions = 2 if config.bidirectional else 1
        sizes = [config.embed_dim] + [directions * config.hidden_size] * (config.num_layers - 1)
        self.layers = nn.ModuleList(
            _RecurrentLayer(config.cell, size, config.hidden_size, config.bidirectional) for size in sizes
        )
        self.dropout = nn.Dropout(config.dropout)
        # mean and max pooled features side by side: the mean summarises, the max catches a strong cue.
        self.head = nn.Linear(2 * directions * config.hidden_size, config.num_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Class logits [B, num_classes] for right-padded token ids and their mask, both int64 [B, T]."""
        reverse = _reverse_index(attention_mask)
        x = self.dropout(self.embedding(input_ids))  # (B, T, E)
        for i, layer in enumerate(self.layers):
            x = layer(x if i == 0 else self.dropout(x), reverse)  # (B, T, D*H)
        pooled = torch.cat([masked_mean(x, attention_mask), masked_max(x, attention_mask)], dim=-1)
        return self.head(self.dropout(pooled))  # (B, num_classes)

    def example_inputs(self, batch: int = 2, length: int | None = None) -> tuple[torch.Tensor, ...]:
        """Random right-padded token ids and mask, [CLS] first, one row padded."""
        c = self.config
        return example_text_batch(batch, length or c.example_length, c.vocab_size, c.cls_id, c.pad_id)

    def dynamic_dims(self) -> dict[str, dict[int, str]]:
        """Named dynamic axes of every input and output: batch, and sequence for the inputs."""
        text = {0: "batch", 1: "seq"}
        return {"input_ids": text, "attention_mask": dict(text), "logits": {0: "batch"}}
