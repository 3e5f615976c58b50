"""Instance groups: throughput and p99 of one model with 1 and with N ONNX Runtime sessions, same run.

A repository holding one model (copied from `models/`) is served by `python -m service` with
`AXON_INSTANCE_COUNT` set to each count in turn, and a closed loop of `--concurrency` clients
(default 64) drives its task endpoint for `--duration` seconds. The counts alternate over `--rounds`
so that load from other processes on a shared machine falls on both alike; compare the ratios of
one round, not figures across machines.

    python benchmarks/instances.py                                  # mnist-cnn, 1 vs 2 instances, c=64
    python benchmarks/instances.py --model sms-spam-transformer --counts 1 2 --rounds 3 --duration 10
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]
from serve_bench import ROOT, Server, measure, task_requests  # noqa: E402

from modelrepo.config import read_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mnist-cnn", help="a model of models/ with a task endpoint")
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2], help="instances per version to compare")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of load per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="times each count is measured, alternating")
    parser.add_argument("--processes", type=int, default=1, help="client processes")
    parser.add_argument("--threads", type=int, default=0, help="AXON_INTRA_OP_THREADS (0: the cores, shared)")
    args = parser.parse_args()

    source = ROOT / "models" / args.model
    task = read_config(source / "config.json").task
    requests, _ = task_requests(args.model, task, 256)
    cores = len(os.sched_getaffinity(0))
    print(f"{args.model} ({task}), c={args.concurrency}, {args.duration:g} s per run, {cores} cores (shared)")
    print(f"{'round':>5} {'instances':>9} {'items/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'batch':>6} {'errors':>6}")
    figures: dict[int, list[tuple[float, float]]] = {n: [] for n in args.counts}
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        shutil.copytree(source, repo / args.model)
        for round_ in range(1, args.rounds + 1):
            for count in args.counts:
                env = {
                    "AXON_INSTANCE_COUNT": str(count),
                    "AXON_INTRA_OP_THREADS": str(args.threads),
                    "AXON_VALIDATE_MODELS": "false",
                    "AXON_PROVIDERS": "CPUExecutionProvider",
                }
                server = Server(repo, env)
                try:
                    result, batch = measure(
                        server, args.model, requests, args.concurrency, args.duration, args.processes
                    )
                finally:
                    server.stop()
                p50, p99 = result.p50_ms, result.percentile(99)
                figures[count].append((result.throughput, p99))
                print(
                    f"{round_:>5} {count:>9} {result.throughput:>9.0f} {p50:>8.1f} {p99:>8.1f} {batch:>6.1f} "
                    f"{result.errors:>6}"
                )
    base = args.counts[0]
    for count in args.counts[1:]:
        tput = [a[0] / b[0] for a, b in zip(figures[count], figures[base])]
        p99 = [a[1] / b[1] for a, b in zip(figures[count], figures[base])]
        print(
            f"{count} vs {base} instances, per round: throughput x{', x'.join(f'{r:.2f}' for r in tput)} "
            f"(median x{statistics.median(tput):.2f}); p99 x{', x'.join(f'{r:.2f}' for r in p99)} "
            f"(median x{statistics.median(p99):.2f})"
        )


if __name__ == "__main__":
    main()
