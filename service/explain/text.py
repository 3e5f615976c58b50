"""Text explanations: leave one token out, every variant of a text in one batched run.

A token's contribution = the explained label's probability on the whole text minus its probability with
that token removed (positive = the token supports the label). Special tokens ([CLS], [SEP]...) stay in
every variant and get no contribution; offsets come from the model's own tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from pydantic import StrictStr
from typing_extensions import TypedDict

from modelrepo import scoring
from service.errors import InvalidInput, PayloadTooLarge
from service.explain import Runner
from service.explain.vision import target_index
from service.lean import Answer, Call, encode_json, route
from service.runtime import Tensors
from service.tasks.base import label_of
from service.tasks.request import Counts, pick, query_int, read_request
from service.tasks.text import TextCodec, TextRequest

if TYPE_CHECKING:
    from service.registry import ModelVersion

PATH = "/v1/text/explain"


# --- attribution (pure: the faithfulness benchmark runs these on an ONNX session) ---------------------


def leave_one_out(ids: list[int], special: set[int]) -> tuple[np.ndarray, list[int]]:
    """(P, n-1) int64 rows, each `ids` without one non-special token, and the positions removed."""
    positions = [i for i, t in enumerate(ids) if t not in special]
    rows = np.array([ids[:i] + ids[i + 1 :] for i in positions], np.int64).reshape(len(positions), len(ids) - 1)
    return rows, positions


def model_inputs(codec: TextCodec, rows: np.ndarray) -> Tensors:
    """Token rows of one length as the model's inputs (mask all ones)."""
    tensors = {codec.ids_input: rows}
    if codec.mask_input:
        tensors[codec.mask_input] = np.ones_like(rows)
    return tensors


# --- answers and job ------------------------------------------------------------------------------


class TokenContribution(TypedDict):
    """One token, its character span in the original text, and its contribution."""

    token: str
    start: int
    end: int
    contribution: float


class TextExplanation(TypedDict):
    """The explained label, its probability, every real token's contribution, and the cost in passes."""

    label: str
    score: float
    tokens: list[TokenContribution]
    passes: int


class TextExplainResponse(TypedDict):
    """Explanations in the order of the request's texts."""

    model: str
    version: int
    explanations: list[TextExplanation]


@dataclass(frozen=True)
class ExplainTexts:
    """A text explanation job: the texts and the label to explain."""

    task: ClassVar[str] = "text"
    default_model: ClassVar[str] = "text"
    texts: list[str]
    model: str | None
    version: int | None
    target: str | None

    async def explain(self, entry: ModelVersion, run: Runner) -> dict[str, list[TextExplanation]]:
        """Per text: the whole text, then each real token left out (two runs, as their lengths differ)."""
        codec = entry.codec
        assert isinstance(codec, TextCodec) and entry.config is not None
        codec.encode(self.texts)  # the classify checks: sizes, and a text with no real token is refused
        texts = [t.lower() for t in self.texts] if codec.spec.lowercase else self.texts
        output = entry.config.outputs[0].name
        answers: list[TextExplanation] = []
        for enc in codec.tokenizer.encode_batch(texts):
            rows, positions = leave_one_out(enc.ids, codec.special_ids)
            if 1 + len(positions) > run.settings.max_passes:
                raise PayloadTooLarge(
                    f"explaining a text of {len(positions)} tokens costs {1 + len(positions)} passes; "
                    f"the limit is {run.settings.max_passes}"
                )
            base = scoring.softmax((await run(model_inputs(codec, np.array([enc.ids], np.int64))))[output])[0]
            k = target_index(entry.config.labels, len(base), self.target, int(np.argmax(base)))
            left = scoring.softmax((await run(model_inputs(codec, rows)))[output].astype(np.float64))[:, k]
            tokens: list[TokenContribution] = [
                {
                    "token": enc.tokens[i],
                    "start": enc.offsets[i][0],
                    "end": enc.offsets[i][1],
                    "contribution": float(base[k] - p),
                }
                for i, p in zip(positions, left)
            ]
            label = label_of(entry.config.labels, k)
            answers.append({"label": label, "score": float(base[k]), "tokens": tokens, "passes": 1 + len(positions)})
        return {"explanations": answers}


class TextExplainRequest(TextRequest):
    """Texts to explain, and optionally the label to explain (default: the predicted one)."""

    target: StrictStr | None = None


async def explain_call(call: Call, model: str | None = None, version: int | None = None) -> Answer:
    """Lean handler: the classify body plus `target`."""
    most = call.state.settings.explain.max_items
    counts: Counts = {"texts": (most, "{n} texts in one explanation request; the limit is {limit}")}
    body = await call.body()
    req = await call.offload(read_request, TextExplainRequest, body, counts, size=len(body))
    query = call.query()
    name, number = pick(req.model, query.get("model")), pick(req.version, query_int(query, "version"))
    if not req.texts:
        raise InvalidInput("'texts' must hold at least one text")
    job = ExplainTexts(req.texts, pick(model, name), pick(version, number), pick(req.target, query.get("target")))
    return Answer(encode_json(await call.state.dataplane.explain(job)))


ROUTES = [route(PATH, explain_call)]
