"""A WASI-NN host: run WasmEdge-style guest programs (WASI commands that import `wasi_ephemeral_nn`) on
wasmtime, with the models behind them run by ONNX Runtime, LiteRT or wasinfer's own compiled modules.

Why a host of our own rather than WasmEdge: the models then run on the same engines, with the same
limits, as `wasinfer serve`, and a guest cannot take the host down. Everything the guest hands over
(pointers, sizes, handles, enum values) is checked, and a wrong one is an error code returned to the
guest, never an exception in the host.

ABI. The functions are the witx `wasi_ephemeral_nn` module (WebAssembly/wasi-nn, `wasi-nn.witx` and
`phases/ephemeral/witx/wasi_ephemeral_nn.witx`) lowered to core wasm as WasmEdge's WASI-NN plug-in and
wasmtime's `wasmtime-wasi-nn` (preview1) implement it: every function returns the errno as an i32,
results go through out-pointers, a list is a (pointer, length) pair of i32s.

    load(builders_ptr, builders_len, encoding, target, graph_out_ptr) -> errno
        builders: builders_len records of {u32 ptr, u32 len}; exactly one (the model's bytes)
    load_by_name(name_ptr, name_len, graph_out_ptr) -> errno          a `--nn-preload` alias
    load_by_name_with_config(name_ptr, name_len, config_ptr, config_len, graph_out_ptr) -> errno
        (WasmEdge's; the config is bounds-checked and otherwise ignored: our backends take none)
    init_execution_context(graph, context_out_ptr) -> errno
    set_input(context, index, tensor_ptr) -> errno
        tensor: {u32 dims_ptr, u32 dims_len, u32 type (a u8 enum, padded), u32 data_ptr, u32 data_len}
    compute(context) -> errno
    get_output(context, index, out_ptr, out_max_bytes, bytes_written_out_ptr) -> errno
    unload(graph), finalize_execution_context(context) -> errno        (WasmEdge's; free host memory)
    compute_single, get_output_single, fini_single -> unsupported_operation   (WasmEdge's LLM streaming)

The numbers are those of WasmEdge's plug-in (`plugins/wasi_nn/wasinntypes.h` in WasmEdge/WasmEdge, 2024;
the older `plugins/wasi_nn/types.h` has the witx tensor types):

    errno            success 0, invalid_argument 1, invalid_encoding 2, missing_memory 3, busy 4,
                     runtime_error 5, unsupported_operation 6, too_large 7, not_found 8
    graph_encoding   openvino 0, onnx 1, tensorflow 2, pytorch 3, tensorflowlite 4, autodetect 5, ggml 6
    execution_target cpu 0, gpu 1, tpu 2, auto 3
    tensor_type      f16 0, f32 1, f64 2, u8 3, i32 4, i64 5

The witx (and wasmtime) tensor types are f16 0, f32 1, u8 2, i32 3 and WasmEdge's older releases used
those too; WasmEdge now numbers them as above, and this host follows WasmEdge (f16 and f32, by far the
most used, are the same in both). The witx order of encodings puts ggml before autodetect; WasmEdge
has autodetect 5, ggml 6, and so does this host.

Which backend: onnx → ONNX Runtime (target gpu runs on its CUDA provider where this onnxruntime has
one); tensorflowlite → LiteRT (cpu only); autodetect → by the bytes: a WebAssembly module with
wasinfer's metadata section runs as a wasinfer module (`WasmModel`), `TFL3` at offset 4 is LiteRT,
anything else is tried as ONNX. WasmEdge has no encoding for wasinfer modules, so a guest asks for one
with `autodetect` on its bytes, or by name: `--nn-preload NAME:wasinfer:cpu:model.wasm` (the encoding
`wasinfer` exists only in preload specs; it has no number). openvino, tensorflow, pytorch and ggml
are known encodings without a backend here: like a WasmEdge built without them, load answers
invalid_argument; an encoding number nobody defines is invalid_encoding. Targets follow WasmEdge's
backends too: a target the backend cannot run on is invalid_argument (WasmEdge refuses rather than
falling back: its TFLite backend answers invalid_argument for any target but cpu), and auto is cpu.

Errors, case by case (WasmEdge's choices where it makes one):
    a pointer/length outside the guest's memory ........... invalid_argument
    the guest exports no memory ........................... missing_memory
    graph or context handle never handed out (or freed) ... invalid_argument
    load_by_name of a name no preload has ................. not_found
    more than one (or no) graph builder, bytes the backend cannot read, wrong tensor type number,
    a tensor type or dims or byte length the model does not take, input/output index out of range,
    compute before every input is set, get_output before compute, get_output of an output
    of strings (its bytes would be host pointers) ........ invalid_argument
    output buffer smaller than the output ................. too_large (wasmtime's choice, and the
                                                            name's meaning; WasmEdge's backends have
                                                            answered this differently across versions)
    model bytes over the per-load limit ................... too_large
    more graphs or contexts than the per-guest limit, or contexts holding more host memory
    together than NnLimits.max_context_bytes .............. busy
    the backend fails while computing, or compute is called after the guest's deadline
    has passed ............................................ runtime_error
Every error also leaves a line starting `[WASI-NN]` on the guest's stderr, as WasmEdge logs one.

Dims: one per model dim; a dim the model fixes must match, one it leaves dynamic takes any size, except
that a wasinfer module's symbolic dims (ABI version 3) take the sizes in their ranges (set_input answers
invalid_argument, naming the input, the axis and the range, for any other), and dims that are one
symbol must agree across inputs (compute answers invalid_argument).
Data: raw little-endian bytes, exactly prod(dims) elements of the model's element type, which must be
one of the tensor types above (a model whose input is int8 or bool cannot be fed). Outputs come back
as the model's raw bytes, whatever their type, as many as the run's dims hold (packed for those dims
where they follow symbolic ones).

Limits. The guest's linear memory is capped (`memory_limit_bytes`: wasmtime's store limit; growing
past it fails the grow, as in any runtime, and a guest that then traps is reported as hitting the
cap), and its run time (`deadline_seconds`: interrupt checks, as `WasmModel`'s deadlines; the
time spent in host calls counts: an ONNX Runtime run is terminated at the deadline (RunOptions'
`terminate`), LiteRT cannot be stopped midway so TFLite models with WHILE loops are refused, and a
wasinfer module loaded by a guest gets the same memory cap and, at each compute, what is left of the
deadline). `NnLimits` caps what a guest can make the host hold: graphs, contexts, and the bytes its
contexts' inputs and outputs keep on the host.

Failures. A guest that traps, runs past its deadline or dies at its memory cap gives a GuestResult
with exit code EXIT_TRAP (134) or EXIT_DEADLINE (124), `fault` "trap" or "deadline", and a
`wasinfer: ...` line at the end of its stderr; proc_exit(n) gives n (and fault None). Only what is
wrong with the host's own inputs raises, as `GuestError` (a ValueError): bytes that are not a
WebAssembly module, a module that is not a WASI command (no `_start`), imports this host does not
provide, a preopen directory that does not exist.
"""

