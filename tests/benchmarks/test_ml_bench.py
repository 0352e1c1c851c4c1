"""ml_bench.py's report without measuring: each case's family, and the geomean line per family and batch, for
runs saved before families were recorded too."""

from __future__ import annotations

from typing import Any

from tests.scripts import load

mb: Any = load("benchmarks/ml_bench.py")


def _row(batch: int, wasm_ms: float, ort_ms: float) -> dict[str, Any]:
    return {"batch": batch, "wasm_ms": wasm_ms, "ort_ms": ort_ms, "library_ms": 1.0, "max_abs_diff": 0.0,
            "labels_equal": True}


def _report(cases: list[dict[str, Any]]) -> dict[str, Any]:
    return {"date": "2026-12-07 22:00 UTC", "machine": {"nproc": 2, "cpu": "test", "loadavg_1min": 0.5},
            "cases": cases, "skipped": {}}


def test_every_case_has_a_family_and_a_data_set() -> None:
    names = [case.name for case in mb.CASES]
    assert len(names) == len(set(names))
    assert {case.family for case in mb.CASES} == set(mb.FAMILIES)
    assert {case.data for case in mb.CASES} == {"breast_cancer", "wine", "diabetes"}


def test_geomean_per_family() -> None:
    """Forests and the linear family each get their line; a run saved before families (no "family" key) counts
    its SVC with the linear models, as its one non-forest."""
    text = mb.render_section(_report([
        {"model": "random_forest", "shape": "200 trees", "rows": [_row(1, 1.0, 2.0)]},
        {"model": "svc", "shape": "RBF", "rows": [_row(1, 2.0, 1.0)]},
        {"model": "ridge", "shape": "Ridge", "family": "linear", "rows": [_row(1, 8.0, 1.0)]}]))
    assert "**Forests at batch 1: wasinfer / ONNX Runtime geomean 0.50x.**" in text
    assert "**Linear models and SVMs at batch 1: wasinfer / ONNX Runtime geomean 4.00x.**" in text
