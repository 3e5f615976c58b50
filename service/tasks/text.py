"""The text task: strings in, a label with every label's probability out, tokenized by the version's own tokenizer."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, StrictStr, with_config
from tokenizers import Tokenizer
from typing_extensions import TypedDict

from modelrepo import scoring
from modelrepo.config import ModelConfig, TextPreprocessing
from service.errors import AxonError, BadRequest, InvalidInput, NonFiniteOutput, PayloadTooLarge
from service.lean import Answer, Call, encode_json, route
from service.rows import RowError, Rows
from service.runtime import Tensors
from service.settings import Limits
from service.tasks.base import Codec, TaskSpec, label_of, shown
from service.tasks.request import Counts, pick, query_int, read_request

if TYPE_CHECKING:
    from service.batcher import BatchResult
    from service.registry import ModelVersion

PATH = "/v1/text/classify"
MASK_INPUT = "attention_mask"


# --- codec ----------------------------------------------------------------------------------------


def _no_known_token(index: int) -> AxonError:
    return InvalidInput(
        f"text {index} has no token the model knows after tokenization (it is empty, only whitespace,"
        " or only characters the tokenizer does not know)"
    )


@dataclass(frozen=True)
class TokenRows:
    """Texts tokenized in one call (`EncodedRows`): ids padded to the longest text, rows without a real token."""

    ids: np.ndarray  # (N, T) int64, pad_id past each row's length
    real: np.ndarray  # (N, T) bool, True on each row's tokens
    lengths: np.ndarray  # (N,) tokens per row
    refused: dict[int, RowError]
    ids_input: str
    mask_input: str | None

    def tensors(self, rows: np.ndarray) -> Tensors:
        """The model inputs of these rows, cut to the longest of them."""
        width = int(self.lengths[rows].max()) if len(rows) else 0
        tensors = {self.ids_input: self.ids[rows, :width]}
        if self.mask_input:
            tensors[self.mask_input] = self.real[rows, :width].astype(np.int64)
        return tensors


class TextCodec(Codec):
    """Texts -> `input_ids` and `attention_mask` (int64), truncated to max_length, padded to the batch's longest.

    Task requests queue their texts raw (`prepare`): the batcher tokenizes a whole batch in one `encode_batch`
    call (`encode_rows`) and builds every answer in one vectorised pass (`answer_rows`).
    """

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
        self._specials = np.array(sorted(self.special_ids), dtype=np.int64)
        self.output = config.outputs[0].name
        self.labels = config.labels

    @property
    def pad_values(self) -> dict[str, float]:
        """What the batcher pads each input with when rows of different lengths share a batch."""
        pads: dict[str, float] = {self.ids_input: self.spec.pad_id}
        if self.mask_input:
            pads[self.mask_input] = 0
        return pads

    def prepare(self, texts: list[str]) -> Rows:
        """One request's texts checked against the limits (before any tokenizing), to be tokenized with their batch."""
        self._check_limits(texts)
        return Rows(texts, self, size=sum(map(len, texts)))

    def encode(self, texts: list[str]) -> Tensors:
        """Tokenize one request's texts now (explanations); a text with no real (non-special) token is refused."""
        self._check_limits(texts)
        tokens = self.encode_rows(texts)
        for row, error in sorted(tokens.refused.items()):
            raise error(row)
        return tokens.tensors(np.arange(len(texts)))

    def _check_limits(self, texts: list[str]) -> None:
        if not texts:
            raise InvalidInput("'texts' must hold at least one text")
        if len(texts) > self.limits.max_texts:
            raise PayloadTooLarge(f"{len(texts)} texts in one request; the limit is {self.limits.max_texts}")
        for i, text in enumerate(texts):
            if len(text) > self.limits.max_text_chars:
                raise PayloadTooLarge(f"text {i} has {len(text)} characters; the limit is {self.limits.max_text_chars}")

    def encode_rows(self, values: Sequence[Any]) -> TokenRows:
        """Every text of a batch in one tokenizer call; ids and mask filled by numpy, not per-token Python."""
        texts = [t.lower() for t in values] if self.spec.lowercase else list(values)
        # encode_batch_fast: the same ids without character offsets, which only explanations read (15-20% less time).
        encodings = self.tokenizer.encode_batch_fast(texts)
        token_lists = [enc.ids for enc in encodings]
        lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
        width = int(lengths.max()) if len(lengths) else 0
        real = np.arange(width) < lengths[:, None]  # (N, T)
        ids = np.full((len(texts), width), self.spec.pad_id, dtype=np.int64)
        ids[real] = np.fromiter(itertools.chain.from_iterable(token_lists), dtype=np.int64, count=int(lengths.sum()))
        # [PAD], [UNK], [CLS]...: a row made only of these carries nothing the model learnt from.
        known = real & ~np.isin(ids, self._specials)
        refused: dict[int, RowError] = {int(i): _no_known_token for i in np.flatnonzero(~known.any(axis=1))}
        return TokenRows(ids, real, lengths, refused, self.ids_input, self.mask_input)

    def answer_rows(self, outputs: Tensors, label: str) -> list[Any]:
        """Every row's prediction from one softmax over the batch; a row with a non-finite output gets the 422."""
        return text_classifications(outputs[self.output], self.labels, outputs, label)

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


def text_classifications(
    logits: np.ndarray, labels: list[str], outputs: Tensors | None = None, label: str = "the model"
) -> list[TextPrediction | AxonError]:
    """Text answers: best label, its probability, and every label's probability; one pass over the whole batch.

    A row where one of the float `outputs` (default: the logits) is not finite gets the error its request fails
    with instead (the non-finite rule), and only that row.
    """
    probs = scoring.softmax(logits.astype(np.float64))
    best = probs.argmax(axis=1).tolist()
    names = [label_of(labels, i) for i in range(probs.shape[1])]
    floats = {n: a.reshape(len(a), -1) for n, a in (outputs or {"logits": logits}).items() if a.dtype.kind == "f"}
    broken = {n: np.flatnonzero(~np.isfinite(a).all(axis=1)).tolist() for n, a in floats.items()}
    answers: list[TextPrediction | AxonError] = []
    for row, b in zip(probs.tolist(), best):
        scores = [shown(p) for p in row]
        answers.append({"label": names[b], "score": scores[b], "scores": dict(zip(names, scores))})
    for name, rows in broken.items():
        for i in rows:
            answers[i] = NonFiniteOutput(
                f"{label} produced a non-finite value in '{name}' for this input "
                "(values far outside the range it was trained on)"
            )
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

    def encode(self, entry: ModelVersion) -> Rows:
        """The texts, checked against the limits; the batcher tokenizes them with the rest of their batch."""
        assert isinstance(entry.codec, TextCodec)
        return entry.codec.prepare(self.texts)

    def answer(self, entry: ModelVersion, result: BatchResult) -> dict[str, list[TextPrediction]]:
        """The predictions the batcher built for this request's texts, in their order."""
        return {"predictions": result.answers}


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
