"""Text loaders: a user's CSV/TSV, the SMS Spam Collection and the Sentiment Labelled Sentences."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Literal

SMS_LABELS = ("ham", "spam")
SENTIMENT_LABELS = {"0": "negative", "1": "positive"}
SENTIMENT_SOURCES = ("amazon_cells", "imdb", "yelp")


def _lines(path: Path) -> list[str]:
    """UTF-8 lines split on LF only: str.splitlines() would also break on U+0085 inside a sentence."""
    return path.read_text(encoding="utf-8").split("\n")


def _column_index(column: str | int, names: list[str] | None, path: Path) -> int:
    if names is None:
        if not isinstance(column, int):
            raise TypeError(f"{path} has no header: columns are integer indices, got {column!r}")
        return column
    if isinstance(column, int):
        return column
    if column not in names:
        raise KeyError(f"{path} has no column {column!r}; header is {names}")
    return names.index(column)


def load_delimited(
    path: str | os.PathLike[str],
    *,
    text_column: str | int,
    label_column: str | int,
    delimiter: str = "\t",
    header: bool,
    quoting: Literal[0, 1, 2, 3] = csv.QUOTE_MINIMAL,  # csv.QUOTE_*
) -> tuple[list[str], list[str]]:
    """Texts and labels from a delimited file; columns are header names, or indices when there is no header."""
    path = Path(path)
    with open(path, encoding="utf-8", newline="") as f:
        rows = [row for row in csv.reader(f, delimiter=delimiter, quoting=quoting) if row]
    names = [name.strip() for name in rows.pop(0)] if header and rows else None
    text_at = _column_index(text_column, names, path)
    label_at = _column_index(label_column, names, path)
    texts, labels = [], []
    for number, row in enumerate(rows, start=2 if header else 1):
        if max(text_at, label_at) >= len(row):
            raise ValueError(f"{path}: row {number} has {len(row)} fields, too few for the chosen columns")
        texts.append(row[text_at].strip())
        labels.append(row[label_at].strip())
    if not texts:
        raise ValueError(f"{path} holds no data rows")
    return texts, labels


def load_sms_spam(path: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """SMS Spam Collection TSV (header `Label<TAB>SMS`): messages and their ham/spam labels."""
    path = Path(path)
    lines = _lines(path)
    if lines[0].rstrip("\r") != "Label\tSMS":
        raise ValueError(f"{path}: expected the header 'Label<TAB>SMS', got {lines[0][:40]!r}")
    texts, labels = [], []
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        # Split once on the first tab and never interpret quotes: messages hold unbalanced '"'.
        label, tab, text = line.rstrip("\r").partition("\t")
        if not tab or label not in SMS_LABELS:
            raise ValueError(f"{path}:{number}: expected 'ham|spam<TAB>message', got {line[:40]!r}")
        texts.append(text)
        labels.append(label)
    return texts, labels


def load_sentiment_file(path: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """One `*_labelled.txt` file: sentences and "negative"/"positive" labels."""
    path = Path(path)
    texts, labels = [], []
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        # The label follows the last tab; imdb lines carry spaces before it.
        text, tab, label = line.rpartition("\t")
        label = label.strip()
        if not tab or label not in SENTIMENT_LABELS:
            raise ValueError(f"{path}:{number}: expected 'sentence<TAB>0|1', got {line[-40:]!r}")
        texts.append(text.strip())
        labels.append(SENTIMENT_LABELS[label])
    return texts, labels


def load_sentiment_with_sources(
    folder: str | os.PathLike[str],
) -> tuple[list[str], list[str], list[str]]:
    """All three Sentiment Labelled Sentences files: texts, labels, and each row's source (amazon_cells/imdb/yelp)."""
    texts, labels, sources = [], [], []
    for source in SENTIMENT_SOURCES:
        path = Path(folder) / f"{source}_labelled.txt"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing")
        file_texts, file_labels = load_sentiment_file(path)
        texts += file_texts
        labels += file_labels
        sources += [source] * len(file_texts)
    return texts, labels, sources


def load_sentiment(folder: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """All three Sentiment Labelled Sentences files: texts and "negative"/"positive" labels."""
    texts, labels, _ = load_sentiment_with_sources(folder)
    return texts, labels