from __future__ import annotations

import ctypes
import hashlib
import itertools
import logging
import math
import struct
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np
import wasmtime
from wasmtime import _ffi

from wasinfer.runtime.base import InputError, ModelFault, TensorSpec
from wasinfer.runtime.interrupt import WATCHDOG, Alarm, UnverifiableModule, interrupt_flag, run_start
from wasinfer.runtime.wasm import (
    WASM_PAGE,
    CompiledCache,
    WasmModel,
    _trap_reason,
    check_symbolic_dims,
    compile_module,
    make_engine,
    model_info,
    set_store_limits,
)

log = logging.getLogger("wasinfer.runtime")

NN_MODULE = "wasi_ephemeral_nn"
EXIT_DEADLINE = 124  # as timeout(1)
EXIT_TRAP = 134  # as a C program that aborts


class NnErrno(IntEnum):
    SUCCESS = 0
    INVALID_ARGUMENT = 1
    INVALID_ENCODING = 2
    MISSING_MEMORY = 3
    BUSY = 4
    RUNTIME_ERROR = 5
    UNSUPPORTED_OPERATION = 6
    TOO_LARGE = 7
    NOT_FOUND = 8


class GraphEncoding(IntEnum):
    OPENVINO = 0
    ONNX = 1
    TENSORFLOW = 2
    PYTORCH = 3
    TENSORFLOWLITE = 4
    AUTODETECT = 5
    GGML = 6


class ExecutionTarget(IntEnum):
    CPU = 0
    GPU = 1
    TPU = 2
    AUTO = 3


class TensorType(IntEnum):
    F16 = 0
    F32 = 1
    F64 = 2
    U8 = 3
    I32 = 4
    I64 = 5


TENSOR_DTYPES: dict[TensorType, np.dtype[Any]] = {
    TensorType.F16: np.dtype("<f2"), TensorType.F32: np.dtype("<f4"), TensorType.F64: np.dtype("<f8"),
    TensorType.U8: np.dtype("u1"), TensorType.I32: np.dtype("<i4"), TensorType.I64: np.dtype("<i8"),
}
# Encodings that have a backend here; the others are known names a guest may ask for and be refused.
SERVED_ENCODINGS = (GraphEncoding.ONNX, GraphEncoding.TENSORFLOWLITE, GraphEncoding.AUTODETECT)
WASINFER_ENCODING = "wasinfer"  # preload specs only: a wasinfer module, by name
PRELOAD_ENCODINGS = (*(e.name.lower() for e in GraphEncoding), WASINFER_ENCODING)
PRELOAD_TARGETS = tuple(t.name.lower() for t in ExecutionTarget)


class GuestError(ValueError):
    """The host cannot run this guest at all (not a module, not a WASI command, imports we lack)."""


@dataclass(frozen=True)
class Preload:
    """WasmEdge's `--nn-preload ALIAS:ENCODING:TARGET:PATH`: a model a guest loads by name.

    ENCODING and TARGET are names, not numbers, in any case (WasmEdge's spelling `TensorflowLite`,
    `GGML`, `AUTO` works), plus `wasinfer` for a wasinfer module; PATH may itself contain colons.
    The file is read when a guest first loads the name, as WasmEdge does.
    """

    alias: str
    encoding: str  # lower case, one of PRELOAD_ENCODINGS
    target: str  # lower case, one of PRELOAD_TARGETS
    path: Path

    @classmethod
    def parse(cls, spec: str) -> Preload:
        parts = spec.split(":", 3)
        if len(parts) != 4 or not all(parts):
            raise ValueError(f"--nn-preload {spec!r}: expected ALIAS:ENCODING:TARGET:PATH "
                             "(e.g. default:onnx:cpu:model.onnx)")
        alias, encoding, target, path = parts
        if encoding.lower() not in PRELOAD_ENCODINGS:
            raise ValueError(f"--nn-preload {spec!r}: unknown encoding {encoding!r}; one of "
                             f"{', '.join(PRELOAD_ENCODINGS)}")
        if target.lower() not in PRELOAD_TARGETS:
            raise ValueError(f"--nn-preload {spec!r}: unknown target {target!r}; one of {', '.join(PRELOAD_TARGETS)}")
        return cls(alias, encoding.lower(), target.lower(), Path(path))


def parse_preloads(specs: Sequence[str]) -> tuple[Preload, ...]:
    """--nn-preload flags as a command line gives them: each well-formed, naming a file, aliases unique."""
    preloads = tuple(Preload.parse(spec) for spec in specs)
    for preload in preloads:
        if not preload.path.is_file():
            raise ValueError(f"--nn-preload {preload.alias}: {preload.path}: no such file")
    aliases = [p.alias for p in preloads]
    if len(set(aliases)) != len(aliases):
        twice = sorted({a for a in aliases if aliases.count(a) > 1})
        raise ValueError(f"--nn-preload: an alias is given twice: {twice}")
    return preloads


@dataclass
class GuestResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    # Why the host stopped the guest: "deadline" or "trap" (memory caps included); None when it exited by
    # itself, whatever its code (a guest may proc_exit(124) itself, and that is not a deadline).
    fault: str | None = None


