"""Client values become exactly the tensors training used, and bad values get precise errors."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tokenizers import Tokenizer

from modelrepo import scoring
from modelrepo.config import ModelConfig, TextPreprocessing, read_config
from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.settings import Limits
from service.tasks.anomaly import SeriesCodec, TabularCodec, series_scores
from service.tasks.text import TextCodec, text_classifications
from service.tasks.vision import ImageCodec, classifications, decode_base64, decode_image
from tests.support.app_harness import png
from tests.support.default_repo import COMMITTED
from tests.support.tiny_models import CONFIGS, SERIES_WINDOW, tokenizer
from training.data.tokenizer import encode_batch

LIMITS = Limits()
NO_FILES = Path("/nonexistent")  # only the text codec reads files of its version folder
NOISE = png(np.random.default_rng(9).integers(0, 256, (28, 28), dtype=np.uint8))


def config(kind: str, **overrides) -> ModelConfig:
    return ModelConfig.model_validate({"name": kind, **CONFIGS[kind], **overrides})


def test_grayscale_image_is_scaled_and_normalised_like_training():
    pixels = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    spec = config("digits").preprocessing
    x = decode_image(png(pixels), spec, LIMITS)
    assert x.shape == (1, 28, 28) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], (pixels / 255.0 - 0.1307) / 0.3081, atol=1e-5)


def test_color_and_large_images_are_converted_then_resized_bilinearly():
    rgb = np.random.default_rng(1).integers(0, 256, (56, 40, 3), dtype=np.uint8)
    spec = config("digits").preprocessing.model_copy(update={"invert": True})
    x = decode_image(png(rgb), spec, LIMITS)
    expected = Image.fromarray(rgb).convert("L").resize((28, 28), Image.Resampling.BILINEAR)
    np.testing.assert_allclose(x[0], (1 - np.asarray(expected) / 255.0 - 0.1307) / 0.3081, atol=1e-5)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_jpeg_and_webp_are_accepted(fmt):
    pixels = np.full((28, 28), 128, np.uint8)
    x = decode_image(png(pixels, fmt), config("digits").preprocessing, LIMITS)
    assert abs(float(x.mean()) - (128 / 255 - 0.1307) / 0.3081) < 0.05


@pytest.mark.parametrize(
    "data, error, message",
    [
        (
            png(np.zeros((8, 8), np.uint8), "GIF"),
            UnsupportedMediaType,
            "image 0 is GIF; accepted formats are PNG, JPEG, WEBP",
        ),
        (png(np.zeros((8, 8), np.uint8), "BMP"), UnsupportedMediaType, "image 0 is BMP"),
        (b"definitely not an image", InvalidInput, "image 0 is not a decodable image"),
        (NOISE[: len(NOISE) // 2], InvalidInput, "image 0 could not be decoded"),
        (b"", InvalidInput, "image 0 is empty"),
    ],
)
def test_bad_images_are_refused_with_their_reason(data, error, message):
    with pytest.raises(error) as info:
        decode_image(data, config("digits").preprocessing, LIMITS)
    assert message in info.value.message


def test_image_limits_bytes_pixels_and_decompression_bombs():
    image = png(np.zeros((28, 28), np.uint8))
    spec = config("digits").preprocessing
    with pytest.raises(PayloadTooLarge, match=r"has .* bytes; the limit is 10"):
        decode_image(image, spec, Limits(max_image_bytes=10))
    with pytest.raises(PayloadTooLarge, match="28x28 pixels; the limit is 100 pixels"):
        decode_image(image, spec, Limits(max_image_pixels=100))
    # Both limits are inclusive: an image of exactly the limit decodes, one byte or pixel more does not.
    assert decode_image(image, spec, Limits(max_image_bytes=len(image), max_image_pixels=28 * 28)).shape == (1, 28, 28)
    with pytest.raises(PayloadTooLarge, match=f"has {len(image)} bytes; the limit is {len(image) - 1}"):
        decode_image(image, spec, Limits(max_image_bytes=len(image) - 1))
    with pytest.raises(PayloadTooLarge, match="28x28 pixels; the limit is 783 pixels"):
        decode_image(image, spec, Limits(max_image_pixels=28 * 28 - 1))
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 300  # Pillow refuses above twice this: 784 pixels is a "bomb"
    try:
        with pytest.raises(PayloadTooLarge, match="decompression bomb"):
            decode_image(image, spec, LIMITS)
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def test_base64_images_data_urls_and_the_size_checked_before_decoding():
    image = png(np.zeros((28, 28), np.uint8))
    text = base64.b64encode(image).decode()
    # Any data URL's payload is taken, whatever media type it claims (the image's own bytes decide).
    plain, url, other = decode_base64([text, f"data:image/png;base64,{text}", f"data:;base64,{text}"])
    assert plain == url == other == image
    assert decode_base64([text], max_bytes=len(image)) == [image]
    # Refused from the text's length alone: at most 4 characters per 3 bytes fit the limit.
    longest = 4 * ((len(image) - 3 + 2) // 3)
    with pytest.raises(PayloadTooLarge, match=f"image 0 has about .* bytes; the limit is {len(image) - 3}"):
        decode_base64(["A" * (longest + 4)], max_bytes=len(image) - 3)
    assert decode_base64(["A" * longest], max_bytes=len(image) - 3)[0] == bytes(3 * longest // 4)


def test_image_count_limits():
    codec = ImageCodec(config("digits"), NO_FILES, Limits(max_images=2))
    image = png(np.zeros((28, 28), np.uint8))
    assert codec.encode([image, image])["image"].shape == (2, 1, 28, 28)
    with pytest.raises(PayloadTooLarge, match="3 images in one request; the limit is 2"):
        codec.encode([image] * 3)
    with pytest.raises(InvalidInput, match="at least one image"):
        codec.encode([])


@pytest.fixture
def text_codec(tmp_path):
    tokenizer(tmp_path / "tokenizer.json")
    return TextCodec(config("spam"), tmp_path, Limits(max_texts=3, max_text_chars=50))


def test_texts_are_tokenized_truncated_and_padded_to_the_longest(text_codec):
    out = text_codec.encode(["Free CASH", "call me now see you later prize"])
    # [CLS]=2 first; max_length 6 counts it; the shorter row is padded with 0 and masked.
    assert out["input_ids"].tolist() == [[2, 3, 5, 0, 0, 0], [2, 7, 8, 6, 11, 12]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]]
    assert text_codec.pad_values == {"input_ids": 0, "attention_mask": 0}


def test_texts_without_a_single_ordinary_token_are_refused(text_codec):
    assert text_codec.encode(["hello zebra"])["input_ids"].tolist() == [[2, 9, 1]]
    for bad in ["", "   ", "[CLS]", "zebra", "[PAD]"]:
        with pytest.raises(InvalidInput, match="text 0 has no token the model knows"):
            text_codec.encode([bad])


@pytest.mark.parametrize("model", ["sms-spam-transformer", "sms-spam-minilm", "sentiment-minilm"])
def test_the_service_tokenizes_the_committed_text_models_exactly_as_their_training_did(model):
    # Training's encode_batch (with offsets) is the reference: serving must feed the model the same ids.
    folder = COMMITTED / model
    model_config = read_config(folder / "config.json")
    assert isinstance(model_config.preprocessing, TextPreprocessing)
    spec = model_config.preprocessing
    codec = TextCodec(model_config, folder / "1", LIMITS)
    texts = [
        "Congratulations! You have won a 1000 pound prize. Call 09061701461 now to claim, T&C apply",
        "Ok lar... Joking wif u oni...",
        "Café naïve résumé, ＦＵＬＬＷＩＤＴＨ ① ﬁ",
        "日本語のテキスト 🎉🎉 emoji",
        "tabs\tand\nnewlines   and  spaces",
        "word " * 200,  # past max_length: truncated alike
    ]
    tokenizer = Tokenizer.from_file(str(folder / "1" / spec.tokenizer))
    reference = [t.lower() for t in texts] if spec.lowercase else texts
    ids, mask = encode_batch(tokenizer, reference, spec.max_length, spec.pad_id)
    served = codec.encode(texts)
    assert served["input_ids"].tolist() == ids.tolist()
    assert served["attention_mask"].tolist() == mask.tolist()


def test_text_limits(text_codec):
    with pytest.raises(PayloadTooLarge, match="4 texts in one request; the limit is 3"):
        text_codec.encode(["a"] * 4)
    with pytest.raises(PayloadTooLarge, match="text 1 has 51 characters; the limit is 50"):
        text_codec.encode(["ok", "x" * 51])
    with pytest.raises(InvalidInput, match="at least one text"):
        text_codec.encode([])


def test_tabular_rows_are_standardised_and_checked():
    codec = TabularCodec(config("thyroid"), NO_FILES, LIMITS)
    row = [float(i) for i in range(21)]
    x = codec.encode([row])["features"]
    expected = (np.array(row) - 0.5) / np.array([2.0] * 20 + [1.0])  # a 0 scale (constant column) divides by 1
    np.testing.assert_allclose(x[0], expected, rtol=1e-6)
    with pytest.raises(InvalidInput, match="sample 1 has 20 features; the model expects 21"):
        codec.encode([row, row[:20]])
    with pytest.raises(InvalidInput, match="non-finite value at \\[0, 3\\]"):
        codec.encode([[*row[:3], float("nan"), *row[4:]]])
    with pytest.raises(PayloadTooLarge, match="3 samples in one request; the limit is 2"):
        TabularCodec(config("thyroid"), NO_FILES, Limits(max_samples=2)).encode([row] * 3)


def test_series_is_normalised_and_cut_like_scoring():
    codec = SeriesCodec(config("temperature"), NO_FILES, LIMITS)
    series = list(np.linspace(5, 15, 21))
    x = codec.encode(series)["window"]
    expected = scoring.cut_windows((np.array(series) - 10.0) / 2.0, SERIES_WINDOW, 2)
    assert x.shape == (len(expected), SERIES_WINDOW, 1)
    np.testing.assert_allclose(x[..., 0], expected, rtol=1e-6)
    with pytest.raises(InvalidInput, match="the series has 7 points; the model needs at least 8"):
        codec.encode(series[:7])
    with pytest.raises(InvalidInput, match="non-finite"):
        codec.encode([*series[:10], float("inf")])
    with pytest.raises(PayloadTooLarge, match="21 points; the limit is 20"):
        SeriesCodec(config("temperature"), NO_FILES, Limits(max_series_length=20)).encode(series)


def test_postprocessing_ranks_labels_and_finds_segments():
    logits = np.array([[0.0, 3.0, 1.0], [2.0, 0.0, 0.0]], np.float32)
    first, second = classifications(logits, ["a", "b", "c"], top_k=2)
    assert first["label"] == "b" and [t["label"] for t in first["top_k"]] == ["b", "c"]
    # Answers carry 6 significant digits: 0.843795 for 0.84379473...
    assert first["score"] == 0.843795 and abs(first["score"] - np.exp(3) / (1 + np.exp(3) + np.e)) < 1e-6
    assert second["label"] == "a" and len(second["top_k"]) == 2
    (pred,) = text_classifications(np.array([[0.0, 1.0]]), ["ham", "spam"])
    assert pred["label"] == "spam" and abs(sum(pred["scores"].values()) - 1) < 1e-5
    spec = config("temperature").preprocessing
    window_scores = np.array([0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 0.0])
    results, segments = series_scores(window_scores, 20, spec, threshold=1.0)
    assert len(results) == 20
    assert segments == [{"start": 4, "end": 11, "max_score": 1.66667}]  # 5/3 to 6 significant digits


def test_a_colour_image_taller_than_wide_keeps_its_channel_row_column_layout():
    # 4 rows by 6 columns: every (row, column, channel) gets a different value, so any transpose shows.
    rgb = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3) * 3
    x = decode_image(png(rgb), config("colour").preprocessing, LIMITS)
    mean, std = [0.1, 0.5, 0.9], [0.2, 0.3, 0.4]
    assert x.shape == (3, 4, 6)
    for c in range(3):
        for row in range(4):
            for col in range(6):
                expected = (rgb[row, col, c] / 255.0 - mean[c]) / std[c]
                assert x[c, row, col] == pytest.approx(expected, abs=1e-5), (c, row, col)
