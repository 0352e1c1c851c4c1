"""WASI-NN guests written in WAT, for testing the host without a C toolchain.

`nn_guest` builds a WASI command that makes one pass through the API (load or load_by_name,
init_execution_context, set_input, compute, get_output), writes the output bytes to stdout and exits
0; the first call that fails makes it exit with 10 * step + errno (step 1 load, 2 init, 3 set_input,
4 compute, 5 get_output), so a test reads both where and what. Any argument of any call can be
replaced by a constant, which is how the misuse cases are made.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence

import numpy as np
import wasmtime
from onnx import ModelProto, TensorProto, helper, numpy_helper

NAME, BUILDERS, GRAPH, CTX, WRITTEN, DIMS, TENSOR, MORE, DATA, OUT, MODEL = (
    1024, 2048, 2100, 2104, 2108, 2200, 2300, 2400, 4096, 65536, 131072)
MORE_STRIDE = 96  # each further input's dims (at most 16) and tensor record, from MORE
MAX_DATA, MAX_OUT = OUT - DATA, MODEL - OUT
STEP_LOAD, STEP_INIT, STEP_SET, STEP_COMPUTE, STEP_GET = 1, 2, 3, 4, 5

IMPORTS = """
 (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
 (import "wasi_ephemeral_nn" "load" (func $load (param i32 i32 i32 i32 i32) (result i32)))
 (import "wasi_ephemeral_nn" "load_by_name" (func $load_by_name (param i32 i32 i32) (result i32)))
 (import "wasi_ephemeral_nn" "init_execution_context" (func $init (param i32 i32) (result i32)))
 (import "wasi_ephemeral_nn" "set_input" (func $set_input (param i32 i32 i32) (result i32)))
 (import "wasi_ephemeral_nn" "compute" (func $compute (param i32) (result i32)))
 (import "wasi_ephemeral_nn" "get_output" (func $get_output (param i32 i32 i32 i32 i32) (result i32)))
"""


def wat_bytes(data: bytes) -> str:
    return "".join(f"\\{b:02x}" for b in data)


def _call(step: int, func: str, args: list[str], override: Mapping[int, int] | None) -> str:
    for position, value in (override or {}).items():
        args[position] = f"(i32.const {value})"
    return (f"  (local.set $e (call {func} {' '.join(args)}))\n"
            f"  (if (local.get $e) (then (call $exit (i32.add (i32.const {10 * step}) (local.get $e)))))\n")


def nn_guest(*, model: bytes | None = None, name: str | None = None, encoding: int = 1, target: int = 0,
             dims: Sequence[int] = (1, 4), tensor_type: int = 1, data: bytes = b"", index: int = 0,
             out_index: int = 0, out_max: int = MAX_OUT, tensor: Sequence[int] | None = None,
             read_stdin: bool = False, load: Mapping[int, int] | None = None, init: Mapping[int, int] | None = None,
             set_input: Mapping[int, int] | None = None, compute: Mapping[int, int] | None = None,
             get_output: Mapping[int, int] | None = None, builders: Sequence[tuple[int, int]] | None = None,
             more_inputs: Sequence[tuple[Sequence[int], bytes]] = ()) -> bytes:
    """A guest for one inference: `model` by bytes (with `encoding`, `target`) or `name` by load_by_name.

    With `read_stdin`, the input bytes come from stdin (len(data) of them, `data` itself unused).
    The overrides map an argument's position to a constant, e.g. `load={0: 0xFFFFFFF0}`.
    `more_inputs`: the dims and data of inputs index + 1, index + 2, ..., set (as f32) after the first.
    """
    at = DATA + -(-len(data) // 16) * 16  # where the further inputs' data go
    assert at + sum(len(d) for _, d in more_inputs) <= OUT and (model is None) != (name is None)
    assert (len(more_inputs) + 1) * MORE_STRIDE <= DATA - MORE
    segments = [(DIMS, struct.pack(f"<{len(dims)}I", *dims)),
                (TENSOR, struct.pack("<5I", *(tensor or (DIMS, len(dims), tensor_type, DATA, len(data)))))]
    if not read_stdin and data:
        segments.append((DATA, data))
    further = []  # (input index, tensor record address)
    for position, (more_dims, more_data) in enumerate(more_inputs):
        record = MORE + MORE_STRIDE * position
        segments += [(record, struct.pack(f"<{len(more_dims)}I", *more_dims)),
                     (record + 64, struct.pack("<5I", record, len(more_dims), tensor_type, at, len(more_data))),
                     (at, more_data)]
        further.append((index + 1 + position, record + 64))
        at += -(-len(more_data) // 16) * 16
    body = ""
    if read_stdin:
        body += (f"  (i32.store (i32.const 0) (i32.const {DATA})) (i32.store (i32.const 4) (i32.const {len(data)}))\n"
                 "  (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))\n")
    if model is not None:
        pairs = builders if builders is not None else [(MODEL, len(model))]
        segments += [(BUILDERS, b"".join(struct.pack("<II", p, n) for p, n in pairs)), (MODEL, model)]
        body += _call(STEP_LOAD, "$load", [f"(i32.const {BUILDERS})", f"(i32.const {len(pairs)})",
                                           f"(i32.const {encoding})", f"(i32.const {target})",
                                           f"(i32.const {GRAPH})"], load)
    else:
        assert name is not None
        segments.append((NAME, name.encode()))
        body += _call(STEP_LOAD, "$load_by_name", [f"(i32.const {NAME})", f"(i32.const {len(name.encode())})",
                                                   f"(i32.const {GRAPH})"], load)
    context = f"(i32.load (i32.const {CTX}))"
    body += _call(STEP_INIT, "$init", [f"(i32.load (i32.const {GRAPH}))", f"(i32.const {CTX})"], init)
    body += _call(STEP_SET, "$set_input", [context, f"(i32.const {index})", f"(i32.const {TENSOR})"], set_input)
    for more_index, record in further:
        body += _call(STEP_SET, "$set_input", [context, f"(i32.const {more_index})", f"(i32.const {record})"], None)
    body += _call(STEP_COMPUTE, "$compute", [context], compute)
    body += _call(STEP_GET, "$get_output", [context, f"(i32.const {out_index})", f"(i32.const {OUT})",
                                            f"(i32.const {out_max})", f"(i32.const {WRITTEN})"], get_output)
    body += (f"  (i32.store (i32.const 16) (i32.const {OUT})) (i32.store (i32.const 20) (i32.load (i32.const "
             f"{WRITTEN})))\n  (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))\n")
    pages = MODEL // 65536 + math.ceil(len(model or b"") / 65536) + 1
    data_wat = "\n".join(f' (data (i32.const {at}) "{wat_bytes(blob)}")' for at, blob in segments)
    wat = (f"(module{IMPORTS} (memory (export \"memory\") {pages})\n{data_wat}\n"
           f" (func (export \"_start\") (local $e i32)\n{body} ))")
    return bytes(wasmtime.wat2wasm(wat))


def wat_guest(body: str, memory_pages: int = 1, extra: str = "", export_memory: bool = True) -> bytes:
    """A WASI command whose _start is `body` (with a local $e), with the usual imports."""
    memory = f'(memory (export "memory") {memory_pages})' if export_memory else f"(memory {memory_pages})"
    return bytes(wasmtime.wat2wasm(f"(module{IMPORTS} {memory}\n{extra}\n (func (export \"_start\") (local $e i32)\n"
                             f"{body}))"))


def looping_guest() -> bytes:
    return wat_guest("(loop $forever (br $forever))")


def growing_guest() -> bytes:
    """Grows its memory a page at a time until a grow fails, then traps (as a C program whose malloc fails)."""
    return wat_guest("(block $full (loop $more (br_if $full (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))"
                     " (br $more))) unreachable")


def echo_guest() -> bytes:
    """Copies up to 4 KiB of stdin to stdout, then exits 0: a guest that needs no model."""
    return wat_guest("(i32.store (i32.const 0) (i32.const 1024)) (i32.store (i32.const 4) (i32.const 4096))"
                     " (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))"
                     " (i32.store (i32.const 16) (i32.const 1024)) (i32.store (i32.const 20) (i32.load (i32.const 8)))"
                     " (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))")


def argv_preopen_guest() -> bytes:
    """Exits 10 * argc + fd_prestat_get(3): fd 3 is the first preopen, and without one the call fails (badf, 8)."""
    return bytes(wasmtime.wat2wasm(
        '(module (import "wasi_snapshot_preview1" "fd_prestat_get" (func $p (param i32 i32) (result i32)))'
        ' (import "wasi_snapshot_preview1" "args_sizes_get" (func $a (param i32 i32) (result i32)))'
        ' (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))'
        ' (memory (export "memory") 1)'
        ' (func (export "_start") (drop (call $a (i32.const 0) (i32.const 4)))'
        '  (call $exit (i32.add (i32.mul (i32.load (i32.const 0)) (i32.const 10)) (call $p (i32.const 3) '
        '(i32.const 8))))))'))


def dense_onnx() -> ModelProto:
    """y = softmax(relu(x @ w + b)), FP32 [N, 4] → [N, 3]: small, and wasinfer compiles it."""
    rng = np.random.default_rng(11)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("Softmax", ["r"], ["y"], axis=-1)], "dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "w"),
         numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def int_onnx() -> ModelProto:
    """y = float(x) * 2 with x INT32 [2, 3] (fixed dims): checks the i32 tensor type and fixed dims."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["f"], to=TensorProto.FLOAT), helper.make_node("Add", ["f", "f"], ["y"])],
        "ints", [helper.make_tensor_value_info("x", TensorProto.INT32, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


X = np.array([[0.5, -1.0, 2.0, 0.25], [1.5, 0.0, -0.5, 3.0]], np.float32)
