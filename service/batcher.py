"""Dynamic batching: one queue per loaded model version, and one worker per instance (session) of it.

Requests arrive already pre-processed (arrays with a leading batch axis of n rows) and wait in a
bounded FIFO queue, each with its own future. The worker takes rows from the head of the queue,
splitting a request across batches when it does not fit, until one of these closes the batch:

- the batch is full (`max_batch_size` rows);
- `max_delay` has passed since the first row of the batch was queued (deadline computed once, on
  the monotonic clock: no timer is restarted per item);
- the queue is empty and no request is on its way (`Arrivals` counts requests the server is still
  reading or pre-processing), so waiting could only add latency.

The batch is stacked (variable-length inputs padded to the longest row in the batch), run once in
the worker's own thread, and split back; each request gets its rows in its own order. Requests
whose future is already done (client gone, deadline passed, earlier part failed) are skipped. A
failing batch fails exactly the requests in it, and the worker goes on. `stop()` refuses new work
and returns once everything queued or running has finished.

A request may also queue raw `Rows` (texts) instead of tensors (`service/rows.py`): its batch is then
encoded in one call of the codec (one tokenizer call for every text of the batch), grouped per row by
length, run, and answered per row in one call too. A row the codec refuses fails only its own request.
Such a request's inference time includes its batch's encoding.

A version with several instances (Triton's `instance_group`) has one worker per instance, each with
its own run function (session) and thread, all taking from the same queue. One worker at a time
forms a batch (so two idle workers do not split what would have been one batch); as soon as it
has one it lets the next idle worker form the next while its own runs. So a slow batch on one
instance holds back only its own requests.
"""

from __future__ import annotations

import asyncio
import bisect
import contextvars
import functools
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.errors import AxonError, DeadlineExceeded, InferenceFailed, Overloaded, ShuttingDown
from service.rows import EncodedRows, RowCodec, Rows
from service.runtime import RunFn, Tensors

log = logging.getLogger("axon.batcher")

BatchObserver = Callable[[int, float], None]
"""Called after every batch with its number of rows and its run time in seconds."""

ClientGone = Callable[[], bool]
"""Tells whether the client of a request has disconnected."""

client_gone: contextvars.ContextVar[ClientGone | None] = contextvars.ContextVar("client_gone", default=None)
"""Set by the HTTP layer when the server lets it ask cheaply; a queued request whose client left is then
dropped when a batch is formed (one attribute read), with no watcher task per request."""

sole_request: contextvars.ContextVar[bool] = contextvars.ContextVar("sole_request", default=False)
"""Set by the HTTP layer when the server is handling no other request: nothing can join this one's batch, so an
idle batcher whose model is fast runs it at once in the caller's task (see `Batcher.submit`)."""


INLINE_RUN_S = 0.001
"""A batch expected to run at most this long (the last batch's seconds per input element x its elements) runs
on the event loop thread; anything longer goes to the worker thread so the loop never stalls."""

INLINE_ENCODE_SIZE = 64 * 1024
"""Raw rows of a batch up to this size (bytes or characters, `Rows.size`) are encoded on the event loop thread,
larger ones on the worker thread: the data plane's `OFFLOAD_BYTES` rule, applied to a batch."""

Inputs = Tensors | Rows
"""What a request queues: tensors ready to stack, or raw rows its codec encodes with the rest of the batch."""


def _expire(future: asyncio.Future[BatchResult], name: str, timeout_s: float) -> None:
    if not future.done():
        future.set_exception(DeadlineExceeded(f"{name} gave no answer within {timeout_s:g} s"))