@dataclass(frozen=True)
class NnLimits:
    """What one guest run may make the host hold, beyond its own (capped) linear memory."""

    max_graphs: int = 16
    max_contexts: int = 64
    max_model_bytes: int = 512 << 20  # per `load` (bytes copied out of the guest)
    max_output_bytes: int = 64 << 20  # of stdout and of stderr kept; the rest is cut
    # Host memory the guest's contexts may hold together: a wasinfer module's linear memory, a LiteRT
    # interpreter's model copy (ONNX Runtime sessions are shared, so free here). Guards against a guest
    # multiplying a big model's arena by opening contexts.
    max_context_bytes: int = 2 << 30


class NnError(Exception):
    """An errno for the guest, with the line for its stderr."""

    def __init__(self, errno: NnErrno, message: str):
        super().__init__(message)
        self.errno = errno


Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class _Graph:
    """A loaded model: what its tensors are, and how to make a runner for one execution context."""

    backend: str
    inputs: list[TensorSpec]
    outputs: list[str]
    # (the guest's deadline left, read at each compute; memory cap) → a runner for one context
    new_runner: Callable[[Callable[[], float | None], int | None], Runner]
    context_bytes: int = 0  # host memory one context holds, about (NnLimits.max_context_bytes)
    # what an input's dims must be beyond its TensorSpec's -1s: (input index, dims) → None, or InputError
    # (a wasinfer module's symbolic dims take only their ranges), asked at set_input before the data is copied
    check_dims: Callable[[int, tuple[int, ...]], None] | None = None


@dataclass
class _Context:
    graph: _Graph
    run: Runner
    inputs: dict[int, np.ndarray] = field(default_factory=dict)
    outputs: list[bytes | None] | None = None  # None for an output that is not numbers (strings)


# ---------------------------------------------------------------- backends

def _onnx_graph(content: bytes, target: ExecutionTarget) -> _Graph:
    import onnxruntime as ort

    from wasinfer.runtime.onnxruntime import CPU, CUDA, OnnxRuntimeModel

    if target is ExecutionTarget.GPU:
        if CUDA not in ort.get_available_providers():
            raise NnError(NnErrno.INVALID_ARGUMENT, "onnx: target gpu needs ONNX Runtime's CUDA provider, which "
                          "this host's onnxruntime does not have (use target cpu)")
        providers = [CUDA, CPU]
    elif target in (ExecutionTarget.CPU, ExecutionTarget.AUTO):
        providers = [CPU]
    else:
        raise NnError(NnErrno.INVALID_ARGUMENT, f"onnx: target {target.name.lower()} is not supported (cpu, gpu)")
    try:
        model = OnnxRuntimeModel(content, providers=providers)
    except Exception as exc:  # onnxruntime's own exception types for unreadable or invalid models
        raise NnError(NnErrno.INVALID_ARGUMENT, f"onnx: cannot load the model: {_first_line(exc)}") from None
    if providers[0] == CUDA and CUDA not in model.info.providers:  # the wheel has CUDA, the machine no GPU
        raise NnError(NnErrno.INVALID_ARGUMENT, "onnx: target gpu: ONNX Runtime could not start its CUDA provider "
                      "here (no GPU or driver); use target cpu")
    inputs = model.info.inputs

    def runner(deadline_left: Callable[[], float | None], memory: int | None) -> Runner:
        def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            """A guest may load a graph that never ends (a Loop with no exit): ONNX Runtime stops the run
            when `terminate` is set, which a timer does at the guest's deadline."""
            left = deadline_left()
            if left is None:
                return model.run(feeds)
            import onnxruntime as ort

            options = ort.RunOptions()
            timer = threading.Timer(left, lambda: setattr(options, "terminate", True))
            timer.daemon = True
            timer.start()
            try:
                return model.run(feeds, run_options=options)
            finally:
                timer.cancel()
        return run

    return _Graph("onnxruntime", inputs, model.output_names(), runner)


def _tflite_graph(content: bytes, target: ExecutionTarget) -> _Graph:
    from wasinfer.runtime.litert import LiteRtModel

    if target not in (ExecutionTarget.CPU, ExecutionTarget.AUTO):
        raise NnError(NnErrno.INVALID_ARGUMENT, f"tensorflowlite: only target cpu is supported, got "
                      f"{target.name.lower()}")
    try:
        model = LiteRtModel(content)
    except Exception as exc:  # LiteRT raises ValueError / RuntimeError for bad flatbuffers and unknown ops
        raise NnError(NnErrno.INVALID_ARGUMENT, f"tensorflowlite: cannot load the model: {_first_line(exc)}") from None
    if "WHILE" in model.op_names():  # LiteRT cannot stop a run from outside: a loop could hold the host forever
        raise NnError(NnErrno.UNSUPPORTED_OPERATION, "tensorflowlite: models with WHILE loops are refused: LiteRT "
                      "cannot stop a run at the guest's deadline")
    inputs = model.info.inputs
    return _Graph("litert", inputs, model.output_names(), lambda deadline_left, memory: model.spawn().run,
                  len(content))


def _wasinfer_graph(content: bytes, target: ExecutionTarget) -> _Graph:
    from wasinfer.artifact.metadata import read_metadata

    if target not in (ExecutionTarget.CPU, ExecutionTarget.AUTO):
        raise NnError(NnErrno.INVALID_ARGUMENT, f"wasinfer: only target cpu is supported, got {target.name.lower()}")
    engine = guest_engine()  # the guests' own engine: interruptible, as the guest is
    try:
        metadata = read_metadata(content)
        module = CompiledCache(None).load(engine, content)
    except (ValueError, KeyError, TypeError, wasmtime.WasmtimeError) as exc:
        raise NnError(NnErrno.INVALID_ARGUMENT, f"wasinfer: not a wasinfer module: {_first_line(exc)}") from None

    def runner(deadline_left: Callable[[], float | None], memory: int | None) -> Runner:
        try:
            model = WasmModel(b"", engine, compiled=(module, metadata), deadline_seconds=deadline_left(),
                              memory_limit_bytes=memory)
        except ModelFault as exc:
            raise NnError(NnErrno.RUNTIME_ERROR, f"wasinfer: cannot instantiate the model: {exc}") from None
        # each compute gets what is left of the guest's deadline, not a fresh one
        return lambda feeds: model.run(feeds, deadline_seconds=deadline_left())

    def check_dims(index: int, dims: tuple[int, ...]) -> None:
        if metadata.inputs[index].run_time_axes:  # symbolic dims (ABI version 3)
            check_symbolic_dims(metadata.inputs[index], dims)

    inputs = model_info(metadata).inputs
    return _Graph("wasinfer", inputs, [s.name for s in metadata.outputs], runner,
                  max(metadata.memory_bytes, metadata.arena_bytes), check_dims)


