"""IR graph → Wasm module: check support, plan memory, emit one function per node, lay out data.

Linear memory, from address 0:
    [ header | input slots | output slots | arena (planned) | constants ]
An input or output slot holds `max_batch` samples. `wasinfer_run(batch)` runs the graph once
per sample: it copies sample s of each batched input into the arena, calls the node functions
in order, and copies each output to its slot. With `max_batch == 1` inputs are read in place.

With symbolic dims (ABI version 3, passes/symbolic.py) the host writes each such input's actual dims
beside it; the run checks them against the ranges, copies the input from its packed layout into the
arena's largest layout, runs the kernels over the largest dims, and copies each symbolic output back
to a packed layout in its slot, with its actual dims (backends/wasm/dims.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import itertools
import json
import math
import pkgutil
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

import wasinfer.backends.wasm.emitters as kernels_pkg
from wasinfer.backends.wasm.abi import (
    ABI_VERSION,
    METADATA_SECTION,
    RUN_TIME_SHAPES_ABI_VERSION,
    SYMBOLIC_DIMS_ABI_VERSION,
)
from wasinfer.backends.wasm.context import REGISTRY, UNSUPPORTED_HINTS, Ctx, Kernel
from wasinfer.backends.wasm.dims import copy_between_layouts, push_dim
from wasinfer.backends.wasm.mathfn import add_math_helpers
from wasinfer.backends.wasm.minifloat import emit_load_f64
from wasinfer.backends.wasm.wasi import declare_wasi_imports, emit_wasi_start
from wasinfer.backends.wasm.weights import SPILL, Hint, WeightStore
from wasinfer.backends.wasm.writer import F64, I32, I64, Func, Module
from wasinfer.ir import Graph, Node, TensorInfo, UnsupportedModel
from wasinfer.ir.symbolic import Dim, Expr, affine, evaluate
from wasinfer.ops import COMPILE_TIME_OPS, VIEW_OPS, normal_domain
from wasinfer.ops.control import REFUSE
from wasinfer.passes import MemoryPlan, align, plan_memory
from wasinfer.passes.quantize import WeightEncoding
from wasinfer.passes.symbolic import infer_extents
from wasinfer.passes.values import value_symbol

HEADER = 64
PAGE = 65536
MAX_PAGES = 65536  # 4 GiB: the wasm32 limit


@dataclass
class CompileOptions:
    max_batch: int = 1
    # the inputs and outputs that carry the run-time batch, with its axis (passes/control.py
    # tensor_batch_axes); the others are one value for every sample
    batch_axes: dict[str, int] = field(default_factory=dict)
    wasi: bool = False  # also a WASI command: `_start` reads .npy inputs on stdin (backends/wasm/wasi.py)
    weights: WeightEncoding | None = None  # int8 / fp16 weight storage (passes/quantize.py)
    # f32x4.relaxed_madd (one FMA on hosts that have it) in GEMM, Conv and the rational sigmoid/tanh; needs an
    # engine with relaxed SIMD (wasmtime: on by default; browsers: Chrome 114+), results differ in the last bits
    relaxed_simd: bool = False


@dataclass
class Bucket:
    """One copy of the kernels: for the graph's largest sizes, or (symbolic dims) for smaller maxima of the
    symbols, so that a small run does not pay for the largest (`bucket_envs`)."""

    graph: Graph
    address: Callable[[str], int]
    funcs: list[tuple[int, tuple[tuple[str, bool], ...]]]  # (function, guards) per node, a Refuse as -code


MAX_BUCKETS = 16  # kernels emitted at most this many times: 8 levels of one symbol, 4 x 4 for two, 2 x 2 x 2...
MAX_LEVELS = 8


def bucket_envs(symbols: dict[str, tuple[int, int]]) -> list[dict[str, int]]:
    """The symbols' maxima of each bucket, the largest first: each symbol at levels from its range's largest
    down to its smallest in equal ratios (eight for one symbol: 1280, 756, 447, 264, 156, 92, 55, 32 for
    32..1280), and every combination of those levels across the symbols (as many levels each as keep the combinations
    within MAX_BUCKETS). A run takes the smallest bucket that holds its values, so along each symbol its
    kernels do at most the ratio between two levels times the work its own sizes need (1.7x for one symbol
    over a 40x range)."""
    names = sorted(symbols)
    per_symbol = max(1, min(MAX_LEVELS, int(round(MAX_BUCKETS ** (1 / max(len(names), 1)), 6))))
    levels: list[list[int]] = []
    for name in names:
        low, high = symbols[name]
        found: list[int] = []
        for k in range(per_symbol):  # from the largest to the smallest in equal ratios
            value = max(low, math.ceil(high * (low / high) ** (k / max(per_symbol - 1, 1)) - 1e-9))
            if not found or value * 1.25 <= found[-1]:  # a bucket within 25% of the last is not worth its code
                found.append(value)
        levels.append(found)
    envs = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*levels)]
    return sorted(envs, key=lambda env: (-math.prod(env.values()), [-env[n] for n in names]))


def decided_symbols(graph: Graph) -> set[str]:
    """The symbols whose values kernels write during a run (passes/dynamic.py), not the inputs' ranges."""
    return {str(d) for extent in graph.decided.values() for d in extent if isinstance(d, Expr)}


