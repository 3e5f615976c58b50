"""The batcher on its own: grouping, splitting, order, bounds, deadlines, failures, draining; then real ORT."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time

import numpy as np
import onnxruntime as ort
import pytest

from service.batcher import Arrivals, Batcher, BatchPolicy, collate, length_groups, sole_request
from service.errors import DeadlineExceeded, InferenceFailed, Overloaded, ShuttingDown
from service.runtime import session_runner
from tests.support.tiny_models import text_model


class Recorder:
    """A runner that doubles its input and remembers every batch; optionally blocks until released."""

    def __init__(self, block: bool = False) -> None:
        self.batches: list[np.ndarray] = []
        self.release = threading.Event()
        self.started = threading.Event()
        if not block:
            self.release.set()

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.started.set()
        self.release.wait(5)
        x = inputs["x"]
        self.batches.append(x.copy())
        if (x == -1).any():
            raise RuntimeError("row with -1 is poison")
        return {"y": x * 2, "rows": np.arange(len(x))}


def rows(*values: float) -> dict[str, np.ndarray]:
    return {"x": np.array(values, dtype=np.float32)[:, None]}


def make(run, size=64, delay=0.0, queue=256, enabled=True, pad_ratio=2.0, **kw) -> Batcher:
    batcher = Batcher(run, BatchPolicy(size, delay, queue, enabled, pad_ratio), name="model 'm' version 1", **kw)
    batcher.start()
    return batcher


async def test_concurrent_requests_share_one_run_and_get_their_own_rows():
    run = Recorder()
    batcher = make(run)
    results = await asyncio.gather(*(batcher.submit(rows(i), 5) for i in range(10)))
    assert [len(b) for b in run.batches] == [10]
    assert [float(r.outputs["y"][0, 0]) for r in results] == [2.0 * i for i in range(10)]
    await batcher.stop()


async def test_big_request_is_split_across_batches_and_reassembled_in_order():
    run = Recorder()
    batcher = make(run, size=4)
    result = await batcher.submit(rows(*range(10)), 5)
    assert [len(b) for b in run.batches] == [4, 4, 2]
    np.testing.assert_array_equal(result.outputs["y"][:, 0], 2.0 * np.arange(10))
    await batcher.stop()


async def test_requests_are_merged_then_split_at_the_batch_limit():
    run = Recorder()
    batcher = make(run, size=4)
    a, b = await asyncio.gather(batcher.submit(rows(1, 2, 3), 5), batcher.submit(rows(4, 5, 6), 5))
    assert [b_.ravel().tolist() for b_ in run.batches] == [[1, 2, 3, 4], [5, 6]]
    assert a.outputs["y"].ravel().tolist() == [2, 4, 6]
    assert b.outputs["y"].ravel().tolist() == [8, 10, 12]
    # The second request's rows came from two batches: row indices 3 of the first, 0-1 of the second.
    assert b.outputs["rows"].tolist() == [3, 0, 1]
    await batcher.stop()


async def test_full_queue_refuses_at_once_with_retry_after():
    run = Recorder(block=True)
    batcher = make(run, size=1, queue=2)
    first = asyncio.create_task(batcher.submit(rows(0), 5))
    await asyncio.to_thread(run.started.wait, 5)  # the worker holds row 0; the queue is empty again
    queued = [asyncio.create_task(batcher.submit(rows(i), 5)) for i in (1, 2)]
    await asyncio.sleep(0)
    with pytest.raises(Overloaded) as info:
        await batcher.submit(rows(3), 5)
    assert info.value.status_code == 429 and info.value.headers["Retry-After"] == "1"
    assert "has 2 rows queued (limit 2)" in info.value.message
    run.release.set()
    await asyncio.gather(first, *queued)
    await batcher.stop()


async def test_deadline_gives_504_and_the_rows_are_never_computed():
    run = Recorder(block=True)
    batcher = make(run, size=1)
    first = asyncio.create_task(batcher.submit(rows(0), 5))
    await asyncio.to_thread(run.started.wait, 5)
    with pytest.raises(DeadlineExceeded, match=r"gave no answer within 0\.05 s"):
        await batcher.submit(rows(7), 0.05)
    run.release.set()
    await first
    await batcher.stop()
    assert [b.ravel().tolist() for b in run.batches] == [[0]]


async def test_cancelled_request_is_skipped():
    run = Recorder(block=True)
    batcher = make(run, size=1)
    first = asyncio.create_task(batcher.submit(rows(0), 5))
    await asyncio.to_thread(run.started.wait, 5)
    gone = asyncio.create_task(batcher.submit(rows(5), 5))
    kept = asyncio.create_task(batcher.submit(rows(6), 5))
    await asyncio.sleep(0)
    gone.cancel()  # what a client disconnect does
    run.release.set()
    await asyncio.gather(first, kept)
    assert [b.ravel().tolist() for b in run.batches] == [[0], [6]]
    assert batcher.queued_rows == 0
    await batcher.stop()


async def test_failing_batch_fails_only_its_requests_and_the_worker_goes_on():
    run = Recorder()
    batcher = make(run, size=2)
    outcomes = await asyncio.gather(
        batcher.submit(rows(-1), 5), batcher.submit(rows(1), 5), batcher.submit(rows(2), 5), return_exceptions=True
    )
    assert isinstance(outcomes[0], InferenceFailed) and isinstance(outcomes[1], InferenceFailed)
    assert "model 'm' version 1 failed on a batch of 2 rows: row with -1 is poison" in outcomes[0].message
    assert outcomes[2].outputs["y"].ravel().tolist() == [4.0]
    assert (await batcher.submit(rows(3), 5)).outputs["y"].ravel().tolist() == [6.0]
    await batcher.stop()


async def test_rows_of_different_lengths_are_padded_to_the_longest_in_the_batch():
    seen = []

    def run(inputs):
        seen.append({k: v.copy() for k, v in inputs.items()})
        return {"n": inputs["mask"].sum(axis=1)}

    batcher = make(run, pad_values={"ids": 0, "mask": 0})
    short = {"ids": np.array([[2, 5, 6]]), "mask": np.ones((1, 3), np.int64)}
    long = {"ids": np.array([[2, 3, 4, 5, 6]]), "mask": np.ones((1, 5), np.int64)}
    a, b = await asyncio.gather(batcher.submit(short, 5), batcher.submit(long, 5))
    assert seen[0]["ids"].tolist() == [[2, 5, 6, 0, 0], [2, 3, 4, 5, 6]]
    assert seen[0]["mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert a.outputs["n"].tolist() == [3] and b.outputs["n"].tolist() == [5]
    await batcher.stop()


def test_length_groups_bound_the_padding_of_each_run():
    lengths = [5, 100, 6, 12, 90, 24]
    assert length_groups(lengths, 2.0) == [[0, 2], [3, 5], [4, 1]]
    for group in length_groups(lengths, 2.0):
        assert max(lengths[i] for i in group) <= 2.0 * min(lengths[i] for i in group)
    assert length_groups(lengths, 0) == [[0, 2, 3, 5, 4, 1]]


@pytest.mark.parametrize(("pad_ratio", "widths"), [(2.0, [3, 40]), (0, [40])])
async def test_a_long_text_does_not_pad_the_short_ones_of_its_batch(pad_ratio, widths):
    seen = []

    def run(inputs):
        seen.append(inputs["ids"].shape)
        return {"n": inputs["mask"].sum(axis=1)}

    batcher = make(run, pad_ratio=pad_ratio, pad_values={"ids": 0, "mask": 0})
    texts = [{"ids": np.full((1, n), 7), "mask": np.ones((1, n), np.int64)} for n in (3, 40, 3, 2)]
    results = await asyncio.gather(*(batcher.submit(t, 5) for t in texts))
    assert [r.outputs["n"].tolist() for r in results] == [[3], [40], [3], [2]]
    assert sorted(shape[1] for shape in seen) == widths
    assert sum(shape[0] for shape in seen) == 4
    await batcher.stop()


async def test_rows_that_cannot_be_padded_do_not_share_a_batch():
    seen = []

    def run(inputs):
        seen.append(inputs["x"].shape)
        return {"y": inputs["x"].sum(axis=1)}

    batcher = make(run)
    await asyncio.gather(batcher.submit({"x": np.ones((1, 3))}, 5), batcher.submit({"x": np.ones((1, 4))}, 5))
    assert seen == [(1, 3), (1, 4)]
    await batcher.stop()


async def test_waits_for_a_request_on_its_way_but_not_past_max_delay():
    run = Recorder()
    arrivals = Arrivals()
    batcher = make(run, delay=0.5, arrivals=arrivals)

    async def late(value: float, after: float):
        with arrivals.coming():
            await asyncio.sleep(after)
            return await batcher.submit(rows(value), 5)

    await asyncio.gather(late(1, 0.0), late(2, 0.05))
    assert [b.ravel().tolist() for b in run.batches] == [[1, 2]]

    run.batches.clear()
    start = time.monotonic()
    batcher.policy = BatchPolicy(64, 0.05, 256)
    await asyncio.gather(late(3, 0.0), late(4, 0.3))
    assert [b.ravel().tolist() for b in run.batches] == [[3], [4]]
    assert time.monotonic() - start < 1.0
    await batcher.stop()


async def test_nothing_on_the_way_means_no_waiting():
    run = Recorder()
    batcher = make(run, delay=2.0)
    start = time.monotonic()
    await batcher.submit(rows(1), 5)
    assert time.monotonic() - start < 0.5
    await batcher.stop()


@pytest.mark.parametrize("enabled", [True, False], ids=["batched", "unbatched"])
async def test_stop_drains_queued_and_running_requests_then_refuses(enabled):
    run = Recorder(block=True)
    batcher = make(run, size=2, enabled=enabled)
    tasks = [asyncio.create_task(batcher.submit(rows(i), 5)) for i in range(5)]
    await asyncio.to_thread(run.started.wait, 5)
    stopping = asyncio.create_task(batcher.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()
    with pytest.raises(ShuttingDown):
        await batcher.submit(rows(9), 5)
    run.release.set()
    results = await asyncio.gather(*tasks)
    await stopping
    assert [r.outputs["y"].item() for r in results] == [0, 2, 4, 6, 8]


async def test_unbatched_mode_runs_each_request_alone():
    run = Recorder()
    batcher = make(run, enabled=False)
    results = await asyncio.gather(*(batcher.submit(rows(i, i), 5) for i in range(6)))
    assert sorted(len(b) for b in run.batches) == [2] * 6
    assert [r.outputs["y"][:, 0].tolist() for r in results] == [[2.0 * i] * 2 for i in range(6)]
    await batcher.stop()


def test_collate_keeps_a_single_block_as_is():
    block = {"x": np.ones((2, 3))}
    assert collate([block], {})["x"] is block["x"]


@pytest.mark.parametrize("pad_ratio", [2.0, 0])
async def test_real_session_gives_the_same_answer_alone_or_in_a_padded_batch(tmp_path, pad_ratio):
    text_model(tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    run = session_runner(session)
    rng = np.random.default_rng(0)
    requests = []
    for n in range(1, 13):
        ids = np.concatenate([[2], rng.integers(3, 15, n)]).astype(np.int64)[None]
        requests.append({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    alone = [run(r)["logits"] for r in requests]
    batcher = make(run, size=5, pad_ratio=pad_ratio, pad_values={"input_ids": 0, "attention_mask": 0})
    batched = await asyncio.gather(*(batcher.submit(r, 5) for r in requests))
    for a, b in zip(alone, batched):
        np.testing.assert_allclose(b.outputs["logits"], a, atol=1e-5)
    await batcher.stop()


async def test_a_fast_small_batch_runs_on_the_loop_thread_and_a_slow_one_in_the_worker():
    threads: list[str] = []
    slow = {"on": False}

    def run(inputs):
        threads.append(threading.current_thread().name)
        if slow["on"]:
            time.sleep(0.005)  # 5 ms for one row: past the 1 ms bound for the next batch
        return {"y": inputs["x"] * 2}

    batcher = make(run, size=8192, queue=8192)
    loop_thread = threading.current_thread().name
    await batcher.submit(rows(1), 5)  # nothing measured yet: the worker thread
    await batcher.submit(rows(2), 5)  # the last batch was fast: inline
    slow["on"] = True
    await batcher.submit(rows(3), 5)  # still expected fast: inline, and measured slow
    slow["on"] = False
    await batcher.submit(rows(4), 5)  # expected to take 5 ms: the worker (and measured fast again)
    await batcher.submit(rows(5), 5)  # inline again
    await batcher.submit(rows(*range(4096)), 5)  # the estimate scales with the batch's elements: the worker
    on_loop = [name == loop_thread for name in threads]
    assert on_loop == [False, True, True, False, True, False]
    await batcher.stop()


@contextlib.contextmanager
def another_request_on_its_way(arrivals: Arrivals):
    """Another request the server is reading (its own context, as a request's task has), until the block ends."""
    context = contextvars.copy_context()
    arrival = context.run(arrivals.enter)
    try:
        yield
    finally:
        context.run(arrivals.leave, arrival)


@contextlib.contextmanager
def the_only_request():
    """The server's word that this request is the only one it is handling (what `lean.run` sets)."""
    token = sole_request.set(True)
    try:
        yield
    finally:
        sole_request.reset(token)


async def waits_for_the_request_on_its_way(batcher, arrivals: Arrivals, inputs) -> list[float]:
    """Submit `inputs` while another request is on its way: it must wait in the queue meanwhile; its outputs
    once that request has arrived."""
    with another_request_on_its_way(arrivals):
        waiting = asyncio.ensure_future(batcher.submit(inputs, 5))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # queued, waiting for the request on its way
    # Leaving the block ends the arrival: nothing is on its way any more, so the batch closes.
    return (await asyncio.wait_for(waiting, 2)).outputs["y"].ravel().tolist()


async def test_the_only_request_on_the_server_runs_at_once_on_an_idle_fast_batcher():
    threads: list[str] = []

    def run(inputs):
        threads.append(threading.current_thread().name)
        return {"y": inputs["x"] * 2}

    arrivals = Arrivals()
    batcher = make(run, delay=30.0, arrivals=arrivals)
    await batcher.submit(rows(1), 5)  # measures the model: fast
    # Another request on its way makes a queued request wait for it (up to the 30 s batch delay); the
    # server's word that this request is its only one means nothing can join, so it runs now.
    with another_request_on_its_way(arrivals), the_only_request():
        result = await asyncio.wait_for(batcher.submit(rows(2), 5), 2)
    assert result.outputs["y"].ravel().tolist() == [4.0]
    assert threads[-1] == threading.current_thread().name  # on the loop, in the caller's task
    # Without that word the same request waits for the one on its way, as batching should.
    assert await waits_for_the_request_on_its_way(batcher, arrivals, rows(3)) == [6.0]
    await batcher.stop()


async def test_a_sole_request_still_queues_when_the_model_is_slow_or_the_request_too_big():
    def run(inputs):
        time.sleep(0.002)  # 2 ms: past the inline bound
        return {"y": inputs["x"] * 2}

    arrivals = Arrivals()
    batcher = make(run, size=2, delay=30.0, arrivals=arrivals)
    await batcher.submit(rows(1), 5)
    with the_only_request():
        assert await waits_for_the_request_on_its_way(batcher, arrivals, rows(2)) == [4.0]  # the model is slow
    await batcher.stop()


async def test_a_sole_request_bigger_than_a_batch_is_still_split_by_the_queue():
    run = Recorder()
    arrivals = Arrivals()
    batcher = make(run, size=2, delay=30.0, arrivals=arrivals)
    await batcher.submit(rows(0), 5)
    with the_only_request():  # its last row waits in the queue for the request on its way
        assert await waits_for_the_request_on_its_way(batcher, arrivals, rows(1, 2, 3)) == [2.0, 4.0, 6.0]
    assert [b.ravel().tolist() for b in run.batches[1:]] == [[1, 2], [3]]
    await batcher.stop()


class Instance:
    """One instance's run function: records which rows it ran; a row of 99 blocks it until released."""

    def __init__(self, index: int, log: list[tuple[int, list[float]]]) -> None:
        self.index = index
        self.log = log
        self.blocked = threading.Event()
        self.release = threading.Event()

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        if (x == 99).any():
            self.blocked.set()
            self.release.wait(5)
        self.log.append((self.index, x.ravel().tolist()))
        if (x == -1).any():
            raise RuntimeError("row with -1 is poison")
        return {"y": x * 2}


async def blocked_instance(instances: list[Instance]) -> Instance:
    """The instance that took the blocking batch (whichever worker formed it), polled with a deadline."""
    deadline = time.monotonic() + 5
    while not any(i.blocked.is_set() for i in instances) and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
    (blocked,) = [i for i in instances if i.blocked.is_set()]
    return blocked


@pytest.mark.parametrize("enabled", [True, False])
async def test_a_blocked_instance_does_not_hold_back_the_next_batch(enabled):
    log: list[tuple[int, list[float]]] = []
    instances = [Instance(0, log), Instance(1, log)]
    batcher = make(instances, size=4, enabled=enabled)
    slow = asyncio.create_task(batcher.submit(rows(99), 5))
    blocked = await blocked_instance(instances)
    # The first instance is stuck in its run; the other serves the next requests meanwhile.
    fast = await asyncio.wait_for(batcher.submit(rows(1, 2), 5), 5)
    assert fast.outputs["y"].ravel().tolist() == [2, 4]
    assert not slow.done() and log == [(1 - blocked.index, [1, 2])]
    loads = batcher.instances
    assert loads[blocked.index].running == 1 and loads[1 - blocked.index].running == 0
    blocked.release.set()
    assert (await slow).outputs["y"].ravel().tolist() == [198]
    assert [load.batches for load in batcher.instances] == [1, 1]
    await batcher.stop()


async def test_a_failing_instance_fails_only_its_batch_while_the_other_serves():
    log: list[tuple[int, list[float]]] = []
    instances = [Instance(0, log), Instance(1, log)]
    batcher = make(instances, size=1)
    slow = asyncio.create_task(batcher.submit({"x": np.array([[99.0], [-1.0]], np.float32)}, 5))
    blocked = await blocked_instance(instances)
    # The blocked instance holds row 99; the poison row after it goes to the other instance and fails the request.
    with pytest.raises(InferenceFailed, match="row with -1 is poison"):
        await slow
    assert (await batcher.submit(rows(3), 5)).outputs["y"].ravel().tolist() == [6]
    blocked.release.set()
    await batcher.stop()
    assert (blocked.index, [99.0]) in log


async def test_stop_drains_every_instance():
    log: list[tuple[int, list[float]]] = []
    instances = [Instance(0, log), Instance(1, log)]
    batcher = make(instances, size=1)
    slow = asyncio.create_task(batcher.submit(rows(99), 5))
    blocked = await blocked_instance(instances)
    queued = [asyncio.create_task(batcher.submit(rows(i), 5)) for i in range(4)]
    await asyncio.sleep(0)
    stopping = asyncio.create_task(batcher.stop())
    done = await asyncio.gather(*queued)  # the free instance drains the queue while the other is still blocked
    assert [r.outputs["y"].item() for r in done] == [0, 2, 4, 6] and not stopping.done()
    blocked.release.set()
    await stopping
    assert (await slow).outputs["y"].item() == 198


async def test_two_idle_instances_do_not_split_one_batch():
    log: list[tuple[int, list[float]]] = []
    arrivals = Arrivals()
    batcher = make([Instance(0, log), Instance(1, log)], size=8, delay=0.5, arrivals=arrivals)

    async def late(value: float, after: float):
        with arrivals.coming():
            await asyncio.sleep(after)
            return await batcher.submit(rows(value), 5)

    # While one worker holds rows open for those on their way, the other idle worker must not take them.
    await asyncio.gather(late(0, 0.0), late(1, 0.02), late(2, 0.04))
    assert [rows_run for _, rows_run in log] == [[0, 1, 2]]
    await batcher.stop()


def test_a_batcher_needs_an_instance():
    with pytest.raises(ValueError, match="has no instance"):
        Batcher([], BatchPolicy(4, 0.0, 16), name="model 'm' version 1")
