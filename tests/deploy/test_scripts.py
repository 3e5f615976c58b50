"""scripts/_env.sh: install only when something changed, one ONNX Runtime flavour, CPU torch, bounded probes.

A fake interpreter in a temporary venv logs every call instead of installing anything; `pip index` (the
probe) goes to the real pip, against local indexes only.
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$AXON_FAKE_LOG"
case "$1 $2 $3" in
  "-m pip index") exec {real} "$@" ;;
  "-m pip show") [ -n "${{AXON_FAKE_INSTALLED:-}}" ] && [ "$4" = "-q" ] && [ "$5" = "$AXON_FAKE_INSTALLED" ] ;;
  "-m pip "*) exit 0 ;;
  "-VV  ") exec {real} -VV ;;
  "-m ruff "* | "-m mypy "* | "-m pytest "*)  # the checks and the suite: AXON_FAKE_FAIL names one that fails
    case "$*" in *"${{AXON_FAKE_FAIL:-(none)}}"*) exit 3 ;; esac ;;
  *) exit 1 ;;  # e.g. the "is torch installed" check: it is not
esac
"""


@pytest.fixture
def project(tmp_path: Path) -> dict:
    """A copy of scripts/ and pyproject.toml with a fake venv; returns the env to run the scripts with."""
    root = tmp_path / "axon"
    shutil.copytree(ROOT / "scripts", root / "scripts")
    shutil.copy(ROOT / "pyproject.toml", root)
    venv = root / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").write_text(FAKE_PYTHON.format(real=sys.executable))
    (venv / "python").chmod(0o755)
    (venv / "axon").write_text("")
    (venv / "axon").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AXON_", "PIP_"))}
    # No pip cache: a later test's local index may reuse a port, and a cached page would answer for it.
    env.update(
        AXON_FAKE_LOG=str(tmp_path / "calls.log"), PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1", PIP_NO_CACHE_DIR="1"
    )
    return {"root": root, "env": env, "log": tmp_path / "calls.log"}


