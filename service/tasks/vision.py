"""Protocol-free pre- and post-processing per task: raw client values in, model tensors out, and back.

Every function reproduces the training side exactly (see the model repository contract): images
are decoded with Pillow, converted, resized bilinearly, scaled and normalised; texts go through the
version's own `tokenizer.json`; tabular rows and series are standardised with the exported
statistics. Bad client values raise `InvalidInput` / `PayloadTooLarge` / `UnsupportedMediaType`
with a message naming the offending item.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tokenizers import Tokenizer

from service import scoring
from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.model_config import (
    ImagePreprocessing,
    ModelConfig,
    SeriesPreprocessing,
    TabularPreprocessing,
    TextPreprocessing,
)
from service.runtime import Tensors
from service.settings import Limits

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
MASK_INPUT = "attention_mask"


def _input_names(config: ModelConfig) -> list[str]:
    return [t.name for t in config.inputs]


# --- images ---------------------------------------------------------------------------------------


def decode_image(data: bytes, spec: ImagePreprocessing, limits: Limits, index: int = 0) -> np.ndarray:
    """One encoded image -> float32 (C, H, W), exactly as training prepared its images."""
    if len(data) > limits.max_image_bytes:
        raise PayloadTooLarge(f"image {index} has {len(data)} bytes; the limit is {limits.max_image_bytes}")
    if not data:
        raise InvalidInput(f"image {index} is empty")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in IMAGE_FORMATS:
                accepted = ", ".join(IMAGE_FORMATS)
                raise UnsupportedMediaType(f"image {index} is {img.format}; accepted formats are {accepted}")
            width, height = img.size
            if width * height > limits.max_image_pixels:
                raise PayloadTooLarge(
                    f"image {index} has {width}x{height} pixels; the limit is {limits.max_image_pixels} pixels"
                )
            img = img.convert("L" if spec.channels == 1 else "RGB")
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"image {index} is a decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise InvalidInput(f"image {index} is not a decodable image") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidInput(f"image {index} could not be decoded: {exc}") from None
    if img.size != (spec.width, spec.height):
        img = img.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
    x = np.asarray(img, dtype=np.float32) / np.float32(255.0)
    if spec.invert:
        x = np.float32(1.0) - x
    x = x[None] if spec.channels == 1 else x.transpose(2, 0, 1)
    mean = np.asarray(spec.mean, np.float32)[:, None, None]
    std = np.asarray(spec.std, np.float32)[:, None, None]
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


class ImageCodec:
    """Encoded images -> the model's image tensor (N, C, H, W)."""

    def __init__(self, config: ModelConfig, limits: Limits) -> None:
        assert isinstance(config.preprocessing, ImagePreprocessing)
        self.spec = config.preprocessing
        self.input = _input_names(config)[0]
        self.limits = limits

    def encode(self, images: list[bytes]) -> Tensors:
        """Decode every image; the first bad one decides the error."""
        if not images:
            raise InvalidInput("'images' must hold at least one image")
        if len(images) > self.limits.max_images:
            raise PayloadTooLarge(f"{len(images)} images in one request; the limit is {self.limits.max_images}")
        return {self.input: np.stack([decode_image(b, self.spec, self.limits, i) for i, b in enumerate(images)])}


# --- texts ----------------------------------------------------------------------------------------


