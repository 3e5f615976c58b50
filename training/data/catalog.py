"""The datasets Axon trains on: where each comes from, its licence, its files and their sha256.

A folder of datasets holds one sub-folder per entry, laid out as `files` says. `require` checks that a
dataset is there before a loader opens it, so a missing one is one clear line, not a traceback;
`verify` hashes the files; `fetch` downloads them (urllib, nothing else) and keeps a file only when
its sha256 matches.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from training.data.paths import file_sha256

_CHUNK = 1 << 16
_GITHUB_RAW = "https://raw.githubusercontent.com"


class DatasetError(Exception):
    """A dataset that is missing, incomplete, or whose bytes are not the catalogue's."""


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset: its path in the dataset's folder, size, sha256, and a URL serving those bytes."""

    path: str
    size: int
    sha256: str
    # None where no public URL serves these exact bytes (a training pool with held-out rows removed):
    # such files come only from a mirror of a datasets folder (`fetch --from`).
    url: str | None = None


@dataclass(frozen=True)
class Dataset:
    """A catalogue entry: the folder name, what it is, where it comes from, under which licence."""

    name: str
    title: str
    source: str  # the dataset's home page
    licence: str
    origin: str  # where the committed bytes were taken from
    files: tuple[DataFile, ...]

    @property
    def size(self) -> int:
        """Bytes of all its files."""
        return sum(f.size for f in self.files)


def _github(repo: str, commit: str, path: str) -> str:
    return f"{_GITHUB_RAW}/{repo}/{commit}/{urllib.parse.quote(path)}"


_NAB = ("numenta/NAB", "ea702d75cc2258d9d7dd35ca8e5e2539d71f3140")
_NAB_SERIES = {
    "ambient_temperature_system_failure.csv": (
        233321,
        "230b68ccca20f59d562afd5d24ad52939c9b784386bed0054018358bf9120581",
    ),
    "cpu_utilization_asg_misconfiguration.csv": (
        539274,
        "58ba65dc0737cfbac11b51514476d50c438d44011232144bb8d93f392df58f9f",
    ),
    "ec2_request_latency_system_failure.csv": (
        123428,
        "98378580aa80157e057c61d59d81daddccc6c65a2c0c800e3f01f603b8215c3f",
    ),
    "machine_temperature_system_failure.csv": (
        732223,
        "92bf5b87fc7f9bba8ca0b7ec63ccaac8cb4a1371a258e8c29a10ae9c018d82a4",
    ),
    "nyc_taxi.csv": (265771, "d8fa6f7f0734bf5c8be12c52a94e20a82664c397d9dec4449156bd453d32856d"),
    "rogue_agent_key_hold.csv": (55527, "47b110baa8e3636574c1033dda1cce780873647fab58223d159d4fee6f180e86"),
    "rogue_agent_key_updown.csv": (138333, "9797cfef477c13306f7a33874ab4d6cf700f8f2c7e5825a2a5bc02004370909a"),
}
_NAB_LABELS = {
    "combined_labels.json": (7015, "98724014c162fcfd4be605683517f194051a54e98756c53667bd33ddbc644d9b"),
    "combined_windows.json": (15359, "1e1fbc4601321aad8d0f8b3784c8134299379f68f6c1f7777565f8ffd57ab6b1"),
}
_OPTDIGITS = ("logicalapple/cs7641-Supervised-Learning", "62f33c6bdb37797a70e2e9180a4c4bd65c11c67a")
_THYROID = ("Asquator/Hyperthyroidism-ML", "6acee1f17608500f6546345c13680ec9992e584a")
_POOL = "the training pool (80%; the held-out 20% is not distributed)"

