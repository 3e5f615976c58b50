"""The web page without a browser: its files, their security headers, the setting that turns it off, and the
card and plot files of a model version (tests/service/test_ui_browser.py drives it in chromium)."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from pathlib import Path

import pytest

from service.ui import STATIC_DIR
from tests.support.app_harness import serving, tiny_settings

ROOT = Path(__file__).resolve().parents[2]
STATIC_FILES = sorted(p for p in STATIC_DIR.rglob("*") if p.is_file())
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository folder with one model version holding a card, two plots and the files never served."""
    version = tmp_path / "models" / "digits" / "1"
    version.mkdir(parents=True)
    (version / "card.json").write_text(json.dumps({"metrics": {"test": {"accuracy": 0.99}}}))
    (version / "curves.png").write_bytes(PNG)
    (version / "roc.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (version / "a.png").write_bytes(PNG)  # sorts before card.json, which is listed first all the same
    (version / "folder.png").mkdir()  # a name that matches, but not a file
    (version / "model.onnx").write_bytes(b"weights")
    (version / "config.json").write_text("{}")
    (version / ".hidden.png").write_bytes(PNG)
    (tmp_path / "secret.png").write_bytes(PNG)
    (version / "escape.png").symlink_to(tmp_path / "secret.png")
    return tmp_path / "models"


def test_static_files_exist_and_the_page_names_only_them() -> None:
    names = {p.relative_to(STATIC_DIR).as_posix() for p in STATIC_FILES}
    assert {"index.html", "app.js", "app.css", "samples/machine-temperature.json", "samples/thyroid-rows.json"} <= names
    html = (STATIC_DIR / "index.html").read_text()
    for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert ref in names, ref
    for ref in re.findall(r'"(samples/[^"]+)"', (STATIC_DIR / "app.js").read_text()):
        assert ref in names, ref


@pytest.mark.parametrize("path", STATIC_FILES, ids=lambda p: p.name)
def test_static_files_load_nothing_from_another_origin(path: Path) -> None:
    text = path.read_text()
    # No absolute or protocol-relative URL: no CDN, web font or analytics (the SVG namespace is a name, not a fetch).
    urls = [
        u for u in re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"')]*", text) if "www.w3.org/2000/svg" not in u
    ]
    assert urls == []
    assert "@import" not in text and "@font-face" not in text


def test_the_html_has_no_inline_script_style_or_handlers() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    assert re.findall(r"<script(?![^>]*\ssrc=)[^>]*>", html) == []  # every script is a file
    assert [body for body in re.findall(r"<script[^>]*>(.*?)</script>", html, re.S) if body.strip()] == []
    assert "<style" not in html and " style=" not in html
    assert re.findall(r"\son[a-z]+=", html) == []
    # The script builds nodes with textContent: model labels and user texts are never parsed as HTML.
    assert "innerHTML" not in (STATIC_DIR / "app.js").read_text()


def test_the_wheel_ships_every_static_file() -> None:
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = package_data["service.ui"]
    for path in STATIC_FILES:
        name = path.relative_to(STATIC_DIR.parent).as_posix()
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), f"{name} is not in the wheel"


