"""benchmarks/onnx_ab.py: every file timed in every round, and the optimised-graph comparison told apart."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.support.tiny_models import add_model
from training.quantize import quantize_int8

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def onnx_ab(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports text_models as the script run from there would
    spec = importlib.util.spec_from_file_location("onnx_ab", BENCHMARKS / "onnx_ab.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("text_models", None)


def test_it_times_each_file_in_each_round_and_compares_the_optimised_graphs(onnx_ab, tmp_path, monkeypatch, capsys):
    add_model(tmp_path / "repo", "spam", "spam")
    served = tmp_path / "repo" / "spam" / "1" / "model.onnx"
    twin = shutil.copyfile(served, tmp_path / "twin.onnx")
    int8 = quantize_int8(served, tmp_path / "int8.onnx")
    monkeypatch.setattr(onnx_ab, "dataset_texts", lambda card, n: ["free prize now", "call me", "free"] * 4)
    args = ["spam", str(twin), str(int8), "--repository", str(tmp_path / "repo"), "--rounds", "3", "--batch", "4"]
    assert onnx_ab.main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("spam: 12 texts in ") and "3 interleaved rounds" in lines[0]
    pattern = r"  (\S+): [\d.]+ MB, median [\d,.]+ texts/s \(rounds ([\d, ]+)\); (same|another) optimised graph.*"
    found = [re.fullmatch(pattern, line) for line in lines[1:]]
    assert all(found), lines
    assert [(m.group(1), m.group(3)) for m in found] == [  # type: ignore[union-attr]
        ("served", "same"),
        ("twin.onnx", "same"),
        ("int8.onnx", "another"),
    ]
    assert all(len(m.group(2).split(", ")) == 3 for m in found)  # type: ignore[union-attr]
