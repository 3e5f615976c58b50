"""Render every kustomization here into rendered/, the files that the tests validate and lint.

    python deploy/kubernetes/render.py          # after any change to base/, overlays/, components/ or kserve/

`kubectl kustomize` does the rendering. Each rendered file records a digest of the sources it came
from, so a machine without kubectl (CI installs none) can still tell that the committed output is
stale; where kubectl is present the test suite renders again and compares the objects themselves.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RENDERED = HERE / "rendered"
SOURCE_DIRS = ("base", "components", "overlays", "kserve")
DIGEST_PREFIX = "# sources-sha256: "


def targets() -> dict[str, Path]:
    """Name of each rendered file -> the kustomization folder it comes from."""
    found = {
        path.name: path for path in sorted((HERE / "overlays").iterdir()) if (path / "kustomization.yaml").is_file()
    }
    found["kserve"] = HERE / "kserve"
    return found


def sources_digest() -> str:
    """SHA-256 over the path and bytes of every source file that a rendering reads."""
    digest = hashlib.sha256()
    for folder in SOURCE_DIRS:
        for path in sorted(p for p in (HERE / folder).rglob("*") if p.is_file()):
            digest.update(path.relative_to(HERE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def kustomize(folder: Path) -> str:
    """`kubectl kustomize FOLDER`: the objects as one multi-document YAML stream."""
    return subprocess.run(["kubectl", "kustomize", str(folder)], check=True, capture_output=True, text=True).stdout


def kustomize_version() -> str:
    """The Kustomize version that kubectl embeds, for the rendered files' header."""
    out = subprocess.run(["kubectl", "version", "--client"], check=True, capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Kustomize")), "unknown")


def main() -> int:
    RENDERED.mkdir(exist_ok=True)
    header = (
        "# Rendered by deploy/kubernetes/render.py with kubectl kustomize "
        f"(Kustomize {kustomize_version()}); do not edit.\n"
        f"{DIGEST_PREFIX}{sources_digest()}\n"
    )
    for name, folder in targets().items():
        (RENDERED / f"{name}.yaml").write_text(header + kustomize(folder))
        print(f"rendered/{name}.yaml <- {folder.relative_to(HERE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
