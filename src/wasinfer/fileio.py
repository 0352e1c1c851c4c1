"""Writing files so that readers and crashes see the old content or the whole new one, never part.

Everything wasinfer writes that something else reads — modules, compiled code, cache records,
store blobs, the demo data — goes through `atomic_write`: a temp file in the same directory,
fsync, rename over the target, fsync of the directory (a rename is durable only once its
directory is). Leftover temp files after a crash start with `prefix` and are the reader's to
ignore or sweep.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, prefix: str | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix if prefix is not None else f".{path.name}.",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