def _is_wasinfer(content: bytes) -> bool:
    from wasinfer.artifact.metadata import read_metadata

    if content[:4] != b"\0asm":
        return False
    try:
        read_metadata(content)
    except (ValueError, KeyError, TypeError):
        return False
    return True


def _build_graph(content: bytes, encoding: GraphEncoding | str, target: ExecutionTarget) -> _Graph:
    """A graph from model bytes; `encoding` a wasi-nn encoding, or `wasinfer` (from a preload spec)."""
    if encoding == WASINFER_ENCODING:
        return _wasinfer_graph(content, target)
    if encoding is GraphEncoding.AUTODETECT:
        if _is_wasinfer(content):
            return _wasinfer_graph(content, target)
        if content[4:8] == b"TFL3":
            return _tflite_graph(content, target)
        return _onnx_graph(content, target)
    if encoding is GraphEncoding.ONNX:
        return _onnx_graph(content, target)
    if encoding is GraphEncoding.TENSORFLOWLITE:
        return _tflite_graph(content, target)
    name = encoding.name.lower() if isinstance(encoding, GraphEncoding) else str(encoding)
    raise NnError(NnErrno.INVALID_ARGUMENT, f"load: the {name} backend is not available on this host "
                  "(onnx, tensorflowlite and autodetect are; autodetect also takes wasinfer modules)")


_PRELOADED: OrderedDict[tuple[Any, ...], _Graph] = OrderedDict()
_PRELOADED_LOCK = threading.Lock()
PRELOAD_CACHE_SIZE = 16


def _preloaded_graph(preload: Preload) -> _Graph:
    """The graph of a preload, loaded once per file version and shared by every guest run that names it
    (an ONNX Runtime session is thread-safe; LiteRT and wasinfer contexts get instances of their own)."""
    try:
        stat = preload.path.stat()
    except OSError as exc:
        raise NnError(NnErrno.NOT_FOUND, f"load_by_name: preload {preload.alias!r}: {preload.path}: "
                      f"{exc.strerror}") from None
    key = (str(preload.path.resolve()), stat.st_size, stat.st_mtime_ns, preload.encoding, preload.target)
    with _PRELOADED_LOCK:
        graph = _PRELOADED.get(key)
        if graph is not None:
            _PRELOADED.move_to_end(key)
            return graph
    encoding: GraphEncoding | str = (WASINFER_ENCODING if preload.encoding == WASINFER_ENCODING
                                     else GraphEncoding[preload.encoding.upper()])
    try:
        content = preload.path.read_bytes()
    except OSError as exc:  # a directory, unreadable: as absent as a missing file, to the guest
        raise NnError(NnErrno.NOT_FOUND, f"load_by_name: preload {preload.alias!r}: {preload.path}: "
                      f"{exc.strerror}") from None
    graph = _build_graph(content, encoding, ExecutionTarget[preload.target.upper()])
    with _PRELOADED_LOCK:
        _PRELOADED[key] = graph
        while len(_PRELOADED) > PRELOAD_CACHE_SIZE:
            _PRELOADED.popitem(last=False)
    return graph


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ---------------------------------------------------------------- the host functions

_U32 = struct.Struct("<I")
_BUILDER = struct.Struct("<II")
_TENSOR = struct.Struct("<IIIII")
MAX_DIMS = 16


