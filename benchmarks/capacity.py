"""Capacity model for Axon: measured figures in; workers, cores, replicas and memory for a target out.

    python benchmarks/capacity.py models --repository models --out models.json      # ORT time per model, batch
    python benchmarks/capacity.py load URL --datasets D --replica NAME --lb NAME --out one.json   # a measured run
    python benchmarks/capacity.py check --calibration one.json --run three.json --cores 2       # model vs a run
    python benchmarks/capacity.py plan --calibration one.json --models models.json --rps 10000 100000 --p99-ms 50

`load` drives closed-loop traffic (the vision / text / anomaly mix, one row each) and reads each container's
CPU and memory from its cgroup, so a run yields CPU milliseconds per request for the replicas, the balancer
and the client. scripts/docker-smoke.sh (AXON_SMOKE_REPLICAS=1) runs it with one replica (the calibration)
and then with three, one of them stopped mid-run.

The model, in two parts:
- `check`: a closed loop of N clients against R replicas on C shared cores runs at
  X = min(R * X1, C / (cpu per request of replica + balancer + client)), X1 the one-replica run's rate
  (one replica is bound by its own event loop); mean latency is N / X (Little's law), and p50 and p99
  keep the calibration's ratios to the mean.
- `plan`: one worker is one server process on one core, an M/G/1 queue (round-robin balancing is
  kinder than the random split M/G/1 assumes: the estimate is conservative). Service time per model is
  the calibration's per-request Python work plus ONNX Runtime's batch-1 time for that model, each
  lognormal around its median with the measured p99. The waiting time tail is the exponential
  approximation P(Wq > t) = rho * exp(-t * rho / E[Wq]), E[Wq] from Pollaczek-Khinchine; the p99 target
  is met by the fewest workers whose p99 wait plus p99 service stays under it, at most `--max-util` busy.
  Dynamic batching is left out (batch 1 service): the estimate is again conservative.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import io
import json
import math
import os
import resource
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

Z99 = 2.326  # the standard normal's 99th percentile

# --------------------------------------------------------------------------------------------- models


def measure_models(repository: Path, batches: list[int], runs: int) -> dict[str, Any]:
    """ONNX Runtime time per model and batch size: one intra-op thread, no spinning, as a worker runs it."""
    import onnxruntime as ort

    out: dict[str, Any] = {}
    for model_dir in sorted(p for p in repository.iterdir() if p.is_dir()):
        versions = sorted((int(v.name) for v in model_dir.iterdir() if v.name.isdigit()), reverse=True)
        if not versions:
            continue
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(model_dir / str(versions[0]) / "model.onnx"), opts)
        figures = {}
        for b in batches:
            feed = {i.name: _example(i, b) for i in session.get_inputs()}
            session.run(None, feed)  # warm-up
            times = []
            for _ in range(runs if b == 1 else max(runs // 4, 10)):
                t0 = time.perf_counter()
                session.run(None, feed)
                times.append((time.perf_counter() - t0) * 1000)
            figures[str(b)] = {
                "p50_ms": round(float(np.percentile(times, 50)), 4),
                "p99_ms": round(float(np.percentile(times, 99)), 4),
            }
        out[model_dir.name] = figures
        print(
            f"{model_dir.name:34s} "
            + "  ".join(f"b{b}: {f['p50_ms']:.3f}/{f['p99_ms']:.3f} ms" for b, f in figures.items())
        )
    return out


def _example(node: Any, batch: int) -> np.ndarray:
    # Symbolic dims other than the batch are sequence lengths: 64 tokens or steps.
    shape = [batch if i == 0 else (d if isinstance(d, int) and d > 0 else 64) for i, d in enumerate(node.shape)]
    if "int" in node.type:
        return np.ones(shape, dtype=np.int64)
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------------------------------------- load


def _bodies(datasets: Path) -> list[tuple[str, bytes]]:
    """One real sample per task endpoint, encoded once."""
    from PIL import Image

    with gzip.open(datasets / "mnist_test10k/train8k-images-idx3-ubyte.gz") as f:
        digit = np.frombuffer(f.read(), np.uint8, offset=16)[:784].reshape(28, 28)
    buf = io.BytesIO()
    Image.fromarray(digit, mode="L").save(buf, format="PNG")
    sms = (datasets / "sms_spam/SMSSpamCollection.tsv").read_text("utf-8").split("\n")[1].split("\t", 1)[1]
    row = (datasets / "thyroid_ann/ann-train.data").read_text().split("\n")[0].rstrip(",").split(",")[:21]
    mix = [
        ("/v1/vision/classify", {"images": [base64.b64encode(buf.getvalue()).decode()]}),
        ("/v1/text/classify", {"texts": [sms]}),
        ("/v1/anomaly/score", {"samples": [[float(v) for v in row]]}),
    ]
    return [(path, json.dumps(body).encode()) for path, body in mix]


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout.strip()


class Container:
    """A running container's address and its cgroup (v1 or v2) CPU and memory counters."""

    def __init__(self, name: str, role: str) -> None:
        self.name, self.role = name, role
        self.id = _docker("inspect", "--format", "{{.Id}}", name)
        self.addr = _docker("inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name)

    def cpu_s(self) -> float:
        v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{self.id}/cpuacct.usage")
        if v1.exists():
            return int(v1.read_text()) / 1e9
        stat = Path(f"/sys/fs/cgroup/system.slice/docker-{self.id}.scope/cpu.stat").read_text()
        return int(next(line.split()[1] for line in stat.splitlines() if line.startswith("usage_usec"))) / 1e6

    def rss_mb(self) -> float:
        v1 = Path(f"/sys/fs/cgroup/memory/docker/{self.id}/memory.stat")
        path = v1 if v1.exists() else Path(f"/sys/fs/cgroup/system.slice/docker-{self.id}.scope/memory.stat")
        stat = dict(line.split() for line in path.read_text().splitlines())
        return int(stat.get("total_rss", stat.get("anon", 0))) / 2**20


def _host_busy_s() -> float:
    """CPU seconds the whole host spent busy (every process, ours and others'), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _client_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _figures(rows: list[tuple]) -> dict[str, float]:
    if not rows:
        return {"requests": 0}
    lat = np.array([r[1] for r in rows]) * 1000
    span = max(r[0] + r[1] for r in rows) - min(r[0] for r in rows)
    return {
        "requests": len(rows),
        "rps": round(len(rows) / span, 1),
        "mean_ms": round(float(lat.mean()), 2),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
    }


def load(
    url: str,
    datasets: Path,
    seconds: float,
    concurrency: int,
    containers: list[Container],
    stop: str | None,
    warmup: float = 2.0,
) -> dict[str, Any]:
    """Closed-loop traffic for `seconds`; the steady window (after warm-up, before any stop) is measured."""
    bodies = _bodies(datasets)
    results: list[tuple] = []  # (start s, seconds, path, status, upstream)
    lock = threading.Lock()
    t_start = time.monotonic()
    deadline = t_start + seconds

    def client(k: int) -> None:
        i = k
        while time.monotonic() < deadline:
            path, body = bodies[i % len(bodies)]
            i += 1
            req = urllib.request.Request(url + path, body, {"Content-Type": "application/json"})
            t0 = time.monotonic()
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    r.read()
                    status, upstream = r.status, r.headers.get("X-Axon-Upstream", "")
            except urllib.error.HTTPError as e:
                status, upstream = e.code, e.headers.get("X-Axon-Upstream", "")
            except OSError as e:
                status, upstream = f"{type(e).__name__}: {e}", ""
            with lock:
                results.append((t0 - t_start, time.monotonic() - t0, path, status, upstream))

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(concurrency)]
    for t in threads:
        t.start()
    window_end = seconds / 3 if stop else seconds - 0.5
    time.sleep(warmup)
    w0 = time.monotonic() - t_start
    cpu0 = {c.name: c.cpu_s() for c in containers} | {"client": _client_cpu_s(), "host": _host_busy_s()}
    time.sleep(window_end - warmup)
    w1 = time.monotonic() - t_start
    cpu1 = {c.name: c.cpu_s() for c in containers} | {"client": _client_cpu_s(), "host": _host_busy_s()}
    memory = {c.name: round(c.rss_mb(), 1) for c in containers}
    stopped: dict[str, Any] = {}
    if stop:
        stopper = subprocess.run(["docker", "stop", stop], capture_output=True, text=True)
        stopped = {
            "name": stop,
            "at_s": round(w1, 2),
            "exited_at_s": round(time.monotonic() - t_start, 2),
            "docker_stop_rc": stopper.returncode,
            "exit_code": int(_docker("inspect", "--format", "{{.State.ExitCode}}", stop)),
        }
    for t in threads:
        t.join()
    window = [r for r in results if w0 <= r[0] and r[0] + r[1] <= w1]
    by_addr = {c.addr: c.name for c in containers}

    def served_by(rows: list[tuple]) -> dict[str, int]:
        return dict(
            sorted(Counter(by_addr.get(r[4].split(",")[-1].strip().rsplit(":", 1)[0], r[4]) for r in rows).items())
        )

    cpu_ms = {"client": 0.0, "replica": 0.0, "lb": 0.0}
    for c in containers:
        cpu_ms[c.role] += (cpu1[c.name] - cpu0[c.name]) * 1000
    cpu_ms["client"] = (cpu1["client"] - cpu0["client"]) * 1000
    n = max(len(window), 1)
    run: dict[str, Any] = {
        "concurrency": concurrency,
        "replicas": sum(c.role == "replica" for c in containers),
        "window": {**_figures(window), "seconds": round(w1 - w0, 2)},
        "cpu_ms_per_request": {k: round(v / n, 4) for k, v in cpu_ms.items()},
        "cores_busy": {k: round(v / 1000 / (w1 - w0), 3) for k, v in cpu_ms.items()},
        "replica_rss_mb": {c.name: memory[c.name] for c in containers if c.role == "replica"},
        # The cores this run could use: the host's less what other processes (not ours) kept busy.
        "host_cores": os.cpu_count(),
        "cores_available": round(
            os.cpu_count() - max((cpu1["host"] - cpu0["host"]) - sum(cpu_ms.values()) / 1000, 0) / (w1 - w0), 3
        ),
        "served_by_in_window": served_by(window),
        "requests": len(results),
        "failed": [list(map(str, r)) for r in results if r[3] != 200][:20],
        "failed_count": sum(r[3] != 200 for r in results),
        "retried": sum("," in r[4] for r in results),
        "stopped": stopped,
    }
    if stop:
        after = [r for r in results if r[0] >= stopped["exited_at_s"]]
        run["after_stop"] = {**_figures(after), "served_by": served_by(after)}
    return run


# ---------------------------------------------------------------------------------------------- check


def predict_run(cal: dict[str, Any], replicas: int, cores: float, concurrency: int) -> dict[str, Any]:
    """Throughput and latency of a closed loop on `replicas` replicas and `cores` usable cores (module docstring)."""
    per_request_s = sum(cal["cpu_ms_per_request"].values()) / 1000
    # A replica's event loop holds one core at most: its ceiling is one core over its CPU per request.
    replica_bound = replicas * 1000 / cal["cpu_ms_per_request"]["replica"]
    core_bound = cores / per_request_s
    rps = min(replica_bound, core_bound)
    mean_ms = concurrency / rps * 1000
    w = cal["window"]
    return {
        "rps": rps,
        "mean_ms": mean_ms,
        "p50_ms": mean_ms * w["p50_ms"] / w["mean_ms"],
        "p99_ms": mean_ms * w["p99_ms"] / w["mean_ms"],
        "bound": "replicas" if replica_bound < core_bound else "cores",
    }


def check(cal: dict[str, Any], run: dict[str, Any], cores: float | None, tolerance: float) -> int:
    """Predict the run's steady window from the calibration; 1 when throughput or mean latency miss by more."""
    cores = cores or run["cores_available"]
    pred = predict_run(cal, run["replicas"], cores, run["concurrency"])
    print(
        f"calibration: {cal['replicas']} replica, {cal['window']['rps']} req/s, CPU ms/request "
        f"{cal['cpu_ms_per_request']}"
    )
    print(
        f"predicted for {run['replicas']} replicas on {cores:g} cores at concurrency {run['concurrency']} "
        f"(bound by {pred['bound']}):"
    )
    worst = 0.0
    for key in ("rps", "mean_ms", "p50_ms", "p99_ms"):
        measured = run["window"][key]
        err = (pred[key] - measured) / measured
        gated = key in ("rps", "mean_ms")
        worst = max(worst, abs(err)) if gated else worst
        print(
            f"  {key:8s} predicted {pred[key]:8.1f}  measured {measured:8.1f}  error {err:+6.1%}"
            + ("" if gated else "  (not gated: the tail's ratio to the mean is a heuristic)")
        )
    ok = worst <= tolerance
    print(f"{'within' if ok else 'OUTSIDE'} the stated error of {tolerance:.0%} on throughput and mean latency")
    return 0 if ok else 1


# ----------------------------------------------------------------------------------------------- plan


def _lognormal(p50: float, p99: float) -> tuple[float, float]:
    """Mean and second moment of a lognormal with this median and 99th percentile."""
    sigma = max(math.log(max(p99, p50) / p50), 1e-9) / Z99
    mu = math.log(p50)
    return math.exp(mu + sigma**2 / 2), math.exp(2 * mu + 2 * sigma**2)


def service_times(
    cal: dict[str, Any], models: dict[str, Any], mix: dict[str, float], overhead_tail: float
) -> dict[str, float]:
    """E[S], E[S^2] and p99 of one request's service on one worker for the mix (milliseconds).

    A model's service is the per-request Python work (the calibration replica's CPU per request less the
    mix's mean ONNX Runtime time) plus its own ONNX Runtime time; at the p99 the Python work is taken
    `overhead_tail` times its mean (allocator and GC pauses), ONNX Runtime at its measured p99.
    """
    ort_mean = sum(
        share * _lognormal(models[m]["1"]["p50_ms"], models[m]["1"]["p99_ms"])[0] for m, share in mix.items()
    )
    overhead = max(cal["cpu_ms_per_request"]["replica"] - ort_mean, 0.0)
    es = es2 = p99 = 0.0
    for m, share in mix.items():
        f = models[m]["1"]
        p50, q99 = overhead + f["p50_ms"], overhead * overhead_tail + f["p99_ms"]
        mean, second = _lognormal(p50, q99)
        es, es2, p99 = es + share * mean, es2 + share * second, max(p99, q99)
    return {"overhead_ms": overhead, "ort_mean_ms": ort_mean, "mean_ms": es, "second_ms2": es2, "p99_ms": p99}


def p99_response(rate_per_worker: float, s: dict[str, float]) -> float:
    """p99 response time (ms) of one M/G/1 worker at this arrival rate (req/ms), inf when saturated."""
    rho = rate_per_worker * s["mean_ms"]
    if rho >= 1:
        return math.inf
    wq_mean = rate_per_worker * s["second_ms2"] / (2 * (1 - rho))
    wait99 = wq_mean / rho * math.log(rho / 0.01) if rho > 0.01 else 0.0
    return wait99 + s["p99_ms"]


def plan(
    cal: dict[str, Any],
    models: dict[str, Any],
    mix: dict[str, float],
    targets: list[float],
    slo_ms: float,
    max_util: float,
    workers_per_replica: int,
    overhead_tail: float = 2.0,
) -> list[dict[str, Any]]:
    """The fewest M/G/1 workers per target rate that keep the p99 under `slo_ms`, and what they need."""
    s = service_times(cal, models, mix, overhead_tail)
    lb_ms = cal["cpu_ms_per_request"]["lb"]
    rss = max(cal["replica_rss_mb"].values())
    print(
        f"service time per request on one worker: mean {s['mean_ms']:.2f} ms (Python/HTTP {s['overhead_ms']:.2f} ms "
        f"+ ONNX Runtime {s['ort_mean_ms']:.2f} ms), p99 {s['p99_ms']:.2f} ms; balancer {lb_ms:.3f} ms CPU/request; "
        f"replica RSS {rss:.0f} MB"
    )
    rows = []
    for rps in targets:
        lam = rps / 1000  # per ms
        n = max(1, math.ceil(lam * s["mean_ms"] / max_util))
        while p99_response(lam / n, s) > slo_ms:
            n += 1
        rho = lam / n * s["mean_ms"]
        wq = lam / n * s["second_ms2"] / (2 * (1 - rho))
        replicas = math.ceil(n / workers_per_replica)
        rows.append(
            {
                "rps": rps,
                "workers": n,
                "replicas": replicas,
                "utilisation": round(rho, 3),
                "p99_ms": round(p99_response(lam / n, s), 2),
                "cores": math.ceil(n + rps * lb_ms / 1000),
                "balancer_cores": round(rps * lb_ms / 1000, 1),
                # Every worker is a process with its own sessions: memory grows with workers, not replicas.
                "memory_gb": round(n * rss / 1024, 1),
                # The autoscaler's per-replica target: requests in flight at this utilisation (Little's law).
                "in_flight_per_replica": round(lam / n * (wq + s["mean_ms"]) * workers_per_replica, 2),
                "ort_share": round(s["ort_mean_ms"] / s["mean_ms"], 3),
            }
        )
    return rows


def print_plan(rows: list[dict[str, Any]], slo_ms: float) -> None:
    print(
        f"\n| target req/s | workers (cores) | replicas | utilisation | p99 est. (< {slo_ms:g} ms) | balancer cores | "
        "total cores | memory GB | in-flight/replica target |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['rps']:,.0f} | {r['workers']} | {r['replicas']} | {r['utilisation']:.2f} | {r['p99_ms']:.1f} ms | "
            f"{r['balancer_cores']} | {r['cores']} | {r['memory_gb']} | {r['in_flight_per_replica']} |"
        )
    share = rows[0]["ort_share"]
    print(
        f"\nONNX Runtime is {share:.0%} of a request's service time: a GPU could remove at most that share of the "
        f"worker cores; the rest is per-request Python work that stays on CPUs. GPU time was not measured here."
    )


# ------------------------------------------------------------------------------------------------ cli


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("models", help="ONNX Runtime time per model and batch size")
    m.add_argument("--repository", type=Path, default=Path("models"))
    m.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 64])
    m.add_argument("--runs", type=int, default=400)
    m.add_argument("--out", type=Path, required=True)
    ld = sub.add_parser("load", help="a closed-loop run with CPU and memory per container")
    ld.add_argument("url")
    ld.add_argument("--datasets", type=Path, required=True)
    ld.add_argument("--seconds", type=float, default=30)
    ld.add_argument("--concurrency", type=int, default=16)
    ld.add_argument("--replica", action="append", default=[], help="a replica container's name (repeat)")
    ld.add_argument("--lb", help="the balancer container's name")
    ld.add_argument("--stop", help="a replica to `docker stop` a third of the way in")
    ld.add_argument("--out", type=Path)
    c = sub.add_parser("check", help="predict a run from a calibration run and compare")
    c.add_argument("--calibration", type=Path, required=True)
    c.add_argument("--run", type=Path, required=True)
    c.add_argument(
        "--cores",
        type=float,
        help="cores the run could use (default: as measured during the run: the host's less what other processes used)",
    )
    c.add_argument("--tolerance", type=float, default=0.2)
    pl = sub.add_parser("plan", help="workers, cores, replicas and memory for target rates")
    pl.add_argument("--calibration", type=Path, required=True)
    pl.add_argument("--models", type=Path, required=True)
    pl.add_argument("--rps", type=float, nargs="+", default=[10_000, 100_000])
    pl.add_argument("--p99-ms", type=float, default=50)
    pl.add_argument("--max-util", type=float, default=0.7, help="highest planned utilisation of a worker")
    pl.add_argument("--workers-per-replica", type=int, default=1)
    pl.add_argument("--overhead-tail", type=float, default=2.0, help="p99 of the Python work per request / its mean")
    pl.add_argument(
        "--mix",
        nargs="+",
        default=["mnist-cnn=1", "sms-spam-transformer=1", "thyroid-autoencoder=1"],
        metavar="MODEL=SHARE",
        help="request mix (shares are normalised); default: the smoke test's",
    )
    args = p.parse_args(argv)
    if args.cmd == "models":
        args.out.write_text(json.dumps(measure_models(args.repository, args.batches, args.runs), indent=1))
        return 0
    if args.cmd == "load":
        containers = [Container(n, "replica") for n in args.replica] + ([Container(args.lb, "lb")] if args.lb else [])
        run = load(args.url, args.datasets, args.seconds, args.concurrency, containers, args.stop)
        if args.out:
            args.out.write_text(json.dumps(run, indent=1))
        w = run["window"]
        print(
            f"  {run['requests']} requests at concurrency {run['concurrency']}, {run['replicas']} replica(s); steady "
            f"window {w['seconds']} s: {w['rps']} req/s, p50 {w['p50_ms']} ms, p99 {w['p99_ms']} ms"
        )
        print(
            f"  CPU ms/request {run['cpu_ms_per_request']}, cores busy {run['cores_busy']}, "
            f"replica RSS MB {run['replica_rss_mb']}"
        )
        print(f"  served by (window) {run['served_by_in_window']}")
        if run["stopped"]:
            s = run["stopped"]
            print(
                f"  docker stop {s['name']} at {s['at_s']} s, exited (code {s['exit_code']}) at {s['exited_at_s']} s; "
                f"after: {run['after_stop']}"
            )
        print(f"  passed on to another replica by nginx: {run['retried']}; failed: {run['failed_count']}")
        for f in run["failed"][:10]:
            print(f"    FAILED {f}")
        return 0
    if args.cmd == "check":
        return check(
            json.loads(args.calibration.read_text()), json.loads(args.run.read_text()), args.cores, args.tolerance
        )
    shares = {k: float(v) for k, v in (pair.split("=", 1) for pair in args.mix)}
    mix = {k: v / sum(shares.values()) for k, v in shares.items()}
    rows = plan(
        json.loads(args.calibration.read_text()),
        json.loads(args.models.read_text()),
        mix,
        args.rps,
        args.p99_ms,
        args.max_util,
        args.workers_per_replica,
        args.overhead_tail,
    )
    print_plan(rows, args.p99_ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