CATALOG: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "mnist_test10k",
            "MNIST handwritten digits, 8,000 of the official test set (28x28)",
            "http://yann.lecun.com/exdb/mnist/",
            "CC BY-SA 3.0 (Y. LeCun, C. Cortes)",
            f"RahulBaboota/MNIST@07115411 t10k files; {_POOL}",
            (
                DataFile(
                    "train8k-images-idx3-ubyte.gz",
                    1281887,
                    "16060801a61b79896a4b532dd7d066f6704c2a80330ac107fe0512785acbc31d",
                ),
                DataFile(
                    "train8k-labels-idx1-ubyte.gz",
                    3959,
                    "ca52a8d40a266a5b09d3cbb75254557e110070a621bcb39708a19327fed29e97",
                ),
            ),
        ),
        Dataset(
            "sms_spam",
            "SMS Spam Collection v.1 (ham / spam)",
            "https://archive.ics.uci.edu/dataset/228/sms+spam+collection",
            "CC BY 4.0 (T. A. Almeida, J. M. Gomez Hidalgo)",
            f"hamzaaacodes/sms-spam-collection@f3e73e1e SMSSpamCollection; {_POOL}",
            (
                DataFile(
                    "SMSSpamCollection.tsv", 381133, "80dd74ebb8c76a0c08886bd09c829ffc9f352b0d5a81d3c1fd6084155a5c2453"
                ),
            ),
        ),
        Dataset(
            "sentiment_labelled_sentences",
            "Sentiment Labelled Sentences (amazon, imdb, yelp)",
            "https://archive.ics.uci.edu/dataset/331/sentiment+labelled+sentences",
            "CC BY 4.0 (D. Kotzias)",
            f"nthuandrew/DM2023-Lab1-Master@f4e4fcd1; {_POOL}",
            (
                DataFile(
                    "amazon_cells_labelled.txt",
                    47374,
                    "c13ae5834d2fe27b39a99320db2c2417a46b8c0696e83a3152329478254e8159",
                ),
                DataFile(
                    "imdb_labelled.txt", 68581, "bc48555a7b5aa94f9fd88d1b34ef50c8c087f859d10e3dd4ceed9adde543b4ea"
                ),
                DataFile(
                    "yelp_labelled.txt", 48734, "5869f09bcfa4fe77b7608e22cd2e1549bd5a6ecada56426f1b3333273d0f96ae"
                ),
                DataFile("readme.txt", 1070, "736c26aa54e3614459e50314ece0698051f0923d108ed53938dcb1aa0483bfd4"),
            ),
        ),
        Dataset(
            "thyroid_ann",
            "Thyroid disease, ann-train.data (class 1 = hyperfunction = anomaly)",
            "https://archive.ics.uci.edu/dataset/102/thyroid+disease",
            "CC BY 4.0 (R. Quinlan)",
            f"{_THYROID[0]}@{_THYROID[1][:8]} ann-train.data, byte for byte",
            (
                DataFile(
                    "ann-train.data",
                    260953,
                    "3b0e21166319732467dc08977c1b44b9292d9e4e2c84ad5f3f0897c1c90056f2",
                    _github(*_THYROID, "ann-train.data"),
                ),
            ),
        ),
        Dataset(
            "nab_realKnownCause",
            "Numenta Anomaly Benchmark, realKnownCause series and label files",
            "https://github.com/numenta/NAB",
            "MIT (Numenta Inc.)",
            f"{_NAB[0]}@{_NAB[1][:8]}, byte for byte",
            tuple(
                DataFile(f"data/realKnownCause/{n}", size, sha, _github(*_NAB, f"data/realKnownCause/{n}"))
                for n, (size, sha) in _NAB_SERIES.items()
            )
            + tuple(
                DataFile(f"labels/{n}", size, sha, _github(*_NAB, f"labels/{n}"))
                for n, (size, sha) in _NAB_LABELS.items()
            ),
        ),
        Dataset(
            "optdigits",
            "Optical Recognition of Handwritten Digits (8x8 counts)",
            "https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits",
            "CC BY 4.0 (E. Alpaydin, C. Kaynak)",
            f"{_OPTDIGITS[0]}@{_OPTDIGITS[1][:8]}, byte for byte",
            (
                DataFile(
                    "optdigits.tra",
                    564213,
                    "83b5fd08ac1e96b0509c7fbac516c0259026240b432cc738dbd746e3a8549834",
                    _github(*_OPTDIGITS, "optdigits.tra"),
                ),
                DataFile(
                    "optdigits.tes",
                    265286,
                    "01eb9e7627f764dc96a2dc1dfcca661b33751eda5db9833e1ca531115309731e",
                    _github(*_OPTDIGITS, "optdigits.tes"),
                ),
                DataFile(
                    "optdigits.names",
                    2439,
                    "3e82f7202d72a2b7dbdbc324c8c90fe8853164f5d6ab978a071357ad3de89f02",
                    _github(*_OPTDIGITS, "optdigits.names"),
                ),
            ),
        ),
    )
}


