"""Axon beside Triton (PyTriton) and a 100-line FastAPI batcher, through the neutral harness `../shared/bench`.

Reproduces issue 14's table and checks each of its goals, with the in-process ceiling beside every row:

- cnn_small over V2 binary and V2 JSON, PyTriton and the FastAPI batcher at c=1,8,32,64;
- the vision task endpoint (`mnist-cnn`, one PNG per multipart request), PNG decoding included;
- c=1 p50 of V2 binary against a bare `session.run` of batch 1 (the harness's in-process run);
- resnet_mid over V2 binary (and PyTriton) against the in-process batch-64 ceiling;
- the SMS text endpoint (one text per request, the model named in the body: `sms-spam-transformer`) against
  an in-process, length-grouped ceiling (`encode_batch` of 64 texts, one run per length group), measured by
  `peers.py ceilings`; and the same for `sms-spam-minilm` (`axon-text-minilm`) when the default repository
  has that model (a printed line says when it is skipped);
- beside the SMS row, `least-text`: `least_text_app.py`, the least a Python server on uvicorn can do for that
  goal (the ceiling's own tokenizing and runs behind a no-wait batcher, nothing else), against the same ceiling.

Rounds are interleaved (every system once per round, then the in-process ceilings) and the goal table uses
the median of the rounds for both.
One-time setup (a few minutes; the harness must live in a writable folder):

    B=/tmp/axon-bench && mkdir -p $B && cp -r ../shared/bench $B/ && cd $B/bench
    apt-get update && apt-get install -y wrk
    ./install_peers.sh models fastapi pytriton
    .venvs/models/bin/python make_models.py
    .venvs/models/bin/python peers/axon/make_repo.py $B/repo

Then, from the repository root (the lead's final run: 3 rounds of 15 s levels on a quiet machine):

    python benchmarks/peers.py table --bench /tmp/axon-bench/bench --repo /tmp/axon-bench/repo --rounds 3

`--duration 5 --rounds 1 --concurrency 1,64 --harness-args "--retries 0 --wait-quiet 5"` gives a quick
look. The machine's speed drifts between minutes and other work on the cores shows in the harness's
`other_cpu_cores` column (printed per row): compare only ratios within one run.

    python benchmarks/peers.py profile --bench ... --repo ... --system axon-v2-binary

records py-spy (on PyPI) on the server at c=64 and prints the harness's per-component summary.

    python benchmarks/peers.py floor --bench ...

measures the HTTP floor under every goal: a bare ASGI app (`floor_app.py`) on uvicorn + httptools + uvloop,
on the server core, that reads each benchmark body and answers 40 fixed bytes (server CPU per request).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CNN = ",".join(
    [
        "axon-v2-binary",
        "pytriton",
        "axon-v2-json",
        "fastapi-batch-nowait",
        "axon-vision-multipart",
        "axon-text",
        "least-text",
        "axon-text-minilm",
    ]
)
HEAVY = "axon-v2-binary,pytriton"  # resnet_mid: compute-bound, the ceiling is ORT's batched speed
SMS = "Congratulations! You have won a 1000 pound prize. Call 09061701461 now to claim, T&C apply"


DEFAULT_REPO = ROOT / "models"
# Text systems on the default repository: system -> (port, model). Each body names its model, so the figures
# stay the same model's whichever the default text model is.
TEXT_SYSTEMS = {"axon-text": (8462, "sms-spam-transformer"), "axon-text-minilm": (8463, "sms-spam-minilm")}
LEAST_TEXT, LEAST_TEXT_PORT = "least-text", 8464


def _text_models(repo: Path = DEFAULT_REPO) -> dict[str, str]:
    """The text systems whose model the repository has (system -> model); a line for each one skipped."""
    present = {}
    for system, (_, model) in TEXT_SYSTEMS.items():
        if (repo / model / "config.json").is_file():
            present[system] = model
        else:
            print(f"{system}: skipped, the repository {repo} has no model '{model}'", flush=True)
    return present


def _axon_systems(run_axon: Any, bench: Path) -> dict[str, dict[str, Any]]:
    """Systems the harness does not define: the SMS text endpoint per text model on the default repository, and
    `least-text`, the least a Python server does for the SMS goal (`least_text_app.py`) with the same body."""
    systems = {}
    for system, model in _text_models().items():
        body = f"axon_text_{model}.json"
        (bench / "bodies" / body).write_text(json.dumps({"texts": [SMS], "model": model}))
        port = TEXT_SYSTEMS[system][0]
        systems[system] = run_axon.axon(port, body, url="/v1/text/classify", repo="default")
    if "axon-text" in systems:
        body = systems["axon-text"]["body"]
        systems[LEAST_TEXT] = run_axon.axon(LEAST_TEXT_PORT, body, url="/", health="/health", repo="default")
    return systems


def _least_text_command(python: str, cmd: list[str]) -> list[str]:
    """The harness's server command for an Axon system, serving `least_text_app.py` instead of `-m service`."""
    at = cmd.index("--cmd") + 1
    uvicorn = f"-m uvicorn least_text_app:app --app-dir {shlex.quote(str(ROOT / 'benchmarks'))}"
    options = "--loop uvloop --http httptools --no-access-log --log-level warning"
    return [*cmd[:at], f"exec {shlex.quote(python)} {uvicorn} --port {LEAST_TEXT_PORT} {options}", *cmd[at + 1 :]]


