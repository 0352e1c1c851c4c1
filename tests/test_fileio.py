"""atomic_write: whole files or none, with the mode the umask gives (issue 16, row 11)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wasinfer.fileio import atomic_write


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_a_written_file_has_the_mode_the_umask_gives(tmp_path: Path, umask: int, mode: int) -> None:
    """A module written under umask 022 is readable by a pod running as another user (it was 0600 whatever the
    umask). A process of its own: the umask is per process, and other tests' threads would see it change."""
    target = tmp_path / "deep" / "model.wasm"
    script = f"import os; os.umask({umask}); from wasinfer.fileio import atomic_write; " \
             f"atomic_write(__import__('pathlib').Path({str(target)!r}), b'\\0asm')"
    subprocess.run([sys.executable, "-c", script], check=True, env={**os.environ})
    assert target.read_bytes() == b"\0asm"
    assert target.stat().st_mode & 0o777 == mode


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "model.wasm"
    atomic_write(target, b"old")

    with pytest.raises(TypeError):  # the write fails half-way: a str is not bytes
        atomic_write(target, "new")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.wasm"]