def dataset(name: str) -> Dataset:
    """The catalogue entry called `name`."""
    if name not in CATALOG:
        raise DatasetError(f"no dataset {name!r} in the catalogue; choose one of {', '.join(CATALOG)}")
    return CATALOG[name]


def missing_files(name: str, root: Path, paths: Sequence[str] | None = None) -> list[str]:
    """The files of dataset `name` (or only `paths` of them) that are not under `root/name`."""
    folder = Path(root) / name
    wanted = [f.path for f in dataset(name).files] if paths is None else list(paths)
    return [p for p in wanted if not (folder / p).is_file()]


def require(name: str, root: Path, paths: Sequence[str] | None = None) -> Path:
    """`root/name` if the dataset's files (or the `paths` a reader needs) are there; else a `DatasetError`."""
    missing = missing_files(name, root, paths)
    if missing:
        complete = len(missing) == len(dataset(name).files if paths is None else paths)
        what = "is not" if complete else f"is incomplete ({missing[0]} missing)"
        # Training pools have no public URL: say at once that they need a mirror.
        mirror = " --from <mirror URL>" if any(f.url is None for f in dataset(name).files) else ""
        raise DatasetError(
            f"dataset {name!r} {what} in {root}: run `python -m training datasets fetch {name}{mirror}`, "
            "or set AXON_DATASETS to a folder that holds it"
        )
    return Path(root) / name


def verify(name: str, root: Path) -> dict[str, str]:
    """Each file's state under `root/name`: 'ok', 'missing' or 'sha256 mismatch'."""
    folder = Path(root) / name
    states = {}
    for f in dataset(name).files:
        path = folder / f.path
        if not path.is_file():
            states[f.path] = "missing"
        else:
            states[f.path] = "ok" if file_sha256(path) == f.sha256 else "sha256 mismatch"
    return states


def _download(url: str, target: Path, expected: DataFile, timeout: float) -> None:
    """Stream `url` into a temporary file beside `target`, check size and sha256, then rename it into place."""
    import hashlib

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}-", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        digest, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(_CHUNK):
                size += len(chunk)
                if size > expected.size:  # a wrong or hostile server cannot fill the disk
                    raise DatasetError(f"{url} sends more than the expected {expected.size} bytes")
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != expected.sha256:
            raise DatasetError(f"{url}: sha256 {digest.hexdigest()} is not the catalogue's {expected.sha256}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def fetch(name: str, into: Path, *, base_url: str | None = None, timeout: float = 60.0) -> list[str]:
    """Download the files of `name` that `into/name` lacks or holds wrongly; the paths fetched.

    `base_url` is a mirror of a datasets folder (`<base_url>/<name>/<path>`); without it each file comes
    from its own public URL. A file whose bytes do not match the catalogue's sha256 is never kept.
    """
    entry = dataset(name)
    folder = Path(into) / name
    fetched = []
    for f in entry.files:
        target = folder / f.path
        if target.is_file() and file_sha256(target) == f.sha256:
            continue
        if base_url:
            url = f"{base_url.rstrip('/')}/{name}/{urllib.parse.quote(f.path)}"
        elif f.url:
            url = f.url
        else:
            raise DatasetError(
                f"{name}/{f.path} is {_POOL.split(' (')[0]} kept for Axon, not a public file: "
                "fetch it from a mirror of a datasets folder with --from URL (or AXON_DATASETS_URL)"
            )
        try:
            _download(url, target, f, timeout)
        except urllib.error.HTTPError as exc:
            raise DatasetError(f"could not fetch {url}: HTTP {exc.code} {exc.reason}") from exc
        except OSError as exc:  # URLError, HTTPError, timeouts and disk errors are all OSErrors
            reason = getattr(exc, "reason", None) or exc
            raise DatasetError(f"could not fetch {url}: {reason}") from exc
        fetched.append(f.path)
    return fetched
