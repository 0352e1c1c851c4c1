"""Compile the C guests with Debian's clang for wasm32-wasi, once per source within a test session.

The guests are real WebAssembly applications, built the way a WasmEdge user builds one, so the
tests exercise the host through the same ABI and the same wasi-libc an existing app uses. A
machine without the toolchain skips those tests (with the reason below) rather than failing them;
.ci/run installs it. A guest that does not compile on a machine that has the toolchain fails.
"""

from __future__ import annotations

import atexit
import hashlib
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

GUESTS = Path(__file__).resolve().parent
HEADER = GUESTS / "wasi_nn.h"
TOOLCHAIN = "needs Debian's clang, lld, wasi-libc and libclang-rt-14-dev-wasm32 (.ci/run installs them)"
CFLAGS = ("--target=wasm32-wasi", "-O2", "-Wall", "-Wextra", "-Werror")
COMPILE_TIMEOUT = 120.0  # seconds; a guest compiles in well under one

_lock = threading.Lock()
_cache: dict[str, Path] = {}
_probe: list[str | None] = []  # [None] once the toolchain works, [stderr] when it does not
_out_dir: list[Path] = []


def _compile(source: Path, output: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["clang", *CFLAGS, f"-I{GUESTS}", "-o", str(output), str(source)],
                          capture_output=True, text=True, timeout=COMPILE_TIMEOUT, check=False)


def _directory() -> Path:
    if not _out_dir:
        _out_dir.append(Path(tempfile.mkdtemp(prefix="wasinfer-guests-")))
        atexit.register(shutil.rmtree, _out_dir[0], ignore_errors=True)
    return _out_dir[0]


def require_toolchain() -> None:
    """Skip the calling test unless clang can link a wasm32-wasi program (probed once)."""
    with _lock:
        if not _probe:
            if shutil.which("clang") is None or shutil.which("wasm-ld") is None:
                _probe.append("clang or wasm-ld is not on PATH")
            else:
                hello = _directory() / "probe.c"
                hello.write_text('#include <stdio.h>\nint main(void) { puts("ok"); return 0; }\n')
                done = _compile(hello, hello.with_suffix(".wasm"))
                _probe.append(None if done.returncode == 0 else done.stderr.strip()[-400:])
        problem = _probe[0]
    if problem is not None:
        pytest.skip(f"{TOOLCHAIN}: {problem}")


def source_hash(name: str) -> str:
    """What a build depends on: the guest's source, the ABI header and the flags."""
    digest = hashlib.sha256()
    for part in ((GUESTS / name).read_bytes(), HEADER.read_bytes(), " ".join(CFLAGS).encode()):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def build_guest(name: str) -> Path:
    """The .wasm of tests/guests/`name` (e.g. "classifier.c"), compiled on first use in this session."""
    require_toolchain()
    key = source_hash(name)
    with _lock:
        if key in _cache:
            return _cache[key]
        output = _directory() / f"{Path(name).stem}-{key}.wasm"
        done = _compile(GUESTS / name, output)
        if done.returncode != 0:
            raise AssertionError(f"clang could not build {name}:\n{done.stderr}")
        _cache[key] = output
        return output


__all__ = ["TOOLCHAIN", "build_guest", "require_toolchain", "source_hash"]
