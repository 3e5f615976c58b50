"""The tokenizer: [CLS] first, truncation and padding as the service does them, UNK, save/load."""

from __future__ import annotations

import pytest

from training.data.tokenizer import (
    CLS_ID,
    PAD_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    encode_batch,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
)

CORPUS = [
    "Free entry in a weekly competition, txt WIN to 80082 now!",
    "Hello there, are you coming home for dinner tonight?",
    "Call 08000839402 to claim your £1000 prize at www.example.com",
    "I will see you at the station tomorrow morning",
    "The quick brown fox jumps over the lazy dog",
] * 4


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(CORPUS, vocab_size=300)


def test_special_tokens_have_fixed_ids(tokenizer):
    assert [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2]
    assert (PAD_ID, UNK_ID, CLS_ID) == (0, 1, 2)


def test_round_trip_gives_normalised_text(tokenizer):
    text = "Hello THERE are you Coming home"
    encoding = tokenizer.encode(text)
    assert encoding.ids[0] == CLS_ID
    assert "[UNK]" not in encoding.tokens
    assert tokenizer.decode(encoding.ids) == text.lower()


def test_sms_cues_survive_as_tokens(tokenizer):
    tokens = tokenizer.encode("txt WIN £1000 at www.example.com").tokens
    assert tokens[:4] == ["[CLS]", "txt", "win", "£"]
    assert "www" in tokens and "1000" in tokens


def test_unknown_characters_become_unk(tokenizer):
    ids = tokenizer.encode("日本 hello").ids
    assert ids[:2] == [CLS_ID, UNK_ID]
    assert UNK_ID not in ids[2:]


def test_lowercase_off_keeps_case():
    tok = train_tokenizer(CORPUS, vocab_size=300, lowercase=False)
    assert "Hello" in tok.get_vocab()
    assert "hello" not in tok.get_vocab()


def test_batch_pads_to_longest_row_and_keeps_cls_in_mask(tokenizer):
    ids, mask = encode_batch(tokenizer, ["hello there", "the quick brown fox jumps", ""], max_length=64)
    assert ids.dtype == mask.dtype and str(ids.dtype) == "int64"
    assert ids.shape == (3, 6)  # [CLS] + 5 words: the longest row, not max_length
    assert ids[:, 0].tolist() == [CLS_ID] * 3
    assert mask.tolist() == [[1, 1, 1, 0, 0, 0], [1] * 6, [1, 0, 0, 0, 0, 0]]
    assert (ids[mask == 0] == PAD_ID).all()


def test_truncation_at_max_length_matches_unbounded_prefix(tokenizer):
    text = "the quick brown fox jumps over the lazy dog"
    full, _ = encode_batch(tokenizer, [text], max_length=512)
    short, mask = encode_batch(tokenizer, [text, "hello"], max_length=4)
    assert short.shape == (2, 4)
    assert short[0].tolist() == full[0, :4].tolist()
    assert mask[1].tolist() == [1, 1, 0, 0]


def test_encode_batch_leaves_tokenizer_settings_alone(tokenizer):
    encode_batch(tokenizer, ["hello"], max_length=3)
    assert tokenizer.truncation is None and tokenizer.padding is None


def test_save_and_load_give_identical_ids(tokenizer, tmp_path):
    path = tmp_path / "tokenizer.json"
    save_tokenizer(tokenizer, path)
    loaded = load_tokenizer(path)
    texts = ["Call 08000839402 now!", "see you tomorrow", "zebra unicorn 日本"]
    for a, b in zip(encode_batch(tokenizer, texts, 16), encode_batch(loaded, texts, 16)):
        assert a.tolist() == b.tolist()
    # The service's own path: enable_truncation + no_padding on the loaded file.
    loaded.enable_truncation(16)
    loaded.no_padding()
    assert loaded.encode(texts[0]).ids == tokenizer.encode(texts[0]).ids


def test_training_twice_gives_the_same_vocabulary():
    # The upstream WordPiece trainer is not deterministic; a seeded rebuild must reproduce its tokenizer.
    from tests.support.data_roots import has_full, root
    from training.data.text import load_sms_spam

    texts, _ = load_sms_spam(root("sms_spam") / "sms_spam" / "SMSSpamCollection.tsv")
    vocab = 2000 if has_full("sms_spam") else 600  # the excerpt's 300 texts hold fewer distinct pieces
    first = train_tokenizer(texts[:1500], vocab_size=vocab, lowercase=False)
    second = train_tokenizer(texts[:1500], vocab_size=vocab, lowercase=False)
    assert first.get_vocab_size() == vocab
    assert first.to_str() == second.to_str()


def test_words_seen_once_are_kept_and_min_frequency_drops_the_rarer():
    assert "once" in train_tokenizer(["once twice twice"], vocab_size=100).get_vocab()
    vocab = train_tokenizer(["once twice twice"], vocab_size=100, min_frequency=2).get_vocab()
    assert "twice" in vocab and "once" not in vocab


def test_equally_frequent_words_compete_for_the_last_places_alphabetically():
    # [PAD] [UNK] [CLS], 7 characters and their 7 "##" forms: 17 tokens, so vocab_size 18 leaves one word.
    vocab = train_tokenizer(["zeta alpha"], vocab_size=18).get_vocab()
    assert len(vocab) == 18
    assert "alpha" in vocab and "zeta" not in vocab


def test_saved_file_carries_no_truncation_or_padding(tokenizer, tmp_path):
    tokenizer.enable_truncation(3)
    tokenizer.enable_padding(length=8)
    try:
        save_tokenizer(tokenizer, tmp_path / "tokenizer.json")
    finally:
        tokenizer.no_truncation()
        tokenizer.no_padding()
    loaded = load_tokenizer(tmp_path / "tokenizer.json")
    assert loaded.truncation is None and loaded.padding is None
    assert len(loaded.encode("the quick brown fox jumps").ids) == 6