def value_symbols(graph: Graph) -> set[str]:
    """The symbols that are an input's values (--input-values, passes/values.py): their kernels run at the largest
    (one bucket), as a value may be 0 and a bucket of empty tensors is not worth its code."""
    return {value_symbol(name, index) for name in graph.valued for index in range(graph.info(name).size)}


def specialise(graph: Graph, env: dict[str, int]) -> Graph:
    """The graph with the symbols' maxima in `env`: each symbolic tensor's largest shape at those maxima (a
    constant with symbolic dims, such as a ConstantOfShape folded at the largest, cut to it)."""
    env = {**{name: high for name, (_, high) in graph.symbols.items()}, **env}  # the data's counts: their largest
    if all(env[name] == high for name, (_, high) in graph.symbols.items()):
        return graph
    tensors, constants = dict(graph.tensors), dict(graph.constants)
    for name, extent in graph.extents.items():
        shape = tuple(evaluate(d, env) for d in extent)
        if name in tensors:
            tensors[name] = TensorInfo(name, tensors[name].dtype, shape)
        if name in constants:
            constants[name] = np.ascontiguousarray(constants[name][tuple(slice(0, d) for d in shape)])
    symbols = {name: (low, env[name]) for name, (low, _) in graph.symbols.items()}
    return dataclasses.replace(graph, tensors=tensors, constants=constants, symbols=symbols)


@dataclass
class Compiled:
    wasm: bytes
    layout: dict[str, object]
    arena_size: int
    naive_arena_size: int


def _load_kernels() -> None:
    for info in pkgutil.iter_modules(kernels_pkg.__path__):
        importlib.import_module(f"{kernels_pkg.__name__}.{info.name}")


def kernel_for(node: Node) -> Kernel | None:
    _load_kernels()
    return REGISTRY.get((normal_domain(node.domain), node.op_type))


def kernel_takes(node: Node, graph: Graph) -> bool:
    """Whether the node's kernel runs it with its tensors' dtypes as they are (its check finds nothing); a view,
    and a node without a kernel, count as taking them (a view moves any dtype; the missing kernel is named
    later). passes/widen.py asks this of nodes with float16/bfloat16 tensors."""
    spec = kernel_for(node)
    if spec is None or spec.check is None or (node.op_type in VIEW_OPS and not node.domain):
        return True
    if any(n and n not in graph.tensors for n in node.inputs + node.outputs):
        return True
    return not spec.check(node, graph)


def supported_ops() -> list[tuple[str, str]]:
    """(domain, op) pairs the compiler accepts: kernels, views, and compile-time-only ops."""
    _load_kernels()
    return sorted(set(REGISTRY) | {("", op) for op in VIEW_OPS | COMPILE_TIME_OPS})


def emitter_files() -> dict[tuple[str, str], str]:
    """(domain, op) → the emitter file that runs it (docs/ops.md's emitter column)."""
    _load_kernels()
    return {key: f"backends/wasm/emitters/{spec.emit.__module__.rsplit('.', 1)[-1]}.py"
            for key, spec in REGISTRY.items()}


