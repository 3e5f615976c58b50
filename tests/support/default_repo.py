"""The five default models and real dataset samples for them, as V2 clients would send them.

`default_repository` is the committed `models/` once all five defaults are in it; before that (the
training run that builds them may not have landed) it is a tiny repository under the same names,
tensor names and dtypes (`tiny_models`). Samples come from the real datasets (full, or the committed excerpts) and
are turned into model tensors by the model's own codec, exactly as the task endpoints prepare them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from service.errors import InvalidInput
from service.repository import discover_model
from service.runtime import Tensors
from service.settings import Limits
from service.tasks import build_codec
from service.tasks.anomaly import SeriesCodec, TabularCodec
from service.tasks.text import TextCodec
from service.tasks.vision import ImageCodec
from tests.support.app_harness import png
from tests.support.data_roots import root
from tests.support.tiny_models import add_model
from training.data.images import load_mnist_pool
from training.data.tabular import load_thyroid
from training.data.text import load_sentiment_file, load_sms_spam
from training.data.timeseries import load_nab

DEFAULT_MODELS = {
    "mnist-cnn": "digits",
    "sms-spam-transformer": "spam",
    "sentiment-gru": "spam",
    "sms-spam-minilm": "spam",
    "sentiment-minilm": "spam",
    "thyroid-autoencoder": "thyroid",
    "machine-temperature-autoencoder": "temperature",
}
# AXON_TEST_MODELS points the tests at another built repository (as tests/service/test_app_defaults.py does).
COMMITTED = Path(os.environ.get("AXON_TEST_MODELS", Path(__file__).resolve().parents[2] / "models"))


def committed_defaults_present() -> bool:
    """Whether `models/` holds every default model."""
    return all((COMMITTED / name / "config.json").is_file() for name in DEFAULT_MODELS)


def default_repository(scratch: Path) -> Path:
    """The committed defaults if present, else tiny stand-ins with the same names written under `scratch`."""
    if committed_defaults_present():
        return COMMITTED
    for name, kind in DEFAULT_MODELS.items():
        add_model(scratch, name, kind)
    return scratch


def _texts(name: str, n: int) -> list[str]:
    datasets = root()  # full data where present, else the excerpts in tests/data
    if "sentiment" in name:
        texts, _ = load_sentiment_file(datasets / "sentiment_labelled_sentences" / "amazon_cells_labelled.txt")
    else:
        texts, _ = load_sms_spam(datasets / "sms_spam" / "SMSSpamCollection.tsv")
    return texts[:n]


def _known_texts(codec: TextCodec, name: str, n: int) -> list[str]:
    """The first `n` texts the tokenizer keeps a real token of (a tiny stand-in's vocabulary is a few words)."""
    kept = []
    for text in _texts(name, 2000):
        try:
            codec.encode([text])
        except InvalidInput:
            continue
        kept.append(text)
        if len(kept) == n:
            break
    return kept


def real_inputs(repository: Path, name: str, n: int = 3) -> Tensors:
    """`n` real samples (for a series: `n` windows) for the newest version of `name`, as model tensors."""
    (descriptor, *_) = discover_model(repository / name)
    codec = build_codec(descriptor.config, descriptor.path, Limits())
    datasets = root()  # full data where present, else the excerpts in tests/data
    if isinstance(codec, ImageCodec):
        images, _ = load_mnist_pool(datasets / "mnist_test10k")
        return codec.encode([png(images[i]) for i in range(n)])
    if isinstance(codec, TextCodec):
        return codec.encode(_known_texts(codec, name, n))
    if isinstance(codec, TabularCodec):
        rows, _ = load_thyroid(datasets / "thyroid_ann" / "ann-train.data")
        return codec.encode(rows[:n].astype(np.float64).tolist())
    assert isinstance(codec, SeriesCodec)
    series = load_nab(
        datasets / "nab_realKnownCause" / "data" / "realKnownCause" / "machine_temperature_system_failure.csv"
    )
    spec = codec.spec
    return codec.encode(series.values[: spec.window + spec.stride * (n - 1)].tolist())
