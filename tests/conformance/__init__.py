"""ONNX backend-suite conformance tests; they reuse the harness in scripts/conformance.py."""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "conformance.py"


@cache
def harness() -> ModuleType:
    """scripts/conformance.py as a module (scripts/ is not a package), so tests and report agree."""
    spec = importlib.util.spec_from_file_location("wasinfer_conformance", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module
