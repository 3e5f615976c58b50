"""The vision task: images in (multipart files or base64 JSON), labels with probabilities and the top k out.

Images are decoded with Pillow, converted, resized bilinearly, scaled and normalised exactly as training
prepared them (see the model repository contract); a bad image is refused with a message naming it.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, StrictStr, with_config
from typing_extensions import TypedDict

from modelrepo import scoring
from modelrepo.config import ImagePreprocessing, ModelConfig
from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.lean import Answer, Call, encode_json, route
from service.multipart import parse_form
from service.runtime import Tensors
from service.settings import Limits
from service.tasks.base import Codec, TaskSpec, label_of, shown
from service.tasks.request import Counts, int_field, pick, query_int, read_request

if TYPE_CHECKING:
    from service.batcher import BatchResult
    from service.registry import ModelVersion

PATH = "/v1/vision/classify"
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
DEFAULT_TOP_K = 5


# --- codec ----------------------------------------------------------------------------------------


def decode_image(data: bytes, spec: ImagePreprocessing, limits: Limits, index: int = 0) -> np.ndarray:
    """One encoded image -> float32 (C, H, W), exactly as training prepared its images."""
    if len(data) > limits.max_image_bytes:
        raise PayloadTooLarge(f"image {index} has {len(data)} bytes; the limit is {limits.max_image_bytes}")
    if not data:
        raise InvalidInput(f"image {index} is empty")
    mode = "L" if spec.channels == 1 else "RGB"
    try:
        # Only the accepted formats' plugins are tried: Pillow otherwise walks its whole registry per image.
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as img:
            width, height = img.size
            if width * height > limits.max_image_pixels:
                raise PayloadTooLarge(
                    f"image {index} has {width}x{height} pixels; the limit is {limits.max_image_pixels} pixels"
                )
            img.load()
            converted = img if img.mode == mode else img.convert(mode)
            if converted.size != (spec.width, spec.height):
                converted = converted.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
            pixels = np.asarray(converted)  # uint8 (H, W) or (H, W, 3), read before the file closes
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"image {index} is a decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise _unaccepted(data, index) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidInput(f"image {index} could not be decoded: {exc}") from None
    levels = _levels(tuple(spec.mean), tuple(spec.std), spec.invert)
    if spec.channels == 1:
        gray: np.ndarray = levels[0][pixels]
        return gray[None]
    return np.stack([levels[c][pixels[..., c]] for c in range(3)])


def _unaccepted(data: bytes, index: int) -> InvalidInput | UnsupportedMediaType:
    """Why an image the accepted formats' plugins refused is refused: 415 for another format Pillow knows."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            kind = img.format
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError, EOFError):
        return InvalidInput(f"image {index} is not a decodable image")
    return UnsupportedMediaType(f"image {index} is {kind}; accepted formats are {', '.join(IMAGE_FORMATS)}")


@functools.lru_cache(maxsize=64)
def _levels(mean: tuple[float, ...], std: tuple[float, ...], invert: bool) -> np.ndarray:
    """Every 8-bit level of every channel scaled to [0, 1], inverted if asked, then (x - mean) / std.

    Float32 (channels, 256): looking pixels up in it gives the same float32 values as doing that arithmetic
    per pixel, in two numpy calls instead of eight.
    """
    x = np.arange(256, dtype=np.float32) / np.float32(255.0)
    if invert:
        x = np.float32(1.0) - x
    levels = (x[None, :] - np.asarray(mean, np.float32)[:, None]) / np.asarray(std, np.float32)[:, None]
    levels.flags.writeable = False  # shared by every request
    return levels


class ImageCodec(Codec):
    """Encoded images -> the model's image tensor (N, C, H, W)."""

    def __init__(self, config: ModelConfig, version_dir: Path, limits: Limits) -> None:
        super().__init__(config, version_dir, limits)
        assert isinstance(config.preprocessing, ImagePreprocessing)
        self.spec = config.preprocessing

    def encode(self, images: list[bytes]) -> Tensors:
        """Decode every image; the first bad one decides the error."""
        if not images:
            raise InvalidInput("'images' must hold at least one image")
        if len(images) > self.limits.max_images:
            raise PayloadTooLarge(f"{len(images)} images in one request; the limit is {self.limits.max_images}")
        return {self.input: np.stack([decode_image(b, self.spec, self.limits, i) for i, b in enumerate(images)])}


# --- answers --------------------------------------------------------------------------------------


@with_config(ConfigDict(extra="forbid"))
class Ranked(TypedDict):
    """A label and its probability."""

    label: str
    score: float


@with_config(ConfigDict(extra="forbid"))
class VisionPrediction(TypedDict):
    """Best label, its probability, and the k best labels."""

    label: str
    score: float
    top_k: list[Ranked]


@with_config(ConfigDict(extra="forbid"))
class VisionResponse(TypedDict):
    """Predictions in the order of the request's images."""

    model: str
    version: int
    predictions: list[VisionPrediction]


