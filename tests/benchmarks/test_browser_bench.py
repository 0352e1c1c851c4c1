"""benchmarks/browser_bench.py's bookkeeping without a browser: what it counts as the runtime's and the model's
bytes, how it compares the two runtimes' outputs, and the section it writes from a report."""

from __future__ import annotations

from typing import Any

from tests.scripts import load

bb: Any = load("benchmarks/browser_bench.py")


def test_bytes_are_split_into_runtime_model_and_the_rest() -> None:
    entries = [{"name": "http://127.0.0.1:1/index.js", "transferSize": 30_000},
               {"name": "http://127.0.0.1:1/ort/ort-wasm-simd-threaded.wasm", "transferSize": 14_000_000},
               {"name": "http://127.0.0.1:1/bench/models/m.wasm", "transferSize": 500_000},
               {"name": "http://127.0.0.1:1/bench/inputs/m-0.bin", "transferSize": 4_000},
               {"name": "http://127.0.0.1:1/bench/m-ort.json", "transferSize": 300},
               {"name": "http://127.0.0.1:1/page/bench.js", "transferSize": 3_000}]
    assert bb._bytes(entries) == {"runtime": 14_030_000, "model": 500_000, "other": 7_300}


def test_outputs_of_another_shape_are_named_not_compared() -> None:
    ours = {"outputs": {"p": [0.25], "h": [1.0, 2.0]}, "shapes": {"p": [1], "h": [1, 2]}}
    theirs = {"outputs": {"p": [0.25, 0.5], "h": [1.0, 2.5]}, "shapes": {"p": [2], "h": [1, 2]}}
    assert bb._agreement(ours, theirs) == "shapes differ: p [1] vs [2]"
    theirs["outputs"]["p"], theirs["shapes"]["p"] = [0.25], [1]
    assert bb._agreement(ours, theirs) == "2.0e-01"  # |2.0 - 2.5| / max(1, 2.5)


def test_the_section_has_a_row_per_model_with_the_ratios() -> None:
    cell = {"first_ms": 60.0, "inputs_ms": 10.0, "p50_ms": 1.0, "bytes": {"runtime": 2**20, "model": 2**20}}
    peer = {"first_ms": 1010.0, "inputs_ms": 10.0, "p50_ms": 2.0, "bytes": {"runtime": 14 * 2**20, "model": 2**20}}
    report = {"date": "2026-12-07 19:30 UTC", "browser": "Chromium 156", "seconds": 3.0, "loadavg_end": 1.0,
              "machine": {"nproc": 2, "cpu": "cpu", "loadavg_1min": 0.5},
              "models": [{"name": "m", "onnx_bytes": 2**20, "wasinfer": cell, "ort": peer, "agreement": "1.0e-07"},
                         {"name": "n", "error": "convert: unsupported"}]}
    section = bb.render_section(report)
    assert "| m | 50.00 ms | 1000 ms | 20.0x | 1.00 ms | 2.00 ms | 2.00 MiB | 15.00 MiB | 7.5x | 1.0e-07 |" in section
    assert "| n | - | - | - | - | - | - | - | - | convert: unsupported |" in section
    assert ("Targets on the 1 models under 5 MB (m): first result at least 20x sooner than onnxruntime-web's on 1 "
            "of 1; bytes at most 1/5 of its runtime + model on 1 of 1.") in section
