"""Padding masks for the text families: masked pooling and example padded batches.

Text batches are right-padded (the service pads each row to the batch's longest with `pad_id`), so
`attention_mask` is 1 on a prefix of each row and 0 after it, and position 0 holds an unmasked [CLS].
"""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `x` [B,T,C] over the positions where `mask` [B,T] is 1."""
    weights = mask.to(x.dtype).unsqueeze(-1)  # (B, T, 1)
    # clamp: [CLS] keeps every row non-empty, but a stray all-zero row must not divide by zero.
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)  # (B, C)


def masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max of `x` [B,T,C] over the positions where `mask` [B,T] is 1."""
    # A finite fill rather than -inf: an all-padding row then gives a large negative number, not NaN.
    filled = x.masked_fill(mask.unsqueeze(-1) == 0, torch.finfo(x.dtype).min)
    return filled.max(dim=1).values  # (B, C)


def example_text_batch(
    batch: int, length: int, vocab_size: int, cls_id: int, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random right-padded `input_ids` and `attention_mask` [batch, length], [CLS] first in every row."""
    if vocab_size <= max(cls_id, pad_id) + 1:
        raise ValueError(f"vocab_size {vocab_size} leaves no ordinary token after the special ids")
    low = max(cls_id, pad_id) + 1
    input_ids = torch.randint(low, vocab_size, (batch, length), dtype=torch.int64)
    input_ids[:, 0] = cls_id
    attention_mask = torch.ones(batch, length, dtype=torch.int64)
    if length > 1:
        # The last row is padded to about half length, so every example batch exercises the mask.
        keep = max(1, length // 2)
        input_ids[-1, keep:] = pad_id
        attention_mask[-1, keep:] = 0
    return input_ids, attention_mask