class NnHost:
    """The `wasi_ephemeral_nn` state of one guest run: its graphs and contexts, by handle."""

    def __init__(self, preloads: Sequence[Preload], limits: NnLimits, memory_limit_bytes: int | None,
                 deadline_at: float | None):
        self.preloads = {p.alias: p for p in preloads}
        self.limits, self.memory_limit_bytes, self.deadline_at = limits, memory_limit_bytes, deadline_at
        self.graphs: dict[int, _Graph] = {}
        self.contexts: dict[int, _Context] = {}
        self._next_graph = self._next_context = 0
        self.messages: list[str] = []

    # -- guest memory

    @staticmethod
    def _memory(caller: wasmtime.Caller) -> wasmtime.Memory:
        memory = caller.get("memory")
        if not isinstance(memory, wasmtime.Memory):
            raise NnError(NnErrno.MISSING_MEMORY, "the guest exports no memory named \"memory\"")
        return memory

    def _read(self, caller: wasmtime.Caller, ptr: int, length: int, what: str) -> bytes:
        self._check_span(caller, ptr, length, what)
        ptr, length = ptr & 0xFFFFFFFF, length & 0xFFFFFFFF
        return bytes(self._memory(caller).read(caller, ptr, ptr + length))

    def _check_span(self, caller: wasmtime.Caller, ptr: int, length: int, what: str) -> None:
        """Guest pointers and lengths are u32s (wasmtime hands them over as signed i32s)."""
        memory = self._memory(caller)
        ptr, length = ptr & 0xFFFFFFFF, length & 0xFFFFFFFF
        if ptr + length > memory.data_len(caller):
            raise NnError(NnErrno.INVALID_ARGUMENT, f"{what}: [{ptr}, {ptr + length}) is outside the guest's "
                          f"memory of {memory.data_len(caller)} bytes")

    def _write(self, caller: wasmtime.Caller, ptr: int, data: bytes, what: str) -> None:
        self._check_span(caller, ptr, len(data), what)
        self._memory(caller).write(caller, data, ptr & 0xFFFFFFFF)

    # -- handles

    def _graph(self, handle: int) -> _Graph:
        graph = self.graphs.get(handle & 0xFFFFFFFF)
        if graph is None:
            raise NnError(NnErrno.INVALID_ARGUMENT, f"no graph {handle & 0xFFFFFFFF}")
        return graph

    def _context(self, handle: int) -> _Context:
        context = self.contexts.get(handle & 0xFFFFFFFF)
        if context is None:
            raise NnError(NnErrno.INVALID_ARGUMENT, f"no execution context {handle & 0xFFFFFFFF}")
        return context

    def _add_graph(self, graph: _Graph) -> int:
        handle, self._next_graph = self._next_graph, self._next_graph + 1
        self.graphs[handle] = graph
        return handle

    def _room_for_graph(self) -> None:
        if len(self.graphs) >= self.limits.max_graphs:
            raise NnError(NnErrno.BUSY, f"this guest already holds {len(self.graphs)} graphs, the most it may "
                          "(unload one first)")

    def _held_bytes(self) -> int:
        """Host memory the guest's contexts hold: each graph's per-context estimate, its inputs, its outputs."""
        return sum(c.graph.context_bytes + sum(int(a.nbytes) for a in c.inputs.values())
                   + sum(len(o or b"") for o in c.outputs or ()) for c in self.contexts.values())

    def _deadline_left(self) -> float | None:
        if self.deadline_at is None:
            return None
        return max(0.001, self.deadline_at - time.monotonic())

    # -- the functions

    def load(self, caller: wasmtime.Caller, builders_ptr: int, builders_len: int, encoding: int, target: int,
             graph_out: int) -> None:
        self._check_span(caller, graph_out, 4, "load: graph out-pointer")
        count = builders_len & 0xFFFFFFFF
        if count != 1:
            raise NnError(NnErrno.INVALID_ARGUMENT, f"load: expected 1 graph builder (the model's bytes), got {count}")
        ptr, length = _BUILDER.unpack(self._read(caller, builders_ptr, _BUILDER.size, "load: graph builder array"))
        if encoding not in GraphEncoding._value2member_map_:
            raise NnError(NnErrno.INVALID_ENCODING, f"load: unknown graph encoding {encoding}")
        if target not in ExecutionTarget._value2member_map_:
            raise NnError(NnErrno.INVALID_ARGUMENT, f"load: unknown execution target {target}")
        self._check_span(caller, ptr, length, "load: graph builder 0")
        if length > self.limits.max_model_bytes:
            raise NnError(NnErrno.TOO_LARGE, f"load: the model is {length} bytes; this host takes at most "
                          f"{self.limits.max_model_bytes}")
        content = self._read(caller, ptr, length, "load: graph builder 0")
        self._room_for_graph()
        graph = _build_graph(content, GraphEncoding(encoding), ExecutionTarget(target))
        self._write(caller, graph_out, _U32.pack(self._add_graph(graph)), "load: graph out-pointer")

    def load_by_name(self, caller: wasmtime.Caller, name_ptr: int, name_len: int, graph_out: int) -> None:
        self._check_span(caller, graph_out, 4, "load_by_name: graph out-pointer")
        raw = self._read(caller, name_ptr, name_len, "load_by_name: name")
        name = raw.decode("utf-8", "replace")
        preload = self.preloads.get(name)
        if preload is None:
            known = ", ".join(sorted(self.preloads)) or "none"
            raise NnError(NnErrno.NOT_FOUND, f"load_by_name: no model named {name!r} (preloaded: {known})")
        self._room_for_graph()
        graph = _preloaded_graph(preload)
        self._write(caller, graph_out, _U32.pack(self._add_graph(graph)), "load_by_name: graph out-pointer")

    def load_by_name_with_config(self, caller: wasmtime.Caller, name_ptr: int, name_len: int, config_ptr: int,
                                 config_len: int, graph_out: int) -> None:
        self._check_span(caller, config_ptr, config_len, "load_by_name_with_config: config")  # read, not used
        self.load_by_name(caller, name_ptr, name_len, graph_out)

    def unload(self, caller: wasmtime.Caller, graph: int) -> None:
        self._graph(graph)
        del self.graphs[graph & 0xFFFFFFFF]

    def init_execution_context(self, caller: wasmtime.Caller, graph_handle: int, context_out: int) -> None:
        self._check_span(caller, context_out, 4, "init_execution_context: context out-pointer")
        graph = self._graph(graph_handle)
        if len(self.contexts) >= self.limits.max_contexts:
            raise NnError(NnErrno.BUSY, f"init_execution_context: this guest already holds {len(self.contexts)} "
                          "contexts, the most it may")
        held = self._held_bytes()
        if held + graph.context_bytes > self.limits.max_context_bytes:
            raise NnError(NnErrno.BUSY, f"init_execution_context: the guest's contexts already hold about {held} "
                          f"bytes of host memory; another of {graph.context_bytes} would pass the limit of "
                          f"{self.limits.max_context_bytes}")
        context = _Context(graph, graph.new_runner(self._deadline_left, self.memory_limit_bytes))
        handle, self._next_context = self._next_context, self._next_context + 1
        self.contexts[handle] = context
        self._write(caller, context_out, _U32.pack(handle), "init_execution_context: context out-pointer")

    def finalize_execution_context(self, caller: wasmtime.Caller, context: int) -> None:
        self._context(context)
        del self.contexts[context & 0xFFFFFFFF]

    def set_input(self, caller: wasmtime.Caller, context_handle: int, index: int, tensor_ptr: int) -> None:
        context = self._context(context_handle)
        dims_ptr, dims_len, type_code, data_ptr, data_len = _TENSOR.unpack(
            self._read(caller, tensor_ptr, _TENSOR.size, "set_input: tensor"))
        inputs = context.graph.inputs
        index &= 0xFFFFFFFF
        if index >= len(inputs):
            raise NnError(NnErrno.INVALID_ARGUMENT, f"set_input: input index {index}; the model has {len(inputs)}")
        spec = inputs[index]
        type_code &= 0xFF  # a u8 enum in a padded field: the padding bytes are not ours to read
        if type_code not in TensorType._value2member_map_:
            raise NnError(NnErrno.INVALID_ARGUMENT, f"set_input: unknown tensor type {type_code}")
        dtype = np.dtype(spec.dtype)
        wanted = next((t for t, d in TENSOR_DTYPES.items() if d == dtype), None)
        if wanted is None:
            raise NnError(NnErrno.INVALID_ARGUMENT, f"set_input: input {spec.name!r} is {spec.dtype}, which "
                          "no wasi-nn tensor type carries")
        if TensorType(type_code) is not wanted:
            raise NnError(NnErrno.INVALID_ARGUMENT, f"set_input: input {spec.name!r} is {wanted.name.lower()} "
                          f"({spec.dtype}), got {TensorType(type_code).name.lower()}")
        if dims_len > MAX_DIMS:
            raise NnError(NnErrno.INVALID_ARGUMENT, f"set_input: {dims_len} dims; at most {MAX_DIMS}")
        raw_dims = self._read(caller, dims_ptr, 4 * dims_len, "set_input: dims")
        dims = tuple(struct.unpack(f"<{dims_len}I", raw_dims))
        if context.graph.check_dims is not None:  # first: its message says more (a symbolic dim's range)
            try:
                context.graph.check_dims(index, dims)
            except InputError as exc:
                raise NnError(NnErrno.INVALID_ARGUMENT, f"set_input: {exc}") from None
        if len(dims) != len(spec.shape) or any(want not in (-1, got) for want, got in zip(spec.shape, dims,
                                                                                          strict=False)):
            raise NnError(NnErrno.INVALID_ARGUMENT, f"set_input: input {spec.name!r} takes dims {spec.shown()}, got "
                          f"{list(dims)}")
        expected = math.prod(dims) * dtype.itemsize
        if data_len != expected:
            raise NnError(NnErrno.INVALID_ARGUMENT, f"set_input: input {spec.name!r} of dims {list(dims)} is "
                          f"{expected} bytes, got {data_len}")
        previous = context.inputs.get(index)
        held = self._held_bytes() - (previous.nbytes if previous is not None else 0)
        if held + data_len > self.limits.max_context_bytes:
            raise NnError(NnErrno.BUSY, f"set_input: the guest's contexts already hold about {held} bytes of host "
                          f"memory; {data_len} more would pass the limit of {self.limits.max_context_bytes}")
        data = self._read(caller, data_ptr, data_len, "set_input: data")
        context.inputs[index] = np.frombuffer(data, dtype).reshape(dims).astype(dtype.newbyteorder("="))
        context.outputs = None

    def compute(self, caller: wasmtime.Caller, context_handle: int) -> None:
        context = self._context(context_handle)
        missing = [s.name for i, s in enumerate(context.graph.inputs) if i not in context.inputs]
        if missing:
            raise NnError(NnErrno.INVALID_ARGUMENT, f"compute: inputs not set: {missing}")
        if self.deadline_at is not None and time.monotonic() > self.deadline_at:
            raise NnError(NnErrno.RUNTIME_ERROR, "compute: the guest's deadline has passed")
        feeds = {s.name: context.inputs[i] for i, s in enumerate(context.graph.inputs)}
        try:
            results = context.run(feeds)
        except InputError as exc:
            raise NnError(NnErrno.INVALID_ARGUMENT, f"compute: {exc}") from None
        except ModelFault as exc:  # a wasinfer module's trap or deadline: the context is spent
            context.run = _spent(str(exc))
            raise NnError(NnErrno.RUNTIME_ERROR, f"compute: {exc}") from None
        except NnError:
            raise
        except Exception as exc:  # the backend's own failure
            raise NnError(NnErrno.RUNTIME_ERROR, f"compute: {context.graph.backend}: {_first_line(exc)}") from None
        outputs = [_raw(np.asarray(results[name])) for name in context.graph.outputs]
        context.outputs = None
        if self._held_bytes() + sum(len(o or b"") for o in outputs) > self.limits.max_context_bytes:
            raise NnError(NnErrno.BUSY, "compute: the outputs would take the guest's contexts past the host memory "
                          f"limit of {self.limits.max_context_bytes} bytes")
        context.outputs = outputs

    def get_output(self, caller: wasmtime.Caller, context_handle: int, index: int, out_ptr: int, out_max: int,
                   written_out: int) -> None:
        context = self._context(context_handle)
        self._check_span(caller, written_out, 4, "get_output: bytes-written out-pointer")
        if context.outputs is None:
            raise NnError(NnErrno.INVALID_ARGUMENT, "get_output: no outputs yet (call compute first)")
        index &= 0xFFFFFFFF
        if index >= len(context.outputs):
            raise NnError(NnErrno.INVALID_ARGUMENT, f"get_output: output index {index}; the model has "
                          f"{len(context.outputs)}")
        data = context.outputs[index]
        if data is None:
            raise NnError(NnErrno.INVALID_ARGUMENT, f"get_output: output {index} holds strings, which have no raw "
                          "bytes to give")
        out_max &= 0xFFFFFFFF
        if len(data) > out_max:
            raise NnError(NnErrno.TOO_LARGE, f"get_output: output {index} is {len(data)} bytes, the buffer "
                          f"{out_max}")
        self._write(caller, out_ptr, data, "get_output: buffer")
        self._write(caller, written_out, _U32.pack(len(data)), "get_output: bytes-written out-pointer")

    def unsupported(self, name: str) -> Callable[..., None]:
        def refuse(caller: wasmtime.Caller, *args: int) -> None:
            raise NnError(NnErrno.UNSUPPORTED_OPERATION, f"{name}: not supported by this host (no LLM backends)")
        return refuse

    # -- wiring

    def functions(self) -> dict[str, tuple[int, Callable[..., None]]]:
        """Import name → (number of i32 parameters, implementation)."""
        table: dict[str, tuple[int, Callable[..., None]]] = {
            "load": (5, self.load), "load_by_name": (3, self.load_by_name),
            "load_by_name_with_config": (5, self.load_by_name_with_config), "unload": (1, self.unload),
            "init_execution_context": (2, self.init_execution_context),
            "finalize_execution_context": (1, self.finalize_execution_context), "set_input": (3, self.set_input),
            "compute": (1, self.compute), "get_output": (5, self.get_output),
        }
        for name, arity in (("compute_single", 1), ("get_output_single", 5), ("fini_single", 1)):
            table[name] = (arity, self.unsupported(name))
        return table

    def define(self, linker: wasmtime.Linker) -> None:
        i32 = wasmtime.ValType.i32()
        for name, (arity, implementation) in self.functions().items():
            linker.define_func(NN_MODULE, name, wasmtime.FuncType([i32] * arity, [i32]),
                               self._guarded(name, implementation), access_caller=True)

    def _guarded(self, name: str, implementation: Callable[..., None]) -> Callable[..., int]:
        """The errno of a call: 0, an NnError's, or runtime_error for a host bug (logged, never a trap)."""
        def call(caller: wasmtime.Caller, *args: int) -> int:
            try:
                implementation(caller, *args)
                return int(NnErrno.SUCCESS)
            except NnError as exc:
                self._say(f"{exc} ({exc.errno.name.lower()})")
                return int(exc.errno)
            except Exception as exc:
                log.exception("wasi-nn %s failed", name)
                self._say(f"{name}: internal error: {_first_line(exc)} (runtime_error)")
                return int(NnErrno.RUNTIME_ERROR)
        return call

    def _say(self, message: str) -> None:
        if len(self.messages) < 100:
            self.messages.append(f"[WASI-NN] {message}")
        elif len(self.messages) == 100:
            self.messages.append("[WASI-NN] (more errors not shown)")