class Arrivals:
    """Counts requests the server is reading or pre-processing that have not reached a batcher yet."""

    def __init__(self) -> None:
        self.count = 0
        self._listeners: set[asyncio.Event] = set()
        self._mine: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar("arrival", default=None)

    @contextmanager
    def coming(self) -> Iterator[None]:
        """Mark the current request as on its way for the duration of the block (or until it is queued)."""
        arrival = self.enter()
        try:
            yield
        finally:
            self.leave(arrival)

    def enter(self) -> tuple[list[bool], contextvars.Token[list[bool] | None]]:
        """`coming()` without a generator, for the per-request middleware: pass the result to `leave`."""
        token = [False]
        reset = self._mine.set(token)
        self.count += 1
        return token, reset

    def leave(self, arrival: tuple[list[bool], contextvars.Token[list[bool] | None]]) -> None:
        """End what `enter` began (a no-op for the count if the request was queued meanwhile)."""
        token, reset = arrival
        self._mine.reset(reset)
        self._leave(token)

    def arrived(self) -> None:
        """The current request reached its queue: batchers need not wait for it any more."""
        token = self._mine.get()
        if token is not None:
            self._leave(token)

    def _leave(self, token: list[bool]) -> None:
        if token[0]:
            return
        token[0] = True
        self.count -= 1
        if self.count == 0:
            for event in self._listeners:
                event.set()

    def listen(self, event: asyncio.Event) -> None:
        """Set `event` whenever the count drops to zero."""
        self._listeners.add(event)

    def forget(self, event: asyncio.Event) -> None:
        """Stop notifying `event`."""
        self._listeners.discard(event)


@dataclass(frozen=True)
class BatchPolicy:
    """How one batcher groups rows: size, patience, queue bound; `enabled=False` runs each request alone."""

    max_batch_size: int
    max_delay_s: float
    max_queue_size: int
    enabled: bool = True
    # Rows of different lengths run in groups whose longest is at most this many times their shortest, so a
    # batch of short texts does not pay for one long one (0 = one run per batch).
    max_pad_ratio: float = 2.0


@dataclass(slots=True)  # not frozen: a frozen __init__ sets each field through object.__setattr__, 3x the cost
class BatchResult:
    """A request's outputs (its rows only, in order), or its rows' answers for `Rows`, and where its time went."""

    outputs: Tensors
    queue_s: float
    inference_s: float
    answers: list[Any] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class _Pending:
    inputs: Inputs
    rows: int
    future: asyncio.Future[BatchResult]
    enqueued_at: float
    taken: int = 0
    parts: list[Any] = field(default_factory=list)  # Tensors, or lists of answers for Rows
    done_rows: int = 0
    started_at: float | None = None
    inference_s: float = 0.0
    gone: ClientGone | None = None
    shape_key: tuple[Any, ...] | None = None  # what `_fits` compares, made once

    def dead(self) -> bool:
        """Answered already (deadline, failure) or abandoned by its client: cancelled, never computed."""
        if self.future.done():
            return True
        if self.gone is not None and self.gone():
            self.future.cancel()
            return True
        return False


@dataclass(eq=False, slots=True)
class _Worker:
    """One instance's side of the batcher: its run function, its own thread and its own speed estimate."""

    run: RunFn
    executor: ThreadPoolExecutor
    # Seconds per input element in this instance's last batch (None until one has run): elements, not rows, so a
    # batch of long texts is not judged by the speed of short ones.
    element_s: float | None = None
    batches: int = 0
    running: int = 0


@dataclass(frozen=True)
class InstanceLoad:
    """What one instance has done: batches (or unbatched requests) run, and how many it runs now."""

    batches: int
    running: int


@dataclass(slots=True)
class _Segment:
    pending: _Pending
    start: int
    stop: int


def rows_of(inputs: Inputs) -> int:
    """Number of rows (leading axis) shared by every input, or of raw rows."""
    if isinstance(inputs, Rows):
        return len(inputs.values)
    counts = {a.shape[0] if a.ndim else 0 for a in inputs.values()}
    if len(counts) != 1:
        raise ValueError(f"inputs disagree on their number of rows: {sorted(counts)}")
    return counts.pop()


