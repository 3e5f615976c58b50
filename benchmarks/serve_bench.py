"""Benchmark the running service against its own ceilings, all measured in one run.

For each model it prints, per concurrency level: throughput, p50/p99 latency and the mean batch size
(read from /metrics), for the service with dynamic batching and with batching switched off by settings
(`AXON_BATCHING_ENABLED=false`, one session.run per request). Next to them, two in-process references on
the same inputs: bare `session.run` latency at batch 1 and the batched ONNX Runtime throughput (the ceiling).
With `--v2` it also compares the V2 protocol's JSON and binary tensor encodings on a large tensor.

    python benchmarks/serve_bench.py                       # mnist-cnn and sms-spam-transformer
    python benchmarks/serve_bench.py --concurrency 1 64 --duration 10 --v2

Run it on an otherwise idle machine; the client shares the CPUs with the server.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import LoadResult, Request, run_load

from modelrepo.config import read_config
from modelrepo.layout import MODEL_FILE
from service.batcher import collate, length_groups
from service.runtime import SessionFactory
from service.settings import Settings
from service.tasks import build_codec
from training.data.images import load_mnist_pool
from training.data.paths import default_datasets_dir
from training.data.text import load_sms_spam

ROOT = Path(__file__).resolve().parent.parent
DATASETS = default_datasets_dir()
JSON_HEADERS = {"content-type": "application/json"}


# --- real inputs ------------------------------------------------------------------------------------


def mnist_pngs(n: int) -> list[bytes]:
    """The first n MNIST pool digits, PNG-encoded as a client would send them."""
    images, _ = load_mnist_pool(DATASETS / "mnist_test10k")
    out = []
    for img in images[:n]:
        buf = io.BytesIO()
        Image.fromarray(img, mode="L").save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def sms_texts(n: int) -> list[str]:
    """The first n messages of the SMS Spam pool."""
    texts, _ = load_sms_spam(DATASETS / "sms_spam" / "SMSSpamCollection.tsv")
    return texts[:n]


def task_requests(model: str, task: str, n: int) -> tuple[list[Request], list]:
    """One-item requests for a model's task endpoint, and the raw items for in-process references."""
    if task == "vision":
        items = mnist_pngs(n)
        bodies = [{"images": [base64.b64encode(p).decode()], "model": model} for p in items]
        path = "/v1/vision/classify"
    elif task == "text":
        items = sms_texts(n)
        bodies = [{"texts": [t], "model": model} for t in items]
        path = "/v1/text/classify"
    else:
        raise SystemExit(f"no benchmark inputs for task {task!r}")
    return [Request(path, json.dumps(b).encode(), JSON_HEADERS) for b in bodies], items


# --- in-process references ------------------------------------------------------------------------


