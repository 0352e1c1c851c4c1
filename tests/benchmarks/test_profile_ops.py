"""profile_wasinfer.py --ops without perf: how samples are given to op types, and how the two sides' rows line up.

The input is the text `perf script -F tid,ip,sym` prints for call-chain samples, written here by hand.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.scripts import load


def _profile_wasinfer() -> Any:
    return load("benchmarks/profile_wasinfer.py")


pw = _profile_wasinfer()

SCRIPT = """\
 4242
\t    7f4e0db01ef0 Conv:Conv@23
\t    7f4e0db0b375 wasinfer_run
\t    7f4e0db0b983 wasm[0]::array_to_wasm_trampoline[167]

 4242
\t    7f1234560000 __memmove_avx512_unaligned_erms
\t    7f4e0db03aab Transpose:Transpose@8
\t    7f4e0db0b451 wasinfer_run

 4242
\t    558a3715c3c0 _PyEval_EvalFrameDefault
\t    558a3715c3c0 [unknown]

 4243
\t    7f4e0db01ef0 Conv:Conv@23

 4242
\t    7f4e0db09773 Conv:Conv@48
\t    7f4e0db0b711 wasinfer_run
"""


def test_each_sample_goes_to_the_innermost_node_function_of_the_looping_thread() -> None:
    counts = pw.attribute_samples(SCRIPT, 4242)
    # A memmove under a Transpose node (memory.copy) is the Transpose's; Python's frame is outside the nodes;
    # thread 4243 (another thread of the process) is not counted.
    assert counts == {"Conv": 2, "Transpose": 1, pw.OUTSIDE: 1}


def test_rows_put_both_sides_op_types_side_by_side_slowest_first() -> None:
    rows = pw.op_rows({"Conv": 6.0, "Sigmoid": 3.0, pw.OUTSIDE: 1.0}, {"Conv": 3.0, "Sigmoid": 0.5, "Clip": 0.5})
    assert [r["op"] for r in rows] == ["Conv", "Sigmoid", pw.OUTSIDE, "Clip"]
    conv, sigmoid, outside, clip = rows
    assert conv["ratio"] == pytest.approx(2.0) and sigmoid["ratio"] == pytest.approx(6.0)
    assert conv["wasinfer_share"] == pytest.approx(0.6) and conv["ort_share"] == pytest.approx(0.75)
    assert outside["ratio"] is None and clip["wasinfer_ms"] is None and clip["ratio"] is None


def test_negligible_op_types_are_summed_into_one_row() -> None:
    rows = pw.op_rows({"Conv": 1000.0, "Add": 0.5, "Pow": 0.5}, {"Conv": 500.0, "Add": 0.25})
    folded = pw.fold_small(rows)
    assert [r["op"] for r in folded] == ["Conv", "2 other op types"]
    assert folded[1]["wasinfer_ms"] == pytest.approx(1.0) and folded[1]["ort_ms"] == pytest.approx(0.25)
