"""Writing files so that readers and crashes see the old content or the whole new one, never part.

Everything wasinfer writes that something else reads — modules, compiled code, cache records,
store blobs, the demo data — goes through `atomic_write`: a temp file in the same directory,
fsync, rename over the target, fsync of the directory (a rename is durable only once its
directory is). Leftover temp files after a crash start with `prefix` and are the reader's to
ignore or sweep.

The file gets the mode any program's `open()` gives a new file: 0666 less the umask. (`tempfile.mkstemp`'s
0600 made every module, manifest and cache entry unreadable to a pod or service running as another user
of the same group, whatever the operator's umask said.)

Work that several processes of one node must do once (compile a module into the cache, fetch and
install a desired version) runs under `file_lock`: an flock on a file beside the result, which the
kernel drops when its holder dies, so a crash never leaves the others waiting.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
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
    tmp = path.parent / f"{prefix if prefix is not None else f'.{path.name}.'}{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)  # the umask applies
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


@contextmanager
def file_lock(path: Path, exclusive: bool = True) -> Iterator[None]:
    """Hold an flock on `path` (created if missing) for the block: exclusive, or shared with other shared holders.
    Processes queue on it; the kernel releases it when the holder's file is closed or the holder dies."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)