def _load_run_axon(a: argparse.Namespace) -> Any:
    os.environ.update(AXON_PY=a.python, AXON_REPO=a.repo, AXON_CWD=str(ROOT), AXON_DEFAULT_REPO=str(DEFAULT_REPO))
    sys.path.insert(0, os.path.join(a.bench, "peers", "axon"))
    import run_axon

    run_axon.SYSTEMS.update(_axon_systems(run_axon, Path(a.bench)))
    return run_axon


def table(a: argparse.Namespace) -> int:
    """Interleaved rounds of every system, the in-process ceilings, then the goal table and per-level medians."""
    run_axon = _load_run_axon(a)
    out = Path(a.bench) / "results" / f"axon-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True)
    plan = [(system, "cnn_small") for system in a.systems.split(",") if system in run_axon.SYSTEMS]
    plan += [(system, "resnet_mid") for system in a.heavy.split(",") if system]
    for r in range(1, a.rounds + 1):
        for system, model in plan:
            args = argparse.Namespace(
                model=model,
                suffix=f"-rep{r}",
                concurrency=a.concurrency,
                duration=str(a.duration),
                warmup=str(a.warmup),
                out=str(out),
            )
            name, cmd = run_axon.build(system, run_axon.SYSTEMS[system], args)
            if system == LEAST_TEXT:
                cmd = _least_text_command(a.python, cmd)
            cmd += shlex.split(a.harness_args)
            print(f"=== round {r}: {name}", flush=True)
            subprocess.run(cmd, cwd=a.bench, check=False)
        # The ceilings are measured in every round too, so the machine's drift over the run (a few percent
        # between minutes on this VM) moves a goal's figure and its ceiling alike; the goals use medians.
        _ceilings_round(a, out, r)
    runs = _read_runs(out)
    print(_goals(runs, _read_ceilings(out)))
    print(_medians(runs))
    print(f"raw results: {out}")
    return 0


def _ceilings_round(a: argparse.Namespace, out: Path, r: int) -> None:
    """One round of the in-process ceilings: the harness's session.run at batch 1 and 64, then the task endpoints'."""
    print(f"=== round {r}: in-process ceilings", flush=True)
    for model in ("cnn_small", "resnet_mid"):
        harness = [f"{a.bench}/.venvs/models/bin/python", "run_bench.py", "inproc", "--model", model]
        subprocess.run([*harness, "--batch", "1,64", "--duration", str(a.duration), "--out", str(out)], cwd=a.bench)
    ceilings = [a.python, str(Path(__file__).resolve()), "ceilings", "--duration", str(a.duration)]
    target = out / f"ceilings-axon-rep{r}.json"
    subprocess.run(["taskset", "-c", "1", *ceilings, "--out", str(target)], cwd=ROOT, check=False)


