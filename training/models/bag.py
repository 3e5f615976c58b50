"""A bag-of-embeddings text classifier, used to warm up a text model's embedding table."""

from __future__ import annotations

import torch
from torch import nn


class BagOfEmbeddings(nn.Module):
    """Mean of token embeddings and a linear layer (fastText's classifier): trains in seconds.

    Used to give a recurrent model's embedding table a head start: on a couple of thousand sentences a
    GRU learning its word vectors from scratch overfits before the vectors mean much, while this
    shallow model learns which words carry the label almost at once.
    """

    def __init__(self, vocab_size: int, dim: int, num_classes: int, pad_id: int, dropout: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Class logits [B, num_classes] of token ids [B, T]."""
        weights = attention_mask.unsqueeze(-1).float()  # (B, T, 1)
        mean = (self.embedding(input_ids) * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # (B, E)
        return self.head(self.dropout(mean))
