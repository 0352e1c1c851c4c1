"""Where wasinfer spends its time on one model: Python around the Wasm call, the cold start, the kernels.

    python benchmarks/profile_wasinfer.py digits             # run() vs the Wasm call, cold-start steps
    python benchmarks/profile_wasinfer.py squeezenet --nodes # each Conv/Gemm/MatMul alone vs ONNX Runtime
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
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import wasmtime
from onnx import helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))  # compile_bench.py is a script beside this one
from compile_bench import BenchModel, load_models
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
    config = wasmtime.Config()
    config.cranelift_opt_level = "speed"
    config.wasm_simd = True
    config.wasm_bulk_memory = True
    config.profiler = "perfmap"  # /tmp/perf-PID.map: perf names the JIT code after the Wasm functions
    instance = WasmModel(wasm, wasmtime.Engine(config))
    instance.run(model.feeds)
    started, runs = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        instance._run(1)
        runs += 1
    print(f"{runs} runs of {model.name}, {(time.perf_counter() - started) / runs * 1000:.2f} ms each")


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a compile_bench.py model: digits, squeezenet, resnet50, ...")
    parser.add_argument("--perf", type=float, metavar="SECONDS", help="only loop the Wasm call, for perf record")
    parser.add_argument("--nodes", action="store_true", help="time each Conv/Gemm/MatMul alone against ORT")
    parser.add_argument("--top", type=int, default=25, help="rows of --nodes to show (default 25)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="profile-wasinfer-") as tmp:
        workdir = Path(tmp)
        models = [m for m in load_models([args.model], workdir) if m.name == args.model]
        if not models:
            parser.error(f"no model named {args.model!r}")
        model = models[0]
        if args.nodes:
            profile_nodes(model, args.top)
            return 0
        wasm = convert_onnx(model.path).wasm
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


if __name__ == "__main__":
    sys.exit(main())
