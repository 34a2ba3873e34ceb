"""Atomic file writes: a reader sees the old file or the new one, never a part of one.

Each write goes to a hidden temporary name in the same directory, is flushed and
fsync'd, then ``os.replace``'d over the target (atomic on POSIX and Windows), and the
directory is fsync'd so the rename itself survives a power cut. A failed write (a full
disk, a read-only folder) removes the temporary file and raises the ``OSError`` with
the target's name, not the temporary one's.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TextIO

TEMP_MARK = ".tmp-"  # temporary names are ".<name>.tmp-<random>"


def temp_path(path: Path) -> Path:
    """A fresh hidden temporary name next to ``path``."""
    # secrets, not random: drawing from Python's RNG would disturb seeded training.
    return path.with_name(f".{path.name}{TEMP_MARK}{secrets.token_hex(4)}")


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry to disk (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _discard(tmp: Path) -> None:
    """Remove a temporary file if it is there; never raise (a read-only folder refuses even
    unlinking a missing file, and that must not hide the error being handled)."""
    with suppress(OSError):
        tmp.unlink(missing_ok=True)


def _naming(error: OSError, tmp: Path, path: Path) -> OSError:
    """``error`` as raised on ``path`` (the user's file) rather than on its temporary name.

    Errors about other files (a source read while writing) are left as they are.
    """
    if error.errno is None or error.filename not in (None, str(tmp)):
        return error
    return OSError(error.errno, error.strerror, str(path))  # errno picks the subclass


def atomic_write_with(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Have ``write(temp)`` produce the file under a temporary name, then move it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:  # rb+: Windows refuses to fsync read-only handles
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        _discard(tmp)
        raise _naming(error, tmp, path) from error
    except BaseException:
        _discard(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write_with(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode(encoding))


@contextmanager
def atomic_open_text(path: str | os.PathLike) -> Iterator[TextIO]:
    """Open ``path`` for UTF-8 text that appears all at once or not at all.

    On any error the temporary file is removed and an existing ``path`` is left
    untouched. Newlines are written as given.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"cannot write {path}: the directory {path.parent} does not exist")
    if path.is_dir():
        raise ValueError(f"cannot write {path}: it is a directory; give a file path")
    tmp = temp_path(path)
    try:
        with open(tmp, "x", encoding="utf-8", newline="") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        _discard(tmp)
        raise _naming(error, tmp, path) from error
    except BaseException:
        _discard(tmp)
        raise
    fsync_dir(path.parent)
