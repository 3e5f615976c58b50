"""A pretrained BERT-style encoder (Hugging Face folder layout) with a classification head.

The encoder is loaded with `transformers` from a local folder (config.json, model.safetensors, tokenizer.json);
nothing is downloaded. `transformers` rather than a hand-written BERT: its BertModel is the reference the
weights were trained with, so there is no equivalence to prove.

The encoder's own config is kept in `PretrainedConfig.encoder_config`, so a checkpoint (which carries the
fine-tuned weights anyway) rebuilds the module from that config alone, without the original folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.models.masking import example_text_batch, masked_mean

POOLINGS = ("mean", "cls")


@dataclass
class PretrainedConfig:
    """Hyper-parameters of `PretrainedClassifier`; `encoder` is the folder the weights came from."""

    encoder: str  # a folder in the Hugging Face layout; recorded as given (a string), for the card
    num_classes: int = 2
    # Mean over the real tokens is what all-MiniLM-L6-v2 was trained to embed sentences with;
    # "cls" takes the [CLS] position, the BERT fine-tuning classic.
    pooling: str = "mean"
    dropout: float = 0.1  # before the head only; the encoder keeps its own dropout settings
    freeze_layers: int = 0  # freeze the embeddings and the lowest N transformer layers (0: train everything)
    freeze_encoder: bool = False  # train the head alone
    # Short on purpose: SMS and review sentences are short, and attention costs grow with the square of it.
    max_length: int = 64
    example_length: int = 16  # sequence length of `example_inputs` (the export example)
    pad_id: int = 0  # BERT's [PAD]
    cls_id: int = 101  # BERT's [CLS] in the uncased vocabulary; the recipe reads both from tokenizer.json
    # The encoder's config.json as a dict: filled in on first load, and enough to rebuild the module later.
    encoder_config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.freeze_layers < 0:
            raise ValueError(f"freeze_layers must be >= 0, got {self.freeze_layers}")
        self.encoder = str(self.encoder)


# The encoders are `transformers.PreTrainedModel`s, typed `Any` here: transformers' own annotations do not
# name their submodules (`.embeddings`, `.encoder.layer`) or config fields.
def load_encoder(folder: str | Path) -> Any:
    """The encoder saved in `folder` (Hugging Face layout), from local files only."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    # A bar per load clutters `rebuild --quiet`; the fit has its own bars. (transformers leaves it unannotated.)
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    folder = Path(folder)
    weights = [folder / "model.safetensors", folder / "pytorch_model.bin"]
    if not (folder / "config.json").is_file() or not any(p.is_file() for p in weights):
        raise FileNotFoundError(
            f"{folder} is not a pretrained encoder folder: it needs config.json and model.safetensors"
        )
    # Eager attention: the same arithmetic in PyTorch and in the exported graph (and no SDPA kernel choice).
    return AutoModel.from_pretrained(folder, local_files_only=True, attn_implementation="eager")


def encoder_from_config(config: dict[str, Any]) -> Any:
    """A randomly initialised encoder of the architecture `config` describes (its weights come from a checkpoint)."""
    from transformers import AutoConfig, AutoModel

    values = {k: v for k, v in config.items() if k != "model_type"}
    hf_config = AutoConfig.for_model(config["model_type"], **values)
    auto: Any = AutoModel
    return auto.from_config(hf_config, attn_implementation="eager")


class PretrainedClassifier(nn.Module):
    """Pretrained encoder, masked mean (or [CLS]) pooling, dropout, linear head."""

    input_names: tuple[str, ...] = ("input_ids", "attention_mask")
    output_names: tuple[str, ...] = ("logits",)

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder: Any
        if config.encoder_config:
            self.encoder = encoder_from_config(config.encoder_config)
        else:
            self.encoder = load_encoder(config.encoder)
            config.encoder_config = self.encoder.config.to_dict()
        hidden = int(self.encoder.config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(hidden, config.num_classes)
        self.freeze(config.freeze_layers, config.freeze_encoder)

    def freeze(self, layers: int, encoder: bool) -> None:
        """Stop gradients into the embeddings and the lowest `layers` layers, or into the whole encoder."""
        if encoder:
            self.encoder.requires_grad_(False)
            return
        if layers:
            blocks = self.encoder.encoder.layer
            if layers > len(blocks):
                raise ValueError(f"freeze_layers {layers} exceeds the encoder's {len(blocks)} layers")
            self.encoder.embeddings.requires_grad_(False)
            for block in blocks[:layers]:
                block.requires_grad_(False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Class logits [B, num_classes] for right-padded token ids and their mask, both int64 [B, T]."""
        # token_type_ids stay the encoder's default zeros: one segment per text.
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        pooled = masked_mean(h, attention_mask) if self.config.pooling == "mean" else h[:, 0]  # (B, H)
        return self.head(self.dropout(pooled))  # (B, num_classes)

    def example_inputs(self, batch: int = 2, length: int | None = None) -> tuple[torch.Tensor, ...]:
        """Random right-padded token ids and mask, [CLS] first, one row padded."""
        c = self.config
        length = length or min(c.example_length, c.max_length)
        vocab = int(self.encoder.config.vocab_size)
        return example_text_batch(batch, length, vocab, c.cls_id, c.pad_id)

    def dynamic_dims(self) -> dict[str, dict[int, str]]:
        """Named dynamic axes of every input and output: batch, and sequence for the inputs."""
        text = {0: "batch", 1: "seq"}
        return {"input_ids": text, "attention_mask": dict(text), "logits": {0: "batch"}}
