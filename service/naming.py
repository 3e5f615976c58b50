"""Model names and versions taken from a client, and paths built from them that cannot leave the repository.

The API never takes a file path from a client, only a model name and a version; both are checked
against a conservative whitelist here, and every path built from them goes through `resolve_inside`,
which also defeats symlinks pointing out of the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

from modelrepo.layout import MAX_NAME_LENGTH, inside, is_model_name
from service.errors import UnsafeName

# Version folders are 1, 2, ...: no sign, no leading zero (so "01" and "1" are never two names for
# one folder), at most 18 digits so every version fits an int64 as Triton's do.
_VERSION = re.compile(r"[1-9][0-9]{0,17}", re.ASCII)


def validate_model_name(name: str) -> str:
    """Return `name` if it is a safe model name (`modelrepo.layout.is_model_name`), else raise UnsafeName saying why."""
    if is_model_name(name):
        return name
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
    raise UnsafeName(
        f"model name {shown} is not allowed: use letters, digits, '_', '-' and '.', not starting with '.' or '-'"
    )


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
    target = inside(base, *parts)
    if target is None:
        raise UnsafeName(f"path {_show('/'.join(map(str, parts)))} leads outside the model repository")
    return target


def _show(value: object) -> str:
    """A client value quoted for an error message: repr escapes control bytes, long values are cut."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
