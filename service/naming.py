"""Model names and versions taken from a client, and paths built from them that cannot leave the repository.

The API never takes a file path from a client, only a model name and a version; both are checked
against a conservative whitelist here, and every path built from them goes through `resolve_inside`,
which also defeats symlinks pointing out of the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

from service.errors import BadRequest

MAX_NAME_LENGTH = 128
# Letters, digits, '_', '-', '.'; the first character is a letter, a digit or '_' (no '.', '..',
# hidden folders or option-like names). ASCII only: look-alike Unicode names would be a trap.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*", re.ASCII)
# Version folders are 1, 2, ...: no sign, no leading zero (so "01" and "1" are never two names for
# one folder), at most 18 digits so every version fits an int64 as Triton's do.
_VERSION = re.compile(r"[1-9][0-9]{0,17}", re.ASCII)


class UnsafeName(BadRequest, ValueError):
    """A model name, version or path from a client that is malformed or would escape the repository: 400."""

    code = "invalid_name"


def validate_model_name(name: str) -> str:
    """Return `name` if it is a safe model name, else raise UnsafeName saying why."""
    if not isinstance(name, str) or not name:
        raise UnsafeName("a model name must be a non-empty string")
    shown = _show(name)
    if len(name) > MAX_NAME_LENGTH:
        raise UnsafeName(f"model name {shown} is longer than {MAX_NAME_LENGTH} characters")
    for needle, why in (
        ("\x00", "a NUL byte"),
        ("/", "a path separator"),
        ("\\", "a path separator"),
        ("%", "percent-encoding"),
        ("..", "'..'"),
    ):
        if needle in name:
            raise UnsafeName(f"model name {shown} contains {why}")
    if not _NAME.fullmatch(name):
        raise UnsafeName(
            f"model name {shown} is not allowed: use letters, digits, '_', '-' and '.', not starting with '.' or '-'"
        )
    return name


def is_model_name(name: str) -> bool:
    """Whether `name` is a safe model name (for discovery, which skips other folders)."""
    try:
        validate_model_name(name)
    except UnsafeName:
        return False
    return True


def validate_version(version: str | int) -> int:
    """A model version from a URL or body as a positive int, else UnsafeName."""
    if isinstance(version, bool):
        raise UnsafeName("a model version must be a positive integer")
    if isinstance(version, int):
        if 1 <= version < 10**18:
            return version
        raise UnsafeName(f"model version {version} is not a positive integer below 10^18")
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise UnsafeName(f"model version {_show(version)} is not a positive integer (1, 2, ...)")
    return int(version)


def resolve_inside(root: Path | str, *parts: str) -> Path:
    """`root/parts...` with symlinks resolved, refused (UnsafeName) unless it stays inside the resolved root."""
    base = Path(root).resolve()
    for part in parts:
        text = str(part)
        if "\x00" in text:
            raise UnsafeName(f"path part {_show(text)} contains a NUL byte")
        if Path(text).is_absolute() or text.startswith("\\"):
            raise UnsafeName(f"path part {_show(text)} is absolute")
    # resolve() follows every symlink that exists; is_relative_to then compares real locations
    target = base.joinpath(*parts).resolve()
    if not target.is_relative_to(base):
        raise UnsafeName(f"path {_show('/'.join(map(str, parts)))} leads outside the model repository")
    return target


def _show(value: object) -> str:
    """A client value quoted for an error message: repr escapes control bytes, long values are cut."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


__all__ = [
    "MAX_NAME_LENGTH", "UnsafeName", "is_model_name", "resolve_inside", "validate_model_name", "validate_version",
]
