"""The package version is written once, in pyproject.toml; the app and `GET /v2` report that one."""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError
from pathlib import Path

import service
from service.app import create_app
from service.settings import Settings

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]["version"]


def test_the_app_reports_the_pyproject_version(tmp_path):
    assert service.__version__ == PYPROJECT
    assert create_app(Settings(model_repository=tmp_path)).version == PYPROJECT


def test_an_uninstalled_checkout_reads_pyproject_itself(monkeypatch):
    def missing(name: str) -> str:
        raise PackageNotFoundError(name)

    monkeypatch.setattr(service, "version", missing)
    assert service._version() == PYPROJECT
