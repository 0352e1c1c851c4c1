"""The browser side by side: wasinfer's npm package and onnxruntime-web (wasm backend, 1 thread) in headless Chromium
(or Firefox or WebKit: `--browser`, driven as the tests drive them, tests/browser.py).

For each model of the real set (benchmarks/real_models.py, from its cache), compiled here with wasinfer's compiler,
a fresh browser (nothing cached) opens a page (benchmarks/browser/bench.html) that imports its runtime and loads
the model only then, and reports:

- **first result**: from navigation start to the first output in hand. It includes the page, the runtime's
  download and compilation (the package's few KiB of JavaScript, or onnxruntime-web's ~14 MB of Wasm), the
  model's download and compilation (or ONNX Runtime's session creation) and the first run; the inputs' download
  is before it too, the same for both, and shown apart.
- **per inference**: p50 of warm runs on the page's thread afterwards (bounded: `--seconds` and a count).
- **bytes**: what the browser downloaded (resource timing's transferSize), runtime and model apart, the page and
  inputs left out.

Everything is served by `wasinfer demo --web`'s static server (cli/webdemo.py) on 127.0.0.1: the package from js/,
onnxruntime-web's dist/ from the npm package benchmarks/node installs (`npm ci` there; `--ort-dist` elsewhere),
the modules, models and inputs from a work directory. Loopback makes downloads nearly free: on a network, the
bytes column is what the first-result column would add.

    python benchmarks/browser_bench.py                 # every real model; writes docs/performance.md's section
    python benchmarks/browser_bench.py --models magika,silero_vad --seconds 1
    python benchmarks/browser_bench.py --browser firefox  # its own results file; the doc's section is Chromium's
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench_report import add_output_arguments, fmt_ms, machine, md_table, publish, write_doc
from compile_bench import real_set
from wasinfer.artifact.convert import convert_onnx
from wasinfer.cli.webdemo import js_package_dir, serving

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the browsers' drivers live with the tests that use them: tests/browser.py
from tests.browser import BROWSERS, BrowserName, browser_problem, launch  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "browser_bench.json"
SCREENSHOT = ROOT / "benchmarks" / "results" / "browser_demo.png"
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- browser_bench:begin -->", "<!-- browser_bench:end -->"
ORT_DIST = ROOT / "benchmarks" / "node" / "node_modules" / "onnxruntime-web" / "dist"
PAGE_TIMEOUT_MS = 300_000  # a large model's first result on a loaded machine; every run stops by itself
MIN_ITERS, MAX_ITERS = 5, 500
RUNTIMES = ("wasinfer", "ort")
NODE = shutil.which("node")
NODE_SCRIPT = ROOT / "benchmarks" / "browser" / "node_bench.mjs"


def _tensor_files(workdir: Path, name: str, feeds: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    inputs = []
    for input_name, array in feeds.items():
        file = workdir / "inputs" / f"{name}-{len(inputs)}.bin"
        file.parent.mkdir(parents=True, exist_ok=True)
        array = np.asarray(array, order="C")  # (ascontiguousarray would make a scalar 1-d)
        file.write_bytes(array.tobytes())
        inputs.append({"name": input_name, "file": f"/bench/inputs/{file.name}", "dtype": str(array.dtype),
                       "shape": list(array.shape)})
    return inputs


def _bytes(entries: list[dict[str, Any]]) -> dict[str, int]:
    """Downloaded bytes by kind, from the page's resource timing entries."""
    kinds = {"runtime": 0, "model": 0, "other": 0}
    for entry in entries:
        path = entry["name"].split("://", 1)[-1].split("/", 1)[-1]
        kind = ("model" if path.startswith("bench/models/") else "other" if path.startswith(("bench/", "page/"))
                else "runtime")  # /index.js and the package beside it, or /ort/...
        kinds[kind] += int(entry["transferSize"])
    return kinds


def _cold_page(base: str, runtime: str, job: str, browser: BrowserName) -> dict[str, Any]:
    """One measurement in a browser of its own (a cold HTTP cache and no compiled code kept)."""
    with launch(browser, timeout_ms=PAGE_TIMEOUT_MS) as launched, launched.new_page() as page:
        page.goto(f"{base}/page/bench.html?runtime={runtime}&job={job}")
        result: dict[str, Any] = page.evaluate("() => window.benchResult")
        result["bytes"] = _bytes(page.evaluate("""() => performance.getEntriesByType('resource')
            .map((e) => ({name: e.name, transferSize: e.transferSize}))"""))
        return result


