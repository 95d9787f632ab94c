"""Write files so that a reader never sees a partial one.

Everything is written to a temporary file in the destination's directory, flushed and
fsynced, then renamed over the destination. On any error the temporary file is removed
and the destination is untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str], *, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it over ``dest`` on success.

    Use it for writers that want a path (``pyarrow.parquet.write_table``)::

        with atomic_path("out.parquet") as tmp:
            pq.write_table(table, tmp)
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, mode)
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_open(dest: str | os.PathLike[str], *, mode: int = 0o644) -> Iterator[IO[bytes]]:
    """Open a temporary file for writing bytes; rename it over ``dest`` on success."""
    with atomic_path(dest, mode=mode) as tmp, open(tmp, "wb") as fh:
        yield fh


def write_bytes(dest: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> Path:
    """Atomically write ``data`` to ``dest`` with permissions ``mode``; return the path."""
    with atomic_open(dest, mode=mode) as fh:
        fh.write(data)
    return Path(dest)


def write_text(dest: str | os.PathLike[str], text: str, *, mode: int = 0o644) -> Path:
    """Atomically write UTF-8 ``text`` to ``dest``; return the path."""
    return write_bytes(dest, text.encode("utf-8"), mode=mode)


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file or directory (a directory after a rename into it), best effort: a
    file system that cannot fsync a directory is not an error."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
