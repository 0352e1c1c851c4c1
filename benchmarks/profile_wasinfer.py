"""Where wasinfer spends its time on one model: Python around the Wasm call, the cold start, the kernels.

    python benchmarks/profile_wasinfer.py digits             # run() vs the Wasm call, cold-start steps
    python benchmarks/profile_wasinfer.py squeezenet --nodes # each Conv/Gemm/MatMul alone vs ONNX Runtime
    python benchmarks/profile_wasinfer.py ppocr_det --ops    # time per op type: wasinfer (perf) vs ORT's profiler
    python benchmarks/profile_wasinfer.py real --ops --doc   # every real model, the set's sum, docs/performance.md
    perf record -g python benchmarks/profile_wasinfer.py squeezenet --perf 8
    perf report --no-children --sort symbol                  # time per kernel: "Conv:n62", "Gemm:n3", ...

With `--perf SECONDS` the exported `wasinfer_run` is called in a loop on an engine with
wasmtime's perfmap profiler, so `perf` names each JIT-compiled function after its Wasm name
(one function per graph node, `<op>:<node>`). Numbers are minimums over repeats (steady state,
warm caches), so they read lower than compile_bench.py's cold-start samples.

With `--nodes` every Conv, Gemm and MatMul of the compiled graph (after folding and fusion) is
rebuilt as a one-node model with the same shapes, attributes and weights, compiled alone and
timed against ONNX Runtime on one thread (least thread CPU time over many calls): which shapes
lose most, and their GFLOP/s. Nodes with the same signature are timed once and counted. No perf
needed, and the ratios hold up on a busy machine better than a whole-model run's.

With `--ops` the whole model runs and its time is split by op type on both sides: wasinfer's from
`perf record -g` sampling the Wasm-call loop above (a child process; each sample goes to the
innermost node function on its stack, so a kernel's `memory.copy` — wasmtime's memmove — counts for
its node; samples in no node function are "(outside nodes)": the run loop, Python, wasmtime),
scaled to the loop's time per run; ONNX Runtime's from its own profiler (`enable_profiling`, one
thread, all graph optimisations: per-node kernel times, its fused kernels counted under the op they
fuse into, FusedConv as Conv). Both sides see the graph after their own fusions (wasinfer folds
BatchNormalization into Conv and fuses activations; so does ORT), so a row is "time in kernels of
this type", not the same nodes. `real` (or `builtin`) as the model runs every model of that set that
compiles and adds a table for the set's sum; `--doc` writes that summary into docs/performance.md.
Needs perf (Debian: linux-perf) and permission to attach to a child process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import timeit
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import wasmtime
from onnx import helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))  # compile_bench.py is a script beside this one
from bench_report import machine, md_table, write_doc
from compile_bench import BenchModel, load_sets, one_line
from wasinfer.artifact.convert import convert_onnx
from wasinfer.artifact.metadata import Metadata, read_metadata
from wasinfer.frontends import load_onnx
from wasinfer.ir import Graph, Node
from wasinfer.passes import fold_batchnorm, fold_constants, fuse_activations
from wasinfer.passes.shapes import fold_static_values
from wasinfer.runtime.wasm import CompiledCache, WasmModel, make_engine


def best_us(fn: Callable[[], object], seconds: float = 0.5) -> float:
    """Microseconds per call: the best of 5 batches sized to take about `seconds` / 5 each."""
    once = max(timeit.timeit(fn, number=1), 1e-7)
    number = max(1, int(seconds / 5 / once))
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def cpu_us(fn: Callable[[], object], seconds: float = 0.3) -> float:
    """Microseconds of this thread's CPU time per call, the least of many calls: time other
    processes take the core for is not counted, which keeps a per-node table usable on a busy
    machine (cache and memory contention still show)."""
    fn()
    times: list[int] = []
    deadline = time.perf_counter() + seconds
    while len(times) < 5 or (time.perf_counter() < deadline and len(times) < 500):
        started = time.thread_time_ns()
        fn()
        times.append(time.thread_time_ns() - started)
    return min(times) / 1000


def report(title: str, rows: dict[str, Callable[[], object]]) -> None:
    print(title)
    for label, fn in rows.items():
        print(f"  {label:44s} {best_us(fn):10.1f} µs")


def profile_run(model: BenchModel, instance: WasmModel) -> None:
    """`WasmModel.run` against the Wasm call it wraps and the bare copies it cannot avoid."""
    memory, feeds = instance.memory.data_ptr(instance.store), model.feeds
    view = np.ctypeslib.as_array(memory, shape=(instance.memory.data_len(instance.store),))
    ins = [(s.offset, np.ascontiguousarray(feeds[s.name]).view(np.uint8).reshape(-1)) for s in instance.metadata.inputs]
    outs = [(s.offset, s.sample_bytes) for s in instance.metadata.outputs]
    report(f"WasmModel.run on {model.name} ({len(ins)} input(s), {len(outs)} output(s))", {
        "run()": lambda: instance.run(feeds),
        "wasinfer_run alone (the Wasm)": lambda: instance._run(1),
        "wasmtime-py's public Func call, for scale": lambda: instance.instance.exports(instance.store)[
            "wasinfer_run"](instance.store, 1),  # type: ignore[operator]
        "bare copies: inputs in, outputs out": lambda: (
            [view.__setitem__(slice(o, o + raw.size), raw) for o, raw in ins],
            [view[o:o + n].copy() for o, n in outs]),
    })


def profile_cold(model: BenchModel, wasm_path: Path, cache: CompiledCache, engine: wasmtime.Engine) -> None:
    module, metadata = cache.load_file(engine, wasm_path)
    cwasm = next(cache.directory.glob("*.cwasm")) if cache.directory else None
    metadata_json = read_metadata(wasm_path.read_bytes()).to_json()
    rows: dict[str, Callable[[], object]] = {
        "CompiledCache.load_file (stat-keyed entry)": lambda: cache.load_file(engine, wasm_path),
        "  wasmtime.Module.deserialize_file": lambda: wasmtime.Module.deserialize_file(engine, str(cwasm)),
        "  Metadata.from_json": lambda: Metadata.from_json(metadata_json),
        "WasmModel(compiled=...) (instantiate)": lambda: WasmModel(b"", engine, compiled=(module, metadata)),
        "  wasmtime Store + Instance alone": lambda: wasmtime.Instance(wasmtime.Store(engine), module, []),
    }
    report(f"cold start of {model.name} ({wasm_path.stat().st_size / 1024:.0f} KiB module, "
           f"{cwasm.stat().st_size / 1024 if cwasm else 0:.0f} KiB compiled)", rows)


def perf_loop(wasm: bytes, model: BenchModel, seconds: float) -> None:
    """Call the Wasm in a loop for `seconds` on a perfmap engine; says "looping" when the loop starts."""
    config = wasmtime.Config()
    config.cranelift_opt_level = "speed"
    config.wasm_simd = True
    config.wasm_bulk_memory = True
    config.profiler = "perfmap"  # /tmp/perf-PID.map: perf names the JIT code after the Wasm functions
    instance = WasmModel(wasm, wasmtime.Engine(config))
    instance.run(model.feeds)
    print(f"looping {os.getpid()}", flush=True)  # --ops attaches perf now
    started, cpu, runs = time.perf_counter(), time.thread_time(), 0
    while time.perf_counter() - started < seconds:
        instance._run(1)
        runs += 1
    print(f"{runs} runs of {model.name}, {(time.perf_counter() - started) / runs * 1000:.4f} ms each "
          f"({(time.thread_time() - cpu) / runs * 1000:.4f} ms CPU)", flush=True)


NODE_OPS = ("Conv", "Gemm", "MatMul")


def node_flops(graph: Graph, node: Node) -> int:
    """Multiply-adds x 2 of a Conv, Gemm or MatMul."""
    out = graph.info(node.outputs[0]).shape
    if node.op_type == "Conv":
        w = graph.info(node.inputs[1]).shape
        return 2 * int(np.prod(out)) * int(np.prod(w[1:]))
    a = graph.info(node.inputs[0]).shape
    k = a[0] if node.op_type == "Gemm" and node.attr("transA", 0) else a[-1]
    return 2 * int(np.prod(out)) * int(k)


def single_node(graph: Graph, node: Node) -> onnx.ModelProto:
    """The node alone, its fused activation (when one) as a second node, constants as initializers."""
    def value(name: str) -> onnx.ValueInfoProto:
        info = graph.info(name)
        return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(info.dtype), list(info.shape))

    attrs = {k: v for k, v in node.attrs.items() if not k.startswith("_")}
    nodes = [helper.make_node(node.op_type, node.inputs, ["y0"], **attrs)]
    outputs = [helper.make_tensor_value_info("y0", onnx.TensorProto.FLOAT, list(graph.info(node.outputs[0]).shape))]
    fused = node.attr("_activation")
    if fused is not None and fused[0] in ("Relu", "Sigmoid", "Tanh", "LeakyRelu"):
        nodes.append(helper.make_node(fused[0], ["y0"], ["y1"], **fused[1]))
        outputs[0].name = "y1"
    inputs = [value(n) for n in node.inputs if n and n not in graph.constants]
    weights = [numpy_helper.from_array(graph.constants[n], n) for n in node.inputs if n in graph.constants]
    model = helper.make_model(helper.make_graph(nodes, node.op_type, inputs, outputs, weights),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def signature(graph: Graph, node: Node) -> str:
    shapes = "x".join(str(list(graph.info(n).shape)) for n in node.inputs[:2] if n)
    attrs = ",".join(f"{k}={v}" for k, v in sorted(node.attrs.items()) if k != "_activation"
                     and v not in (None, [], "NOTSET") and not (k == "group" and v == 1))
    act = node.attr("_activation")
    return f"{node.op_type} {shapes} {attrs}" + (f" +{act[0]}" if act else "")


def profile_nodes(model: BenchModel, top: int) -> None:
    """Each Conv/Gemm/MatMul alone against ONNX Runtime, slowest total (time x count) first."""
    graph = load_onnx(model.path, {k: v.shape for k, v in model.feeds.items()}).graph
    fold_static_values(graph)
    fold_constants(graph)
    fold_batchnorm(graph)
    fuse_activations(graph)
    groups: dict[str, list[Node]] = {}
    for node in graph.nodes:
        if node.op_type in NODE_OPS:
            groups.setdefault(signature(graph, node), []).append(node)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    rows = []
    engine = make_engine(interruptible=False)
    rng = np.random.default_rng(0)
    for sig, nodes in groups.items():
        single = single_node(graph, nodes[0])
        feeds = {i.name: rng.random([d.dim_value for d in i.type.tensor_type.shape.dim], dtype=np.float32)
                 for i in single.graph.input}
        instance = WasmModel(convert_onnx(single).wasm, engine)
        instance.run(feeds)
        session = ort.InferenceSession(single.SerializeToString(), options, providers=["CPUExecutionProvider"])
        ours = cpu_us(lambda: instance._run(1))  # noqa: B023 - called at once
        theirs = cpu_us(lambda: session.run(None, feeds))  # noqa: B023
        rows.append((ours * len(nodes), theirs * len(nodes), ours, theirs, len(nodes),
                     node_flops(graph, nodes[0]), sig))
    rows.sort(reverse=True)
    total_ours, total_theirs = sum(r[0] for r in rows), sum(r[1] for r in rows)
    print(f"{model.name}: {len(rows)} distinct Conv/Gemm/MatMul shapes, {sum(r[4] for r in rows)} nodes; "
          f"sum wasinfer {total_ours / 1000:.2f} ms, ORT {total_theirs / 1000:.2f} ms "
          f"({total_ours / max(total_theirs, 1e-9):.2f}x)")
    print(f"{'share':>6} {'n':>3} {'wasinfer':>10} {'ORT':>10} {'ratio':>6} {'GFLOP/s':>8}  node")
    for total, _, ours, theirs, count, flops, sig in rows[:top]:
        print(f"{total / total_ours:6.1%} {count:3d} {ours:8.1f}us {theirs:8.1f}us {ours / theirs:6.2f} "
              f"{flops / ours / 1000:8.2f}  {sig}")


# --- --ops: time per op type ---------------------------------------------------------------------------------------

OPS_SECONDS = 4.0
PERF_HZ = 1999
OUTSIDE = "(outside nodes)"
SMALL_SHARE = 0.002  # op types under this share on both sides are summed into one row of the doc's table
DOC = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
BEGIN, END = "<!-- profile_ops:begin -->", "<!-- profile_ops:end -->"
# ONNX Runtime's fused kernels, counted under the op that wasinfer's row for the same work has: its Conv, Gemm
# and MatMul with a fused activation as those; QuickGelu, x·sigmoid(a·x) (SiLU), as Sigmoid — wasinfer runs SiLU
# as Sigmoid + Mul, so that row compares ORT's whole SiLU with wasinfer's Sigmoid half (its Mul is under Mul).
ORT_FUSED = {"FusedConv": "Conv", "FusedGemm": "Gemm", "FusedMatMul": "MatMul", "NhwcConv": "Conv",
             "QuickGelu": "Sigmoid"}
NODE_SYMBOL = re.compile(r"^([A-Z][A-Za-z0-9]*):")  # wasinfer names each node's function "<op>:<node>"


def cpu_ms_per_run(fn: Callable[[], object], seconds: float) -> float:
    """This thread's CPU ms per call over `seconds` (at least 3 calls): other processes' time is not counted."""
    fn()
    started, cpu, runs = time.perf_counter(), time.thread_time(), 0
    while runs < 3 or time.perf_counter() - started < seconds:
        fn()
        runs += 1
    return (time.thread_time() - cpu) / runs * 1000


def ort_op_times(model: BenchModel, seconds: float, workdir: Path) -> tuple[dict[str, float], float]:
    """ms per run per op type: the shares of ONNX Runtime's profiler (per-node kernel times) applied to its CPU
    ms per run without the profiler (which adds its own cost per node); and that ms per run."""
    def session(profile: bool) -> ort.InferenceSession:
        options = ort.SessionOptions()  # as compile_bench.ort_session (one thread: kernels run on the caller's)
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        options.enable_profiling = profile
        options.profile_file_prefix = str(workdir / f"ort-{model.name}")
        return ort.InferenceSession(str(model.path), options, providers=["CPUExecutionProvider"])

    plain = session(profile=False)
    ms = cpu_ms_per_run(lambda: plain.run(None, model.feeds), seconds / 2)
    profiled = session(profile=True)
    cpu_ms_per_run(lambda: profiled.run(None, model.feeds), seconds / 2)
    per_op: Counter[str] = Counter()
    for event in json.loads(Path(profiled.end_profiling()).read_text()):
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            op = event.get("args", {}).get("op_name", "?")
            per_op[ORT_FUSED.get(op, op)] += event["dur"]
    total = sum(per_op.values()) or 1
    return {op: us / total * ms for op, us in per_op.items()}, ms


def attribute_samples(script: str, tid: int) -> Counter[str]:
    """Samples of thread `tid` by op type, from `perf script -F tid,sym` output with call chains: the innermost
    frame that is a node function ("<op>:<node>") takes the sample, else it is outside the nodes."""
    counts: Counter[str] = Counter()
    owner: int | None = None
    op: str | None = None
    for line in [*script.splitlines(), ""]:
        if not line.strip():  # a sample ends
            if owner == tid:
                counts[op or OUTSIDE] += 1
            owner, op = None, None
        elif owner is None and not line.startswith("\t") and line.split()[0].isdigit():  # " TID", then frames
            owner = int(line.split()[0])
        elif op is None:
            match = NODE_SYMBOL.match(line.strip().split(maxsplit=1)[-1] if line.strip() else "")
            if match:
                op = match.group(1)
    return counts


def wasinfer_op_times(model: BenchModel, seconds: float, workdir: Path) -> tuple[dict[str, float], float, int]:
    """ms per run per op type from perf samples of a child process looping the Wasm call (shares of the samples
    applied to the loop's CPU ms per run), that ms per run, and how many samples it rests on."""
    perf = shutil.which("perf")
    if perf is None:
        raise SystemExit("--ops needs perf (Debian: apt-get install linux-perf)")
    child = subprocess.Popen([sys.executable, __file__, model.name, "--perf", str(seconds + 1.5)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    data = workdir / f"{model.name}.perf.data"
    try:
        ready = child.stdout.readline()
        if not ready.startswith("looping"):
            raise SystemExit(f"the Wasm loop for {model.name} did not start: {ready.strip()!r}")
        subprocess.run([perf, "record", "-q", "-g", "-F", str(PERF_HZ), "-p", str(child.pid), "-o", str(data),
                        "--", "sleep", str(seconds)], check=True, capture_output=True, timeout=seconds + 60)
        summary = child.stdout.read()
    finally:
        child.wait(timeout=120)
    found = re.search(r"\(([0-9.]+) ms CPU\)", summary)
    if found is None:
        raise SystemExit(f"the Wasm loop for {model.name} said {summary.strip()!r}")
    script = subprocess.run([perf, "script", "-i", str(data), "-F", "tid,ip,sym"], capture_output=True, text=True,
                            check=True, timeout=300).stdout
    Path(f"/tmp/perf-{child.pid}.map").unlink(missing_ok=True)  # wasmtime's symbol map, read by perf script
    counts = attribute_samples(script, child.pid)
    total = sum(counts.values())
    if not total:
        raise SystemExit(f"perf took no samples of {model.name}'s loop")
    ms = float(found.group(1))
    return {op: n / total * ms for op, n in counts.items()}, ms, total


def op_rows(ours: dict[str, float], theirs: dict[str, float]) -> list[dict[str, Any]]:
    """One row per op type, wasinfer's slowest first; shares of each side's total, and wasinfer/ORT."""
    total_ours, total_theirs = sum(ours.values()) or 1.0, sum(theirs.values()) or 1.0
    rows = []
    for op in sorted(set(ours) | set(theirs), key=lambda o: (-ours.get(o, 0.0), -theirs.get(o, 0.0))):
        w, o = ours.get(op), theirs.get(op)
        rows.append({"op": op, "wasinfer_ms": w, "wasinfer_share": (w or 0) / total_ours, "ort_ms": o,
                     "ort_share": (o or 0) / total_theirs,
                     "ratio": w / o if w and o and op != OUTSIDE else None})
    return rows


def fmt_op_row(row: dict[str, Any]) -> list[str]:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    return [row["op"], ms(row["wasinfer_ms"]), f"{row['wasinfer_share']:.1%}", ms(row["ort_ms"]),
            f"{row['ort_share']:.1%}", "-" if row["ratio"] is None else f"{row['ratio']:.2f}x"]


OPS_HEADER = ["op type", "wasinfer ms/run", "share", "ORT ms/run", "share", "w/ORT"]


def print_ops(title: str, rows: list[dict[str, Any]]) -> None:
    print(title)
    widths = [18, 16, 7, 11, 7, 7]
    print(" ".join(h.rjust(w) if n else h.ljust(w) for n, (h, w) in enumerate(zip(OPS_HEADER, widths, strict=True))))
    for row in rows:
        cells = fmt_op_row(row)
        print(" ".join(c.rjust(w) if n else c.ljust(w) for n, (c, w) in enumerate(zip(cells, widths, strict=True))))
    print()


def profile_ops(model: BenchModel, seconds: float, workdir: Path) -> dict[str, Any]:
    ours, ours_ms, samples = wasinfer_op_times(model, seconds, workdir)
    theirs, theirs_ms = ort_op_times(model, seconds, workdir)
    rows = op_rows(ours, theirs)
    print_ops(f"{model.name}: wasinfer {ours_ms:.3f} ms/run (CPU, wasinfer_run; {samples} perf samples), ORT "
              f"{theirs_ms:.3f} ms/run (CPU, session.run): {ours_ms / theirs_ms:.2f}x", rows)
    return {"wasinfer_ms": ours_ms, "samples": samples, "ort_ms": theirs_ms, "ours": ours, "theirs": theirs}


def set_summary(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The set's sum: each op type's time over one run of every model."""
    ours: Counter[str] = Counter()
    theirs: Counter[str] = Counter()
    for result in results.values():
        ours.update(result["ours"])
        theirs.update(result["theirs"])
    return op_rows(dict(ours), dict(theirs))


def fold_small(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with a share of SMALL_SHARE or more on either side, then the rest summed as one."""
    kept = [r for r in rows if max(r["wasinfer_share"], r["ort_share"]) >= SMALL_SHARE or r["op"] == OUTSIDE]
    rest = [r for r in rows if r not in kept]
    if not rest:
        return kept
    ours, theirs = (sum(r[key] or 0.0 for r in rest) for key in ("wasinfer_ms", "ort_ms"))
    return [*kept, {"op": f"{len(rest)} other op types", "wasinfer_ms": ours,
                    "wasinfer_share": sum(r["wasinfer_share"] for r in rest), "ort_ms": theirs,
                    "ort_share": sum(r["ort_share"] for r in rest), "ratio": None}]


def render_ops(set_name: str, results: dict[str, dict[str, Any]], failed: dict[str, str], seconds: float) -> str:
    m = machine()
    rows = set_summary(results)
    kernels = [r for r in rows if r["op"] != OUTSIDE]
    dominant = [f"{r['op']} ({r['wasinfer_share']:.0%} of wasinfer's time, {r['ort_share']:.0%} of ORT's)"
                for r in kernels[:4]]
    behind = sorted((r for r in kernels if r["ratio"] is not None and r["wasinfer_share"] >= 0.01),
                    key=lambda r: -r["ratio"])[:4]
    lines = [
        f"### Where the time goes, per op type ({set_name} set)",
        "",
        f"Generated by `python benchmarks/profile_wasinfer.py {set_name} --ops --doc` on {time.strftime('%Y-%m-%d')}; "
        f"do not edit between the markers. {m['nproc']} cores ({m['cpu']}), 1-minute load average "
        f"{m['loadavg_1min']}. Times are CPU time of the running thread per run (so other processes' load "
        f"counts less), split by op type. wasinfer: `perf record -g` at {PERF_HZ} Hz for {seconds:g} s over a "
        "loop of `wasinfer_run` (no deadline), each sample given to the innermost node function on its stack; "
        "`(outside nodes)` is the run loop, Python and wasmtime. ORT (one thread): the shares of its profiler's "
        "per-node kernel times (fused kernels under the op they fuse into, FusedConv as Conv; its QuickGelu, "
        "x·sigmoid(x), as Sigmoid, where wasinfer's Sigmoid row leaves out the Mul of the same SiLU; "
        "ReorderInput/ReorderOutput are its NCHWc layout changes, which wasinfer does not make) applied to "
        "`session.run` without the profiler; the rest of `run` (its Python "
        "binding, copying inputs and outputs) lands in the kernels' shares. Each side after its own fusions. "
        f"Sums over one run of each model (op types under {SMALL_SHARE:.1%} of both sides' time summed in the "
        "last row):",
        "",
        *md_table(OPS_HEADER, [fmt_op_row(r) for r in fold_small(rows)]),
        "",
        "Per model, wasinfer / ORT CPU ms per run, and the op types that take most of wasinfer's time there "
        "(share, w/ORT):",
        "",
        *(f"- {n}: {r['wasinfer_ms']:.2f} / {r['ort_ms']:.2f} ms ({r['wasinfer_ms'] / r['ort_ms']:.2f}x); "
          + ", ".join(f"{row['op']} {row['wasinfer_share']:.0%}"
                      + (f" ({row['ratio']:.2f}x)" if row["ratio"] is not None else "")
                      for row in op_rows(r["ours"], r["theirs"])[:3] if row["op"] != OUTSIDE)
          for n, r in results.items()),
        "",
        "Dominant op types: " + "; ".join(dominant) + ".",
        "",
        "Furthest behind ONNX Runtime (op types with at least 1% of wasinfer's time): "
        + "; ".join(f"{r['op']} {r['ratio']:.2f}x ({r['wasinfer_ms']:.2f} ms vs {r['ort_ms']:.2f} ms)"
                    for r in behind) + ".",
    ]
    if failed:
        lines += ["", "Not profiled: " + "; ".join(f"{n} ({why})" for n, why in failed.items()) + "."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a compile_bench.py model: digits, squeezenet, resnet50, ppocr_det, ...; "
                        "with --ops also a set: real or builtin")
    parser.add_argument("--perf", type=float, metavar="SECONDS", help="only loop the Wasm call, for perf record")
    parser.add_argument("--nodes", action="store_true", help="time each Conv/Gemm/MatMul alone against ORT")
    parser.add_argument("--top", type=int, default=25, help="rows of --nodes to show (default 25)")
    parser.add_argument("--ops", action="store_true",
                        help="time per op type: wasinfer (perf samples) against ONNX Runtime's profiler")
    parser.add_argument("--seconds", type=float, default=OPS_SECONDS,
                        help=f"--ops: seconds sampled per model and side (default {OPS_SECONDS:g})")
    parser.add_argument("--doc", action="store_true", help="--ops on a set: write its summary to docs/performance.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="profile-wasinfer-") as tmp:
        workdir = Path(tmp)
        if args.ops and args.model in ("real", "builtin"):
            return profile_set(args.model, args.seconds, args.doc, workdir)
        loaded, missing = load_sets([args.model], workdir)
        models = [m for m in loaded if m.name == args.model]
        if not models:
            parser.error(f"no model named {args.model!r}" + (f" ({missing[args.model]})" if args.model in missing
                                                              else ""))
        model = models[0]
        if args.nodes:
            profile_nodes(model, args.top)
            return 0
        if args.ops:
            profile_ops(model, args.seconds, workdir)
            return 0
        wasm = convert_onnx(model.path, model.input_shapes).wasm
        if args.perf:
            perf_loop(wasm, model, args.perf)
            return 0
        wasm_path = workdir / "model.wasm"
        wasm_path.write_bytes(wasm)
        engine, cache = make_engine(interruptible=False), CompiledCache(workdir / "cache")
        instance = WasmModel.from_file(wasm_path, cache, engine)
        profile_run(model, instance)
        profile_cold(model, wasm_path, cache, engine)
    return 0


def profile_set(set_name: str, seconds: float, doc: bool, workdir: Path) -> int:
    """--ops on every model of a set that compiles, then the set's sum (and, with --doc, its doc section)."""
    models, missing = load_sets(None, workdir, (set_name,))
    results: dict[str, dict[str, Any]] = {}
    failed = dict(missing)
    for model in models:
        try:
            convert_onnx(model.path, model.input_shapes)
        except Exception as exc:  # listed, and the set goes on
            failed[model.name] = f"does not compile: {one_line(exc)}"
            continue
        results[model.name] = profile_ops(model, seconds, workdir)
    print_ops(f"{set_name} set, the sum over one run of each of {len(results)} models", set_summary(results))
    if doc:
        write_doc(render_ops(set_name, results, failed, seconds), BEGIN, END, DOC)
        print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