def _node_cell(runtime: str, job: Path, workdir: Path, ort_dist: Path) -> dict[str, Any]:
    """The same job in a fresh Node process (node_bench.mjs): first result from the process's start, warm p50."""
    assert NODE is not None
    done = subprocess.run([NODE, str(NODE_SCRIPT), runtime, str(job), str(workdir), str(ort_dist)],
                          capture_output=True, text=True, timeout=PAGE_TIMEOUT_MS / 1000, check=False)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["node failed"])[-1][:200]}
    result = json.loads(done.stdout)
    return {"first_ms": result["first_ms"], "inputs_ms": result["inputs_ms"],
            "p50_ms": statistics.median(result["latency_ms"]), "runs": len(result["latency_ms"])}


def _agreement(ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    """How far the runtimes' outputs are apart: the largest difference between their first 64 values of each
    output, relative to the outputs' scale, or the outputs whose shapes differ."""
    worst, shapes = 0.0, []
    for name in (n for n in ours["outputs"] if n in theirs["outputs"]):
        if ours["shapes"][name] != theirs["shapes"][name]:
            shapes.append(f"{name} {ours['shapes'][name]} vs {theirs['shapes'][name]}")
            continue
        a, b = np.array(ours["outputs"][name], np.float64), np.array(theirs["outputs"][name], np.float64)
        if len(a):
            worst = max(worst, float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b))))))
    return f"shapes differ: {'; '.join(shapes)}" if shapes else f"{worst:.1e}"


def run_model(model: Any, workdir: Path, base: str, seconds: float, ort_dist: Path,
              browser: BrowserName = "chromium") -> dict[str, Any]:
    row: dict[str, Any] = {"name": model.name, "about": model.about}
    started = time.perf_counter()
    try:
        wasm = convert_onnx(model.path, model.input_shapes).wasm
    except Exception as exc:  # a model the compiler declines is a row saying so
        row["error"] = f"convert: {exc}".splitlines()[0][:200]
        return row
    row["convert_s"] = round(time.perf_counter() - started, 2)
    models = workdir / "models"
    models.mkdir(exist_ok=True)
    (models / f"{model.name}.wasm").write_bytes(wasm)
    (models / f"{model.name}.onnx").write_bytes(model.path.read_bytes())
    row["wasm_bytes"], row["onnx_bytes"] = len(wasm), model.path.stat().st_size
    inputs = _tensor_files(workdir, model.name, model.feeds)
    for runtime in RUNTIMES:
        job = workdir / f"{model.name}-{runtime}.json"
        suffix = "wasm" if runtime == "wasinfer" else "onnx"
        job.write_text(json.dumps({"model": f"/bench/models/{model.name}.{suffix}", "inputs": inputs,
                                   "min_iters": MIN_ITERS, "max_iters": MAX_ITERS, "seconds": seconds}))
        result = _cold_page(base, runtime, f"/bench/{job.name}", browser)
        if "error" in result:
            row[runtime] = {"error": result["error"].splitlines()[0][:200]}
            continue
        row[runtime] = {"first_ms": result["first_ms"], "inputs_ms": result["inputs_ms"],
                        "p50_ms": statistics.median(result["latency_ms"]), "runs": len(result["latency_ms"]),
                        # the first result's parts: the runtime's import, the model's load, the first run
                        "parts_ms": [result["phases"]["imported"] - result["inputs_ms"],
                                     result["phases"]["loaded"] - result["phases"]["imported"],
                                     result["first_ms"] - result["phases"]["loaded"]],
                        "bytes": result["bytes"], "outputs": result["outputs"], "shapes": result["shapes"]}
        print(f"  {model.name:16} {runtime:8} first result {fmt_ms(result['first_ms'] - result['inputs_ms']):>9} "
              f"after the inputs, p50 {fmt_ms(row[runtime]['p50_ms']):>9}, "
              f"{sum(result['bytes'].values()) - result['bytes']['other']:,} bytes", flush=True)
        if NODE is not None:
            node = row[f"node_{runtime}"] = _node_cell(runtime, job, workdir, ort_dist)
            if "error" not in node:
                print(f"  {'':16} {runtime:8} in Node: first result {fmt_ms(node['first_ms'] - node['inputs_ms']):>9}"
                      f" after the inputs, p50 {fmt_ms(node['p50_ms']):>9}", flush=True)
    if "outputs" in row.get("wasinfer", {}) and "outputs" in row.get("ort", {}):
        row["agreement"] = _agreement(row["wasinfer"], row["ort"])
    for runtime in RUNTIMES:
        row.get(runtime, {}).pop("outputs", None)
    return row


