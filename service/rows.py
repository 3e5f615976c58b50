"""Rows a codec encodes at batch time: raw values of a whole batch in, model inputs out, one answer per row back.

Most codecs turn one request's values into tensors before it queues (an image is decoded once, whatever its
batch). A codec whose per-call cost is mostly fixed overhead (one tokenizer call, one softmax, one numpy
allocation per request) can instead hand the batcher raw `Rows`: the batcher encodes every row of a batch in
one `encode_rows` call, runs it, and builds every row's answer in one `answer_rows` call. A refused row fails
only its own request, with the error the codec names; the other requests of the batch run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from service.errors import AxonError
from service.runtime import Tensors

RowError = Callable[[int], AxonError]
"""The error of a refused row's request, given the row's index within that request (messages name it)."""


class EncodedRows(Protocol):
    """A batch's rows encoded once: per-row lengths for grouping, refused rows, and tensors for any subset."""

    @property
    def lengths(self) -> np.ndarray:
        """(N,) each row's length along the padded axis (rows of similar length run together)."""

    @property
    def refused(self) -> Mapping[int, RowError]:
        """Batch rows that must not run, with the error their request fails with."""

    def tensors(self, rows: np.ndarray) -> Tensors:
        """Model inputs of these batch rows, in this order, padded to the longest of them."""


class RowCodec(Protocol):
    """A codec's batch-time hooks."""

    def encode_rows(self, values: Sequence[Any]) -> EncodedRows:
        """Encode the raw values of every row of a batch in one call."""

    def answer_rows(self, outputs: Tensors, label: str) -> list[Any]:
        """One answer per row of `outputs` (all rows of a batch), or the AxonError that row's request fails with."""


@dataclass(frozen=True, slots=True)
class Rows:
    """One request's raw rows, already checked against the limits, waiting to be encoded with their batch."""

    values: Sequence[Any]
    codec: RowCodec
    size: int  # payload bytes or characters: a batch above the batcher's inline bound is encoded off the loop