def _read_ceilings(out: Path) -> dict[str, float]:
    """The median over the rounds of each task-endpoint ceiling."""
    rounds = [json.loads(p.read_text()) for p in sorted(out.glob("ceilings-axon*.json"))]
    keys = {k for r in rounds for k in r}
    return {k: statistics.median(r[k] for r in rounds if k in r) for k in keys}


def _read_runs(out: Path) -> list[dict[str, Any]]:
    runs = []
    for path in sorted(out.glob("*.json")):
        if path.name.startswith("ceilings-axon"):
            continue
        try:
            runs.append(json.loads(path.read_text()))
        except ValueError:
            continue
    return runs


def _levels(runs: list[dict[str, Any]]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """Every round's level of each system (name without the round suffix) and concurrency."""
    rows: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for run in runs:
        if run.get("kind") == "inproc" or "levels" not in run:
            continue
        name = run.get("name", "").rsplit("-rep", 1)[0]
        for level in run["levels"]:
            rows.setdefault((name, level["concurrency"]), []).append(level)
    return rows


def _median(levels: list[dict[str, Any]], key: str) -> float:
    return statistics.median(level[key] for level in levels)


def _best(rows: dict[tuple[str, int], list[dict[str, Any]]], name: str) -> float:
    """The best level's median req/s of a system (0 when it did not run)."""
    return max((_median(levels, "req_s") for (n, _), levels in rows.items() if n == name), default=0.0)


def _inproc(runs: list[dict[str, Any]], model: str, batch: int, key: str) -> float:
    """The median over the rounds of the harness's in-process figure (0 when it did not run)."""
    found = [
        float(row[key])
        for run in runs
        if run.get("kind") == "inproc" and run.get("model") == model
        for row in run["batches"]
        if row["batch"] == batch
    ]
    return statistics.median(found) if found else 0.0


def _goals(runs: list[dict[str, Any]], ceilings: dict[str, float]) -> str:
    """Issue 14's goals, each with its figure, its reference, the ratio and the in-process ceiling."""
    rows = _levels(runs)
    triton = _best(rows, "pytriton-cnn_small")
    cnn64 = _inproc(runs, "cnn_small", 64, "items_s")
    bare_p50 = _inproc(runs, "cnn_small", 1, "p50_ms")
    c1 = rows.get(("axon-v2-binary-cnn_small", 1))
    c1_p50 = _median(c1, "p50_ms") if c1 else 0.0

    def ratio(x: float, y: float) -> str:
        return f"{x / y:.2f}x" if y else "-"

    goals = [
        (
            "cnn_small V2 binary, best level",
            _best(rows, "axon-v2-binary-cnn_small"),
            f"Triton {triton:,.0f}",
            ratio(_best(rows, "axon-v2-binary-cnn_small"), triton),
            ">= 2x",
            f"{cnn64:,.0f}/s (batch 64)",
        ),
        (
            "cnn_small V2 JSON, best level",
            _best(rows, "axon-v2-json-cnn_small"),
            f"Triton {triton:,.0f}",
            ratio(_best(rows, "axon-v2-json-cnn_small"), triton),
            ">= 1.5x",
            f"{cnn64:,.0f}/s (batch 64)",
        ),
        (
            "mnist-cnn task endpoint, one PNG multipart",
            _best(rows, "axon-vision-multipart"),
            f"Triton {triton:,.0f}",
            ratio(_best(rows, "axon-vision-multipart"), triton),
            ">= 1x",
            f"{ceilings.get('mnist_png_b64', 0):,.0f}/s (PNG decode + batch 64)",
        ),
        (
            "resnet_mid V2 binary, best level",
            _best(rows, "axon-v2-binary-resnet_mid"),
            f"in-process {_inproc(runs, 'resnet_mid', 64, 'items_s'):,.0f}",
            ratio(_best(rows, "axon-v2-binary-resnet_mid"), _inproc(runs, "resnet_mid", 64, "items_s")),
            ">= 0.9x",
            f"{_inproc(runs, 'resnet_mid', 64, 'items_s'):,.0f}/s (batch 64)",
        ),
    ]

    def text(goal: str, system: str, ceiling: str, target: str) -> tuple[str, float, str, str, str, str]:
        """A text row at c=64 against its length-grouped ceiling (0 when the system did not run)."""
        levels = rows.get((system, 64))
        rps, top = _median(levels, "req_s") if levels else 0.0, ceilings.get(ceiling, 0)
        return (
            goal,
            rps,
            f"in-process {top:,.0f}",
            ratio(rps, top),
            target,
            f"{top:,.0f}/s (encode_batch + length groups, 64)",
        )

    goals.append(text("SMS text endpoint, c=64", "axon-text", "sms_grouped_b64", ">= 0.75x"))
    # Beside the goal, not goals: the least server on the same ceiling, and the default model's own ratio.
    if (LEAST_TEXT, 64) in rows:
        goals.append(
            text("least Python server for the SMS goal (least_text_app.py), c=64", LEAST_TEXT, "sms_grouped_b64", "-")
        )
    if ("axon-text-minilm", 64) in rows:
        goals.append(
            text("SMS text endpoint, sms-spam-minilm, c=64", "axon-text-minilm", "sms-spam-minilm_grouped_b64", "-")
        )
    lines = ["| goal | Axon req/s | reference | ratio | target | in-process ceiling |", "|---|---:|---:|---:|---:|---|"]
    lines += [f"| {g} | {v:,.0f} | {ref} | {r} | {t} | {c} |" for g, v, ref, r, t, c in goals]
    lines.append(
        f"| cnn_small V2 binary c=1 p50 | {c1_p50:.3f} ms | bare session.run {bare_p50:.3f} ms | "
        f"+{c1_p50 - bare_p50:.3f} ms | <= +0.3 ms | {_inproc(runs, 'cnn_small', 1, 'items_s'):,.0f}/s (batch 1) |"
    )
    return "\n".join(lines) + "\n"


def _medians(runs: list[dict[str, Any]]) -> str:
    """Median req/s, p50 and server CPU per request for each system and level, with the other CPU seen."""
    lines = [
        "| system | c | median req/s | p50 ms | server us/req | other cores (max) | rounds |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (name, c), levels in sorted(_levels(runs).items()):
        cpu = _median(levels, "server_cpu_cores") / max(1.0, _median(levels, "req_s")) * 1e6
        other = max(level.get("other_cpu_cores", 0) for level in levels)
        lines.append(
            f"| {name} | {c} | {_median(levels, 'req_s'):,.0f} | {_median(levels, 'p50_ms'):.2f} | "
            f"{cpu:.0f} | {other:.2f} | {len(levels)} |"
        )
    return "\n".join(lines) + "\n"


def ceilings(a: argparse.Namespace) -> int:
    """In-process ceilings of the task endpoints (run on the server core with Axon's Python, one ORT thread)."""
    import io

    import numpy as np
    import onnxruntime as ort
    from PIL import Image
    from tokenizers import Tokenizer

    def session(path: Path) -> ort.InferenceSession:
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def rate(step: Any, items: int) -> float:
        for _ in range(5):
            step()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < a.duration:
            step()
            n += items
        return n / (time.perf_counter() - t0)

    models = ROOT / "models"
    vision = session(models / "mnist-cnn" / "1" / "model.onnx")
    buf = io.BytesIO()
    Image.fromarray((np.arange(784) % 256).astype(np.uint8).reshape(28, 28)).save(buf, "PNG")
    png = buf.getvalue()

    def vision_step() -> None:
        images = [np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32) for _ in range(64)]
        x = ((np.stack(images) / 255.0 - 0.1325) / 0.3104).astype(np.float32)[:, None]
        vision.run(None, {"image": x})

    def text_step(model: str) -> Any:
        config = json.loads((models / model / "config.json").read_text())
        version = max((d for d in (models / model).iterdir() if d.name.isdigit()), key=lambda d: int(d.name))
        text = session(version / "model.onnx")
        tokenizer = Tokenizer.from_file(str(version / config["preprocessing"]["tokenizer"]))
        tokenizer.enable_truncation(config["preprocessing"]["max_length"])
        texts = [SMS.lower() if config["preprocessing"].get("lowercase") else SMS] * 64
        names = [t["name"] for t in config["inputs"]]

        def step() -> None:
            encodings = tokenizer.encode_batch_fast(texts)  # the service's own call (TextCodec.encode_rows)
            by_length: dict[int, list[list[int]]] = {}
            for e in encodings:
                by_length.setdefault(len(e.ids), []).append(e.ids)
            for ids in by_length.values():
                array = np.asarray(ids, dtype=np.int64)
                fill = {"attention_mask": np.ones_like(array), "token_type_ids": np.zeros_like(array)}
                text.run(None, {n: fill.get(n, array) for n in names})

        return step

    result = {"mnist_png_b64": rate(vision_step, 64)}
    for model in _text_models(models).values():
        result[f"{model}_grouped_b64"] = rate(text_step(model), 64)
    result["sms_grouped_b64"] = result.get("sms-spam-transformer_grouped_b64", 0.0)  # the goal row's key
    Path(a.out).write_text(json.dumps(result))
    print(json.dumps(result))
    return 0


def profile(a: argparse.Namespace) -> int:
    """Start the system's server on core 1, load it at c=64 with wrk on core 0, record py-spy, summarise."""
    run_axon = _load_run_axon(a)
    if a.system not in run_axon.SYSTEMS:
        print(f"no system {a.system!r} to profile (known: {', '.join(run_axon.SYSTEMS)})")
        return 2
    spec = run_axon.SYSTEMS[a.system]
    port = spec["port"]
    repo = str(ROOT / "models") if spec.get("repo") == "default" else a.repo
    env = {**os.environ, **run_axon.AXON_ENV, "AXON_PORT": str(port), "AXON_MODEL_REPOSITORY": repo, **spec["env"]}
    server = subprocess.Popen(
        ["taskset", "-c", "1", a.python, "-m", "service"],
        cwd=a.root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base + spec["health"], timeout_s=120)
        body = os.path.join(a.bench, "bodies", spec["body"].format(model=a.model))
        ctype = spec["ctype"] or run_axon._mnist_ctype()
        headers = [f"Content-Type: {ctype}", *spec["headers"](a.model)]
        lua = Path(a.bench) / "results" / f"post-{a.system}.lua"
        lua.write_text(_wrk_script(body, headers))
        url = base + spec["url"].format(model=a.model)
        cpu_before = _cpu_seconds(server.pid)
        threads_before = _thread_cpu(server.pid)
        core_before = _core_ticks(1)
        wrk = ["wrk", "--latency", "-t1", f"-c{a.concurrency}", f"-d{a.duration + 4}s", "-s", str(lua), url]
        load = subprocess.Popen(
            ["taskset", "-c", "0", *wrk],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(2)
        raw = Path(a.bench) / "results" / f"pyspy-{a.system}-{a.tag}.txt"
        if a.no_spy:
            load.wait()
        else:
            _record(a, server.pid, raw)
        report = load.communicate()[0]
        cpu = _cpu_seconds(server.pid) - cpu_before
        threads = _thread_cpu(server.pid)
        core = {k: v - core_before[k] for k, v in _core_ticks(1).items()}
        print(report)
        # Busy threads should account for the whole core; idle here is time the server waited on nothing.
        total = max(1, sum(core.values()))
        print("core 1: " + ", ".join(f"{k} {v / total:.1%}" for k, v in core.items() if v), flush=True)
        requests = re.search(r"(\d+) requests in", report)
        if requests:
            n = int(requests.group(1))
            print(f"server CPU: {cpu:.2f} s for {n} requests = {cpu / max(1, n) * 1e6:.0f} us/request", flush=True)
            for tid, seconds in sorted(threads.items(), key=lambda kv: -kv[1]):
                used = seconds - threads_before.get(tid, 0.0)
                if used > 0.005 * cpu:  # the event loop (the process's own id) and the threads that did work
                    name = "event loop" if tid == server.pid else f"thread {tid}"
                    print(f"  {name}: {used / max(1, n) * 1e6:.0f} us/request", flush=True)
        if not a.no_spy:
            subprocess.run(
                [sys.executable, os.path.join(a.bench, "peers", "axon", "pyspy_summary.py"), str(raw)], check=False
            )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    return 0


# The bodies of the goals (file under bench/bodies, content type, extra headers); `None` is the multipart type.
FLOOR_BODIES = {
    "cnn_small V2 binary": ("cnn_small_v2_binary.bin", "application/octet-stream", "cnn_small"),
    "cnn_small V2 JSON": ("cnn_small_v2.json", "application/json", None),
    "mnist PNG multipart": ("mnist_digit_multipart.bin", None, None),
    "resnet_mid V2 binary": ("resnet_mid_v2_binary.bin", "application/octet-stream", "resnet_mid"),
    "SMS text": ("axon_text_sms-spam-transformer.json", "application/json", None),
}


def floor(a: argparse.Namespace) -> int:
    """Server CPU per request of a bare ASGI app on uvicorn, loaded with each goal's body at one concurrency."""
    bodies = Path(a.bench) / "bodies"
    (bodies / FLOOR_BODIES["SMS text"][0]).write_text(json.dumps({"texts": [SMS], "model": "sms-spam-transformer"}))
    run_axon = _load_run_axon(a)
    port = 8479
    uvicorn = ["uvicorn", "floor_app:app", "--app-dir", str(ROOT / "benchmarks"), "--port", str(port)]
    server = subprocess.Popen(
        ["taskset", "-c", "1", a.python, "-m", *uvicorn, "--loop", "uvloop", "--http", "httptools", "--no-access-log"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    rows = []
    try:
        _wait_until_up(url, data=b"x")
        for goal, (name, ctype, binary) in FLOOR_BODIES.items():
            headers = [f"Content-Type: {ctype or run_axon._mnist_ctype()}"]
            if binary:
                headers.append(f"Inference-Header-Content-Length: {run_axon._bin_header(binary)}")
            lua = Path(a.bench) / "results" / "post-floor.lua"
            lua.parent.mkdir(exist_ok=True)
            lua.write_text(_wrk_script(str(bodies / name), headers))
            wrk = ["taskset", "-c", "0", "wrk", "--latency", "-t1", f"-c{a.concurrency}", "-s", str(lua), url]
            subprocess.run([*wrk, "-d3"], check=True, stdout=subprocess.DEVNULL)  # warm-up
            before = _cpu_seconds(server.pid)
            report = subprocess.run([*wrk, f"-d{a.duration}"], check=True, capture_output=True, text=True)
            cpu = _cpu_seconds(server.pid) - before
            done = re.search(r"(\d+) requests in", report.stdout)
            rate = re.search(r"Requests/sec:\s+([\d.]+)", report.stdout)
            if not done or not rate or "Non-2xx" in report.stdout:
                print(f"{goal}: wrk reported no clean run:\n{report.stdout}")
                return 1
            n = int(done.group(1))
            size = (bodies / name).stat().st_size
            p50 = wrk_ms(report.stdout, "50%")
            rows.append({"goal": goal, "bytes": size, "rps": float(rate.group(1)), "us": cpu / n * 1e6, "p50": p50})
            print(
                f"{goal}: {rows[-1]['rps']:,.0f} req/s, {rows[-1]['us']:.0f} us/request, p50 {p50:.3f} ms", flush=True
            )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    print(f"\n| body (c={a.concurrency}) | bytes | bare ASGI req/s | server us/request | p50 ms |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['goal']} | {r['bytes']:,} | {r['rps']:,.0f} | {r['us']:.0f} | {r['p50']:.3f} |")
    return 0


def wrk_ms(report: str, label: str) -> float:
    """One latency of wrk's `--latency` distribution ("50%", "99%") in milliseconds."""
    found = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", report, re.M)
    if not found:
        raise ValueError(f"wrk printed no {label} latency")
    return float(found.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[found.group(2)]


def _wait_until_up(url: str, data: bytes | None = None, timeout_s: float = 60) -> None:
    """Return once `url` answers 2xx (a POST of `data` when given); raise the last error past `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=1)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _thread_cpu(pid: int) -> dict[int, float]:
    """User + system CPU seconds of each thread of a process so far (threads that ended are left out)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = _cpu_seconds(pid, task=int(task.name))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


CORE_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def _core_ticks(core: int, stat: Path = Path("/proc/stat")) -> dict[str, int]:
    """The kernel's time counters of one core so far (/proc/stat), by kind."""
    for line in stat.read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            return dict(zip(CORE_FIELDS, map(int, line.split()[1:9]), strict=True))
    raise ValueError(f"no core {core} in /proc/stat")


def _cpu_seconds(pid: int, task: int | None = None) -> float:
    """User + system CPU seconds of a process so far (py-spy's pauses stop it, so they add none)."""
    path = f"/proc/{pid}/stat" if task is None else f"/proc/{pid}/task/{task}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _record(a: argparse.Namespace, pid: int, raw: Path) -> None:
    subprocess.run(
        [
            shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--threads",
            "--format",
            "raw",
            "--rate",
            "250",
            "--duration",
            str(a.duration),
            "--pid",
            str(pid),
            "--output",
            str(raw),
        ],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wrk_script(body_path: str, headers: list[str]) -> str:
    body = Path(body_path).read_bytes()
    lines = [
        'wrk.method = "POST"',
        f"local f = io.open({json.dumps(body_path)}, 'rb')",
        "wrk.body = f:read('*a')",
        "f:close()",
    ]
    for h in headers:
        name, _, value = h.partition(":")
        lines.append(f"wrk.headers[{json.dumps(name.strip())}] = {json.dumps(value.strip())}")
    assert body  # an empty body would measure nothing
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("table", "profile"):
        p = sub.add_parser(name)
        p.add_argument("--bench", required=True, help="a writable copy of ../shared/bench, set up as above")
        p.add_argument("--repo", required=True, help="the repository made by peers/axon/make_repo.py")
        p.add_argument("--python", default=sys.executable, help="the Python that runs Axon")
    t = sub.choices["table"]
    t.add_argument("--systems", default=CNN, help="systems run on cnn_small (and the task endpoints)")
    t.add_argument("--heavy", default=HEAVY, help="systems run on resnet_mid")
    t.add_argument("--rounds", type=int, default=3)
    t.add_argument("--concurrency", default="1,8,32,64")
    t.add_argument("--duration", type=int, default=15)
    t.add_argument("--warmup", type=int, default=5)
    t.add_argument(
        "--harness-args", default="", help='extra run_bench.py server options ("--retries 0 --wait-quiet 5")'
    )
    pr = sub.choices["profile"]
    pr.add_argument("--model", default="cnn_small")
    pr.add_argument("--system", default="axon-v2-binary")
    pr.add_argument("--concurrency", type=int, default=64)
    pr.add_argument("--duration", type=int, default=10)
    pr.add_argument("--tag", default="now", help="name of this capture (before/after)")
    pr.add_argument("--no-spy", action="store_true", help="only the load and the server CPU per request, no py-spy")
    pr.add_argument("--root", default=str(ROOT), help="the checkout whose service runs (e.g. an export of main)")
    fl = sub.add_parser("floor", help="the HTTP floor: a bare ASGI app on uvicorn loaded with each goal's body")
    fl.add_argument("--bench", required=True, help="a writable copy of ../shared/bench, set up as above")
    fl.add_argument("--python", default=sys.executable, help="the Python that runs uvicorn")
    fl.add_argument("--repo", default="", help=argparse.SUPPRESS)
    fl.add_argument("--concurrency", type=int, default=64)
    fl.add_argument("--duration", type=int, default=10)
    c = sub.add_parser("ceilings", help="in-process ceilings of the task endpoints (run by `table`)")
    c.add_argument("--duration", type=int, default=10)
    c.add_argument("--out", required=True)
    a = ap.parse_args()
    return {"table": table, "profile": profile, "ceilings": ceilings, "floor": floor}[a.command](a)


if __name__ == "__main__":
    sys.exit(main())
