"""The repository's scripts and benchmarks as modules, for the tests that check them: neither
scripts/ nor benchmarks/ is a package, and one loader serves every such test."""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


@cache
def load(relative: str) -> ModuleType:
    """`relative` (e.g. "scripts/op_table.py") as a module named after it; while it runs, its own folder
    is on the path, so a benchmark imports its neighbours (bench_report) as it does when run."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(f"wasinfer_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module
