"""Two or more ONNX files of one text model, timed in-process in interleaved rounds on the same real batches.

`text_models.py --alt` times each file once, one after the other; on a busy or drifting machine that order
decides a difference of 20-30%. This script builds every session first, then runs the files in turn, round
after round (the order reversed every other round), on the same length-grouped batches of real texts, and
prints each file's median. It also says whether ONNX Runtime optimised the files into the same graph (the
same op sequence and initializer types), which is what "stored int8 weights run at fp32's speed" rests on.

    python benchmarks/onnx_ab.py sentiment-minilm FP32_TWIN.onnx --threads 1 --rounds 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import onnx
import onnxruntime as ort
from serve_bench import service_batches, serving_codec
from text_models import dataset_texts, newest_version

from modelrepo.layout import MODEL_FILE
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def optimised_ops(path: Path, threads: int, folder: Path) -> tuple[list[str], list[int]]:
    """The op sequence and initializer types of `path` after ONNX Runtime's graph optimisations."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.optimized_model_filepath = str(folder / f"{len(list(folder.iterdir()))}.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    graph = onnx.load(options.optimized_model_filepath).graph
    return [n.op_type for n in graph.node], sorted({i.data_type for i in graph.initializer})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a text model of the repository: its served file is timed first")
    parser.add_argument("files", nargs="+", type=Path, help="other ONNX files of the same model")
    parser.add_argument("--repository", type=Path, default=ROOT / "models")
    parser.add_argument("--texts", type=int, default=256, help="real texts of the model's dataset per round")
    parser.add_argument("--batch", type=int, default=64, help="requests per batch (the service's max_batch_size)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    args = parser.parse_args(argv)

    model_dir = args.repository / args.model
    served = newest_version(model_dir) / MODEL_FILE
    card_path = served.parent / "card.json"
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    texts = dataset_texts(card, args.texts)
    settings = Settings()
    work, _ = service_batches(serving_codec(model_dir, settings)[0], texts, args.batch, settings)
    files = [served, *args.files]
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    sessions = [ort.InferenceSession(str(f), options, providers=["CPUExecutionProvider"]) for f in files]
    for session in sessions:
        session.run(None, work[0])  # warm-up: allocations and first-run kernels out of the timing
    rates: list[list[float]] = [[] for _ in files]
    for r in range(args.rounds):
        order = range(len(files)) if r % 2 == 0 else reversed(range(len(files)))
        for k in order:
            started = time.perf_counter()
            for feeds in work:
                sessions[k].run(None, feeds)
            rates[k].append(len(texts) / (time.perf_counter() - started))
    with tempfile.TemporaryDirectory() as tmp:
        graphs = [optimised_ops(f, args.threads, Path(tmp)) for f in files]
    print(
        f"{args.model}: {len(texts)} texts in {len(work)} length-grouped batches of up to {args.batch}, "
        f"{args.threads} ONNX Runtime thread(s), {args.rounds} interleaved rounds"
    )
    for k, f in enumerate(files):
        same = "same optimised graph as the served file" if graphs[k] == graphs[0] else "another optimised graph"
        name = "served" if k == 0 else f.name
        print(
            f"  {name}: {f.stat().st_size / 1e6:.1f} MB, median {statistics.median(rates[k]):,.1f} texts/s "
            f"(rounds {', '.join(f'{x:,.0f}' for x in rates[k])}); {same}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
