"""Axon beside Triton (PyTriton) and a 100-line FastAPI batcher, through the neutral harness `../shared/bench`.

Reproduces issue 14's table (cnn_small over V2 binary and JSON, the vision task endpoint with a PNG, the
peers), with the in-process ONNX Runtime ceiling beside every row, as medians of interleaved rounds.
One-time setup (a few minutes; the harness must live in a writable folder):

    B=/tmp/axon-bench && mkdir -p $B && cp -r ../shared/bench $B/ && cd $B/bench
    apt-get update && apt-get install -y wrk
    ./install_peers.sh models fastapi pytriton
    .venvs/models/bin/python make_models.py
    .venvs/models/bin/python peers/axon/make_repo.py $B/repo

Then, from the repository root (the lead's final run: 3 rounds of 15 s levels on a quiet machine):

    python benchmarks/peers.py table --bench /tmp/axon-bench/bench --repo /tmp/axon-bench/repo --rounds 3

`--duration 5 --rounds 1` gives a quick look. The machine's speed drifts between minutes and other work on
the cores shows in the harness's `other_cpu_cores` column: compare only ratios within one run.

    python benchmarks/peers.py profile --bench ... --repo ... --system axon-v2-binary

records py-spy (on PyPI) on the server at c=64 and prints the harness's per-component summary.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SYSTEMS = "axon-v2-binary,pytriton,axon-v2-json,fastapi-batch-nowait,axon-vision-multipart"


def _env(a: argparse.Namespace) -> dict[str, str]:
    return {**os.environ, "AXON_PY": a.python, "AXON_REPO": a.repo, "AXON_CWD": str(ROOT),
            "AXON_DEFAULT_REPO": str(ROOT / "models")}


def table(a: argparse.Namespace) -> int:
    """Interleaved rounds of every system, the in-process ceiling, then the harness's side-by-side report."""
    out = Path(a.bench) / "results" / f"axon-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True)
    for r in range(1, a.rounds + 1):
        for system in a.systems.split(","):
            subprocess.run(
                [sys.executable, "peers/axon/run_axon.py", "--only", system, "--model", a.model, "--suffix", f"-rep{r}",
                 "--duration", str(a.duration), "--warmup", str(a.warmup), "--concurrency", a.concurrency,
                 "--out", str(out)],
                cwd=a.bench, env=_env(a), check=False,
            )
    subprocess.run(
        [f"{a.bench}/.venvs/models/bin/python", "run_bench.py", "inproc", "--model", a.model, "--batch", "1,64",
         "--duration", str(a.duration), "--out", str(out)],
        cwd=a.bench, check=False,
    )
    report = out / "table.md"
    subprocess.run([sys.executable, "run_bench.py", "report", *sorted(glob.glob(str(out / "*.json"))),
                    "--output", str(report)], cwd=a.bench, check=False)
    print(report.read_text() if report.exists() else f"no report in {out}")
    print(_medians(out))
    return 0


def _medians(out: Path) -> str:
    """Median req/s per system and level across rounds (the raw files keep every round)."""
    rows: dict[tuple[str, int], list[float]] = {}
    for path in out.glob("*.json"):
        try:
            run = json.loads(path.read_text())
        except ValueError:
            continue
        name = run.get("name", path.stem).rsplit("-rep", 1)[0]
        for level in run.get("levels", []):
            if "concurrency" in level and "rps" in level:
                rows.setdefault((name, level["concurrency"]), []).append(level["rps"])
    lines = ["| system | level | median req/s | rounds |", "|---|---:|---:|---:|"]
    for (name, c), values in sorted(rows.items()):
        lines.append(f"| {name} | {c} | {statistics.median(values):,.0f} | {len(values)} |")
    return "\n".join(lines)


def profile(a: argparse.Namespace) -> int:
    """Start the system's server on core 1, load it at c=64 with wrk on core 0, record py-spy, summarise."""
    sys.path.insert(0, os.path.join(a.bench, "peers", "axon"))
    import run_axon  # noqa: PLC0415  (the harness's own definitions of each system)

    spec = run_axon.SYSTEMS[a.system]
    port = spec["port"]
    repo = str(ROOT / "models") if spec.get("repo") == "default" else a.repo
    env = {**os.environ, **run_axon.AXON_ENV, "AXON_PORT": str(port), "AXON_MODEL_REPOSITORY": repo, **spec["env"]}
    server = subprocess.Popen(["taskset", "-c", "1", a.python, "-m", "service"], cwd=a.root, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(base + spec["health"], timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        body = os.path.join(a.bench, "bodies", spec["body"].format(model=a.model))
        ctype = spec["ctype"] or run_axon._mnist_ctype()
        headers = [f"Content-Type: {ctype}", *spec["headers"](a.model)]
        lua = Path(a.bench) / "results" / f"post-{a.system}.lua"
        lua.write_text(_wrk_script(body, headers))
        url = base + spec["url"].format(model=a.model)
        load = subprocess.Popen(["taskset", "-c", "0", "wrk", "-t1", f"-c{a.concurrency}", f"-d{a.duration + 4}s",
                                 "-s", str(lua), url], stdout=subprocess.PIPE, text=True)
        time.sleep(2)
        raw = Path(a.bench) / "results" / f"pyspy-{a.system}-{a.tag}.txt"
        subprocess.run([shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"), "record", "--threads", "--format", "raw", "--rate", "250",
                        "--duration", str(a.duration), "--pid", str(server.pid), "--output", str(raw)],
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(load.communicate()[0])
        subprocess.run([sys.executable, os.path.join(a.bench, "peers", "axon", "pyspy_summary.py"), str(raw)], check=False)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    return 0


def _wrk_script(body_path: str, headers: list[str]) -> str:
    body = Path(body_path).read_bytes()
    lines = ['wrk.method = "POST"', f"local f = io.open({json.dumps(body_path)}, 'rb')",
             "wrk.body = f:read('*a')", "f:close()"]
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
        p.add_argument("--model", default="cnn_small")
    t = sub.choices["table"]
    t.add_argument("--systems", default=DEFAULT_SYSTEMS)
    t.add_argument("--rounds", type=int, default=3)
    t.add_argument("--concurrency", default="1,8,32,64")
    t.add_argument("--duration", type=int, default=15)
    t.add_argument("--warmup", type=int, default=5)
    pr = sub.choices["profile"]
    pr.add_argument("--system", default="axon-v2-binary")
    pr.add_argument("--concurrency", type=int, default=64)
    pr.add_argument("--duration", type=int, default=10)
    pr.add_argument("--tag", default="now", help="name of this capture (before/after)")
    pr.add_argument("--root", default=str(ROOT), help="the checkout whose service runs (e.g. an export of main)")
    a = ap.parse_args()
    return table(a) if a.command == "table" else profile(a)


if __name__ == "__main__":
    sys.exit(main())
