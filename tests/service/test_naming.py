"""Model names, versions and repository paths from clients: every traversal form is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelrepo.layout import MAX_NAME_LENGTH, is_model_name
from service.errors import UnsafeName
from service.naming import resolve_inside, validate_model_name, validate_version


@pytest.mark.parametrize(
    "name",
    [
        "mnist-cnn",
        "sms-spam-transformer",
        "thyroid-autoencoder",
        "model_2",
        "resnet50.v1",
        "a",
        "7",
        "_x",
        "x" * MAX_NAME_LENGTH,
    ],
)
def test_good_names_pass(name):
    assert validate_model_name(name) == name
    assert is_model_name(name)


@pytest.mark.parametrize(
    "name,why",
    [
        ("..", "'..'"),
        (".", "not allowed"),
        ("../etc", "path separator|'..'"),
        ("a/../../b", "path separator"),
        ("mnist-cnn/..", "path separator"),
        ("a..b", "'..'"),
        ("/etc/passwd", "path separator"),
        ("C:\\Windows", "path separator"),
        ("..\\..\\secret", "path separator|'..'"),
        ("%2e%2e", "percent-encoding"),
        ("..%2F..%2Fetc", "percent-encoding|'..'"),
        ("x%2Fy", "percent-encoding"),
        ("x%5Cy", "percent-encoding"),
        ("x%252Fy", "percent-encoding"),  # double-encoded '/'
        ("%252e%252e", "percent-encoding"),
        ("x%00", "percent-encoding"),
        ("x\x00y", "NUL byte"),
        (".hidden", "not allowed"),
        ("-rf", "not allowed"),
        ("", "non-empty"),
        ("a b", "not allowed"),
        ("name\n", "not allowed"),  # `$` would match before a trailing newline; fullmatch does not
        ("m\u2215n", "not allowed"),  # DIVISION SLASH: a look-alike separator
        ("\uff0e\uff0e", "not allowed"),  # fullwidth dots
        ("modèle", "not allowed"),
        ("~root", "not allowed"),
        ("x" * (MAX_NAME_LENGTH + 1), "longer than"),
    ],
)
def test_unsafe_names_are_refused(name, why):
    with pytest.raises(UnsafeName, match=why):
        validate_model_name(name)
    assert not is_model_name(name)


def test_non_string_name_is_refused():
    with pytest.raises(UnsafeName):
        validate_model_name(None)  # type: ignore[arg-type]


def test_error_message_escapes_control_characters_and_is_short():
    with pytest.raises(UnsafeName) as info:
        validate_model_name("a\x00" + "b" * 500)
    assert "\x00" not in info.value.message and "\\x00" in info.value.message
    assert len(info.value.message) < 150


@pytest.mark.parametrize("version,expected", [("1", 1), ("42", 42), (7, 7), ("20260101", 20260101)])
def test_good_versions(version, expected):
    assert validate_version(version) == expected


@pytest.mark.parametrize(
    "version",
    [
        "0",
        "-1",
        "01",
        "1.0",
        "+1",
        " 1",
        "1 ",
        "1\n",
        "v1",
        "latest",
        "",
        "..",
        "1/..",
        "%31",
        "\u0661",
        "1" * 19,
        0,
        -3,
        10**18,
        True,
        1.0,
        None,
    ],
)
def test_bad_versions_are_refused(version):
    with pytest.raises(UnsafeName):
        validate_version(version)


@pytest.fixture()
def repository(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    (root / "mnist-cnn" / "1").mkdir(parents=True)
    (root / "mnist-cnn" / "1" / "model.onnx").write_bytes(b"x")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "model.onnx").write_bytes(b"s")
    return root


def test_resolve_inside_accepts_paths_in_the_repository(repository: Path):
    path = resolve_inside(repository, "mnist-cnn", "1", "model.onnx")
    assert path == (repository / "mnist-cnn" / "1" / "model.onnx").resolve()
    assert resolve_inside(repository, "not-there-yet", "2") == (repository / "not-there-yet" / "2").resolve()


@pytest.mark.parametrize(
    "parts",
    [
        ("..", "secret"),
        ("mnist-cnn", "..", "..", "secret"),
        ("../secret/model.onnx",),
        ("/etc/passwd",),
        ("mnist-cnn", "/etc"),
        ("\\\\server\\share",),
        ("mnist\x00",),
    ],
)
def test_resolve_inside_refuses_escapes(repository: Path, parts):
    with pytest.raises(UnsafeName):
        resolve_inside(repository, *parts)


def test_symlink_pointing_outside_is_refused(repository: Path):
    os.symlink(repository.parent / "secret", repository / "evil")
    with pytest.raises(UnsafeName, match="outside the model repository"):
        resolve_inside(repository, "evil", "model.onnx")
    os.symlink(repository.parent / "secret" / "model.onnx", repository / "mnist-cnn" / "1" / "weights.bin")
    with pytest.raises(UnsafeName, match="outside"):
        resolve_inside(repository, "mnist-cnn", "1", "weights.bin")


def test_symlink_within_the_repository_is_allowed(repository: Path):
    os.symlink(repository / "mnist-cnn", repository / "digits")
    assert resolve_inside(repository, "digits", "1") == (repository / "mnist-cnn" / "1").resolve()


def test_repository_root_that_is_itself_a_symlink(repository: Path, tmp_path: Path):
    link = tmp_path / "link-to-models"
    os.symlink(repository, link)
    assert resolve_inside(link, "mnist-cnn", "1") == (repository / "mnist-cnn" / "1").resolve()
    with pytest.raises(UnsafeName):
        resolve_inside(link, "..", "secret")