def demo_screenshot(workdir: Path, browser: BrowserName = "chromium") -> Path:
    """The digits demo page after classifying one held-out digit, kept beside the results."""
    from wasinfer.cli.webdemo import DEMO_PAGE, demo_mounts
    from wasinfer.registry.demo import load_test_split
    from wasinfer.serving.demo import DEMO_MODEL, prepare_demo_repository

    repository, _, _ = prepare_demo_repository(workdir / "home")
    x_test, _ = load_test_split(workdir / "home" / "demo")
    screenshot = SCREENSHOT if browser == "chromium" else SCREENSHOT.with_stem(f"{SCREENSHOT.stem}_{browser}")
    with serving(demo_mounts(repository / DEMO_MODEL / "1" / "model.wasm")) as site, \
            launch(browser) as launched, launched.new_page() as page:
        page.goto(site.url + DEMO_PAGE)
        page.evaluate("(pixels) => window.wasinferDemo.classify(pixels)", x_test[0].tolist())
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(screenshot)
    return screenshot


def render_section(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "## In the browser: wasinfer's npm package and onnxruntime-web",
        "",
        f"`python benchmarks/browser_bench.py` ({report['date']}; {m['nproc']} cores, {m['cpu']}; load average "
        f"{m['loadavg_1min']} at the start, {report.get('loadavg_end', '?')} at the end; {report['browser']}). "
        f"Each cell is one cold page in a fresh headless {report['browser'].split()[0]}: the page imports its "
        "runtime and loads the "
        "model only then. *First result* counts from the end of the inputs' download (the same for both) to the "
        "first output, in brackets its parts in ms: the runtime's import (wasinfer: its JavaScript; "
        "onnxruntime-web: its JavaScript, its 14 MB Wasm is fetched and compiled in the next part), the model's "
        "load (wasinfer: `WebAssembly.compileStreaming` of the module and its instantiation; onnxruntime-web: "
        "its runtime's Wasm, then session creation from the .onnx) and the first run. *p50* is over warm runs "
        "after it on the page's thread "
        f"(≥ {MIN_ITERS} samples, up to {report['seconds']} s; a sample times calls back to back for about 5 "
        "ms, as browsers round their clocks: Chromium to 100 µs, Firefox to 1 ms). *Bytes* are resource "
        "timing's transferSize over loopback, runtime + model. onnxruntime-web 1.30.0, `ort.wasm.min.mjs`, "
        "wasm backend, `numThreads = 1`. "
        "*diff*: the largest difference between the two runtimes' first 64 values of each output, relative to "
        "their scale, or the outputs whose shapes differ.",
        "",
    ]
    rows, node_rows = [], []
    for row in report["models"]:
        if "error" in row:
            rows.append([row["name"], "-", "-", "-", "-", "-", "-", "-", "-", row["error"]])
            continue
        ours, theirs = row.get("wasinfer", {}), row.get("ort", {})
        if "node_wasinfer" in row or "node_ort" in row:
            mine, peer = row.get("node_wasinfer", {}), row.get("node_ort", {})
            x, y = _first(mine), _first(peer)
            node_rows.append([row["name"], fmt_ms(x), fmt_ms(y), f"{y / x:.1f}x" if x and y else "-",
                              fmt_ms(mine.get("p50_ms")), fmt_ms(peer.get("p50_ms")),
                              "; ".join(filter(None, [mine.get("error", ""), peer.get("error", "")]))])
        a, b, c, d = _first(ours), _first(theirs), _sent(ours), _sent(theirs)
        rows.append([row["name"], _with_parts(ours), _with_parts(theirs), f"{b / a:.1f}x" if a and b else "-",
                     fmt_ms(ours.get("p50_ms")), fmt_ms(theirs.get("p50_ms")),
                     f"{c / 2**20:.2f} MiB" if c else "-", f"{d / 2**20:.2f} MiB" if d else "-",
                     f"{d / c:.1f}x" if c and d else "-",
                     "; ".join(filter(None, [row.get("agreement", ""), ours.get("error", ""),
                                             theirs.get("error", "")]))])
    lines += md_table(["model", "first result: wasinfer", "onnxruntime-web", "ratio", "p50: wasinfer",
                       "onnxruntime-web", "bytes: wasinfer", "onnxruntime-web", "ratio", "diff / error"], rows)
    lines += ["", *_targets(report)]
    if node_rows:
        lines += ["", "The same jobs in Node (`benchmarks/browser/node_bench.mjs`, a fresh process per cell; files "
                  "read from disk): *first result* from the end of reading the inputs to the first output, the "
                  "runtime's import included; *p50* over warm runs, timed one by one (Node's clock is not rounded).",
                  ""]
        lines += md_table(["model", "first result: wasinfer", "onnxruntime-web", "ratio", "p50: wasinfer",
                           "onnxruntime-web", "error"], node_rows)
    return "\n".join(lines) + "\n"


SMALL_MODEL_BYTES = 5 * 2**20  # issue 17's targets are for models under 5 MB


