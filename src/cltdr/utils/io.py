"""Atomic file writes: an interrupted run leaves either the old file or the new one, never a torn one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

# mkstemp creates files readable by their owner only; outputs get the permissions of an ordinary file instead.
_UMASK = os.umask(0)
os.umask(_UMASK)


# The temporary file of atomic_write(path) is .<name>.<random>.tmp beside path; a process killed while writing
# leaves it behind (remove_stale_temporaries cleans a folder of them).
TEMPORARY_SUFFIX = ".tmp"
TEMPORARY_GLOB = f".?*.*{TEMPORARY_SUFFIX}"


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "w") -> Path:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that :func:`atomic_write` calls killed mid-write left in ``folder`` (call it
    only where no other process is writing); the paths removed."""
    folder = Path(folder)
    stale = sorted(p for p in folder.glob(TEMPORARY_GLOB) if p.is_file()) if folder.is_dir() else []
    for p in stale:
        p.unlink()
    return stale


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    return atomic_write(path, lambda f: json.dump(obj, f, indent=indent))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text))


def read_json(path: str | os.PathLike, what: str, *, expect: type | None = dict, shape: str | None = None) -> Any:
    """The JSON document in ``path``; ``what`` ("ground-truth", "annotation", ...) names the file in errors.

    ``expect``: the type of the top-level value (None: any); ``shape`` describes it in errors (default: "a JSON
    object" for a dict). Every failure is a :class:`~cltdr.errors.DataError` that names the file and says what
    is wrong: missing, a directory, empty, not JSON (with the line and column), unreadable, or of another type.
    """
    from cltdr.errors import DataError

    path = Path(path)
    shape = shape or (
        "a JSON object" if expect is dict else "a JSON document" if expect is None else f"a JSON {expect.__name__}"
    )
    if path.is_dir():
        raise DataError(f"{what} file {path} is a directory, not a file")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise DataError(f"{what} file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{what} file {path} could not be read: {err}") from None
    if not text.strip():
        raise DataError(f"{what} file {path} is empty; expected {shape}")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(
            f"{what} file {path} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}"
        ) from None
    if expect is not None and not isinstance(obj, expect):
        raise DataError(f"{what} file {path}: expected {shape} at the top level, got {type(obj).__name__}")
    return obj
