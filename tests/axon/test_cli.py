"""The `axon` console script: dispatch to `service` or `training`, importing only the side a command names."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest

from axon import cli

ROOT = Path(__file__).resolve().parents[2]


def run(code: str) -> subprocess.CompletedProcess:
    """Run Python code in a fresh interpreter from the repository root (so `sys.modules` starts empty)."""
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_console_script_points_at_the_dispatcher() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"axon": "axon.cli:main"}


def test_importing_the_dispatcher_imports_neither_side() -> None:
    done = run("import sys, axon.cli; print(sorted(m for m in ('service', 'training', 'torch') if m in sys.modules))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_serve_help_is_the_service_help_without_training_or_torch() -> None:
    done = run(
        "import sys; from axon.cli import main; rc = main(['serve', '--help']); "
        "print('LOADED', sorted(m for m in ('training', 'torch') if m in sys.modules)); sys.exit(rc)"
    )
    assert done.returncode == 0, done.stderr
    direct = subprocess.run(
        [sys.executable, "-m", "service", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert direct.returncode == 0, direct.stderr
    text, loaded = done.stdout.rsplit("LOADED ", 1)
    assert text == direct.stdout
    assert loaded.strip() == "[]"


def test_serve_passes_every_argument_through(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    fake = types.ModuleType("service.__main__")
    fake.main = lambda argv: seen.append(argv) or 7
    monkeypatch.setitem(sys.modules, "service.__main__", fake)
    assert cli.main(["serve", "--port", "9000", "--whatever"]) == 7
    assert seen == [["--port", "9000", "--whatever"]]


def test_other_commands_go_to_the_training_cli_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    fake = types.ModuleType("training.cli")
    fake.main = lambda argv: seen.append(argv) or 3
    monkeypatch.setitem(sys.modules, "training.cli", fake)
    assert cli.main(["train", "my-digits", "--family", "cnn"]) == 3
    assert cli.main(["datasets", "list"]) == 3
    assert cli.main(["commands"]) == 3
    assert seen == [["train", "my-digits", "--family", "cnn"], ["datasets", "list"], ["--help"]]


def test_help_lists_both_sides_and_no_arguments_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "axon serve" in out and "python -m service" in out and "python -m training" in out
    assert cli.main([]) == 2
    assert "usage: axon" in capsys.readouterr().err


def test_a_serving_only_install_gets_one_line_not_a_traceback() -> None:
    # The training CLI's import fails as it does without the `train` extra (no torch).
    done = run(
        "import sys, importlib.abc\n"
        "class NoTorch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'training.cli':\n"
        "            raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from axon.cli import main\n"
        "sys.exit(main(['train', '--help']))\n"
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "axon train: the training commands need the `train` extra (torch is not installed): "
        "pip install 'axon[cpu,train]'"
    ]


def test_a_broken_import_of_our_own_code_is_not_disguised_as_a_missing_extra() -> None:
    done = run(
        "import sys\n"
        "sys.modules['training.cli'] = None\n"  # makes `import training.cli` raise ModuleNotFoundError
        "from axon.cli import main\n"
        "main(['list'])\n"
    )
    assert done.returncode == 1 and "Traceback" in done.stderr and "train` extra" not in done.stderr


def test_python_dash_m_axon_is_the_console_script() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "axon", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.startswith("usage: axon"), done.stderr


def test_a_missing_train_dependency_met_while_running_is_one_line_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def needs(name: str):
        def main(argv: list[str]) -> int:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

        return main

    fake = types.ModuleType("training.cli")
    monkeypatch.setitem(sys.modules, "training.cli", fake)
    fake.main = needs("sklearn.model_selection")
    assert cli.main(["evaluate", "x"]) == 2
    assert "`train` extra (sklearn.model_selection is not installed)" in capsys.readouterr().err
    fake.main = needs("pandas")  # not ours to explain: the real error must surface
    with pytest.raises(ModuleNotFoundError):
        cli.main(["evaluate", "x"])
