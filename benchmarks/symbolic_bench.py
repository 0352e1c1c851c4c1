"""One module for every input size: symbolic dims against a module compiled for each size, and ONNX Runtime.

For real models whose inputs vary in size (a text line's width, a page's height and width, an audio clip's
length, a number of windows), each compiled once with a range (`--input-shape x=1,3,48,32..1280`) and once
per size with that size fixed, this runs the three side by side on one thread, taking turns call by call,
at sizes across the range, and reports p50 latencies, the ratios symbolic / fixed and symbolic / ONNX Runtime,
and the largest difference from ONNX Runtime's outputs. The models come from benchmarks/real_models.py's
cache (`python benchmarks/real_models.py` fetches them); inputs are made as that set makes them.

    python benchmarks/symbolic_bench.py              # every model; writes docs/performance.md's section
    python benchmarks/symbolic_bench.py --quick      # fewer sizes and runs (no doc unless --doc)
    python benchmarks/symbolic_bench.py --models ppocr_rec,ddddocr_rec
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

import real_models
from bench_report import add_output_arguments, fmt_ms, machine, md_table, publish, render_saved
from wasinfer.artifact.convert import convert_onnx
from wasinfer.runtime.wasm import WasmModel

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "symbolic_bench.json"
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- symbolic_bench:begin -->", "<!-- symbolic_bench:end -->"


@dataclass(frozen=True)
class Case:
    """A real model, the ranges it is compiled with, and the sizes it is run at (one shape per input each)."""

    model: str
    ranges: dict[str, dict[int, tuple[int, ...]]]
    sizes: list[dict[str, tuple[int, ...]]]
    quick: list[int]  # indices into `sizes` for --quick


def _widths(name: str, prefix: tuple[int, ...], widths: list[int]) -> list[dict[str, tuple[int, ...]]]:
    return [{name: (*prefix, w)} for w in widths]


# sizes as users send them (a short word, a line, a long line; a photo of a page), not the buckets' own sizes
CASES = (
    Case("ppocr_rec", {"x": {3: (32, 1280)}}, _widths("x", (1, 3, 48), [48, 100, 200, 400, 800, 1280]), [0, 3, 5]),
    Case("ddddocr_rec", {"input1": {3: (32, 480)}}, _widths("input1", (1, 1, 64), [48, 100, 160, 250, 480]), [0, 2, 4]),
    Case("ppocr_det", {"x": {2: (320, 960, 32), 3: (320, 960, 32)}},
         [{"x": (1, 3, h, w)} for h, w in ((320, 320), (352, 480), (480, 640), (640, 640), (736, 960), (960, 960))],
         [0, 2, 5]),
    Case("oww_melspec", {"input": {1: (1280, 32000)}}, _widths("input", (1,), [1280, 4000, 8000, 16000, 32000]),
         [0, 3]),
)


def p50_turns(runs: list[Callable[[], object]], min_n: int, max_n: int, seconds: float) -> list[float]:
    """p50 ms of each callable, taking turns call by call after two warm-up calls each."""
    for run in runs:
        run(), run()
    times: list[list[float]] = [[] for _ in runs]
    deadline = time.perf_counter() + seconds
    while len(times[0]) < min_n or (len(times[0]) < max_n and time.perf_counter() < deadline):
        for run, samples in zip(runs, times, strict=True):
            started = time.perf_counter()
            run()
            samples.append((time.perf_counter() - started) * 1000)
    return [statistics.median(t) for t in times]


def run_case(case: Case, cache: Path, quick: bool, seconds: float) -> dict[str, Any]:
    model = next(m for m in real_models.MODELS if m.name == case.model)
    path = model.path(cache)
    largest = {name: tuple(max(s[name][a] for s in case.sizes) for a in range(len(case.sizes[0][name])))
               for name in case.sizes[0]}
    started = time.perf_counter()
    symbolic = convert_onnx(str(path), {**model.inputs, **largest}, input_ranges=case.ranges)
    compile_s = time.perf_counter() - started
    module = WasmModel(symbolic.wasm)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    rows = []
    static_compile_s, static_bytes = 0.0, 0
    for index in case.quick if quick else range(len(case.sizes)):
        size = case.sizes[index]
        shaped = dataclasses.replace(model, inputs={**model.inputs, **size})
        feeds = real_models.feeds(shaped)
        started = time.perf_counter()
        fixed = convert_onnx(str(path), {**model.inputs, **size})
        static_compile_s += time.perf_counter() - started
        static_bytes += len(fixed.wasm)
        fixed_module = WasmModel(fixed.wasm)
        want = session.run(None, feeds)
        got = module.run(feeds)
        diff = max(float(np.max(np.abs(np.asarray(w, np.float64) - g))) if np.shape(w) == g.shape else math.inf
                   for w, g in zip(want, got.values(), strict=True))
        runs = [partial(module.run, feeds), partial(fixed_module.run, feeds), partial(session.run, None, feeds)]
        sym_ms, fixed_ms, ort_ms = p50_turns(runs, 5 if quick else 10, 200, seconds)
        rows.append({"size": {k: list(v) for k, v in size.items()}, "symbolic_ms": sym_ms, "fixed_ms": fixed_ms,
                     "ort_ms": ort_ms, "max_abs_diff": diff})
        print(f"  {case.model} {size}: symbolic {fmt_ms(sym_ms)}, fixed {fmt_ms(fixed_ms)}, ONNX Runtime "
              f"{fmt_ms(ort_ms)}, max |diff| {diff:.1e}", flush=True)
    return {"model": case.model, "task": model.task, "ranges": {k: {str(a): list(r) for a, r in v.items()}
                                                                   for k, v in case.ranges.items()},
            "compile_s": compile_s, "wasm_bytes": len(symbolic.wasm), "fixed_compile_s": static_compile_s,
            "fixed_wasm_bytes": static_bytes, "rows": rows}


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else math.nan


def render_section(report: dict[str, Any]) -> str:
    m = report["machine"]
    ratios_fixed = [r["symbolic_ms"] / r["fixed_ms"] for c in report["cases"] for r in c["rows"]]
    ratios_ort = [r["symbolic_ms"] / r["ort_ms"] for c in report["cases"] for r in c["rows"]]
    lines = [
        "## One module for every input size (symbolic dims)",
        "",
        f"Written by `python benchmarks/symbolic_bench.py` on {report['date']}; do not edit between the markers. "
        f"{m['nproc']} cores ({m['cpu']}), one thread each. Each real model is compiled once with ranges "
        "(`--input-shape`, e.g. `x=1,3,48,32..1280`) and once per size with that size fixed; the symbolic module, "
        "the fixed one and ONNX Runtime take turns call by call at each size (p50). The symbolic module runs the "
        "smallest of its buckets of kernels that holds the run's sizes (levels from each range's largest to its "
        "smallest in equal ratios: 8 for one symbol, 1.7x apart over 32..1280; 4 x 4 for two), so between two "
        "levels it does up to that ratio times the work of a fixed module along each symbolic dim.",
        "",
        f"**Geomean over every size: symbolic / fixed {geomean(ratios_fixed):.2f}x, symbolic / ONNX Runtime "
        f"{geomean(ratios_ort):.2f}x.**",
    ]
    for case in report["cases"]:
        ranges = "; ".join(f"{name} " + ", ".join(f"axis {a}: {'..'.join(map(str, r[:2]))}"
                                                    + (f":{r[2]}" if len(r) > 2 else "") for a, r in axes.items())
                           for name, axes in case["ranges"].items())
        lines += ["", f"### {case['model']} — {case['task']}", "",
                  f"Ranges {ranges}. One symbolic module: {case['wasm_bytes'] / 2**20:.1f} MiB, compiled in "
                  f"{case['compile_s']:.1f} s; the {len(case['rows'])} fixed modules: "
                  f"{case['fixed_wasm_bytes'] / 2**20:.1f} MiB, {case['fixed_compile_s']:.1f} s.", ""]
        header = ["size", "symbolic", "fixed", "ONNX Runtime", "symbolic / fixed", "symbolic / ORT", "max |diff|"]
        table = []
        for r in case["rows"]:
            shape = "; ".join(f"{k} {v}" for k, v in r["size"].items())
            table.append([shape, fmt_ms(r["symbolic_ms"]), fmt_ms(r["fixed_ms"]), fmt_ms(r["ort_ms"]),
                          f"{r['symbolic_ms'] / r['fixed_ms']:.2f}x", f"{r['symbolic_ms'] / r['ort_ms']:.2f}x",
                          f"{r['max_abs_diff']:.1e}"])
        lines += md_table(header, table)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="", help="comma-separated model names (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer sizes and runs")
    parser.add_argument("--seconds", type=float, default=None, help="time budget per size (default 6, quick 2)")
    parser.add_argument("--cache", type=Path, default=None, help="real-model cache (see real_models.py)")
    add_output_arguments(parser, RESULTS, ROOT)
    args = parser.parse_args(argv)
    if args.render:
        render_saved(args.out or RESULTS, render_section, BEGIN, END, bool(args.doc), DOC)
        return 0
    cache = real_models.cache_dir(args.cache)
    chosen = [c for c in CASES if not args.models or c.model in args.models.split(",")]
    missing = [c.model for c in chosen if not real_models.is_fetched(
        next(m for m in real_models.MODELS if m.name == c.model), cache)]
    if missing:
        print(f"not fetched: {', '.join(missing)}; run python benchmarks/real_models.py first", file=sys.stderr)
        return 2
    seconds = args.seconds if args.seconds is not None else (2.0 if args.quick else 6.0)
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
              "cases": [run_case(c, cache, args.quick, seconds) for c in chosen]}
    full = not args.quick and not args.models
    print(render_section(report))
    print(publish(report, args.out, RESULTS, full, args.doc, render_section, BEGIN, END, DOC))
    return 0


if __name__ == "__main__":
    sys.exit(main())
