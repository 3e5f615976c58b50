"""The least a Python server can do for issue 14's SMS goal: a reference, not a service.

A bare ASGI app on uvicorn + httptools + uvloop with a no-wait batcher, doing exactly the in-process
ceiling's work (`peers.py ceilings`: one `encode_batch_fast` per batch, one ONNX Runtime run per length group,
one thread) and nothing else Axon does: no limits, admission, validation, request ids, metrics, disconnect
handling or error bodies. `peers.py table --systems axon-text,least-text` runs it beside Axon in the same
rounds, so the SMS goal's ratio can be read against what any Python server on this stack reaches, as
`floor_app.py` does for HTTP alone.

The model folder is `LEAST_TEXT_MODEL` (default: the repository's `sms-spam-transformer`, the goal row's model).
"""

from __future__ import annotations

import asyncio
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson
from tokenizers import Tokenizer

MODEL = Path(os.environ.get("LEAST_TEXT_MODEL", Path(__file__).resolve().parent.parent / "models/sms-spam-transformer"))
MAX_BATCH = 64

config = json.loads((MODEL / "config.json").read_text())
version = max((d for d in MODEL.iterdir() if d.name.isdigit()), key=lambda d: int(d.name))
options = ort.SessionOptions()
options.intra_op_num_threads = options.inter_op_num_threads = 1
options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
session = ort.InferenceSession(str(version / "model.onnx"), options, providers=["CPUExecutionProvider"])
tokenizer = Tokenizer.from_file(str(version / config["preprocessing"]["tokenizer"]))
tokenizer.enable_truncation(config["preprocessing"]["max_length"])
lowercase = bool(config["preprocessing"].get("lowercase"))
names = [t["name"] for t in config["inputs"]]
labels = config["labels"]
pool = ThreadPoolExecutor(1)  # ONNX Runtime off the loop, as Axon's batcher runs it
waiting: list[tuple[str, asyncio.Future[dict[str, Any]]]] = []
draining = False


def logits_of(texts: list[str]) -> np.ndarray:
    """The ceiling's step: every text in one tokenizer call, one run per length group."""
    encodings = tokenizer.encode_batch_fast([t.lower() for t in texts] if lowercase else texts)
    ids = [e.ids for e in encodings]
    lengths = np.fromiter(map(len, ids), np.int64, len(ids))
    out = np.empty((len(texts), len(labels)), np.float32)
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        array = np.asarray([ids[i] for i in rows], dtype=np.int64)
        fill = {"attention_mask": np.ones_like(array), "token_type_ids": np.zeros_like(array)}
        out[rows] = session.run(None, {n: fill.get(n, array) for n in names})[0]
    return out


async def drain() -> None:
    """Run what waits, up to MAX_BATCH texts at a time, until nothing does (no waiting for more)."""
    global draining, waiting
    loop = asyncio.get_running_loop()
    try:
        while waiting:
            batch, waiting = waiting[:MAX_BATCH], waiting[MAX_BATCH:]
            logits = await loop.run_in_executor(pool, logits_of, [text for text, _ in batch])
            exp = np.exp(logits - logits.max(axis=1, keepdims=True))
            for (_, future), row in zip(batch, (exp / exp.sum(axis=1, keepdims=True)).tolist()):
                best = int(np.argmax(row))
                future.set_result({"label": labels[best], "score": row[best], "scores": dict(zip(labels, row))})
    finally:
        draining = False


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global draining
    if scope["type"] != "http":  # lifespan: nothing to start
        return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["method"] == "GET":  # the harness's health check
        answer = b'{"status":"ok"}'
    else:
        request = orjson.loads(body)
        future = asyncio.get_running_loop().create_future()
        waiting.append((request["texts"][0], future))
        if not draining:
            draining = True
            asyncio.get_running_loop().create_task(drain())
        answer = orjson.dumps({"model": request["model"], "version": int(version.name), "predictions": [await future]})
    head = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": 200, "headers": head})
    await send({"type": "http.response.body", "body": answer})
