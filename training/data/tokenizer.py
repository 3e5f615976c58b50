"""The text tokenizer: a WordPiece vocabulary trained on the training text, shipped as `tokenizer.json`."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from tokenizers.processors import TemplateProcessing

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]"]  # ids 0, 1, 2 in this order
PAD_ID, UNK_ID, CLS_ID = 0, 1, 2


def train_tokenizer(
    texts: Sequence[str], vocab_size: int = 8000, lowercase: bool = True, min_frequency: int = 1
) -> Tokenizer:
    """Train a WordPiece tokenizer whose encodings start with [CLS]."""
    # WordPiece keeps frequent words whole (SMS cues such as "txt", "www", "£", "150p" survive as
    # tokens) yet spells rare or unseen words with sub-word pieces instead of collapsing them to [UNK].
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
    steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    tokenizer.normalizer = normalizers.Sequence(steps)
    # Words and punctuation runs apart; digit runs split off words ("txt80082" -> "txt", "80082").
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=False)]
    )
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    vocab = _vocabulary(tokenizer, texts, vocab_size, min_frequency)
    tokenizer.model = models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##")
    # Already in the vocabulary at ids 0-2; this marks them special (skipped by decode, never split).
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    ids = [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS]
    if ids != [PAD_ID, UNK_ID, CLS_ID]:
        raise RuntimeError(f"special tokens got ids {ids}, expected [0, 1, 2]")
    # [CLS] leads every row and stays unmasked, so no row is ever all padding.
    tokenizer.post_processor = TemplateProcessing(single="[CLS] $A", special_tokens=[("[CLS]", CLS_ID)])
    return tokenizer


def _vocabulary(tokenizer: Tokenizer, texts: Sequence[str], vocab_size: int, min_frequency: int) -> dict[str, int]:
    """Special tokens, every character seen (alone and as `##` continuation), then the most frequent words.

    Built here rather than by `trainers.WordPieceTrainer`, whose vocabulary changes from run to run
    (huggingface/tokenizers#1794): a seeded rebuild must give the same model. Ties in frequency are broken
    alphabetically; unseen words are spelled from the characters, so they rarely collapse to [UNK].
    """
    counts: Counter[str] = Counter()
    for text in texts:
        for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(tokenizer.normalizer.normalize_str(text)):
            counts[word] += 1
    chars = sorted({c for word in counts for c in word})
    tokens = list(SPECIAL_TOKENS) + chars + ["##" + c for c in chars]
    known = set(tokens)
    room = max(0, vocab_size - len(tokens))
    words = sorted(
        (w for w, n in counts.items() if n >= min_frequency and w not in known), key=lambda w: (-counts[w], w)
    )
    tokens += words[:room]
    return {token: i for i, token in enumerate(tokens)}


@contextmanager
def _truncated(tokenizer: Tokenizer, max_length: int) -> Iterator[Tokenizer]:
    """Truncate like the service (`enable_truncation(max_length)`, `no_padding()`), then restore the settings."""
    truncation, padding = tokenizer.truncation, tokenizer.padding
    tokenizer.enable_truncation(max_length)
    tokenizer.no_padding()
    try:
        yield tokenizer
    finally:
        if truncation is None:
            tokenizer.no_truncation()
        else:
            tokenizer.enable_truncation(**truncation)
        if padding is not None:
            tokenizer.enable_padding(**padding)


def encode_batch(
    tokenizer: Tokenizer, texts: Sequence[str], max_length: int, pad_id: int = PAD_ID
) -> tuple[np.ndarray, np.ndarray]:
    """input_ids and attention_mask, int64 [B, T], truncated to max_length and padded (`pad_id`) to the longest row."""
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    with _truncated(tokenizer, max_length) as tok:
        rows = [encoding.ids for encoding in tok.encode_batch(list(texts))]
    width = max((len(row) for row in rows), default=0)
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = row
        attention_mask[i, : len(row)] = 1
    return input_ids, attention_mask


def save_tokenizer(tokenizer: Tokenizer, path: str | os.PathLike[str]) -> None:
    """Write `tokenizer.json` without truncation/padding settings (the service sets its own)."""
    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.no_truncation()
    copy.no_padding()
    copy.save(str(path))


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """Read a `tokenizer.json` written by `save_tokenizer`."""
    return Tokenizer.from_file(str(path))
