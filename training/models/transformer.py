"""A Transformer encoder text classifier: token + learned position embeddings, padding mask, mean pooling."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from training.models.masking import example_text_batch, masked_mean


@dataclass
class TransformerConfig:
    """Hyper-parameters of `TransformerClassifier`."""

    vocab_size: int
    num_classes: int = 2
    # Small on purpose: SMS-sized datasets (a few thousand texts) cannot feed a BERT-sized encoder,
    # and two 128-wide layers train in minutes on a CPU.
    d_model: int = 128
    n_heads: int = 4  # 32 dimensions per head
    n_layers: int = 2
    ff_dim: int = 256  # 2x d_model rather than the usual 4x: the data, not capacity, is the limit here
    dropout: float = 0.1
    # Longest sequence (with [CLS]) the learned position table covers; the service truncates to it.
    max_length: int = 128
    pad_id: int = 0
    cls_id: int = 2  # [CLS], prepended by the tokenizer's post-processor and never masked
    example_length: int = 16  # sequence length of `example_inputs` (the export example)

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")


class TransformerClassifier(nn.Module):
    """Pre-norm Transformer encoder over token + position embeddings, masked mean pooling, linear head."""

    input_names: tuple[str, ...] = ("input_ids", "attention_mask")
    output_names: tuple[str, ...] = ("logits",)

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_id)
        self.position_embedding = nn.Embedding(config.max_length, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        layer = nn.TransformerEncoderLayer(
            config.d_model,
            config.n_heads,
            config.ff_dim,
            config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,  # pre-norm trains stably without a learning-rate warm-up
        )
        # enable_nested_tensor=False: with nested tensors eager PyTorch returns zeros at padded positions
        # while the ONNX graph does not, and parity must compare like with like.
        self.encoder = nn.TransformerEncoder(
            layer, config.n_layers, norm=nn.LayerNorm(config.d_model), enable_nested_tensor=False
        )
        self.head = nn.Linear(config.d_model, config.num_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Class logits [B, num_classes] for right-padded token ids and their mask, both int64 [B, T]."""
        length = input_ids.shape[1]
        if length > self.config.max_length:
            raise ValueError(f"sequence length {length} exceeds max_length {self.config.max_length}")
        positions = torch.arange(length, device=input_ids.device)  # (T,)
        x = self.token_embedding(input_ids) + self.position_embedding(positions)  # (B, T, C)
        # True = ignore; [CLS] at position 0 is always 1 in the mask, so no row attends to nothing.
        padding = attention_mask == 0  # (B, T)
        x = self.encoder(self.dropout(x), src_key_padding_mask=padding)  # (B, T, C)
        return self.head(self.dropout(masked_mean(x, attention_mask)))  # (B, num_classes)

    def example_inputs(self, batch: int = 2, length: int | None = None) -> tuple[torch.Tensor, ...]:
        """Random right-padded token ids and mask, [CLS] first, one row padded."""
        c = self.config
        length = length or min(c.example_length, c.max_length)
        return example_text_batch(batch, length, c.vocab_size, c.cls_id, c.pad_id)

    def dynamic_dims(self) -> dict[str, dict[int, str]]:
        """Named dynamic axes of every input and output: batch, and sequence for the inputs."""
        text = {0: "batch", 1: "seq"}
        return {"input_ids": text, "attention_mask": dict(text), "logits": {0: "batch"}}
