"""Issue 12.4: every code block of the README runs as written, or says why not (`<!-- not run: why -->` above it).

Shell blocks run command by command in bash from the checkout, against a real `python -m service` on a copy
of the default models; `curl` fails on an HTTP error, and a `# {...}` line under a command is the answer it
must give (numbers to the digits shown, `...` for the rest of an object). Python blocks run as scripts, and a
`print(...)  # X` line must print X. JSON blocks are checked for what they are: a model config validates, an
error body is what the server answers. The one liberty taken: `localhost:8000` becomes the test server's port.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelrepo.config import ModelConfig
from tests.support.live_server import live_server

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
MARK = re.compile(r"<!-- not run: (.+?) -->")
RUNNERS = ("bash", "python", "json")


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, code, first line in the README, and the reason it is not run (if marked)."""

    lang: str
    code: str
    line: int
    not_run: str | None


def blocks(text: str = README) -> list[Block]:
    """Every fenced code block of a Markdown text, with the `not run` marker of the line just above it."""
    found, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        if lines[i].startswith("```"):
            lang, start = lines[i][3:].strip(), i
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            mark = MARK.fullmatch(lines[i - 1].strip()) if i else None
            found.append(Block(lang, "\n".join(lines[i + 1 : end]), start + 1, mark.group(1) if mark else None))
            i = end
        i += 1
    return found


RUN = [b for b in blocks() if b.not_run is None]


def test_every_block_is_run_or_says_why_not():
    every = blocks()
    assert len(every) > 15
    unmarked_unknown = [f"line {b.line}: ```{b.lang}" for b in RUN if b.lang not in RUNNERS]
    assert not unmarked_unknown, f"blocks with no runner need <!-- not run: why -->: {unmarked_unknown}"
    assert all(len(b.not_run or "x" * 10) >= 10 for b in every), "a not-run marker says why"
    assert {b.lang for b in RUN} == set(RUNNERS)  # the README has blocks of each kind that run


def test_the_block_parser_sees_markers_and_languages():
    text = "a\n\n<!-- not run: needs docker -->\n```bash\ndocker ps\n```\n\n```python\nprint(1)  # 1\n```\n"
    assert blocks(text) == [Block("bash", "docker ps", 4, "needs docker"), Block("python", "print(1)  # 1", 8, None)]


# --- running them --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> str:
    """The service on a copy of the default models (blocks load and unload), with `my-digits` as if trained."""
    tmp = tmp_path_factory.mktemp("readme")
    repo = tmp / "models"
    shutil.copytree(ROOT / "models", repo)
    # Stands in for the (not run) `train my-digits` command: a model folder the server has not loaded yet.
    shutil.copytree(ROOT / "models" / "mnist-cnn", repo / "my-digits")
    config = json.loads((repo / "my-digits" / "config.json").read_text())
    (repo / "my-digits" / "config.json").write_text(json.dumps(config | {"name": "my-digits"}))
    with live_server(tmp / "server.log", AXON_MODEL_REPOSITORY=str(repo)) as url:
        # Loaded at start-up like every folder; unload it so the block meets it as a freshly trained model.
        httpx.post(f"{url}/v2/repository/models/my-digits/unload", timeout=30).raise_for_status()
        yield url


def local(code: str, url: str) -> str:
    port = url.rsplit(":", 1)[1]
    return re.sub(r"(localhost|127\.0\.0\.1):8000", rf"\g<1>:{port}", code)


def commands(code: str) -> list[tuple[str, str | None]]:
    """Shell commands (continuation lines joined) and the `# ...` answer line under each, if any."""
    out: list[tuple[str, str | None]] = []
    pending = ""
    for line in code.split("\n"):
        if pending:
            pending += "\n" + line
        elif line.startswith("# ") and out:
            out[-1] = (out[-1][0], line[2:])
            continue
        elif line.strip():
            pending = line
        if pending and not pending.endswith("\\"):
            out.append((pending, None))
            pending = ""
    return out