def serving_codec(model_dir: Path, settings: Settings) -> tuple[Any, Path]:
    """The newest version's folder and the codec the service builds for it (its snapshot config over the top one)."""
    top = read_config(model_dir / "config.json")
    version = max(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
    vdir = model_dir / str(version)
    snapshot = vdir / "config.json"
    config = read_config(snapshot).serving_view(top) if snapshot.exists() else top
    return build_codec(config, vdir, settings.limits), vdir


def service_batches(codec: Any, items: list, batch_size: int, settings: Settings) -> tuple[list[dict], list[dict]]:
    """Batches as the service forms them: `batch_size` requests' rows, grouped by length (text) and padded per
    group; and the same requests padded into one run each (for text), for comparison."""
    pads = getattr(codec, "pad_values", {})
    chunks = [[codec.encode([item]) for item in items[i : i + batch_size]] for i in range(0, len(items), batch_size)]
    grouped, padded = [], []
    for chunk in chunks:
        lengths = [max((x[n].shape[1] for n in pads), default=0) for x in chunk]
        ratio = settings.max_pad_ratio if pads else 0
        grouped += [collate([chunk[i] for i in g], pads) for g in length_groups(lengths, ratio)]
        padded.append(collate(chunk, pads))
    return grouped, padded


def in_process(model_dir: Path, items: list, batch_size: int, settings: Settings) -> dict[str, float]:
    """Bare session.run p50 at batch 1 and batched ORT throughput on the same pre-processed inputs."""
    codec, vdir = serving_codec(model_dir, settings)
    session = SessionFactory(settings).create(vdir / MODEL_FILE)
    names = [o.name for o in session.get_outputs()]

    singles = [codec.encode([item]) for item in items[:200]]
    for x in singles[:20]:
        session.run(names, x)
    lat = []
    for x in singles:
        t0 = time.perf_counter()
        session.run(names, x)
        lat.append(time.perf_counter() - t0)

    pads = getattr(codec, "pad_values", {})
    grouped, padded = service_batches(codec, items, batch_size, settings)

    def items_per_second(batches: list[dict]) -> float:
        session.run(names, batches[0])
        t0 = time.perf_counter()
        rounds = 0
        while time.perf_counter() - t0 < 3.0:
            for b in batches:
                session.run(names, b)
            rounds += 1
        return rounds * len(items) / (time.perf_counter() - t0)

    return {
        "p50_ms": 1000 * statistics.median(lat),
        "ceiling": items_per_second(grouped),
        "ceiling_one_run": items_per_second(padded) if pads else float("nan"),
    }


# --- the service ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m service` in a subprocess, ready when /v2/health/ready says so."""

    def __init__(self, repository: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {
            **os.environ,
            "AXON_PORT": str(self.port),
            "AXON_MODEL_REPOSITORY": str(repository),
            "AXON_ACCESS_LOG": "false",
            "AXON_LOG_LEVEL": "warning",
            **env,
        }
        self.proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT, env=full_env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise SystemExit(f"the service exited with {self.proc.returncode}")
            time.sleep(0.2)
        self.stop()
        raise SystemExit("the service did not become ready in 120 s")

    def batch_stats(self, model: str) -> tuple[float, float]:
        """(sum, count) of the model's batch-size histogram."""
        text = httpx.get(f"{self.url}/metrics").text
        values = {}
        for kind in ("sum", "count"):
            pattern = rf'^axon_batch_size_{kind}\{{[^}}]*model="{re.escape(model)}"[^}}]*\}} (\S+)$'
            values[kind] = sum(float(m) for m in re.findall(pattern, text, flags=re.M))
        return values["sum"], values["count"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def measure(
    server: Server, model: str, requests: list[Request], concurrency: int, duration: float, processes: int
) -> tuple[LoadResult, float]:
    """One load run; returns the result and the mean batch size the server reported over it."""
    s0, c0 = server.batch_stats(model)
    result = run_load(server.url, requests, concurrency=concurrency, duration_s=duration, processes=processes)
    s1, c1 = server.batch_stats(model)
    return result, (s1 - s0) / (c1 - c0) if c1 > c0 else float("nan")


# --- V2: JSON vs binary -----------------------------------------------------------------------------


def v2_requests(
    model: str, images: list[bytes], codec_settings: Settings, model_dir: Path, batch: int
) -> dict[str, Request]:
    """The same V2 inference (a batch of pre-processed images) encoded as JSON and as binary tensors."""
    import tritonclient.http as tc

    top = read_config(model_dir / "config.json")
    version = max(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
    codec = build_codec(top, model_dir / str(version), codec_settings.limits)
    x = codec.encode(images[:batch])
    name, array = next(iter(x.items()))
    out = {}
    for kind, binary in (("json", False), ("binary", True)):
        inp = tc.InferInput(name, list(array.shape), "FP32")
        inp.set_data_from_numpy(array, binary_data=binary)
        outputs = [tc.InferRequestedOutput(top.outputs[0].name, binary_data=binary)]
        body, json_size = tc.InferenceServerClient.generate_request_body([inp], outputs=outputs)
        headers = dict(JSON_HEADERS)
        if json_size is not None:
            headers = {"content-type": "application/octet-stream", "Inference-Header-Content-Length": str(json_size)}
        out[kind] = Request(f"/v2/models/{model}/infer", body, headers)
    return out


# --- main -------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=ROOT / "models")
    parser.add_argument("--models", nargs="+", default=["mnist-cnn", "sms-spam-transformer"])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 64])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--items", type=int, default=512, help="distinct real inputs cycled through")
    parser.add_argument("--client-processes", type=int, default=2, help="load-generator processes at concurrency > 8")
    parser.add_argument("--providers", default="CPUExecutionProvider", help="AXON_PROVIDERS for the service")
    parser.add_argument("--no-unbatched", action="store_true", help="skip the batching-off reference")
    parser.add_argument("--v2", action="store_true", help="also compare V2 JSON and binary tensor encodings")
    parser.add_argument("--v2-batch", type=int, default=64)
    args = parser.parse_args()

    settings = Settings(providers=args.providers.split(","))
    plans = {}
    for model in args.models:
        config = read_config(args.repository / model / "config.json")
        requests, items = task_requests(model, config.task, args.items)
        ref = in_process(args.repository / model, items, config.max_batch_size, settings)
        plans[model] = (requests, ref)
        one_run = (
            ""
            if ref["ceiling_one_run"] != ref["ceiling_one_run"]
            else (f" (one run padded to the batch's longest: {ref['ceiling_one_run']:.0f} items/s)")
        )
        print(
            f"{model}: bare session.run p50 {ref['p50_ms']:.3f} ms at batch 1; in-process ORT ceiling "
            f"{ref['ceiling']:.0f} items/s at batch {config.max_batch_size}{one_run}",
            flush=True,
        )

    modes = [("batched", {"AXON_BATCHING_ENABLED": "true"})]
    if not args.no_unbatched:
        modes.append(("unbatched", {"AXON_BATCHING_ENABLED": "false"}))
    rows = []
    v2_rows = []
    for mode, env in modes:
        server = Server(args.repository, {"AXON_PROVIDERS": args.providers, **env})
        try:
            for model, (requests, ref) in plans.items():
                for c in args.concurrency:
                    procs = args.client_processes if c > 8 else 1
                    result, mean_batch = measure(server, model, requests, c, args.duration, procs)
                    rows.append((model, mode, c, result, mean_batch, ref))
                    print(
                        f"  {model:<24} {mode:<9} c={c:<3} {result.throughput:8.0f} items/s  "
                        f"p50 {result.p50_ms:7.2f} ms  p99 {result.percentile(99):7.2f} ms  "
                        f"batch {mean_batch:5.1f}  errors {result.errors}",
                        flush=True,
                    )
            if args.v2 and mode == "batched":
                model = "mnist-cnn"
                reqs = v2_requests(model, mnist_pngs(args.v2_batch), settings, args.repository / model, args.v2_batch)
                for kind, req in reqs.items():
                    result = run_load(
                        server.url, [req], concurrency=4, duration_s=args.duration, items_per_request=args.v2_batch
                    )
                    v2_rows.append((kind, len(req.body), result))
        finally:
            server.stop()

    print("\n| model | mode | concurrency | items/s | p50 ms | p99 ms | mean batch | vs unbatched | vs ceiling |")
    print("|---|---|---|---|---|---|---|---|---|")
    unbatched = {(m, c): r.throughput for m, mode, c, r, _, _ in rows if mode == "unbatched"}
    for model, mode, c, r, mean_batch, ref in rows:
        base = unbatched.get((model, c))
        vs_unbatched = f"{r.throughput / base:.2f}x" if base else "-"
        print(
            f"| {model} | {mode} | {c} | {r.throughput:.0f} | {r.p50_ms:.2f} | {r.percentile(99):.2f} | "
            f"{mean_batch:.1f} | {vs_unbatched} | {100 * r.throughput / ref['ceiling']:.0f}% |"
        )
    for model, (_, ref) in plans.items():
        c1 = [r for m, mode, c, r, _, _ in rows if m == model and mode == "batched" and c == 1]
        if c1:
            print(
                f"{model}: p50 at concurrency 1 is {c1[0].p50_ms:.2f} ms vs bare session.run "
                f"{ref['p50_ms']:.3f} ms (+{c1[0].p50_ms - ref['p50_ms']:.2f} ms)"
            )
    if v2_rows:
        print(f"\nV2 infer, mnist-cnn, {args.v2_batch} images per request, concurrency 4:")
        print("| encoding | request bytes | requests/s | images/s | p50 ms |")
        print("|---|---|---|---|---|")
        for kind, size, r in v2_rows:
            print(f"| {kind} | {size} | {len(r.latencies_s) / r.elapsed_s:.1f} | {r.throughput:.0f} | {r.p50_ms:.2f} |")


if __name__ == "__main__":
    main()