def length_groups(lengths: list[int], max_ratio: float) -> list[list[int]]:
    """Indices grouped by length, shortest first, each group's longest <= max_ratio x its shortest.

    Padding to the longest row costs compute that grows with the length (quadratically in attention);
    a few runs over similar lengths cost less than one run padded to the longest of all.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    if max_ratio <= 0:
        return [order]
    groups: list[list[int]] = []
    for i in order:
        if groups and lengths[i] <= max_ratio * max(1, lengths[groups[-1][0]]):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def collate(parts: list[Tensors], pad_values: dict[str, float]) -> Tensors:
    """Stack row blocks into one batch, padding variable axes to the longest block when they differ."""
    batch = {}
    for name in parts[0]:
        arrays = [p[name] for p in parts]
        shapes = {a.shape[1:] for a in arrays}
        if len(shapes) > 1:
            target = tuple(max(dims) for dims in zip(*shapes))
            widths = [[(0, 0)] + [(0, t - d) for t, d in zip(target, a.shape[1:])] for a in arrays]
            arrays = [np.pad(a, w, constant_values=pad_values[name]) for a, w in zip(arrays, widths)]
        batch[name] = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
    return batch


class Batcher:
    """Queue and workers of one model version; `submit` returns that request's rows of the model outputs.

    `run` is one function per instance of the version (a single function for a version with one instance).
    """

    def __init__(
        self,
        run: RunFn | Sequence[RunFn],
        policy: BatchPolicy,
        *,
        name: str,
        pad_values: dict[str, float] | None = None,
        arrivals: Arrivals | None = None,
        on_batch: BatchObserver | None = None,
    ) -> None:
        self.name = name
        self.policy = policy
        runs = [run] if callable(run) else list(run)
        if not runs:
            raise ValueError(f"{name} has no instance to run batches on")
        self._pad = pad_values or {}
        self._arrivals = arrivals or Arrivals()
        self._on_batch = on_batch
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._running = 0
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        if policy.enabled:
            # One thread per instance: a batch in flight on each, never two on one session.
            self._workers = [
                _Worker(r, ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"batcher-{name}-{i}"))
                for i, r in enumerate(runs)
            ]
        else:
            # Unbatched, requests run side by side on a shared pool, each on the least busy instance.
            pool = ThreadPoolExecutor(max_workers=max(2, policy.max_batch_size), thread_name_prefix=f"batcher-{name}")
            self._workers = [_Worker(r, pool) for r in runs]
        # One worker forms a batch at a time; the others wait here, idle, for the next.
        self._collecting = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def queued_rows(self) -> int:
        """Rows waiting (or, unbatched, requests running); the queue-depth gauge reads it."""
        return self._queued_rows if self.policy.enabled else self._running

    @property
    def instances(self) -> list[InstanceLoad]:
        """Per instance, in order: batches run so far and batches (unbatched: requests) running now."""
        return [InstanceLoad(w.batches, w.running) for w in self._workers]

    def start(self) -> None:
        """Start one worker task per instance on the running loop."""
        self._arrivals.listen(self._wakeup)
        if self.policy.enabled and not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self._work(w), name=f"batcher-{self.name}-{i}") for i, w in enumerate(self._workers)
            ]

    async def stop(self) -> None:
        """Refuse new requests, let queued and running ones finish, then release the thread."""
        self._stopping = True
        self._wakeup.set()
        if self._tasks:
            await asyncio.gather(*self._tasks)
        await self._idle.wait()
        self._arrivals.forget(self._wakeup)
        for executor in {w.executor for w in self._workers}:
            executor.shutdown(wait=False)

    async def submit(self, inputs: Inputs, timeout_s: float) -> BatchResult:
        """Queue one request's rows and wait for its outputs (429 if the queue is full, 504 past the deadline)."""
        if self._stopping:
            raise ShuttingDown(f"{self.name} is shutting down")
        # Unbatched, a request is one run whatever its first axes (a model without a batch axis, scalars).
        rows = rows_of(inputs) if self.policy.enabled else 1
        if not self.policy.enabled:
            return await self._run_alone(inputs, rows, timeout_s)
        if self._queued_rows and self._queued_rows + rows > self.policy.max_queue_size:
            limit = self.policy.max_queue_size
            raise Overloaded(f"{self.name} has {self._queued_rows} rows queued (limit {limit}); retry later")
        loop = asyncio.get_running_loop()
        if not self._queue and sole_request.get() and not isinstance(inputs, Rows):
            worker = self._idle_fast_worker(inputs, rows)
            if worker is not None:
                return await self._run_direct(worker, inputs, rows, loop)
        pending = _Pending(inputs, rows, loop.create_future(), time.monotonic(), gone=client_gone.get())
        self._queue.append(pending)
        self._queued_rows += rows
        self._arrivals.arrived()
        self._wakeup.set()
        # One timer that fails the future, not `asyncio.timeout`: that cancels and uncancels the task through a
        # context manager, twice the cost per request. Cancellation (client gone) cancels the future too;
        # either way the worker skips a done future.
        timer = loop.call_at(loop.time() + timeout_s, _expire, pending.future, self.name, timeout_s)
        try:
            return await pending.future
        finally:
            timer.cancel()

    def _idle_fast_worker(self, inputs: Tensors, rows: int) -> _Worker | None:
        """An idle instance that would run this request alone on the loop thread (`_execute`'s inline rule)."""
        if rows > self.policy.max_batch_size:
            return None  # split across batches: the queue does that
        elements = sum(array.size for array in inputs.values())
        for worker in self._workers:
            if not worker.running and worker.element_s is not None and worker.element_s * elements <= INLINE_RUN_S:
                return worker
        return None

    async def _run_direct(
        self, worker: _Worker, inputs: Tensors, rows: int, loop: asyncio.AbstractEventLoop
    ) -> BatchResult:
        """A batch of this request alone, run now in the caller's task: no queue, no hand-over to the worker
        task and back, no deadline timer (it runs for under `INLINE_RUN_S`). At one client this saves ~40 us
        of a ~430 us request on cnn_small. Nothing awaits in between, so no other batch can start meanwhile."""
        self._arrivals.arrived()
        now = time.monotonic()
        pending = _Pending(inputs, rows, loop.create_future(), now, taken=rows, started_at=now)
        await self._run_batch_guarded(worker, [_Segment(pending, 0, rows)], pause=False)
        return pending.future.result()

    async def _run_alone(self, inputs: Inputs, rows: int, timeout_s: float) -> BatchResult:
        if self._running >= self.policy.max_queue_size:
            limit = self.policy.max_queue_size
            raise Overloaded(f"{self.name} has {self._running} requests running (limit {limit}); retry later")
        self._arrivals.arrived()
        worker = min(self._workers, key=lambda w: w.running)
        worker.running += 1
        worker.batches += 1
        self._running += 1
        self._idle.clear()
        start = time.monotonic()
        answers: list[Any] = []
        try:
            async with asyncio.timeout(timeout_s):
                loop = asyncio.get_running_loop()
                if isinstance(inputs, Rows):
                    outputs: Tensors = {}
                    answers = await loop.run_in_executor(worker.executor, self._alone_rows, worker.run, inputs)
                else:
                    outputs = await loop.run_in_executor(worker.executor, worker.run, inputs)
        except TimeoutError:
            raise DeadlineExceeded(f"{self.name} gave no answer within {timeout_s:g} s") from None
        except AxonError as exc:
            if isinstance(inputs, Rows):
                raise  # a refused row or a non-finite answer (`_alone_rows` wraps the model's own failures)
            raise InferenceFailed(f"{self.name} failed on a request of {rows} rows: {exc}") from exc
        except Exception as exc:
            raise InferenceFailed(f"{self.name} failed on a request of {rows} rows: {exc}") from exc
        finally:
            worker.running -= 1
            self._running -= 1
            if not self._running:
                self._idle.set()
        elapsed = time.monotonic() - start
        if self._on_batch:
            self._on_batch(rows, elapsed)
        return BatchResult(outputs, 0.0, elapsed, answers)

    def _alone_rows(self, run: RunFn, rows: Rows) -> list[Any]:
        """One request's raw rows, unbatched: encode, run, answer (in the worker thread)."""
        encoded = rows.codec.encode_rows(rows.values)
        for row, error in sorted(encoded.refused.items()):
            raise error(row)
        try:
            outputs = run(encoded.tensors(np.arange(len(rows.values))))
        except AxonError as exc:  # the model's own failure: wrapped, as for tensors
            raise InferenceFailed(f"{self.name} failed on a request of {len(rows.values)} rows: {exc}") from exc
        answers = rows.codec.answer_rows(outputs, self.name)
        for answer in answers:
            if isinstance(answer, AxonError):
                raise answer
        return answers

    async def _work(self, worker: _Worker) -> None:
        while True:
            async with self._collecting:
                segments = await self._next_batch()
            if segments is None:
                return
            await self._run_batch_guarded(worker, segments)

    async def _run_batch_guarded(self, worker: _Worker, segments: list[_Segment], pause: bool = True) -> None:
        """`_run_batch`; a failure outside the model run fails this batch's requests only (the worker lives on)."""
        try:
            await self._run_batch(worker, segments, pause)
        except Exception as exc:
            log.exception("%s: batch failed outside the model run", self.name)
            self._fail(segments, InferenceFailed(f"{self.name} failed on a batch: {exc}"))

    def _drop_dead_head(self) -> None:
        while self._queue and self._queue[0].dead():
            dead = self._queue.popleft()
            self._queued_rows -= dead.rows - dead.taken

    async def _next_batch(self) -> list[_Segment] | None:
        while True:
            self._drop_dead_head()
            if self._queue:
                break
            if self._stopping:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        deadline = self._queue[0].enqueued_at + self.policy.max_delay_s
        segments: list[_Segment] = []
        size = 0
        while size < self.policy.max_batch_size:
            self._drop_dead_head()
            if not self._queue:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping or self._arrivals.count == 0:
                    break
                self._wakeup.clear()
                try:
                    # asyncio.timeout, not wait_for: no extra task per wake-up on this hot path.
                    async with asyncio.timeout(remaining):
                        await self._wakeup.wait()
                except TimeoutError:
                    break
                continue
            head = self._queue[0]
            if segments and not self._fits(segments[0].pending, head):
                break
            take = min(head.rows - head.taken, self.policy.max_batch_size - size)
            segments.append(_Segment(head, head.taken, head.taken + take))
            if head.started_at is None:
                head.started_at = time.monotonic()
            head.taken += take
            size += take
            self._queued_rows -= take
            if head.taken == head.rows:
                self._queue.popleft()
        return segments

    def _fits(self, first: _Pending, other: _Pending) -> bool:
        """Rows can share a batch if their non-batch shapes agree or the input can be padded (raw rows: one codec)."""
        if isinstance(first.inputs, Rows) or isinstance(other.inputs, Rows):
            return (
                isinstance(first.inputs, Rows)
                and isinstance(other.inputs, Rows)
                and first.inputs.codec is other.inputs.codec
            )
        return self._shape_key(first) == self._shape_key(other)

    def _shape_key(self, pending: _Pending) -> tuple[Any, ...]:
        """Names, dtypes and non-batch shapes (none for a padded input) of a request's tensors: equal keys batch."""
        key = pending.shape_key
        if key is None:
            assert not isinstance(pending.inputs, Rows)
            key = pending.shape_key = tuple(
                (name, array.dtype, None if name in self._pad else array.shape[1:])
                for name, array in pending.inputs.items()
            )
        return key

    def _groups(self, segments: list[_Segment]) -> list[list[_Segment]]:
        """The batch's segments in runs of similar padded length (one run when nothing is padded)."""
        assert not isinstance(segments[0].pending.inputs, Rows)
        padded = [name for name in segments[0].pending.inputs if name in self._pad]
        if not padded or len(segments) == 1:
            return [segments]
        lengths = [max(s.pending.inputs[n].shape[1] for n in padded) for s in segments]  # type: ignore[index]
        return [[segments[i] for i in group] for group in length_groups(lengths, self.policy.max_pad_ratio)]

    @staticmethod
    def _rows_of(segment: _Segment) -> Tensors:
        """A segment's rows of its request's tensors (the tensors themselves when it is the whole request)."""
        inputs = segment.pending.inputs
        assert not isinstance(inputs, Rows)
        if segment.start == 0 and segment.stop == segment.pending.rows:
            return inputs
        return {k: v[segment.start : segment.stop] for k, v in inputs.items()}

    @staticmethod
    def _run_groups(run: RunFn, batches: list[Tensors]) -> list[tuple[Tensors, float]]:
        """Every run of one batch in one worker-thread hop, each with its own duration."""
        results = []
        for batch in batches:
            start = time.monotonic()
            results.append((run(batch), time.monotonic() - start))
        return results

    async def _execute(
        self, worker: _Worker, segments: list[_Segment], batches: list[Tensors]
    ) -> tuple[list[tuple[Tensors, float]], bool] | None:
        """Run a batch's groups inline or on the worker thread; on failure fail `segments` and return None."""
        rows = sum(s.stop - s.start for s in segments)
        elements = sum(array.size for batch in batches for array in batch.values())
        inline = False
        worker.running += 1
        worker.batches += 1
        try:
            if worker.element_s is not None and worker.element_s * elements <= INLINE_RUN_S:
                # A tiny, fast batch costs less on the loop thread than the hand-over to the worker thread and
                # the GIL ping-pong back: 7-9% less CPU per request for cnn_small at 8 and 64 clients on one
                # core (a 3 ms bound measured no better). The loop is blocked for about a millisecond at most.
                results = self._run_groups(worker.run, batches)
                inline = True
            else:
                loop = asyncio.get_running_loop()
                results = await loop.run_in_executor(worker.executor, self._run_groups, worker.run, batches)
        except Exception as exc:
            log.warning("%s: batch of %d rows failed: %s", self.name, rows, exc)
            self._fail(segments, InferenceFailed(f"{self.name} failed on a batch of {rows} rows: {exc}"))
            return None
        finally:
            worker.running -= 1
        worker.element_s = sum(elapsed for _, elapsed in results) / max(1, elements)
        return results, inline

    async def _run_batch(self, worker: _Worker, segments: list[_Segment], pause: bool = True) -> None:
        if isinstance(segments[0].pending.inputs, Rows):
            await self._run_rows(worker, segments)
            return
        groups = self._groups(segments)
        batches = [collate([self._rows_of(s) for s in g], self._pad) for g in groups]
        executed = await self._execute(worker, segments, batches)
        if executed is None:
            return
        results, inline = executed
        for group, (outputs, elapsed) in zip(groups, results):
            group_rows = sum(s.stop - s.start for s in group)
            if self._on_batch:
                self._on_batch(group_rows, elapsed)
            bad = [n for n, a in outputs.items() if a.ndim == 0 or a.shape[0] != group_rows]
            if bad:
                self._fail(group, InferenceFailed(f"{self.name} returned outputs {bad} without one row per input row"))
                continue
            offset = 0
            for seg in group:
                count = seg.stop - seg.start
                self._deliver(seg.pending, {k: v[offset : offset + count] for k, v in outputs.items()}, count, elapsed)
                offset += count
        if inline and pause:
            await asyncio.sleep(0)  # a full queue must not keep the loop to itself batch after batch

    async def _run_rows(self, worker: _Worker, segments: list[_Segment]) -> None:
        """Raw rows: one encoding call for the whole batch, per-row length groups, one answering call."""
        values: list[Any] = []
        size = 0
        for seg in segments:
            raw = seg.pending.inputs
            assert isinstance(raw, Rows)  # `_fits` batches rows only with rows of the same codec
            values += raw.values[seg.start : seg.stop]
            size += raw.size
            codec: RowCodec = raw.codec
        encode = functools.partial(codec.encode_rows, values)
        start = time.monotonic()
        try:
            if size <= INLINE_ENCODE_SIZE:
                encoded = encode()
            else:
                encoded = await asyncio.get_running_loop().run_in_executor(worker.executor, encode)
        except Exception as exc:
            log.warning("%s: encoding a batch of %d rows failed: %s", self.name, len(values), exc)
            self._fail(segments, InferenceFailed(f"{self.name} failed to encode a batch of {len(values)} rows: {exc}"))
            return
        encode_s = time.monotonic() - start
        live, starts, rows = self._refuse(segments, encoded)
        if not live:
            return
        lengths = [encoded.lengths[r] for r in rows]
        groups = [np.asarray(g) for g in length_groups(lengths, self.policy.max_pad_ratio)]
        batches = [encoded.tensors(rows[g]) for g in groups]
        executed = await self._execute(worker, live, batches)
        if executed is None:
            return
        results, inline = executed
        for group, (outputs, elapsed) in zip(groups, results):
            if self._on_batch:
                self._on_batch(len(group), elapsed)
            bad = [n for n, a in outputs.items() if a.ndim == 0 or a.shape[0] != len(group)]
            if bad:
                self._fail(live, InferenceFailed(f"{self.name} returned outputs {bad} without one row per input row"))
                return
        order = np.concatenate(groups)  # the live rows' positions, in the order the runs produced them
        batch_outputs = {}
        for name in results[0][0]:
            stacked = np.concatenate([outputs[name] for outputs, _ in results])
            batch_outputs[name] = np.empty_like(stacked)
            batch_outputs[name][order] = stacked  # back to the order of the rows in the batch
        try:
            answers = codec.answer_rows(batch_outputs, self.name)
        except Exception as exc:
            log.warning("%s: answering a batch of %d rows failed: %s", self.name, len(rows), exc)
            self._fail(live, InferenceFailed(f"{self.name} failed to answer a batch of {len(rows)} rows: {exc}"))
            return
        elapsed = encode_s + sum(e for _, e in results)  # a request's inference phase includes its batch's encoding
        for seg, first in zip(live, starts):
            count = seg.stop - seg.start
            self._deliver(seg.pending, answers[first : first + count], count, elapsed)
        if inline:
            await asyncio.sleep(0)

    def _refuse(self, segments: list[_Segment], encoded: EncodedRows) -> tuple[list[_Segment], list[int], np.ndarray]:
        """Fail each request with a refused row (its own error); the others' segments, answer offsets and batch rows."""
        offsets = list(itertools.accumulate((s.stop - s.start for s in segments), initial=0))
        failed: set[int] = set()
        for row in sorted(encoded.refused):
            i = bisect.bisect_right(offsets, row) - 1
            if i not in failed:
                failed.add(i)
                seg = segments[i]
                if not seg.pending.future.done():
                    seg.pending.future.set_exception(encoded.refused[row](seg.start + row - offsets[i]))
        live = [s for i, s in enumerate(segments) if i not in failed]
        if not failed:
            return live, offsets[:-1], np.arange(offsets[-1])
        kept = [i for i in range(len(segments)) if i not in failed]
        rows = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in kept]) if kept else np.arange(0)
        starts = list(itertools.accumulate((segments[i].stop - segments[i].start for i in kept), initial=0))[:-1]
        return live, starts, rows

    def _deliver(self, pending: _Pending, part: Tensors | list[Any], count: int, elapsed: float) -> None:
        pending.parts.append(part)
        pending.done_rows += count
        pending.inference_s += elapsed
        if pending.future.done() or pending.done_rows < pending.rows:
            return
        parts = pending.parts
        queued = (pending.started_at or pending.enqueued_at) - pending.enqueued_at
        if isinstance(pending.inputs, Rows):
            answers = [a for p in parts for a in p]
            error = next((a for a in answers if isinstance(a, AxonError)), None)
            if error is not None:
                pending.future.set_exception(error)
            else:
                pending.future.set_result(BatchResult({}, queued, pending.inference_s, answers))
            return
        outputs = parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        pending.future.set_result(BatchResult(outputs, queued, pending.inference_s))

    @staticmethod
    def _fail(segments: list[_Segment], error: AxonError) -> None:
        for seg in segments:
            if not seg.pending.future.done():
                seg.pending.future.set_exception(error)
