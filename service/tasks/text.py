"""The text task: strings in, a label with every label's probability out, tokenized by the version's own tokenizer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, StrictStr, with_config
from tokenizers import Tokenizer
from typing_extensions import TypedDict

from modelrepo import scoring
from modelrepo.config import ModelConfig, TextPreprocessing
from service.errors import BadRequest, InvalidInput, PayloadTooLarge
from service.lean import Answer, Call, encode_json, route
from service.runtime import Tensors
from service.settings import Limits
from service.tasks.base import Codec, TaskSpec, label_of, shown
from service.tasks.request import Counts, pick, query_int, read_request

if TYPE_CHECKING:
    from service.registry import ModelVersion

PATH = "/v1/text/classify"
MASK_INPUT = "attention_mask"


# --- codec ----------------------------------------------------------------------------------------


class TextCodec(Codec):
    """Texts -> `input_ids` and `attention_mask` (int64), truncated to max_length, padded to this request's longest."""

    def __init__(self, config: ModelConfig, version_dir: Path, limits: Limits) -> None:
        super().__init__(config, version_dir, limits)
        assert isinstance(config.preprocessing, TextPreprocessing)
        self.spec = config.preprocessing
        names = [t.name for t in config.inputs]
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
        pads: dict[str, float] = {self.ids_input: self.spec.pad_id}
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
            if all(t in self.special_ids for t in enc.ids):
                raise InvalidInput(
                    f"text {i} has no token the model knows after tokenization (it is empty, only whitespace,"
                    " or only characters the tokenizer does not know)"
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

    def check(self, inputs: Tensors, label: str) -> None:
        """Raw token tensors: no longer than max_length, ids inside the vocabulary.

        An out-of-range id makes the embedding lookup fail for every request in the batch.
        """
        for name, array in inputs.items():
            if array.ndim == 2 and array.shape[1] > self.spec.max_length:
                raise BadRequest(
                    f"input '{name}' of {label} has {array.shape[1]} tokens per row; "
                    f"the limit is {self.spec.max_length}"
                )
        ids = inputs.get(self.ids_input)
        vocab_size = self.tokenizer.get_vocab_size()
        if ids is not None and ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
            raise BadRequest(
                f"token ids of {label} must lie in [0, {vocab_size}), got values in [{ids.min()}, {ids.max()}]"
            )


# --- answers --------------------------------------------------------------------------------------


@with_config(ConfigDict(extra="forbid"))
class TextPrediction(TypedDict):
    """Best label, its probability, and the probability of every label."""

    label: str
    score: float
    scores: dict[str, float]


@with_config(ConfigDict(extra="forbid"))
class TextResponse(TypedDict):
    """Predictions in the order of the request's texts."""

    model: str
    version: int
    predictions: list[TextPrediction]


def text_classifications(logits: np.ndarray, labels: list[str]) -> list[TextPrediction]:
    """Text answers: best label, its probability, and every label's probability."""
    probs = scoring.softmax(logits.astype(np.float64))
    answers: list[TextPrediction] = []
    for row in probs:
        best = int(np.argmax(row))
        scores = {label_of(labels, i): shown(float(p)) for i, p in enumerate(row)}
        answers.append({"label": label_of(labels, best), "score": shown(float(row[best])), "scores": scores})
    return answers


# --- requests -------------------------------------------------------------------------------------


class TextRequest(BaseModel):
    """Texts to classify, and optionally which model (and version) should do it."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    texts: list[StrictStr]
    model: str | None = None
    version: int | None = None


@dataclass(frozen=True)
class ClassifyTexts:
    """A text job: the texts and the model asked for."""

    task: ClassVar[str] = "text"
    default_model: ClassVar[str] = "text"  # AXON_DEFAULT_MODELS__TEXT
    texts: list[str]
    model: str | None
    version: int | None

    @property
    def size(self) -> int:
        """Characters of text."""
        return sum(map(len, self.texts))

    def encode(self, entry: ModelVersion) -> Tensors:
        """Tokenize with the version's own tokenizer."""
        assert isinstance(entry.codec, TextCodec)
        return entry.codec.encode(self.texts)

    def answer(self, entry: ModelVersion, outputs: Tensors) -> dict[str, list[TextPrediction]]:
        """Softmax over the first output, every label's probability per text."""
        assert entry.config is not None
        logits = outputs[entry.config.outputs[0].name]
        return {"predictions": text_classifications(logits, entry.config.labels)}


async def classify_call(call: Call) -> Answer:
    """The lean handler: strict JSON, the text count checked before any text is looked at, one tokenizer call."""
    limits = call.state.settings.limits
    counts: Counts = {"texts": (limits.max_texts, "{n} texts in one request; the limit is {limit}")}
    body = await call.body()
    req = await call.offload(read_request, TextRequest, body, counts, size=len(body))
    query = call.query()
    name, version = pick(req.model, query.get("model")), pick(req.version, query_int(query, "version"))
    result = await call.state.dataplane.predict(ClassifyTexts(req.texts, name, version))
    return Answer(encode_json(result))


TASK = TaskSpec("text", codecs={"text": TextCodec}, routes=[route(PATH, classify_call)])
