"""Dataset kinds the CLI reads (`--dataset`): each kind's task, its catalogue default, and its loader."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.card import dataset_entry
from training.data import catalog
from training.data.paths import dataset_checksum, default_datasets_dir, file_sha256


@dataclass(frozen=True)
class DatasetKind:
    """How `--dataset KIND` is read: the task it feeds, and where its data is when `--data` is left out."""

    task: str  # "image", "text", "tabular" or "series": the recipe that trains on it
    help: str
    dataset: str | None = None  # the catalogue entry `--data` defaults to, under the datasets folder
    path: str = ""  # the file or folder inside that entry
    needs: tuple[str, ...] | None = None  # the entry's files the loader reads (None: all of them)

    def default_data(self, root: Path | None = None) -> Path | None:
        """The catalogue's copy under `root` (default: `$AXON_DATASETS` etc.), checked to be there."""
        if self.dataset is None:
            return None
        folder = catalog.require(self.dataset, root or default_datasets_dir(), self.needs)
        return folder / self.path if self.path else folder


SENTIMENT_FILES = ("amazon_cells_labelled.txt", "imdb_labelled.txt", "yelp_labelled.txt")
NAB_MACHINE_TEMPERATURE = (
    "data/realKnownCause/machine_temperature_system_failure.csv",
    "labels/combined_windows.json",
    "labels/combined_labels.json",
)
KINDS: dict[str, DatasetKind] = {
    "mnist": DatasetKind("image", "a folder with <prefix>-images-idx3-ubyte[.gz] and labels", "mnist_test10k"),
    "image-folder": DatasetKind("image", "one sub-folder of PNG/JPEG per class"),
    "digits": DatasetKind("image", "scikit-learn's bundled 8x8 digits (no --data)"),
    "sms": DatasetKind(
        "text", "SMS Spam Collection TSV", "sms_spam", "SMSSpamCollection.tsv", ("SMSSpamCollection.tsv",)
    ),
    "sentiment": DatasetKind(
        "text",
        "folder of Sentiment Labelled Sentences *_labelled.txt",
        "sentiment_labelled_sentences",
        "",
        SENTIMENT_FILES,
    ),
    "delimited": DatasetKind("text", "a user's CSV/TSV: --text-column, --label-column"),
    "thyroid": DatasetKind(
        "tabular", "ann-thyroid file, class 1 = anomaly", "thyroid_ann", "ann-train.data", ("ann-train.data",)
    ),
    "nab": DatasetKind(
        "series",
        "NAB-style timestamp,value CSV with NAB label files beside data/",
        "nab_realKnownCause",
        NAB_MACHINE_TEMPERATURE[0],
        NAB_MACHINE_TEMPERATURE,
    ),
}


def describe_files(name: str, files: Sequence[Path], root: Path | None = None) -> dict[str, Any]:
    """The card's dataset section for files read from disk."""

    def label(p: Path) -> str:
        return str(p.relative_to(root)) if root and p.is_relative_to(root) else p.name

    return dataset_entry(name, {label(p): file_sha256(p) for p in files}, dataset_checksum(list(files)))


def resolve_data(kind: str, path: Path | None) -> Path | None:
    """`--data` if given (it must exist), else the kind's catalogue default; `DatasetError` when absent."""
    spec = KINDS[kind]
    if path is not None:
        if not Path(path).exists():
            raise catalog.DatasetError(f"--data {path} does not exist")
        return Path(path)
    if kind == "digits":
        return None
    if spec.dataset is None:
        raise catalog.DatasetError(f"--data is required for the {kind!r} dataset")
    return spec.default_data()


def load_dataset(
    kind: str,
    path: Path | None,
    *,
    size: Sequence[int] | None = None,
    channels: int = 1,
    text_column: str = "text",
    label_column: str = "label",
    delimiter: str = "\t",
    header: bool = False,
) -> dict[str, Any]:
    """Read a dataset of `kind` into the arrays its task's recipe takes, with its card entry."""
    import numpy as np

    from training.data import images, tabular, text, timeseries

    path = resolve_data(kind, path)
    if kind == "digits":
        x, y = images.load_sklearn_digits()
        return {
            "x": x,
            "y": y,
            "labels": [str(i) for i in range(10)],
            "dataset": {"name": "sklearn digits", "files": {}, "sha256": None},
        }
    assert path is not None  # every kind but digits reads files
    if kind == "mnist":
        x, y = images.load_mnist_pool(path)
        files = sorted(p for p in path.iterdir() if "idx" in p.name)
        return {"x": x, "y": y, "labels": [str(i) for i in range(10)], "dataset": describe_files(path.name, files)}
    if kind == "image-folder":
        x, y, labels = images.load_image_folder(path, size=(size[0], size[1]) if size else None, channels=channels)
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return {"x": x, "y": y, "labels": labels, "dataset": describe_files(path.name, files, path)}
    if kind in ("sms", "sentiment", "delimited"):
        if kind == "sms":
            texts, names = text.load_sms_spam(path)
            files, labels = [path], list(text.SMS_LABELS)
        elif kind == "sentiment":
            texts, names = text.load_sentiment(path)
            files = [path / f"{s}_labelled.txt" for s in text.SENTIMENT_SOURCES]
            labels = ["negative", "positive"]
        else:

            def column(c: str) -> str | int:
                return c if header else int(c)

            texts, names = text.load_delimited(
                path,
                text_column=column(text_column),
                label_column=column(label_column),
                delimiter=delimiter,
                header=header,
            )
            files, labels = [path], sorted(set(names))
        y = np.array([labels.index(n) for n in names], dtype=np.int64)
        return {"texts": texts, "y": y, "labels": labels, "dataset": describe_files(path.stem, files)}
    if kind == "thyroid":
        x, cls = tabular.load_thyroid(path)
        return {
            "x": x,
            "y": tabular.is_anomaly(cls),
            "features": list(tabular.THYROID_FEATURES),
            "dataset": describe_files(path.name, [path]),
        }
    series = timeseries.load_nab(path)
    return {"series": series, "dataset": describe_files(path.name, [path])}