def matches(expected: Any, actual: Any) -> bool:
    """`actual` has what `expected` shows: dict keys as a subset, numbers to the digits shown, lists whole."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and matches(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(expected) == len(actual) and all(map(matches, expected, actual))
    if isinstance(expected, float) and isinstance(actual, int | float) and not isinstance(actual, bool):
        # Rounded to the last digit shown: within half a unit of it, and float noise. ONNX Runtime's fp32 sums
        # differ in their last bits between runs and CPUs, and the service prints six significant digits, so a
        # tiny probability can land one unit of its sixth digit away: the README's 6.47648e-09 was once served
        # as 6.47649e-09 (a relative change of 1.5e-6, a logit moving by as much).
        mantissa, _, exponent = repr(expected).partition("e")
        unit = 10.0 ** (int(exponent or 0) - len(mantissa.partition(".")[2]))
        return math.isclose(expected, actual, rel_tol=1e-5, abs_tol=0.6 * unit)
    return bool(expected == actual)


def shown(answer: str) -> Any:
    """The JSON an answer line shows; `...` stands for the rest of an object."""
    return json.loads(re.sub(r",\s*\.\.\.\s*}", "}", answer))


def run_bash(block: Block, url: str) -> None:
    # `curl` as written, but an HTTP error status fails the command (and shows the body).
    prelude = 'curl() { command curl -sS --fail-with-body "$@"; }\n'
    for command, answer in commands(local(block.code, url)):
        done = subprocess.run(["bash", "-c", prelude + command], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"README line {block.line}: {command}\n{done.stdout}{done.stderr}"
        if answer is not None and answer.lstrip().startswith(("{", "[")):
            got = json.loads(done.stdout)
            assert matches(shown(answer), got), f"README line {block.line}: {command}\nshows {answer}\ngot   {got}"


def run_python(block: Block, url: str, tmp_path: Path) -> None:
    script = tmp_path / "block.py"
    script.write_text(local(block.code, url))
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, f"README line {block.line}:\n{done.stderr}"
    wanted = re.findall(r"^\s*print\(.*\)\s+#\s*(.+)$", block.code, re.M)
    assert done.stdout.split() == wanted, f"README line {block.line}: printed {done.stdout!r}, shows {wanted}"


def run_json(block: Block, url: str) -> None:
    value = json.loads(block.code)
    if "task" in value:  # a model config: the schema accepts it as written
        ModelConfig.model_validate(value)
    elif "error" in value:  # the error body: what the server answers for that unknown model
        model = re.search(r"model '([^']+)'", value["error"]).group(1)
        got = httpx.post(f"{url}/v1/text/classify", json={"model": model, "texts": ["hi"]}, timeout=30)
        assert got.json() == value
    else:
        raise AssertionError(f"README line {block.line}: a JSON block this test does not know how to check")


@pytest.mark.parametrize("block", RUN, ids=[f"line{b.line}-{b.lang}" for b in RUN])
def test_readme_block_runs(block: Block, server: str, tmp_path):
    {
        "bash": lambda: run_bash(block, server),
        "python": lambda: run_python(block, server, tmp_path),
        "json": lambda: run_json(block, server),
    }[block.lang]()


def test_the_answer_check_can_fail():
    assert matches(shown('{"label":"2","score":0.9986,...}'), {"label": "2", "score": 0.99862, "x": 1})
    assert not matches(shown('{"label":"2","score":0.9986}'), {"label": "2", "score": 0.9975})
    assert not matches(shown('{"label":"2"}'), {"label": "8"})
    assert not matches([1, 2], [1, 2, 3])
    assert matches(6.5e-09, 6.476e-09) and not matches(6.5e-09, 7.1e-09) and matches(0.0366, 0.036632)
    assert matches(6.47648e-09, 6.47649e-09) and not matches(6.47648e-09, 6.4766e-09)  # float noise, not more
    assert commands("a \\\n  b\n# {}\nc") == [("a \\\n  b", "{}"), ("c", None)]
