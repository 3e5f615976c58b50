"""The dataset catalogue: fetch over HTTP and file:// with sha256 checks, verify, require, and the CLI."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.data_roots import EXCERPTS, FULL
from training.data import catalog
from training.data.catalog import DataFile, Dataset, DatasetError

THYROID = EXCERPTS / "thyroid_ann" / "ann-train.data"
SMS = EXCERPTS / "sms_spam" / "SMSSpamCollection.tsv"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def mirror(tmp_path) -> Iterator[tuple[str, Path]]:
    """A datasets folder served over HTTP on 127.0.0.1, with one two-file dataset 'tiny'."""
    folder = tmp_path / "mirror"
    (folder / "tiny" / "sub").mkdir(parents=True)
    shutil.copy(THYROID, folder / "tiny" / "rows.data")
    shutil.copy(SMS, folder / "tiny" / "sub" / "texts.tsv")
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tiny(monkeypatch) -> Dataset:
    entry = Dataset(
        "tiny",
        "two excerpt files",
        "https://example.org",
        "CC BY 4.0",
        "tests",
        (
            DataFile("rows.data", THYROID.stat().st_size, sha(THYROID)),
            DataFile("sub/texts.tsv", SMS.stat().st_size, sha(SMS)),
        ),
    )
    monkeypatch.setitem(catalog.CATALOG, "tiny", entry)
    return entry


def test_fetch_from_a_mirror_over_http_verifies_and_is_idempotent(mirror, tiny, tmp_path):
    url, _ = mirror
    into = tmp_path / "data"
    assert catalog.fetch("tiny", into, base_url=url) == ["rows.data", "sub/texts.tsv"]
    assert (into / "tiny" / "rows.data").read_bytes() == THYROID.read_bytes()
    assert catalog.verify("tiny", into) == {"rows.data": "ok", "sub/texts.tsv": "ok"}
    assert catalog.fetch("tiny", into, base_url=url) == []  # already there and verified: nothing downloaded
    (into / "tiny" / "rows.data").write_bytes(b"damaged")
    assert catalog.verify("tiny", into)["rows.data"] == "sha256 mismatch"
    assert catalog.fetch("tiny", into, base_url=url) == ["rows.data"]  # a damaged file is fetched again


def test_fetch_keeps_nothing_whose_sha256_differs(mirror, tiny, tmp_path):
    url, served = mirror
    (served / "tiny" / "sub" / "texts.tsv").write_bytes(SMS.read_bytes()[:-1] + b"X")  # same size, other bytes
    with pytest.raises(DatasetError, match=r"sha256 .* is not the catalogue's"):
        catalog.fetch("tiny", tmp_path / "data", base_url=url)
    folder = tmp_path / "data" / "tiny"
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == ["rows.data"]  # no texts.tsv, no .part


def test_fetch_refuses_a_file_larger_than_the_catalogue_says(mirror, tiny, tmp_path):
    url, served = mirror
    (served / "tiny" / "rows.data").write_bytes(THYROID.read_bytes() + b"more")
    with pytest.raises(DatasetError, match="more than the expected"):
        catalog.fetch("tiny", tmp_path / "data", base_url=url)
    assert not list((tmp_path / "data" / "tiny").iterdir())


def test_fetch_failures_are_one_clear_error(mirror, tiny, tmp_path):
    url, served = mirror
    (served / "tiny" / "rows.data").unlink()
    with pytest.raises(DatasetError, match=r"could not fetch http://127\.0\.0\.1:\d+/tiny/rows\.data: HTTP 404"):
        catalog.fetch("tiny", tmp_path / "data", base_url=url)
    with pytest.raises(DatasetError, match=r"not a public file: fetch it from a mirror .* --from URL"):
        catalog.fetch("tiny", tmp_path / "data")  # no per-file URL and no mirror


def test_fetch_uses_each_files_own_url(tiny, monkeypatch, tmp_path):
    files = tuple(
        DataFile(f.path, f.size, f.sha256, (THYROID if f.path == "rows.data" else SMS).as_uri()) for f in tiny.files
    )
    monkeypatch.setitem(catalog.CATALOG, "tiny", Dataset(**{**tiny.__dict__, "files": files}))
    assert catalog.fetch("tiny", tmp_path) == ["rows.data", "sub/texts.tsv"]
    assert catalog.verify("tiny", tmp_path) == {"rows.data": "ok", "sub/texts.tsv": "ok"}


def test_require_names_the_dataset_and_the_fix(tiny, tmp_path):
    with pytest.raises(
        DatasetError,
        match=r"dataset 'tiny' is not in .*: run `python -m training datasets fetch tiny --from <mirror URL>`",
    ):
        catalog.require("tiny", tmp_path)
    with pytest.raises(DatasetError, match=r"dataset 'tiny' is not in "):
        catalog.require("tiny", tmp_path, ["rows.data"])  # the one file a reader needs is absent: all it needs
    (tmp_path / "tiny").mkdir()
    shutil.copy(THYROID, tmp_path / "tiny" / "rows.data")
    with pytest.raises(DatasetError, match=r"is incomplete \(sub/texts.tsv missing\)"):
        catalog.require("tiny", tmp_path)
    assert catalog.require("tiny", tmp_path, ["rows.data"]) == tmp_path / "tiny"  # a reader needing one file
    with pytest.raises(DatasetError, match="no dataset 'nope'"):
        catalog.dataset("nope")


def test_every_public_url_points_at_the_pinned_upstream_commit():
    for entry in catalog.CATALOG.values():
        for f in entry.files:
            assert len(f.sha256) == 64 and f.size > 0
            if f.url is not None:
                assert f.url.startswith("https://raw.githubusercontent.com/") and f.url.endswith(f.path), f.url


@pytest.mark.full_data()
def test_the_catalogue_matches_the_full_datasets():
    for name in catalog.CATALOG:
        assert catalog.verify(name, FULL) == {f.path: "ok" for f in catalog.CATALOG[name].files}, name
        assert (
            sum((FULL / name / f.path).stat().st_size for f in catalog.CATALOG[name].files)
            == catalog.CATALOG[name].size
        )


@pytest.mark.full_data("thyroid_ann", "sms_spam")
def test_fetch_the_real_entries_from_a_file_url_mirror(tmp_path):
    for name in ("thyroid_ann", "sms_spam"):
        assert catalog.fetch(name, tmp_path, base_url=FULL.as_uri()) == [f.path for f in catalog.CATALOG[name].files]
        assert set(catalog.verify(name, tmp_path).values()) == {"ok"}
    result = run_cli("fetch", "thyroid_ann", "--from", FULL.as_uri(), "--root", str(tmp_path / "cli"))
    assert result.returncode == 0 and "fetched 1 file(s)" in result.stdout
    assert run_cli("verify", "thyroid_ann", "--root", str(tmp_path / "cli")).returncode == 0


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "training", "datasets", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_lists_shows_and_verifies(tmp_path):
    listing = run_cli("list", "--root", str(EXCERPTS))
    assert listing.returncode == 0
    assert "thyroid_ann" in listing.stdout and "CC BY 4.0" in listing.stdout and "MIT" in listing.stdout
    shown = run_cli("show", "nab_realKnownCause")
    assert "labels/combined_windows.json  15359 bytes  sha256 1e1fbc46" in shown.stdout
    assert (
        "https://raw.githubusercontent.com/numenta/NAB/ea702d75cc2258d9d7dd35ca8e5e2539d71f3140/labels/" in shown.stdout
    )
    # The excerpts are not the full files: verify says which, and fails.
    verified = run_cli("verify", "thyroid_ann", "sms_spam", "--root", str(EXCERPTS))
    assert verified.returncode == 1
    assert (
        "ann-train.data: sha256 mismatch" in verified.stdout
        and "SMSSpamCollection.tsv: sha256 mismatch" in verified.stdout
    )


def test_cli_fetch_from_a_mirror_then_verify(mirror, tmp_path):
    url, served = mirror
    shutil.copytree(EXCERPTS / "thyroid_ann", served / "thyroid_ann")
    result = run_cli("fetch", "thyroid_ann", "--from", url, "--root", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr  # the excerpt is not the catalogue's file
    assert result.stderr.startswith("error: ") and "sha256" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "thyroid_ann" / "ann-train.data").exists()
    unknown = run_cli("show", "nope")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: no dataset 'nope' in the catalogue")
