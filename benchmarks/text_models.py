"""Fast versus accurate text models: quality and texts/s side by side, in-process and through the service.

For every text model of the repository (or those named) it prints one row: the card's test figures, the
ONNX file's size, texts/s in-process (bare `session.run`, batch 1, and length-grouped batches of the model's
`max_batch_size`), and texts/s through `python -m service` with one text per request at concurrency 1 and 64
(dynamic batching on). The texts are real ones from the model's own dataset. With `--alt NAME=PATH` it also
times another ONNX file of the same model (an int8 or fp32 twin) against the served one in-process: the figure
behind "what quantization buys".

    python benchmarks/text_models.py
    python benchmarks/text_models.py --models sms-spam-transformer sms-spam-minilm --duration 10

Run it on an otherwise idle machine: the load generator shares the CPUs with the server.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from loadgen import Request
from serve_bench import DATASETS, JSON_HEADERS, Server, in_process, measure

from modelrepo.config import read_config
from modelrepo.layout import MODEL_FILE
from service.settings import Settings
from training.data.text import load_sentiment, load_sms_spam

ROOT = Path(__file__).resolve().parent.parent


def dataset_texts(card: dict[str, Any], n: int) -> list[str]:
    """The first n texts of the dataset the model was trained on (its card names it)."""
    name = card.get("dataset", {}).get("name", "sms_spam")
    if name == "sentiment_labelled_sentences":
        texts, _ = load_sentiment(DATASETS / name)
    else:
        texts, _ = load_sms_spam(DATASETS / "sms_spam" / "SMSSpamCollection.tsv")
    return texts[:n]


def newest_version(model_dir: Path) -> Path:
    return model_dir / str(max(int(p.name) for p in model_dir.iterdir() if p.name.isdigit()))


def quality(card: dict[str, Any]) -> str:
    """The card's test figures, as the README's model table shows them."""
    test = card.get("metrics", {}).get("test", {})
    if not test:
        return "-"
    parts = [f"{100 * test['accuracy']:.2f}% acc"]
    spam = test.get("per_class_f1", {}).get("spam")
    if spam is not None:
        parts.append(f"spam F1 {spam:.3f}")
    return ", ".join(parts) + f" (n={test.get('n', '?')})"


def with_file(vdir: Path, onnx: Path, tmp: Path) -> Path:
    """A copy of a model folder whose newest version serves `onnx` instead of its own file."""
    model_dir = tmp / vdir.parent.name
    shutil.copytree(vdir.parent, model_dir)
    shutil.copyfile(onnx, model_dir / vdir.name / MODEL_FILE)
    return model_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=ROOT / "models")
    parser.add_argument("--models", nargs="+", help="text models to compare (default: every text model)")
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per service measurement")
    parser.add_argument("--items", type=int, default=512, help="distinct real texts cycled through")
    parser.add_argument("--alt", action="append", default=[], help="NAME=PATH of another ONNX file to time too")
    args = parser.parse_args()

    names = args.models or sorted(
        p.name
        for p in args.repository.iterdir()
        if (p / "config.json").exists() and read_config(p / "config.json").task == "text"
    )
    settings = Settings()
    plans: dict[str, tuple[list[Request], dict[str, float], dict[str, Any], Path]] = {}
    for name in names:
        vdir = newest_version(args.repository / name)
        card = json.loads((vdir / "card.json").read_text()) if (vdir / "card.json").exists() else {}
        config = read_config(args.repository / name / "config.json")
        texts = dataset_texts(card, args.items)
        requests = [
            Request("/v1/text/classify", json.dumps({"texts": [t], "model": name}).encode(), JSON_HEADERS)
            for t in texts
        ]
        ref = in_process(args.repository / name, texts, config.max_batch_size, settings)
        plans[name] = (requests, ref, card, vdir)
        print(
            f"{name}: in-process {1000 / ref['p50_ms']:.0f} texts/s at batch 1 (p50 {ref['p50_ms']:.2f} ms), "
            f"{ref['ceiling']:.0f} texts/s length-grouped at batch {config.max_batch_size}",
            flush=True,
        )

    alternatives: list[tuple[str, dict[str, float], dict[str, float], int, int]] = []
    for spec in args.alt:
        name, _, path = spec.partition("=")
        _, served, _, vdir = plans[name]
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = with_file(vdir, Path(path), Path(tmp))
            texts = dataset_texts(plans[name][2], args.items)
            alt = in_process(model_dir, texts, read_config(model_dir / "config.json").max_batch_size, settings)
        alternatives.append((name, alt, served, Path(path).stat().st_size, (vdir / MODEL_FILE).stat().st_size))

    service: dict[tuple[str, int], Any] = {}
    server = Server(args.repository, {"AXON_BATCHING_ENABLED": "true"})
    try:
        for name, (requests, _, _, _) in plans.items():
            for c in args.concurrency:
                result, mean_batch = measure(server, name, requests, c, args.duration, 2 if c > 8 else 1)
                service[(name, c)] = (result, mean_batch)
                print(
                    f"  {name:<24} c={c:<3} {result.throughput:8.0f} texts/s  p50 {result.p50_ms:7.2f} ms  "
                    f"batch {mean_batch:5.1f}  errors {result.errors}",
                    flush=True,
                )
    finally:
        server.stop()

    stamp = time.strftime("%Y-%m-%d")
    levels = " | ".join(f"service c={c} texts/s (p50 ms)" for c in args.concurrency)
    print(f"\nMeasured {stamp}, `python benchmarks/text_models.py`:\n")
    head = "| model | test quality (card) | ONNX MB | in-process batch 1 texts/s | in-process batched texts/s |"
    print(f"{head} {levels} |")
    print("|---|---|---:|---:|---:|" + "---:|" * len(args.concurrency))
    for name, (_, ref, card, vdir) in plans.items():
        cells = []
        for c in args.concurrency:
            r, _ = service[(name, c)]
            cells.append(f"{r.throughput:,.0f} ({r.p50_ms:.1f})")
        size = (vdir / MODEL_FILE).stat().st_size / 1e6
        print(
            f"| `{name}` | {quality(card)} | {size:.1f} | {1000 / ref['p50_ms']:,.0f} | {ref['ceiling']:,.0f} | "
            + " | ".join(cells)
            + " |"
        )
    if alternatives:
        print("\n| model | file | MB | in-process batch 1 texts/s | in-process batched texts/s |")
        print("|---|---|---:|---:|---:|")
        for name, alt, served, alt_size, served_size in alternatives:
            for kind, ref, size in (("alternative", alt, alt_size), ("served", served, served_size)):
                print(f"| `{name}` | {kind} | {size / 1e6:.1f} | {1000 / ref['p50_ms']:,.0f} | {ref['ceiling']:,.0f} |")
            ratio = statistics.fmean([alt["ceiling"] / served["ceiling"], served["p50_ms"] / alt["p50_ms"]])
            print(f"\n{name}: the alternative runs {ratio:.2f}x as fast as the served file (batch 1 and batched, mean)")


if __name__ == "__main__":
    main()
