"""ONNX backend-suite conformance tests; they reuse the harness in scripts/conformance.py."""

from __future__ import annotations

from types import ModuleType

from tests.scripts import load


def harness() -> ModuleType:
    """scripts/conformance.py as a module, so tests and report agree."""
    return load("scripts/conformance.py")