def classifications(logits: np.ndarray, labels: list[str], top_k: int) -> list[VisionPrediction]:
    """Vision answers: best label, its probability, and the top k (label, score) pairs."""
    probs = scoring.softmax(logits.astype(np.float64))
    # Dict literals typed by the annotation (mypy checks them): no constructor call per item on the hot path.
    answers: list[VisionPrediction] = [
        {
            "label": label_of(labels, best[0][0]),
            "score": shown(best[0][1]),
            "top_k": [{"label": label_of(labels, i), "score": shown(p)} for i, p in best],
        }
        for best in scoring.top_k(probs, top_k)
    ]
    return answers


# --- requests -------------------------------------------------------------------------------------


class VisionRequest(BaseModel):
    """JSON form: base64 images (data URLs accepted) and optional model, version and top_k."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    images: list[StrictStr]
    model: str | None = None
    version: int | None = None
    top_k: int | None = None


@dataclass(frozen=True)
class ClassifyImages:
    """A vision job: encoded images, the model asked for, and how many best labels to return."""

    task: ClassVar[str] = "vision"
    default_model: ClassVar[str] = "vision"  # AXON_DEFAULT_MODELS__VISION
    images: list[bytes]
    model: str | None
    version: int | None
    top_k: int

    @property
    def size(self) -> int:
        """Encoded image bytes."""
        return sum(map(len, self.images))

    def encode(self, entry: ModelVersion) -> Tensors:
        """Decode and normalise every image with the version's codec."""
        assert isinstance(entry.codec, ImageCodec)
        return entry.codec.encode(self.images)

    def answer(self, entry: ModelVersion, result: BatchResult) -> dict[str, list[VisionPrediction]]:
        """Softmax over the first output, best label and the top k per image."""
        assert entry.config is not None
        logits = result.outputs[entry.config.outputs[0].name]
        return {"predictions": classifications(logits, entry.config.labels, self.top_k)}


def decode_base64(images: list[str], max_bytes: int | None = None) -> list[bytes]:
    """Base64 strings (optionally `data:image/...;base64,` URLs) to bytes; each size checked before decoding."""
    decoded = []
    for i, text in enumerate(images):
        if text.startswith("data:"):
            text = text.partition(",")[2]
        if max_bytes is not None and len(text) > 4 * ((max_bytes + 2) // 3):
            raise PayloadTooLarge(f"image {i} has about {len(text) * 3 // 4} bytes; the limit is {max_bytes}")
        try:
            decoded.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidInput(f"image {i} is not valid base64") from None
    return decoded


async def read_multipart(call: Call, max_images: int) -> tuple[list[bytes], dict[str, str]]:
    """The files of the `images` field, and the other (text) fields."""
    body = await call.body()
    limits = call.state.settings.limits
    form = await call.offload(
        parse_form,
        body,
        call.header("content-type") or "",
        max_files=max_images,
        max_fields=limits.max_form_fields,
        max_field_bytes=limits.max_form_field_bytes,
        files_are="images",
        size=len(body),
    )
    images = []
    for name, content in form.files:
        if name == "images":
            images.append(content)
    if "images" in form.fields:
        raise InvalidInput("'images' parts must be files, not text fields")
    if not images:
        raise InvalidInput("multipart body has no file in the field 'images'")
    return images, form.fields


async def classify_call(call: Call) -> Answer:
    """The lean handler: multipart files or strict JSON with base64 images, counts and sizes before decoding."""
    state = call.state
    limits = state.settings.limits
    query = call.query()
    content_type = (call.header("content-type") or "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        images, fields = await read_multipart(call, limits.max_images)
        name = pick(fields.get("model"), query.get("model"))
        version = pick(int_field(fields, "version", "form"), query_int(query, "version"))
        top_k = pick(int_field(fields, "top_k", "form"), query_int(query, "top_k"))
    elif content_type == "application/json":
        counts: Counts = {"images": (limits.max_images, "{n} images in one request; the limit is {limit}")}
        body = await call.body()
        req = await call.offload(read_request, VisionRequest, body, counts, size=len(body))
        images = await call.offload(decode_base64, req.images, limits.max_image_bytes, size=len(body))
        name, version = pick(req.model, query.get("model")), pick(req.version, query_int(query, "version"))
        top_k = pick(req.top_k, query_int(query, "top_k"))
    else:
        raise UnsupportedMediaType(
            f"content type {content_type or 'none'!r} is not accepted; send multipart/form-data (files in 'images') "
            'or application/json ({"images": [base64, ...]})'
        )
    top_k = pick(top_k, DEFAULT_TOP_K)
    if not 1 <= top_k <= limits.max_top_k:
        raise InvalidInput(f"top_k must be between 1 and {limits.max_top_k}, got {top_k}")
    result = await state.dataplane.predict(ClassifyImages(images, name, version, top_k))
    return Answer(encode_json(result))


TASK = TaskSpec("vision", codecs={"image": ImageCodec}, routes=[route(PATH, classify_call)])
