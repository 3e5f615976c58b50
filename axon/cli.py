"""`axon serve ...` runs `python -m service ...`; `axon COMMAND ...` runs `python -m training COMMAND ...`.

Each side is imported only once the command names it, so `axon serve` never loads PyTorch and a serving-only
install (no `train` extra) still answers `axon --help`. Arguments pass through unchanged: `axon serve`
accepts exactly what `python -m service` accepts, and `axon train ...` what `python -m training train ...` does.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = """usage: axon serve [ARGS...]
       axon COMMAND [ARGS...]

Serve the model repository, or train, evaluate and export models into it.

  axon serve            serve over HTTP; settings are AXON_* variables (`axon serve --help` lists them);
                        the same as `python -m service`
  axon COMMAND ...      a training command (rebuild, train, evaluate, export, list, ...): the same as
                        `python -m training COMMAND ...`; `axon train --help` shows its options and
                        `axon commands` lists them (needs the `train` extra)
"""


def _serve(argv: list[str]) -> int:
    from service.__main__ import main as serve

    return serve(argv)


# Modules of the `train` extra (pyproject.toml): without them a training command needs that extra.
TRAIN_EXTRA_MODULES = frozenset({"torch", "onnx", "onnxscript", "sklearn", "matplotlib", "tqdm"})


def _training(argv: list[str]) -> int:
    try:
        from training.cli import main as train

        return train(argv)
    except ModuleNotFoundError as missing:
        # Raised at import or, as the training side imports PyTorch lazily, once a command needs it.
        if (missing.name or "").split(".")[0] not in TRAIN_EXTRA_MODULES:
            raise  # anything else is a real bug: show it
        print(
            f"axon {argv[0]}: the training commands need the `train` extra ({missing.name} is not installed): "
            "pip install 'axon[cpu,train]'",
            file=sys.stderr,
        )
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to `service` or `training` and return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(USAGE, end="", file=sys.stderr)
        return 2
    if args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    if args[0] == "serve":
        return _serve(args[1:])
    if args[0] == "commands":
        return _training(["--help"])
    return _training(args)
