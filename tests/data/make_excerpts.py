"""Rebuild the committed dataset excerpts in tests/data from a full datasets folder.

    python tests/data/make_excerpts.py ../shared/datasets

Each excerpt keeps its dataset's relative paths and file format, so the loaders read it unchanged.
The rules (first rows, plus the rows that carry a parsing trap) are in tests/data/README.md.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAB_KEY = "realKnownCause/machine_temperature_system_failure.csv"


def _lines(path: Path) -> list[str]:
    # "\n" only: imdb_labelled.txt holds U+0085, which str.splitlines() would treat as a line break.
    return path.read_text(encoding="utf-8").split("\n")


def _write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8", newline="")


def main(full: Path) -> None:
    sms = _lines(full / "sms_spam/SMSSpamCollection.tsv")
    _write(HERE / "sms_spam/SMSSpamCollection.tsv", "\n".join(sms[:301]) + "\n")  # header + 300 messages

    for source in ("amazon_cells", "imdb", "yelp"):
        rows = [r for r in _lines(full / f"sentiment_labelled_sentences/{source}_labelled.txt") if r]
        kept = rows[:100] + [r for r in rows[100:] if "\x85" in r]  # keep the NEL trap
        _write(HERE / f"sentiment_labelled_sentences/{source}_labelled.txt", "\n".join(kept) + "\n")

    thyroid = _lines(full / "thyroid_ann/ann-train.data")
    _write(HERE / "thyroid_ann/ann-train.data", "\n".join(thyroid[:300]) + "\n")

    for kind, header in (("images-idx3", 16), ("labels-idx1", 8)):
        name = f"mnist_test10k/train8k-{kind}-ubyte.gz"
        raw = gzip.decompress((full / name).read_bytes())
        count = 300
        body = raw[header:]
        item = len(body) // int.from_bytes(raw[4:8], "big")
        head = raw[:4] + count.to_bytes(4, "big") + raw[8:header]
        _write(HERE / name, gzip.compress(head + body[: count * item], mtime=0))

    tes = _lines(full / "optdigits/optdigits.tes")
    _write(HERE / "optdigits/optdigits.tes", "\n".join(tes[:201]) + "\n")  # header (CRLF kept) + 200 digits

    nab = full / "nab_realKnownCause"
    series = _lines(nab / "data" / NAB_KEY)
    kept = series[:3001]  # header + 3,000 points: the first label window
    _write(HERE / "nab_realKnownCause/data" / NAB_KEY, "\n".join(kept) + "\n")
    last = kept[-1].split(",")[0]
    for name in ("combined_windows.json", "combined_labels.json"):
        entries = json.loads((nab / "labels" / name).read_text())[NAB_KEY]
        inside = [e for e in entries if (e[1] if isinstance(e, list) else e) <= last]
        _write(HERE / "nab_realKnownCause/labels" / name, json.dumps({NAB_KEY: inside}, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