def _raw(array: np.ndarray) -> bytes | None:
    """An output's bytes, little-endian; None for object arrays, whose bytes would be host pointers."""
    if array.dtype.kind not in "biuf":
        return None
    return np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()


def _spent(reason: str) -> Runner:
    def refuse(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise ModelFault(f"this context is unusable after an earlier fault: {reason}")
    return refuse


# ---------------------------------------------------------------- running a guest

_ENGINE_LOCK = threading.Lock()
_GUEST_ENGINE: wasmtime.Engine | None = None
_GUEST_MODULES: OrderedDict[str, wasmtime.Module] = OrderedDict()
GUEST_CACHE_SIZE = 16


def guest_engine() -> wasmtime.Engine:
    """The engine guests, and the wasinfer modules they load, run on: interrupt checks in, so every guest
    (and every compute it asks of a wasinfer module) can have a deadline."""
    global _GUEST_ENGINE
    with _ENGINE_LOCK:
        if _GUEST_ENGINE is None:
            _GUEST_ENGINE = make_engine(interruptible=True)
        return _GUEST_ENGINE


def compile_guest(wasm: bytes | Path) -> wasmtime.Module:
    """The compiled guest (kept for the next run of the same bytes); GuestError if it cannot run here."""
    content = wasm.read_bytes() if isinstance(wasm, Path) else bytes(wasm)
    digest = hashlib.sha256(content).hexdigest()
    with _ENGINE_LOCK:
        module = _GUEST_MODULES.get(digest)
        if module is not None:
            _GUEST_MODULES.move_to_end(digest)
            return module
    engine = guest_engine()
    try:
        module = compile_module(engine, content)  # with interrupt checks, as a model's
    except wasmtime.WasmtimeError as exc:
        raise GuestError(f"not a WebAssembly module wasmtime can compile: {_first_line(exc)}") from None
    except UnverifiableModule as exc:
        raise GuestError(f"the module cannot be run with a deadline: {exc}") from None
    if not any(e.name == "_start" and isinstance(e.type, wasmtime.FuncType) for e in module.exports):
        raise GuestError("the module has no _start function: it is not a WASI command (a program with main)")
    provided = set(NnHost([], NnLimits(), None, None).functions())
    unknown = [f"{i.module}.{i.name}" for i in module.imports
               if not (i.module == "wasi_snapshot_preview1" or (i.module == NN_MODULE and i.name in provided))]
    if unknown:
        raise GuestError(f"the module imports what this host does not provide: {', '.join(unknown)} (it offers "
                         f"WASI preview 1 and {NN_MODULE}: {', '.join(sorted(provided))})")
    with _ENGINE_LOCK:
        _GUEST_MODULES[digest] = module
        while len(_GUEST_MODULES) > GUEST_CACHE_SIZE:
            _GUEST_MODULES.popitem(last=False)
    return module


def run_guest(wasm: bytes | Path, args: Sequence[str] = (), preloads: Sequence[Preload] = (), stdin: bytes = b"",
              dirs: Sequence[tuple[Path, str]] = (), memory_limit_bytes: int | None = None,
              deadline_seconds: float | None = None, *, env: Mapping[str, str] | None = None,
              limits: NnLimits | None = None, program_name: str | None = None) -> GuestResult:
    """Run a WASI command to its end: argv is `program_name` (the file's name, else `guest.wasm`) then
    `args`; stdin is `stdin`; stdout and stderr are captured; `dirs` are preopened (host dir, guest path)."""
    if memory_limit_bytes is not None and memory_limit_bytes <= 0:
        raise ValueError(f"memory_limit_bytes must be positive (or None), got {memory_limit_bytes}")
    if deadline_seconds is not None and not deadline_seconds > 0:
        raise ValueError(f"deadline_seconds must be positive (or None), got {deadline_seconds}")
    limits = limits or NnLimits()
    for host_dir, _ in dirs:
        if not Path(host_dir).is_dir():
            raise GuestError(f"--dir {host_dir}: not a directory")
    module = compile_guest(wasm)
    engine = guest_engine()
    name = program_name or (wasm.name if isinstance(wasm, Path) else "guest.wasm")
    with tempfile.TemporaryDirectory(prefix="wasinfer-guest-") as scratch:
        files = Path(scratch)
        (files / "stdin").write_bytes(stdin)
        config = wasmtime.WasiConfig()
        config.argv = [name, *args]
        config.env = sorted((env or {}).items())
        config.stdin_file = str(files / "stdin")
        stdout, stderr = _CappedOutput(limits.max_output_bytes), _CappedOutput(limits.max_output_bytes)
        sinks = [_capture(config, "stdout", stdout), _capture(config, "stderr", stderr)]
        store = wasmtime.Store(engine)
        try:
            for host_dir, guest_path in dirs:
                config.preopen_dir(str(host_dir), guest_path)
            store.set_wasi(config)
            set_store_limits(store, memory_limit_bytes)
            deadline_at = None if deadline_seconds is None else time.monotonic() + deadline_seconds
            host = NnHost(preloads, limits, memory_limit_bytes, deadline_at)
            linker = wasmtime.Linker(engine)
            linker.define_wasi()
            host.define(linker)
            exit_code, note, fault = 0, "", None
            instance = None
            alarm = None
            try:
                instance = linker.instantiate(store, module)
                exports = instance.exports(store)
                flag = interrupt_flag(exports, store)
                if deadline_at is not None and flag is not None:
                    alarm = WATCHDOG.arm(Alarm(flag), deadline_at - time.monotonic())
                run_start(exports, store)
                start = exports["_start"]
                assert isinstance(start, wasmtime.Func)
                start(store)
            except wasmtime.ExitTrap as exc:
                exit_code = exc.code
            except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
                stopped = deadline_seconds if alarm is not None and WATCHDOG.disarm(alarm) else None
                exit_code, note = _failure(exc, store, instance, memory_limit_bytes, stopped)
                fault = "deadline" if exit_code == EXIT_DEADLINE else "trap"
            finally:
                if alarm is not None:
                    WATCHDOG.disarm(alarm)  # before the store closes: the flag is in the guest's instance
        finally:
            store.close()  # the guest's memory and WASI state go now, not whenever the collector finds them
            for key in sinks:
                del _SINKS[key]
    out, err = stdout.value(), stderr.value()
    lines = [*host.messages, *([f"wasinfer: {note}"] if note else [])]
    if lines:
        err += ("" if not err or err.endswith(b"\n") else "\n").encode() + "\n".join(lines).encode() + b"\n"
    return GuestResult(exit_code, out, err, fault)


def _failure(exc: wasmtime.Trap | wasmtime.WasmtimeError, store: wasmtime.Store, instance: wasmtime.Instance | None,
             memory_limit_bytes: int | None, deadline_seconds: float | None) -> tuple[int, str]:
    """The exit code and the host's line for a guest that did not exit by itself."""
    message = exc.message if isinstance(exc, wasmtime.Trap) else str(exc)
    if deadline_seconds is not None:  # the watchdog had set the guest's interrupt flag
        return EXIT_DEADLINE, f"the guest ran past its deadline of {deadline_seconds:g} s and was stopped"
    if instance is None and memory_limit_bytes is not None and "memory" in message:
        return EXIT_TRAP, (f"the guest needs more linear memory than its cap of {memory_limit_bytes} bytes "
                           f"at instantiation: {_trap_reason(message)}")
    reason = f"the guest trapped: {_trap_reason(message)}"
    memory = instance.exports(store).get("memory") if instance is not None else None
    if memory_limit_bytes is not None and isinstance(memory, wasmtime.Memory) and \
            memory.data_len(store) + WASM_PAGE > memory_limit_bytes:
        reason += f" (its memory is at its cap of {memory_limit_bytes} bytes: a memory.grow had failed)"
    return EXIT_TRAP, reason


_OutputCallback = ctypes.CFUNCTYPE(ctypes.c_ssize_t, ctypes.c_void_p, ctypes.POINTER(ctypes.c_ubyte), ctypes.c_size_t)
_NO_FINALIZER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)()  # a null function pointer
_SINKS: dict[int, _CappedOutput] = {}  # by the key each guest's output streams were given
_SINK_KEYS = itertools.count(1)