def check_support(graph: Graph) -> None:
    problems: list[str] = infer_extents(graph)
    for node in graph.nodes:
        unknown = [n for n in node.inputs if n and n not in graph.tensors]
        if unknown:
            problems.append(f"node {node.name!r} ({node.op_type}): cannot infer the shape of input {unknown}")
            continue
        if node.op_type == "Dropout" and len(node.inputs) > 2 and node.inputs[2]:
            training = graph.constants.get(node.inputs[2])
            if training is None or bool(training):
                problems.append(f"node {node.name!r} (Dropout): training_mode must be a constant false")
                continue
        if (node.domain, node.op_type) == REFUSE:
            continue  # no kernel: the run returns its code there (_emit_run)
        if node.op_type in VIEW_OPS and not node.domain:
            used = [o for o in node.outputs[1:] if o and (o in graph.outputs or graph.consumers(o))]
            if used:
                problems.append(f"node {node.name!r} ({node.op_type}): output {used} (the mask) is not supported")
            continue
        spec = kernel_for(node)
        label = f"{node.domain + '.' if node.domain else ''}{node.op_type}"
        if spec is None:
            hint = node.declined or UNSUPPORTED_HINTS.get((normal_domain(node.domain), node.op_type))
            problems.append(f"node {node.name!r}: op {label} is not supported" + (f"; {hint}" if hint else ""))
            continue
        missing = [o for o in node.outputs if o and o not in graph.tensors]
        if missing:
            problems.append(f"node {node.name!r} ({label}): cannot infer the shape of {missing}")
            continue
        for problem in spec.check(node, graph) if spec.check else []:
            problems.append(f"node {node.name!r} ({label}): {problem}")
    for name in graph.inputs + graph.outputs:
        if name not in graph.tensors:
            problems.append(f"tensor {name!r}: shape could not be inferred")
    if problems:
        raise UnsupportedModel(problems)


def abi_version(graph: Graph) -> int:
    """ABI_VERSION; RUN_TIME_SHAPES_ABI_VERSION when an output's shape is decided at run time; SYMBOLIC_DIMS_ABI_VERSION
    when an input has symbolic dims (the host writes its actual dims): hosts that know only an earlier version then
    refuse the module instead of reading or writing a wrong shape."""
    if any(name in graph.extents for name in graph.inputs):
        return SYMBOLIC_DIMS_ABI_VERSION
    return RUN_TIME_SHAPES_ABI_VERSION if any(name in graph.extents for name in graph.outputs) else ABI_VERSION


def input_symbol(dim: Dim) -> tuple[str, int]:
    """The symbol an input's symbolic dim is, and its step (the dim is the symbol times the step)."""
    coeffs, constant = affine(dim)
    (atom, step), = coeffs.items()
    assert atom.op == "sym" and constant == 0, dim
    return str(atom.args[0]), step


def symbolic_axes(graph: Graph, name: str) -> list[int]:
    """The axes of a tensor whose size each run decides from the inputs' actual dims."""
    return [axis for axis, d in enumerate(graph.extents.get(name, ())) if isinstance(d, Expr)]


