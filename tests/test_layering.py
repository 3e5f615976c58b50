"""The arrows point one way: training and the service both import the repository format, never each other."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_packages(package: str) -> dict[str, set[str]]:
    """Each module file of `package` -> the top-level packages it imports (at any depth, lazy imports included)."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tops = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                tops |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = tops
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("training", {"service"}), ("service", {"training"}), ("modelrepo", {"service", "training", "axon"})],
)
def test_no_import_crosses_the_layers(package, forbidden):
    modules = imported_packages(package)
    assert len(modules) >= 5, f"expected the modules of {package}/, found {sorted(modules)}"
    crossing = {module: sorted(tops & forbidden) for module, tops in modules.items() if tops & forbidden}
    assert crossing == {}


def test_the_walk_sees_lazy_imports(tmp_path, monkeypatch):
    # The check above must not miss an import hidden inside a function (training imports torch lazily that way).
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("def f():\n    from service.errors import AxonError\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert imported_packages("pkg") == {"pkg/a.py": {"service"}}