class TextCodec:
    """Texts -> `input_ids` and `attention_mask` (int64), truncated to max_length, padded to this request's longest."""

    def __init__(self, config: ModelConfig, version_dir: Path, limits: Limits) -> None:
        assert isinstance(config.preprocessing, TextPreprocessing)
        self.spec = config.preprocessing
        self.limits = limits
        names = _input_names(config)
        self.mask_input = MASK_INPUT if MASK_INPUT in names else None
        self.ids_input = next(n for n in names if n != MASK_INPUT)
        self.tokenizer = Tokenizer.from_file(str(version_dir / self.spec.tokenizer))
        self.tokenizer.enable_truncation(self.spec.max_length)
        self.tokenizer.no_padding()
        # [PAD], [UNK], [CLS]...: a row made only of these carries nothing the model learnt from.
        self.special_ids = {i for i, tok in self.tokenizer.get_added_tokens_decoder().items() if tok.special}

    @property
    def pad_values(self) -> dict[str, float]:
        """What the batcher pads each input with when rows of different lengths share a batch."""
        pads = {self.ids_input: self.spec.pad_id}
        if self.mask_input:
            pads[self.mask_input] = 0
        return pads

    def encode(self, texts: list[str]) -> Tensors:
        """Tokenize; a text with no real (non-special) token is refused."""
        if not texts:
            raise InvalidInput("'texts' must hold at least one text")
        if len(texts) > self.limits.max_texts:
            raise PayloadTooLarge(f"{len(texts)} texts in one request; the limit is {self.limits.max_texts}")
        for i, text in enumerate(texts):
            if len(text) > self.limits.max_text_chars:
                raise PayloadTooLarge(f"text {i} has {len(text)} characters; the limit is {self.limits.max_text_chars}")
        if self.spec.lowercase:
            texts = [t.lower() for t in texts]
        encodings = self.tokenizer.encode_batch(texts)
        for i, enc in enumerate(encodings):
            if all(i in self.special_ids for i in enc.ids):
                raise InvalidInput(
                    f"text {i} has no token the model knows after tokenization (empty or only whitespace)"
                )
        width = max(len(enc.ids) for enc in encodings)
        ids = np.full((len(texts), width), self.spec.pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        for i, enc in enumerate(encodings):
            ids[i, : len(enc.ids)] = enc.ids
            mask[i, : len(enc.ids)] = 1
        tensors = {self.ids_input: ids}
        if self.mask_input:
            tensors[self.mask_input] = mask
        return tensors


# --- anomaly: tabular rows and series -------------------------------------------------------------


def _finite(values: np.ndarray, what: str) -> None:
    if not np.isfinite(values).all():
        where = np.argwhere(~np.isfinite(values))[0].tolist()
        raise InvalidInput(f"{what} holds a non-finite value at {where}")


class TabularCodec:
    """Rows in the dataset's column order -> standardised float32 (N, F)."""

    def __init__(self, config: ModelConfig, limits: Limits) -> None:
        assert isinstance(config.preprocessing, TabularPreprocessing)
        self.spec = config.preprocessing
        self.input = _input_names(config)[0]
        self.limits = limits
        self.mean = np.asarray(self.spec.mean, np.float64)
        # A constant column was exported with scale 0 or 1; never divide by zero.
        scale = np.asarray(self.spec.scale, np.float64)
        self.scale = np.where(scale == 0, 1.0, scale)

    def encode(self, samples: list[list[float]]) -> Tensors:
        """Check the shape and values of every row, then standardise."""
        if not samples:
            raise InvalidInput("'samples' must hold at least one row")
        if len(samples) > self.limits.max_samples:
            raise PayloadTooLarge(f"{len(samples)} samples in one request; the limit is {self.limits.max_samples}")
        n = len(self.spec.features)
        for i, row in enumerate(samples):
            if len(row) != n:
                raise InvalidInput(f"sample {i} has {len(row)} features; the model expects {n}")
        x = np.asarray(samples, dtype=np.float64)
        _finite(x, "'samples'")
        return {self.input: ((x - self.mean) / self.scale).astype(np.float32)}


class SeriesCodec:
    """A univariate series -> normalised windows (n_windows, window, 1) cut with `scoring.cut_windows`."""

    def __init__(self, config: ModelConfig, limits: Limits) -> None:
        assert isinstance(config.preprocessing, SeriesPreprocessing)
        self.spec = config.preprocessing
        self.input = _input_names(config)[0]
        self.trailing = [d for d in config.inputs[0].dims[1:]]
        self.limits = limits

    def encode(self, series: list[float]) -> Tensors:
        """Check length and values, normalise, and cut into windows."""
        if len(series) > self.limits.max_series_length:
            raise PayloadTooLarge(f"the series has {len(series)} points; the limit is {self.limits.max_series_length}")
        if len(series) < self.spec.window:
            raise InvalidInput(f"the series has {len(series)} points; the model needs at least {self.spec.window}")
        values = np.asarray(series, dtype=np.float64)
        _finite(values, "'series'")
        std = self.spec.std if self.spec.std else 1.0
        windows = scoring.cut_windows((values - self.spec.mean) / std, self.spec.window, self.spec.stride)
        shape = [self.spec.window if d == -1 else d for d in self.trailing] if self.trailing else [self.spec.window]
        return {self.input: windows.reshape(len(windows), *shape).astype(np.float32)}


Codec = ImageCodec | TextCodec | TabularCodec | SeriesCodec


def build_codec(config: ModelConfig, version_dir: Path, limits: Limits) -> Codec:
    """The codec a version's preprocessing section calls for."""
    kind = config.preprocessing.kind
    if kind == "image":
        return ImageCodec(config, limits)
    if kind == "text":
        return TextCodec(config, version_dir, limits)
    if kind == "tabular":
        return TabularCodec(config, limits)
    return SeriesCodec(config, limits)


# --- post-processing ------------------------------------------------------------------------------


def _label(labels: list[str], index: int) -> str:
    return labels[index] if index < len(labels) else str(index)


def classifications(logits: np.ndarray, labels: list[str], top_k: int) -> list[dict]:
    """Vision answers: best label, its probability, and the top k (label, score) pairs."""
    probs = scoring.softmax(logits.astype(np.float64))
    return [
        {
            "label": _label(labels, best[0][0]),
            "score": best[0][1],
            "top_k": [{"label": _label(labels, i), "score": p} for i, p in best],
        }
        for best in scoring.top_k(probs, top_k)
    ]


def text_classifications(logits: np.ndarray, labels: list[str]) -> list[dict]:
    """Text answers: best label, its probability, and every label's probability."""
    probs = scoring.softmax(logits.astype(np.float64))
    answers = []
    for row in probs:
        best = int(np.argmax(row))
        answers.append(
            {
                "label": _label(labels, best),
                "score": float(row[best]),
                "scores": {_label(labels, i): float(p) for i, p in enumerate(row)},
            }
        )
    return answers


def sample_scores(scores: np.ndarray, threshold: float) -> list[dict]:
    """Tabular answers: each row's reconstruction error and whether it is above the threshold."""
    return [{"score": float(s), "is_anomaly": bool(s > threshold)} for s in scores]


def series_scores(
    window_scores: np.ndarray, n_points: int, spec: SeriesPreprocessing, threshold: float
) -> tuple[list[dict], list[dict]]:
    """Series answers: per-point scores (mean over covering windows) and the anomalous segments."""
    points = scoring.point_scores(window_scores.astype(np.float64), n_points, spec.window, spec.stride)
    results = [{"score": float(s), "is_anomaly": bool(s > threshold)} for s in points]
    found = [{"start": s.start, "end": s.end, "max_score": s.max_score} for s in scoring.segments(points, threshold)]
    return results, found

