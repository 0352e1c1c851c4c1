"""Where wasinfer spends its time on one model: Python around the Wasm call, the cold start, the kernels.

    python benchmarks/profile_wasinfer.py digits             # run() vs the Wasm call, cold-start steps
    perf record -g python benchmarks/profile_wasinfer.py squeezenet --perf 8
    perf report --no-children --sort symbol                  # time per kernel: "Conv:n62", "Gemm:n3", ...

With `--perf SECONDS` the exported `wasinfer_run` is called in a loop on an engine with
wasmtime's perfmap profiler, so `perf` names each JIT-compiled function after its Wasm name
(one function per graph node, `<op>:<node>`). Numbers are minimums over repeats (steady state,
warm caches), so they read lower than compile_bench.py's cold-start samples.
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
import wasmtime

sys.path.insert(0, str(Path(__file__).resolve().parent))  # compile_bench.py is a script beside this one
from compile_bench import BenchModel, load_models
from wasinfer.artifact.convert import convert_onnx
from wasinfer.artifact.metadata import Metadata, read_metadata
from wasinfer.runtime.wasm import CompiledCache, WasmModel, make_engine


def best_us(fn: Callable[[], object], seconds: float = 0.5) -> float:
    """Microseconds per call: the best of 5 batches sized to take about `seconds` / 5 each."""
    once = max(timeit.timeit(fn, number=1), 1e-7)
    number = max(1, int(seconds / 5 / once))
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a compile_bench.py model: digits, squeezenet, resnet50, ...")
    parser.add_argument("--perf", type=float, metavar="SECONDS", help="only loop the Wasm call, for perf record")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="profile-wasinfer-") as tmp:
        workdir = Path(tmp)
        models = [m for m in load_models([args.model], workdir) if m.name == args.model]
        if not models:
            parser.error(f"no model named {args.model!r}")
        model = models[0]
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