def _targets(report: dict[str, Any]) -> list[str]:
    """Issue 17's targets on the models under 5 MB: first result >= 20x faster, bytes <= 1/5 of onnxruntime-web's."""
    small = [r for r in report["models"] if r.get("onnx_bytes", SMALL_MODEL_BYTES) < SMALL_MODEL_BYTES
             and _first(r.get("wasinfer", {})) and _first(r.get("ort", {}))]
    if not small:
        return []
    slow = [r["name"] for r in small if _first(r["ort"]) < 20 * _first(r["wasinfer"])]
    heavy = [r["name"] for r in small if _sent(r["ort"]) < 5 * _sent(r["wasinfer"])]

    def but(names: list[str]) -> str:
        return f" (not on {', '.join(names)})" if names else ""

    return [f"Targets on the {len(small)} models under 5 MB ({', '.join(r['name'] for r in small)}): first result "
            f"at least 20x sooner than onnxruntime-web's on {len(small) - len(slow)} of {len(small)}{but(slow)}; "
            f"bytes at most 1/5 of its runtime + model on {len(small) - len(heavy)} of {len(small)}{but(heavy)}. "
            "A *shapes differ* cell is a disagreement between the runtimes' outputs to look into, not a timing "
            "matter."]


def _first(cell: dict[str, Any]) -> float | None:
    """Time to the first result, the inputs' download (or read) left out."""
    return cell["first_ms"] - cell["inputs_ms"] if "first_ms" in cell else None


def _with_parts(cell: dict[str, Any]) -> str:
    """The first result, and its parts where the run has them: import + load + first run."""
    shown = fmt_ms(_first(cell))
    if "parts_ms" in cell:
        shown += f" ({' + '.join(f'{part:.0f}' for part in cell['parts_ms'])})"
    return shown


def _sent(cell: dict[str, Any]) -> int | None:
    """Bytes the page downloaded for the runtime and the model."""
    return cell["bytes"]["runtime"] + cell["bytes"]["model"] if "bytes" in cell else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="", help="comma-separated model names (default: the whole real set)")
    parser.add_argument("--seconds", type=float, default=3.0, help="warm runs' time budget per cell (default 3)")
    parser.add_argument("--cache", type=Path, default=None, help="real-model cache (see real_models.py)")
    parser.add_argument("--ort-dist", type=Path, default=ORT_DIST, help="onnxruntime-web's dist/ directory")
    parser.add_argument("--browser", choices=BROWSERS, default="chromium",
                        help="the browser (default chromium, whose run docs/performance.md shows; another's results "
                             "go to browser_bench_<browser>.json, and to the doc only with --doc)")
    add_output_arguments(parser, RESULTS, ROOT)
    args = parser.parse_args(argv)
    if args.render:
        report = json.loads((args.out or RESULTS).read_text())
        print(render_section(report))
        if args.doc:
            write_doc(render_section(report), BEGIN, END, DOC)
        return 0
    if not (args.ort_dist / "ort.wasm.min.mjs").is_file():
        print(f"no onnxruntime-web in {args.ort_dist}: run `npm ci` in benchmarks/node, or pass --ort-dist",
              file=sys.stderr)
        return 2
    problem = browser_problem(args.browser)
    if problem is not None:
        print(f"no {args.browser}: {problem}", file=sys.stderr)
        return 2
    wanted = [w for w in args.models.split(",") if w]
    with tempfile.TemporaryDirectory(prefix="browser-bench-") as scratch:
        workdir = Path(scratch)
        models, missing = real_set(wanted or None, workdir, args.cache)
        with launch(args.browser) as launched:
            version = launched.version
        report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
                                  "browser": version, "seconds": args.seconds, "missing": missing, "models": []}
        mounts = {"/": js_package_dir(), "/ort/": args.ort_dist, "/bench/": workdir,
                  "/page/": ROOT / "benchmarks" / "browser"}
        with serving(mounts) as site:
            for model in models:
                report["models"].append(run_model(model, workdir, site.url, args.seconds, args.ort_dist,
                                                  args.browser))
        report["loadavg_end"] = machine()["loadavg_1min"]
        full = not wanted
        if full or args.doc:  # beside the figures it goes with
            print(f"demo page screenshot: {demo_screenshot(workdir, args.browser)}")
    print(render_section(report))
    chromium = args.browser == "chromium"  # the doc's section is Chromium's run unless --doc says otherwise
    results = RESULTS if chromium else RESULTS.with_stem(f"{RESULTS.stem}_{args.browser}")
    doc = args.doc if chromium or args.doc else False
    print(publish(report, args.out, results, full, doc, render_section, BEGIN, END, DOC))
    return 0


if __name__ == "__main__":
    sys.exit(main())
