"""1 vs N worker processes (`AXON_WORKERS`) on the mnist and SMS task endpoints, with wrk, and memory per worker.

Starts `python -m service` on the default repository for each worker count, loads each endpoint with
wrk (one thread, c=64, the neutral harness's request bodies), prints throughput, latency and failures,
then each process's PSS (from /proc/<pid>/smaps_rollup: shared pages are split between the processes
that map them, so PSS adds up across workers where RSS would count the shared libraries twice).

wrk runs on the same machine and shares its cores with the server: on a 2-core host the load generator
takes a good part of one core, so the figures understate what N workers give with a separate client.

    python benchmarks/workers.py --bench /tmp/perfbench/bench --workers 1,2 --duration 10
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from peers import SMS, wrk_ms  # noqa: E402  (the SMS message issue 14's table sends; wrk's latencies)

ENDPOINTS = {
    # name: (path, content type; None: the multipart type of the body's own boundary)
    "mnist": ("/v1/vision/classify", None),
    "sms": ("/v1/text/classify", "application/json"),
}


def write_bodies(bench: Path, folder: Path) -> dict[str, Path]:
    """Each endpoint's body: the harness's PNG form, and one SMS with no model named (the default answers)."""
    sms = folder / "sms_default_model.json"
    sms.write_text(json.dumps({"texts": [SMS]}))
    return {"mnist": bench / "bodies" / "mnist_digit_multipart.bin", "sms": sms}


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode} during start-up")
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server was not ready in time")


def pss_kib(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in KiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:] if ":" in line
    )
    return int(fields["Pss"].split()[0]), int(fields["Rss"].split()[0])


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def wrk(url: str, body: Path, content_type: str, concurrency: int, duration: int) -> dict[str, float]:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        "\n".join(
            [
                'wrk.method = "POST"',
                f"local f = io.open({json.dumps(str(body))}, 'rb')",
                "wrk.body = f:read('*a')",
                "f:close()",
                f'wrk.headers["Content-Type"] = {json.dumps(content_type)}',
            ]
        )
        + "\n"
    )
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--latency", "-s", str(script), url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        script.unlink()

    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": wrk_ms(out, "50%"),
        "p99_ms": wrk_ms(out, "99%"),
        "failed": float((int(bad.group(1)) if bad else 0) + (sum(map(int, errors.groups())) if errors else 0)),
    }


def busy_cores(seconds: float) -> float:
    """Cores busy over a short window, machine-wide (with the server idle: other work sharing the host)."""
    with open("/proc/stat") as f:
        a = [int(x) for x in f.readline().split()[1:]]
    time.sleep(seconds)
    with open("/proc/stat") as f:
        b = [int(x) for x in f.readline().split()[1:]]
    busy = (sum(b) - sum(a)) - ((b[3] + b[4]) - (a[3] + a[4]))
    return busy / (sum(b) - sum(a)) * os.cpu_count()  # type: ignore[operator]


def run(workers: int, args: argparse.Namespace, bodies: dict[str, Path]) -> list[dict[str, object]]:
    port = args.port
    url = f"http://127.0.0.1:{port}"
    env = os.environ | {
        "AXON_WORKERS": str(workers),
        "AXON_PORT": str(port),
        "AXON_PROVIDERS": "CPUExecutionProvider",
        "AXON_ACCESS_LOG": "false",
        "AXON_LOG_LEVEL": "warning",
    }
    for pair in args.env:
        name, _, value = pair.partition("=")
        env[name] = value
    proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT, env=env)
    rows: list[dict[str, object]] = []
    try:
        wait_ready(url, proc)
        print(f"cores busy with other work before the run: {busy_cores(2):.2f}", file=sys.stderr)
        for name, (path, content_type) in ENDPOINTS.items():
            body_file = bodies[name]
            ctype = content_type or _multipart_type(body_file)
            check_answer(url + path, body_file, ctype)  # a wrong body would be measured as fast failures
            wrk(url + path, body_file, ctype, args.concurrency, 2)  # warm-up: batches, caches, connections
            result = wrk(url + path, body_file, ctype, args.concurrency, args.duration)
            rows.append({"workers": workers, "endpoint": name, **result})
            print(json.dumps(rows[-1]), file=sys.stderr)
        group = [proc.pid] if workers == 1 else [proc.pid, *children(proc.pid)]
        memory = {pid: pss_kib(pid) for pid in group}
        for pid, (pss, rss) in memory.items():
            role = "supervisor" if workers > 1 and pid == proc.pid else "server" if workers == 1 else "worker"
            rows.append({"workers": workers, "process": role, "pid": pid, "pss_mib": pss / 1024, "rss_mib": rss / 1024})
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return rows


def check_answer(url: str, body: Path, content_type: str) -> None:
    """One request before the load: stop with the server's answer unless it is a 200."""
    request = urllib.request.Request(url, data=body.read_bytes(), headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            answer.read()
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"{url} answered {exc.code} to {body.name}: {exc.read()[:300]!r}") from None


def _multipart_type(body: Path) -> str:
    boundary = body.read_bytes().split(b"\r\n", 1)[0][2:].decode()
    return f"multipart/form-data; boundary={boundary}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default="/tmp/perfbench/bench", help="the neutral harness (for its request bodies)")
    ap.add_argument("--workers", default="1,2", help="worker counts to compare")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--port", type=int, default=8471)
    ap.add_argument("--env", action="append", default=[], help="extra NAME=value for the server (repeatable)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        bodies = write_bodies(Path(args.bench), Path(folder))
        rows = [row for n in args.workers.split(",") for row in run(int(n), args, bodies)]
    print(f"wrk -t1 -c{args.concurrency} -d{args.duration}s on the same {os.cpu_count()}-core host as the server")
    print("| workers | endpoint | req/s | p50 ms | p99 ms | failed |\n|---|---|---|---|---|---|")
    for r in rows:
        if "endpoint" in r:
            figures = f"{r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['failed']:.0f}"
            print(f"| {r['workers']} | {r['endpoint']} | {figures} |")
    print("\n| workers | process | PSS MiB | RSS MiB |\n|---|---|---|---|")
    for r in rows:
        if "process" in r:
            print(f"| {r['workers']} | {r['process']} | {r['pss_mib']:.0f} | {r['rss_mib']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