def compile_graph(graph: Graph, options: CompileOptions,
                  progress: Callable[[int, int], None] | None = None) -> Compiled:
    check_support(graph)
    batch = options.max_batch
    if batch > 1 and graph.decided:
        varying = next(iter(graph.decided))
        raise UnsupportedModel([f"{varying!r} has a shape decided at run time by the data, which --max-batch above 1 "
                                "does not support yet"])
    if batch > 1 and graph.symbols:
        raise UnsupportedModel(["symbolic dims (--input-shape MIN..MAX) with --max-batch above 1 are not supported "
                                "yet; give the batch as a range of its own axis instead"])
    if batch > 1 and not any(name in options.batch_axes for name in graph.inputs):
        raise UnsupportedModel(["no input carries a run-time batch (a dynamic leading dim, or a dim named like "
                                "one), so --max-batch must be 1"])

    # IO slots: [outer, max_batch, inner] around a tensor's batch axis; one sample's worth for the others
    cursor = HEADER
    slots: dict[str, int] = {}
    for name in graph.inputs + graph.outputs:
        if name in slots:
            continue
        slots[name] = cursor
        cursor = align(cursor + graph.info(name).nbytes * (batch if name in options.batch_axes else 1))
    # inputs without a batch (and every input of a batch-1 module) are read where the caller wrote them
    # (symbolic inputs are copied into the arena's largest layout)
    in_place = {name for name in graph.inputs
                if (batch == 1 or name not in options.batch_axes) and name not in graph.extents}
    # where each run writes an output's actual dims (ABI v2: a shape the data decides; v3: symbolic dims),
    # and where the host writes a symbolic input's (v3)
    dims: dict[str, int] = {}
    for name in graph.inputs + graph.outputs:
        if name in graph.extents and name not in dims:
            dims[name] = cursor
            cursor = align(cursor + 4 * len(graph.info(name).shape))
    symbols: dict[str, int] = {}  # where each run keeps each symbol's value (_check_dims writes them)
    for name in sorted(graph.symbols):
        symbols[name] = cursor
        cursor += 4
    cursor = align(cursor)

    # symbolic dims: the kernels once per bucket of sizes, the run picks the smallest that holds its dims
    fed = {name: span for name, span in graph.symbols.items()
           if name not in decided_symbols(graph) | value_symbols(graph)}
    buckets = [specialise(graph, env) for env in bucket_envs(fed)] if fed else [graph]
    plans = []
    for bucket in buckets:
        bucket.compressed = set(options.weights.tensors) if options.weights is not None else set()
        scratch = {}
        for node in bucket.nodes:
            spec = kernel_for(node)
            if spec is not None and spec.scratch is not None:
                scratch[node.name] = spec.scratch(node, bucket)
        plans.append(plan_memory(bucket, scratch, pinned=in_place))
    plan = plans[0]  # the largest bucket's (the graph as compiled): its sizes are what the layout reports
    arena = cursor
    const_cursor = align(arena + max(p.arena_size for p in plans))

    module = Module()
    wasi_imports = declare_wasi_imports(module) if options.wasi else None
    helpers = add_math_helpers(module)
    data: list[tuple[int, bytes]] = []
    fills: list[tuple[int, int, int]] = []  # address, 32-bit words, bit pattern
    placed: dict[tuple[str, int], int] = {}  # a constant (by name and array: a bucket may slice it) → address
    same_bytes: dict[tuple[str, tuple[int, ...], bytes], int] = {}  # with buckets: one copy of equal kernel data

    weights = WeightStore(options.weights)

    def place_data(array: np.ndarray, hint: Hint | None = None) -> int:
        nonlocal const_cursor
        raw = np.ascontiguousarray(array)
        if len(buckets) > 1:
            key = (raw.dtype.str, raw.shape, hashlib.blake2b(raw.tobytes(), digest_size=16).digest())
            if key in same_bytes:
                return same_bytes[key]
        addr, const_cursor = const_cursor, align(const_cursor + raw.nbytes)
        if len(buckets) > 1:
            same_bytes[key] = addr
        words = raw.reshape(-1).view(np.uint32) if raw.dtype.itemsize == 4 else None
        if words is not None and words.size > 64 and np.all(words == words[0]):
            fills.append((addr, int(words.size), int(words[0])))  # uniform: written at start-up
        elif weights.encode(raw, addr, hint):  # compressed: expanded at start-up
            const_cursor = align(const_cursor + SPILL)  # room for the expansion's last vectors
        else:
            data.append((addr, raw.tobytes()))
        return addr

    def reserve(nbytes: int) -> int:
        """Zero-initialised bytes after the constants, with no data segment (WASI I/O buffers)."""
        nonlocal const_cursor
        addr, const_cursor = const_cursor, align(const_cursor + nbytes)
        return addr

    def addresses(bucket: Graph, bucket_plan: MemoryPlan) -> Callable[[str], int]:
        def address(name: str) -> int:
            if name in bucket.constants:
                key = (name, id(bucket.constants[name]))
                if key not in placed:
                    placed[key] = place_data(bucket.constants[name], weights.natural(name))
                return placed[key]
            if name in in_place:
                return slots[name]
            root = bucket_plan.root(name)
            if root in bucket.constants:
                return address(root)
            if root in in_place:
                return slots[root]
            return arena + bucket_plan.offsets[root]
        return address

    # per bucket: its graph, addresses, and (function, guards) per node; a Refuse node is its status code,
    # negated: the run returns it there
    emitted: list[Bucket] = []
    total = sum(len([n for n in b.nodes if n.op_type not in VIEW_OPS]) for b in buckets)
    for bucket, bucket_plan in zip(buckets, plans, strict=True):
        address = addresses(bucket, bucket_plan)
        node_funcs: list[tuple[int, tuple[tuple[str, bool], ...]]] = []
        suffix = "" if len(buckets) == 1 else "@" + ",".join(f"{k}<={v[1]}" for k, v in sorted(bucket.symbols.items()))
        for node in [n for n in bucket.nodes if n.op_type not in VIEW_OPS]:
            if (node.domain, node.op_type) == REFUSE:
                node_funcs.append((-int(node.attrs["code"]), node.guards))
                continue
            func_index, func = module.reserve([], [], name=f"{node.op_type}:{node.name}"[:120] + suffix)
            spec = kernel_for(node)
            assert spec is not None
            ctx = Ctx(module, bucket, func, address, place_data, helpers,
                      scratch_addr=arena + bucket_plan.scratch.get(node.name, 0), relaxed_simd=options.relaxed_simd,
                      dims=dims, symbols=symbols)
            ctx.place_data = weights.kernel_data(place_data, spec.emit, node, ctx)  # int8: knows packed weights
            spec.emit(ctx, node)
            node_funcs.append((func_index, node.guards))
            if progress:
                progress(sum(len(b.funcs) for b in emitted) + len(node_funcs), total)
        emitted.append(Bucket(bucket, address, node_funcs))
    address = emitted[0].address

    run = _emit_run(module, graph, options, slots, in_place, emitted, dims, symbols)
    for name, value in (("wasinfer_abi_version", abi_version(graph)), ("wasinfer_max_batch", batch)):
        index, func = module.reserve([], [I32], name=name)
        func.i32(value)
        module.export_func(name, index)
    for kind, names in (("input", graph.inputs), ("output", graph.outputs)):
        index, func = module.reserve([I32], [I32], name=f"wasinfer_{kind}_ptr")
        for i, name in enumerate(names):
            func.get(0).i32(i).op("i32.eq")
            with func.if_():
                func.i32(slots[name]).op("return")
        func.i32(0)
        module.export_func(f"wasinfer_{kind}_ptr", index)
    module.export_func("wasinfer_run", run)
    if wasi_imports is not None:
        decided = {name: symbolic_axes(graph, name) for name in dims}
        module.export_func("_start", emit_wasi_start(module, graph, batch, options.batch_axes, slots, run,
                                                     wasi_imports, place_data, reserve, dims, decided))

    module.start = _emit_init(module, fills, weights.finish(module, reserve, data))
    module.data = data
    memory_end = align(const_cursor, PAGE)
    module.memory_pages = max(1, memory_end // PAGE)
    if module.memory_pages > MAX_PAGES:
        raise UnsupportedModel([f"model needs {memory_end / 2**30:.1f} GiB of linear memory; wasm32 allows 4 GiB"])
    layout: dict[str, object] = {
        "inputs": {n: slots[n] for n in graph.inputs},
        "outputs": {n: slots[n] for n in graph.outputs},
        "dims": dims,
        "arena_offset": arena,
        "constants_offset": align(arena + plan.arena_size),
        "memory_bytes": module.memory_pages * PAGE,
        "weights": weights.stats(),
    }
    return Compiled(module.encode(), layout, plan.arena_size, plan.naive_size)


def _check_dims(f: Func, graph: Graph, dims: dict[str, int], symbols: dict[str, int]) -> None:
    """Return 1 unless every symbolic input's actual dims (written by the host) are in their ranges (multiples of
    their steps), its static dims are the compiled ones, and the dims that are one symbol agree; keep each
    symbol's value. The kernels' loops and the copies between layouts then stay inside the buffers planned for
    the largest dims."""
    seen: set[str] = set()
    for name in graph.inputs:
        if name not in graph.extents:
            continue
        for axis, d in enumerate(graph.extents[name]):
            f.i32(dims[name] + 4 * axis).mem("i32.load")
            if not isinstance(d, Expr):
                f.i32(d).op("i32.ne")
                with f.if_():
                    f.i32(1).op("return")
                continue
            symbol, step = input_symbol(d)
            low, high = graph.symbols[symbol]
            value = f.local(I32)
            f.tee(value).i32(low * step).op("i32.lt_s").get(value).i32(high * step).op("i32.gt_s").op("i32.or")
            if step > 1:
                f.get(value).i32(step).op("i32.rem_s").op("i32.or")
            if symbol in seen:
                f.get(value).i32(step).op("i32.div_s").i32(symbols[symbol]).mem("i32.load").op("i32.ne").op("i32.or")
            with f.if_():
                f.i32(1).op("return")
            if symbol not in seen:
                f.i32(symbols[symbol]).get(value).i32(step).op("i32.div_s").mem("i32.store")
                seen.add(symbol)


def _check_values(f: Func, graph: Graph, slots: dict[str, int], symbols: dict[str, int]) -> None:
    """Return an input's status code unless each of its values (--input-values) is in its declared range; keep each
    as its symbol's value (they set dims the kernels and the copies of outputs read)."""
    for name, (low, high, code) in graph.valued.items():
        info = graph.info(name)
        load, wide = ("i64.load", True) if info.dtype == np.int64 else ("i32.load", False)
        value = f.local(I64)
        for index in range(info.size):
            f.i32(slots[name] + index * info.dtype.itemsize).mem(load, align=0)
            if not wide:
                f.op("i64.extend_i32_s")
            f.tee(value).i64(low).op("i64.lt_s").get(value).i64(high).op("i64.gt_s").op("i32.or")
            with f.if_():
                f.i32(code).op("return")
            f.i32(symbols[value_symbol(name, index)]).get(value).op("i32.wrap_i64").mem("i32.store")
    for name, (lowest, highest, code) in graph.read_values.items():  # read by kernels: checked only, as f64
        info = graph.info(name)
        load, widen = {"float32": ("f32.load", "f64.promote_f32"), "float64": ("f64.load", ""),
                       "int32": ("i32.load", "f64.convert_i32_s"), "int64": ("i64.load", "f64.convert_i64_s"),
                       "float16": ("", ""), "bfloat16": ("", "")}[info.dtype.name]
        number = f.local(F64)
        for index in range(info.size):
            f.i32(slots[name] + index * info.dtype.itemsize)
            if not load:  # a Range's float16 or bfloat16 bounds: decoded from their bits
                emit_load_f64(f, info.dtype)
            else:
                f.mem(load, align=0)
            if widen:
                f.op(widen)
            # outside, or NaN: not (lowest <= value <= highest)
            f.tee(number).f64(lowest).op("f64.ge").get(number).f64(highest).op("f64.le").op("i32.and").op("i32.eqz")
            with f.if_():
                f.i32(code).op("return")


def _emit_run(module: Module, graph: Graph, options: CompileOptions, slots: dict[str, int],
              in_place: set[str], buckets: list[Bucket], dims: dict[str, int], symbols: dict[str, int]) -> int:
    index, f = module.reserve([I32], [I32], name="wasinfer_run")
    sample = f.local(I32)
    f.get(0).i32(1).op("i32.lt_s").get(0).i32(options.max_batch).op("i32.gt_s").op("i32.or")
    with f.if_():
        f.i32(1).op("return")
    _check_dims(f, graph, dims, symbols)
    _check_values(f, graph, slots, symbols)
    address = buckets[0].address

    def split(name: str) -> tuple[int, int]:
        """(outer elements, inner bytes) around a batched tensor's batch axis."""
        shape, axis = graph.info(name).shape, options.batch_axes[name]
        outer = math.prod(shape[:axis])
        return outer, graph.info(name).nbytes // max(outer, 1)

    batched = [n for n in graph.inputs + graph.outputs if n in options.batch_axes and n not in in_place]
    outer_index = f.local(I32) if any(split(n)[0] > 1 for n in batched) else -1

    def copy_sample(name: str, into_slot: bool) -> None:
        """Sample `sample` of a batched tensor between its slot, laid out [outer, n, inner] around its
        batch axis (n: this run's batch), and its one-sample buffer [outer, 1, inner]."""
        outer, inner = split(name)
        if outer == 1:  # the batch on the leading axis (or after unit dims): one copy
            if into_slot:
                f.addr(slots[name], sample, inner).i32(address(name))
            else:
                f.i32(address(name)).addr(slots[name], sample, inner)
            f.i32(inner).memory_copy()
            return
        def slot_at() -> None:  # slot + (o * n + sample) * inner
            f.get(outer_index).get(0).op("i32.mul").get(sample).op("i32.add")
            f.i32(inner).op("i32.mul").i32(slots[name]).op("i32.add")

        def buffer_at() -> None:  # buffer + o * inner
            f.get(outer_index).i32(inner).op("i32.mul").i32(address(name)).op("i32.add")

        with f.for_range(outer_index, 0, outer):
            for push in (slot_at, buffer_at) if into_slot else (buffer_at, slot_at):  # memory.copy: dst, src
                push()
            f.i32(inner).memory_copy()

    def call_or_refuse(func_index: int) -> None:
        if func_index < 0:  # a Refuse node (passes/control.py): stop the run with its status
            f.i32(-func_index).op("return")
        else:
            f.call(func_index)

    def run_bucket(bucket: Bucket) -> None:
        """One sample through one bucket's kernels: inputs in, nodes, outputs out (in that bucket's layouts)."""
        at = bucket.address
        for name in graph.inputs:
            if name in graph.extents:  # max_batch is 1: from its packed layout into the largest
                info = bucket.graph.info(name)
                copy_between_layouts(f, slots[name], at(name), graph.extents[name], info.shape,
                                     info.dtype.itemsize, symbols, to_packed=False)
            elif name not in in_place:
                copy_sample(name, into_slot=False)
        for guards, run_of_nodes in itertools.groupby(bucket.funcs, key=lambda pair: pair[1]):
            if not guards:
                for func_index, _ in run_of_nodes:
                    call_or_refuse(func_index)
                continue
            for position, (condition, value) in enumerate(guards):  # a branch of a run-time If
                f.i32(at(condition)).mem("i32.load8_u", align=0)
                if not value:
                    f.op("i32.eqz")
                if position:
                    f.op("i32.and")
            with f.if_():
                for func_index, _ in run_of_nodes:
                    call_or_refuse(func_index)
        for name in graph.outputs:
            if name in graph.extents:
                info = bucket.graph.info(name)
                copy_between_layouts(f, slots[name], at(name), graph.extents[name], info.shape,
                                     info.dtype.itemsize, symbols, to_packed=True)
                for axis, d in enumerate(graph.extents[name]):
                    f.i32(dims[name] + 4 * axis)
                    push_dim(f, d, symbols)
                    f.mem("i32.store")
            elif name in options.batch_axes:
                copy_sample(name, into_slot=True)
            else:  # the same value for every sample
                f.i32(slots[name]).i32(at(name)).i32(graph.info(name).nbytes).memory_copy()

    with f.for_range(sample, 0, ("local", 0)):
        if len(buckets) == 1:
            run_bucket(buckets[0])
        else:
            with f.block():
                for bucket in reversed(buckets[1:]):  # the smallest bucket (by its sizes' product) that holds them
                    for position, (symbol, (_, largest)) in enumerate(sorted(bucket.graph.symbols.items())):
                        f.i32(symbols[symbol]).mem("i32.load").i32(largest).op("i32.le_s")
                        if position:
                            f.op("i32.and")
                    with f.if_():
                        run_bucket(bucket)
                        f.br(1)
                run_bucket(buckets[0])
    f.i32(0)
    return index


def _emit_init(module: Module, fills: list[tuple[int, int, int]], expand: Callable[[Func], None] | None = None) -> int:
    """Start function: write uniform constants (e.g. ConstantOfShape weights) without storing them,
    and expand compressed weights (int8 / fp16, passes/quantize.py) into float32."""
    index, f = module.reserve([], [], name="wasinfer_init")
    ptr, end = f.local(I32), f.local(I32)
    for addr, words, bits in fills:
        nbytes = words * 4
        f.i32(addr).set(ptr).i32(addr + nbytes // 16 * 16).set(end)
        with f.block(), f.block(b"\x03"):
            f.get(ptr).get(end).op("i32.ge_u").br_if(1)
            f.get(ptr).v128(struct.pack("<4I", bits, bits, bits, bits)).mem("v128.store")
            f.inc(ptr, 16).br(0)
        for tail in range(nbytes // 16 * 16, nbytes, 4):
            f.i32(addr + tail).i32(bits).mem("i32.store")
    if expand is not None:
        expand(f)
    return index


def metadata_bytes(metadata: dict[str, object]) -> bytes:
    return json.dumps(metadata, sort_keys=True, separators=(",", ":")).encode()


__all__ = ["ABI_VERSION", "METADATA_SECTION", "Compiled", "CompileOptions", "MemoryPlan", "UnsupportedModel",
           "check_support", "compile_graph", "emitter_files", "kernel_for", "supported_ops"]