def bash(project: dict, script: str, **env: str) -> subprocess.CompletedProcess:
    """Source _env.sh in the copied project and run `script`; returns the process, log lines in .calls."""
    project["log"].write_text("")
    done = subprocess.run(
        ["bash", "-c", f'source "{project["root"]}/scripts/_env.sh"; {script}'],
        env={**project["env"], **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    done.calls = [line for line in project["log"].read_text().splitlines() if line != "-VV"]
    return done


def installs(done: subprocess.CompletedProcess) -> list[str]:
    return [c for c in done.calls if c.startswith(("-m pip install", "-m pip uninstall"))]


def test_installs_once_then_only_when_pyproject_changes(project: dict) -> None:
    first = bash(project, "ensure_installed cpu")
    assert first.returncode == 0, first.stderr
    assert installs(first) == [f"-m pip install -q --disable-pip-version-check -e {project['root']}[cpu]"]
    assert installs(bash(project, "ensure_installed cpu")) == [], "a second start must not reinstall"
    with (project["root"] / "pyproject.toml").open("a") as f:
        f.write("\n# changed\n")
    assert len(installs(bash(project, "ensure_installed cpu"))) == 1
    assert installs(bash(project, "ensure_installed cpu", AXON_REINSTALL="1")) != []


def test_the_dev_install_satisfies_serve_but_not_the_reverse(project: dict) -> None:
    assert installs(bash(project, "ensure_installed cpu dev"))
    assert installs(bash(project, "ensure_installed cpu")) == []
    assert installs(bash(project, "ensure_installed cpu dev")) == []


def test_switching_flavour_uninstalls_the_other_package_first(project: dict) -> None:
    bash(project, "ensure_installed cpu")
    done = bash(project, "ensure_installed gpu", AXON_FAKE_INSTALLED="onnxruntime")
    if os.uname().machine == "x86_64":
        assert installs(done)[0] == "-m pip uninstall -q -y onnxruntime"
    assert installs(done)[-1].endswith("[gpu]")
    # The cpu stamp no longer holds: going back installs (and removes onnxruntime-gpu) again.
    back = bash(project, "ensure_installed cpu", AXON_FAKE_INSTALLED="onnxruntime-gpu")
    assert installs(back) == [
        "-m pip uninstall -q -y onnxruntime-gpu",
        f"-m pip install -q --disable-pip-version-check -e {project['root']}[cpu]",
    ]


def test_flavour_choice(project: dict) -> None:
    assert bash(project, "ort_flavour", AXON_ONNXRUNTIME="gpu").stdout == "gpu\n"
    assert bash(project, "ort_flavour", AXON_ONNXRUNTIME="cpu").stdout == "cpu\n"
    auto = "gpu" if Path("/proc/driver/nvidia/version").exists() and os.uname().machine == "x86_64" else "cpu"
    assert bash(project, "ort_flavour").stdout == f"{auto}\n"
    bad = bash(project, "ort_flavour", AXON_ONNXRUNTIME="cuda")
    assert bad.returncode == 2 and "must be cpu, gpu or auto" in bad.stderr


def test_serve_passes_its_arguments_to_the_service(project: dict) -> None:
    project["log"].write_text("")
    done = subprocess.run(
        [str(project["root"] / "scripts/serve"), "--port", "9"],
        env=project["env"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    calls = project["log"].read_text().splitlines()
    assert done.returncode == 1  # the fake interpreter "fails" to serve
    assert calls[-1] == "-m service --port 9"


def run_tests(project: dict, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run scripts/test in the copied project; returns the process and the checks and suite it started."""
    project["log"].write_text("")
    done = subprocess.run(
        [str(project["root"] / "scripts/test"), *args],
        env={**project["env"], **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    calls = project["log"].read_text().splitlines()
    return done, [c for c in calls if c.startswith(("-m ruff", "-m mypy", "-m pytest"))]


def test_test_script_lints_and_type_checks_before_the_suite(project: dict) -> None:
    done, steps = run_tests(project, "-x", "tests/service")
    assert done.returncode == 0, done.stderr
    assert steps == ["-m ruff check .", "-m ruff format --check .", "-m mypy", "-m pytest -q -x tests/service"]


@pytest.mark.parametrize("failing", ["-m ruff check", "-m ruff format", "-m mypy"])
def test_a_failing_check_stops_the_test_script_before_the_suite(project: dict, failing: str) -> None:
    done, steps = run_tests(project, AXON_FAKE_FAIL=failing)
    assert done.returncode == 1
    assert steps[-1].startswith(failing) and not any(s.startswith("-m pytest") for s in steps)
    assert f"FAILED: {failing.removeprefix('-m ')}" in done.stderr


def test_ci_runs_exactly_the_readme_test_command() -> None:
    lines = (ROOT / ".ci/run").read_text().splitlines()
    assert [line for line in lines if line and not line.startswith("#")][-1] == "exec ./scripts/test"


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def index(tmp_path: Path) -> Iterator[callable]:
    """A local PEP 503 index offering the given torch versions; yields a function making one."""
    servers = []

    def make(*versions: str) -> str:
        folder = tmp_path / f"index{len(servers)}" / "torch"
        folder.mkdir(parents=True)
        links = "".join(f'<a href="torch-{v}-py3-none-any.whl">torch-{v}-py3-none-any.whl</a>\n' for v in versions)
        (folder / "index.html").write_text(f"<html><body>{links}</body></html>")
        handler = lambda *a: Quiet(*a, directory=str(folder.parent))  # noqa: E731
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/"

    yield make
    for server in servers:
        server.shutdown()


def torch_installs(done: subprocess.CompletedProcess) -> list[str]:
    return [c.removeprefix("-m pip install -q --disable-pip-version-check ") for c in installs(done)]


def test_cpu_torch_from_the_configured_sources_needs_no_extra_index(project: dict, index) -> None:
    done = bash(project, "install_torch", PIP_INDEX_URL=index("2.13.0", "2.13.0+cpu"))
    assert done.returncode == 0, done.stderr
    if sys.platform == "linux":
        assert "torch 2.13.0+cpu from pip's configured sources" in done.stderr
    assert torch_installs(done) == ["torch==2.13.0"]


def test_cpu_torch_index_is_added_only_where_it_offers_the_cpu_build(project: dict, index) -> None:
    cpu = index("2.13.0+cpu")
    done = bash(project, "install_torch", PIP_INDEX_URL=index("2.13.0"), AXON_TORCH_CPU_INDEX=cpu)
    if sys.platform == "linux":
        assert torch_installs(done) == [f"torch==2.13.0 --extra-index-url {cpu}"]
    # The CPU index has no CPU build: warn and install from the configured index, never fail.
    done = bash(project, "install_torch", PIP_INDEX_URL=index("2.13.0"), AXON_TORCH_CPU_INDEX=index("2.12.0"))
    assert done.returncode == 0 and torch_installs(done) == ["torch==2.13.0"]
    if sys.platform == "linux":
        assert "WARNING" in done.stderr and "AXON_TORCH_INDEX_URL" in done.stderr


def test_an_explicit_torch_index_is_used_as_given_without_probing(project: dict) -> None:
    done = bash(project, "install_torch", AXON_TORCH_INDEX_URL="https://example.invalid/whl/cu130")
    assert torch_installs(done) == ["torch==2.13.0 --extra-index-url https://example.invalid/whl/cu130"]
    assert not any(c.startswith("-m pip index") for c in done.calls)
    done = bash(project, "install_torch", AXON_TORCH_INDEX_URL="")
    assert torch_installs(done) == ["torch==2.13.0"] and not any("pip index" in c for c in done.calls)


def test_an_index_that_never_answers_costs_seconds_not_minutes(project: dict, index) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # connections complete, nothing is ever sent back
    try:
        t0 = time.monotonic()
        done = bash(
            project,
            "install_torch",
            PIP_INDEX_URL=index("2.13.0"),
            AXON_TORCH_CPU_INDEX=f"http://127.0.0.1:{silent.getsockname()[1]}/",
            PIP_DEFAULT_TIMEOUT="180",
        )
        elapsed = time.monotonic() - t0
    finally:
        silent.close()
    assert done.returncode == 0 and torch_installs(done) == ["torch==2.13.0"]
    assert elapsed < 60, f"the probe of an unresponsive index took {elapsed:.0f} s"
