"""Are the explanations faithful? Deletion curves and injected anomalies on the held-out test splits.

Runs the service's own attribution functions (`service.explain.*`) on ONNX Runtime sessions of the
committed models, on the test split each model card names (`training.data.split`, seed 0, 80/10/10):

- vision and text: delete the top-k attributed pixels (set to background) or tokens (removed) versus k
  random ones (seeded), and print the mean drop of the explained (predicted) class's probability;
- tabular anomalies: add `--sigma` standard deviations to one random feature of a normal test row and
  count how often the reconstruction-share ranking puts that feature first (and in its top 3).

    python benchmarks/faithfulness.py                    # datasets from AXON_DATASETS or ../shared/datasets
    python benchmarks/faithfulness.py --n 50             # fewer items, quicker
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from modelrepo import scoring  # noqa: E402
from service.explain import anomaly, text, vision  # noqa: E402
from service.repository import discover_model  # noqa: E402
from service.settings import Limits  # noqa: E402
from service.tasks import build_codec  # noqa: E402
from service.tasks.text import TextCodec  # noqa: E402
from training.data.images import image_batch, load_mnist_pool  # noqa: E402
from training.data.split import POOL_SPLIT, stratified_split  # noqa: E402
from training.data.tabular import is_anomaly, load_thyroid  # noqa: E402
from training.data.text import load_sentiment, load_sms_spam  # noqa: E402

PIXEL_FRACTIONS = (0.02, 0.05, 0.1, 0.2)
TOKEN_COUNTS = (1, 2, 3)


def datasets() -> Path:
    return Path(os.environ.get("AXON_DATASETS", ROOT.parent / "shared" / "datasets"))


def load(models: Path, name: str) -> tuple[object, ort.InferenceSession]:
    (descriptor, *_) = discover_model(models / name)
    codec = build_codec(descriptor.config, descriptor.path, Limits())
    session = ort.InferenceSession(str(descriptor.path / "model.onnx"), providers=["CPUExecutionProvider"])
    return codec, session


def test_split(y: np.ndarray) -> np.ndarray:
    return stratified_split(y, POOL_SPLIT, seed=0)[2]


def probs(session: ort.InferenceSession, feeds: dict[str, np.ndarray], batch: int = 256) -> np.ndarray:
    rows = len(next(iter(feeds.values())))
    out = [session.run(None, {k: v[i : i + batch] for k, v in feeds.items()})[0] for i in range(0, rows, batch)]
    return scoring.softmax(np.concatenate(out).astype(np.float64))


def vision_curve(models: Path, n: int, rng: np.random.Generator) -> dict[str, object]:
    """Occlusion saliency (4x4 patches) on mnist-cnn: delete top vs random pixel fractions."""
    codec, session = load(models, "mnist-cnn")
    spec = codec.spec  # type: ignore[attr-defined]
    images, y = load_mnist_pool(datasets() / "mnist_test10k")
    idx = test_split(y.astype(np.int64))[:n]
    raw = image_batch(images[idx])  # (N, 1, H, W) in [0, 1]
    x = ((raw - np.asarray(spec.mean)[:, None, None]) / np.asarray(spec.std)[:, None, None]).astype(np.float32)
    masks = vision.occlusion_masks(spec.height, spec.width, 4)
    fill = vision.background(spec)
    name = codec.input  # type: ignore[attr-defined]
    top: dict[float, list[float]] = {f: [] for f in PIXEL_FRACTIONS}
    rand: dict[float, list[float]] = {f: [] for f in PIXEL_FRACTIONS}
    for img in x:
        p = probs(session, {name: np.concatenate([img[None], vision.occluded(img, masks, fill)])})
        k = int(np.argmax(p[0]))
        heat = vision.saliency(p[0, k], p[1:, k], masks).ravel()
        order = np.argsort(-heat + rng.uniform(0, 1e-9, heat.shape), kind="stable")
        variants, which = [], []
        for frac in PIXEL_FRACTIONS:
            count = round(frac * heat.size)
            for kind, chosen in (("top", order[:count]), ("random", rng.permutation(heat.size)[:count])):
                flat = img.reshape(img.shape[0], -1).copy()
                flat[:, chosen] = fill[:, None]
                variants.append(flat.reshape(img.shape))
                which.append((frac, kind))
        q = probs(session, {name: np.stack(variants)})[:, k]
        for (frac, kind), value in zip(which, q):
            (top if kind == "top" else rand)[frac].append(p[0, k] - value)
    return {
        "model": "mnist-cnn",
        "items": len(x),
        "passes_each": 1 + len(masks),
        "drop": {f"{f:.0%}": {"top": float(np.mean(top[f])), "random": float(np.mean(rand[f]))} for f in top},
    }


def text_curve(models: Path, name: str, n: int, rng: np.random.Generator, only: str | None = None) -> dict[str, object]:
    """Leave-one-token-out on a text model: remove the top-k tokens vs k random real tokens (`only`: one class)."""
    codec, session = load(models, name)
    assert isinstance(codec, TextCodec)
    if "sentiment" in name:
        texts, labels = load_sentiment(datasets() / "sentiment_labelled_sentences")
    else:
        texts, labels = load_sms_spam(datasets() / "sms_spam" / "SMSSpamCollection.tsv")
    names = sorted(set(labels))
    idx = test_split(np.array([names.index(v) for v in labels]))
    if only is not None:
        idx = np.array([i for i in idx if labels[i] == only])
    idx = rng.permutation(idx)[:n]
    top: dict[int, list[float]] = {k: [] for k in TOKEN_COUNTS}
    rand: dict[int, list[float]] = {k: [] for k in TOKEN_COUNTS}
    passes = []
    for i in idx:
        t = texts[i].lower() if codec.spec.lowercase else texts[i]
        ids = codec.tokenizer.encode(t).ids
        rows, positions = text.leave_one_out(ids, codec.special_ids)
        if len(positions) <= max(TOKEN_COUNTS):
            continue
        base = probs(session, text.model_inputs(codec, np.array([ids], np.int64)))[0]
        k = int(np.argmax(base))
        contrib = base[k] - probs(session, text.model_inputs(codec, rows))[:, k]
        passes.append(1 + len(positions))
        order = [positions[j] for j in np.argsort(-contrib, kind="stable")]
        for count in TOKEN_COUNTS:
            for kind, chosen in (("top", order[:count]), ("random", list(rng.permutation(positions)[:count]))):
                kept = np.array([[t for j, t in enumerate(ids) if j not in set(chosen)]], np.int64)
                drop = base[k] - probs(session, text.model_inputs(codec, kept))[0, k]
                (top if kind == "top" else rand)[count].append(drop)
    return {
        "model": name if only is None else f"{name} ({only} only)",
        "items": len(passes),
        "mean_passes": float(np.mean(passes)),
        "drop": {str(c): {"top": float(np.mean(top[c])), "random": float(np.mean(rand[c]))} for c in top},
    }


def tabular_hits(models: Path, n: int, sigma: float, rng: np.random.Generator) -> dict[str, object]:
    """Inject `sigma` standard deviations into one random feature of normal test rows; is it ranked first?"""
    codec, session = load(models, "thyroid-autoencoder")
    rows, cls = load_thyroid(datasets() / "thyroid_ann" / "ann-train.data")
    y = np.asarray(is_anomaly(cls)).astype(np.int64)
    normal = [i for i in test_split(y) if y[i] == 0][:n]
    out = [o.name for o in session.get_outputs()]
    features = len(codec.spec.features)  # type: ignore[attr-defined]
    first = top3 = 0
    for i in normal:
        f = int(rng.integers(features))
        z = codec.encode([rows[i].astype(np.float64).tolist()])[codec.input].copy()  # type: ignore[attr-defined]
        z[0, f] += sigma  # standardised space: sigma training standard deviations
        result = dict(zip(out, session.run(None, {codec.input: z})))  # type: ignore[attr-defined]
        ranking = np.argsort(-anomaly.error_shares(z, result["reconstruction"])[0], kind="stable")
        first += int(ranking[0] == f)
        top3 += int(f in ranking[:3])
    return {
        "model": "thyroid-autoencoder",
        "rows": len(normal),
        "sigma": sigma,
        "top1": first / len(normal),
        "top3": top3 / len(normal),
        "chance_top1": 1 / features,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--n", type=int, default=200, help="held-out items per model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    report = {
        "vision": vision_curve(args.models, args.n, rng),
        "text": [
            text_curve(args.models, "sms-spam-transformer", args.n, rng),
            # 87% of the split is ham, answered with p ~ 1 whatever is removed: the spam rows show more.
            text_curve(args.models, "sms-spam-transformer", args.n, rng, only="spam"),
            text_curve(args.models, "sentiment-gru", args.n, rng),
        ],
        "tabular": [tabular_hits(args.models, args.n, s, rng) for s in (3.0, 6.0)],
        "seconds": round(time.perf_counter() - start, 1),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print("| model | deleted | items | drop (top-k) | drop (random) |\n|---|---|---|---|---|")
    for curve in [report["vision"], *report["text"]]:
        assert isinstance(curve, dict)
        for k, d in curve["drop"].items():
            unit = "pixels" if curve["model"] == "mnist-cnn" else "tokens"
            print(f"| {curve['model']} | {k} {unit} | {curve['items']} | {d['top']:.3f} | {d['random']:.3f} |")
    print("\n| model | injected | rows | perturbed feature ranked 1st | in top 3 | chance (1st) |")
    print("|---|---|---|---|---|---|")
    for t in report["tabular"]:
        assert isinstance(t, dict)
        row = f"| {t['model']} | +{t['sigma']:g} sd | {t['rows']} | {t['top1']:.1%} | {t['top3']:.1%} |"
        print(f"{row} {t['chance_top1']:.1%} |")
    print(f"\n{report['seconds']} s")


if __name__ == "__main__":
    main()