def _write_to_sink(key: int | None, data: Any, size: int) -> int:
    """What wasmtime calls with a guest's stdout or stderr bytes (on one of its tokio threads)."""
    sink = _SINKS.get(key or 0)
    if sink is not None and size and data:
        sink.write(ctypes.string_at(data, size))
    return size  # a key already gone (the guest's run is over): the bytes are dropped, never an error


_WRITE_TO_SINK = _OutputCallback(_write_to_sink)  # module-level: wasmtime may hold it for as long as the process


def _capture(config: wasmtime.WasiConfig, stream: str, sink: _CappedOutput) -> int:
    """Send the guest's `stream` ("stdout" or "stderr") to `sink`, with no finalizer; the key to forget after the run.

    Why not `WasiConfig.stdout_custom`: it hands wasmtime a Python finalizer, which wasmtime calls when the last
    handle on the stream is dropped, and that is often a tokio worker thread some time after the store is gone.
    When that happens while the interpreter exits (a `wasinfer run-guest` that just printed the guest's output),
    the thread finds Python finalizing, is ended by it mid-call, and the unwind through Rust aborts the process
    (exit 134, "panic in a function that cannot unwind"): on a loaded 2-core machine, half of all runs. Here
    nothing of Python is called once the guest has stopped: its writes are complete when its fd_write returns
    (WASI preview 1 writes and flushes), and the sink is a plain dict entry `run_guest` removes.
    """
    key = next(_SINK_KEYS)
    _SINKS[key] = sink
    setter = _ffi.wasi_config_set_stdout_custom if stream == "stdout" else _ffi.wasi_config_set_stderr_custom
    setter(config.ptr(), _WRITE_TO_SINK, key, _NO_FINALIZER)
    return key


class _CappedOutput:
    """A guest's stdout or stderr: the first `limit` bytes, and a count of what was cut."""

    def __init__(self, limit: int):
        self.limit, self.parts, self.kept, self.cut = limit, list[bytes](), 0, 0

    def write(self, data: bytes) -> int:
        room = max(0, self.limit - self.kept)
        if room:
            self.parts.append(bytes(data[:room]))
            self.kept += min(room, len(data))
        self.cut += max(0, len(data) - room)
        return len(data)  # all taken: the guest is not told to retry what was cut

    def value(self) -> bytes:
        data = b"".join(self.parts)
        return data + (f"\n[wasinfer: output cut at {self.limit} bytes]\n".encode() if self.cut else b"")