async def test_the_page_and_its_files_are_served_with_a_strict_csp(tmp_path: Path) -> None:
    async with serving(tiny_settings(tmp_path), wait_ready=False) as (_, client):
        for path in ("/", "/ui"):
            moved = await client.get(path)
            assert moved.status_code == 307 and moved.headers["location"] == "/ui/"
        page = await client.get("/ui/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<canvas id="draw"' in page.text
        for path in STATIC_FILES:
            answer = await client.get(f"/ui/{path.relative_to(STATIC_DIR).as_posix()}")
            assert answer.status_code == 200 and answer.content == path.read_bytes()
            csp = answer.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "script-src 'self';" in csp
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "frame-ancestors 'none'" in csp
            assert answer.headers["x-content-type-options"] == "nosniff"
        missing = await client.get("/ui/nope.js")
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"


async def test_the_setting_turns_the_page_off(tmp_path: Path) -> None:
    async with serving(tiny_settings(tmp_path, ui=False), wait_ready=False) as (_, client):
        for path in ("/", "/ui", "/ui/", "/ui/app.js"):
            answer = await client.get(path)
            assert answer.status_code == 404 and answer.json()["code"] == "not_found", path
        assert (await client.get("/v2/health/live")).status_code == 200


async def test_the_page_is_open_while_the_api_wants_the_token(tmp_path: Path) -> None:
    async with serving(tiny_settings(tmp_path, auth={"inference_token": "s3cret"}), wait_ready=False) as (_, client):
        assert (await client.get("/ui/")).status_code == 200  # the page asks for the token itself
        assert (await client.get("/v1/models")).status_code == 401
        files = "/v1/models/digits/versions/1/files"
        assert (await client.get(files)).status_code == 401
        assert (await client.get(files, headers={"Authorization": "Bearer s3cret"})).status_code in (200, 404)


async def test_a_version_serves_its_card_and_plots_only(repo: Path) -> None:
    async with serving(tiny_settings(repo), wait_ready=False) as (_, client):
        base = "/v1/models/digits/versions/1/files"
        listing = await client.get(base)
        assert listing.json() == {
            "name": "digits",
            "version": 1,
            "files": ["card.json", "a.png", "curves.png", "roc.svg"],
        }
        card = await client.get(f"{base}/card.json")
        assert card.headers["content-type"] == "application/json"
        assert card.json()["metrics"]["test"]["accuracy"] == 0.99
        plot = await client.get(f"{base}/curves.png")
        assert plot.headers["content-type"] == "image/png" and plot.content == PNG
        svg = await client.get(f"{base}/roc.svg")
        assert svg.headers["content-type"].startswith("image/svg+xml")
        assert svg.headers["content-security-policy"].startswith("default-src 'none'")
        for name in ("model.onnx", "config.json", ".hidden.png", "nope.png", "folder.png"):
            refused = await client.get(f"{base}/{name}")
            assert refused.status_code == 404 and refused.json()["code"] == "file_not_found", name
        escape = await client.get(f"{base}/escape.png")  # a symlink out of the repository
        assert escape.status_code == 400 and escape.json()["code"] == "invalid_name"
        for path, status, code in (
            ("/v1/models/nope/versions/1/files", 404, "model_not_found"),
            ("/v1/models/digits/versions/2/files/card.json", 404, "version_not_found"),
            ("/v1/models/digits/versions/01/files", 400, "invalid_name"),
            ("/v1/models/.digits/versions/1/files", 400, "invalid_name"),
            # An encoded separator is decoded before routing: no route has that many segments.
            ("/v1/models/..%2Fdigits/versions/1/files", 404, "not_found"),
            (f"{base}/..%2F..%2Fsecret.png", 404, "not_found"),
            (f"{base}/..secret.png", 404, "file_not_found"),
        ):
            answer = await client.get(path)
            assert (answer.status_code, answer.json()["code"]) == (status, code), path


async def test_the_sample_series_has_flagged_segments_on_the_default_model(tmp_path: Path) -> None:
    sample = json.loads((STATIC_DIR / "samples" / "machine-temperature.json").read_text())
    rows = json.loads((STATIC_DIR / "samples" / "thyroid-rows.json").read_text())["rows"]
    settings = tiny_settings(ROOT / "models", default_models={}, validate_models=False)
    async with serving(settings) as (_, client):
        series = (await client.post("/v1/anomaly/score", json={"series": sample["series"]})).json()
        assert len(series["results"]) == len(sample["series"]) and series["segments"], series.get("error")
        flagged = (await client.post("/v1/anomaly/score", json={"samples": list(rows.values())})).json()["results"]
        assert [r["is_anomaly"] for r in flagged] == [False, True]  # the page's two rows show both answers
