"""Hand-written modules that honour the ABI's shape but misbehave when run.

Each is what `WasmModel` accepts (a `memory` export, the ABI functions, a metadata section
with one batched FP32 input `x` [N, 4] and one output `y` [N, 4], max batch 4), written in
WAT so that the misbehaviour is plain to read. The compiler never emits such code; a server
still has to survive a module that does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import wasmtime

from wasinfer.artifact.metadata import Metadata, TensorSlot, custom_section
from wasinfer.backends.wasm import METADATA_SECTION

PAGE = 65536
BOUND = 60.0  # seconds a call into hostile code may take in a test: only a broken interruption comes near it
T = TypeVar("T")
MAX_BATCH = 4
INPUT, OUTPUT = 64, 128  # slot addresses: 4 samples x 4 float32 each = 64 bytes per slot


def _module(name: str, run_body: str, pages: int = 1, start_body: str = "", x_dtype: str = "float32",
            functions: str = "") -> bytes:
    """The ABI's exports around `run_body`, the body of `wasinfer_run(batch) -> i32` (batch already checked),
    with `start_body` as the start function that instantiation runs, if given, `x_dtype` as what the
    metadata says input x holds, and `functions` (WAT) beside."""
    start = f"(func $start {start_body}) (start $start)" if start_body else ""
    wat = f"""
    (module
      (memory (export "memory") {pages})
      (func (export "wasinfer_abi_version") (result i32) (i32.const 1))
      (func (export "wasinfer_max_batch") (result i32) (i32.const {MAX_BATCH}))
      (func (export "wasinfer_input_ptr") (param i32) (result i32)
        (select (i32.const {INPUT}) (i32.const 0) (i32.eqz (local.get 0))))
      (func (export "wasinfer_output_ptr") (param i32) (result i32)
        (select (i32.const {OUTPUT}) (i32.const 0) (i32.eqz (local.get 0))))
      (func (export "wasinfer_run") (param $batch i32) (result i32) (local $old i32)
        (if (i32.or (i32.lt_s (local.get $batch) (i32.const 1)) (i32.gt_s (local.get $batch) (i32.const {MAX_BATCH})))
          (then (return (i32.const 1))))
        {run_body}
        (i32.const 0))
      {start}
      {functions})
    """
    metadata = Metadata(
        name=name, max_batch=MAX_BATCH, abi_version=1, source_sha256="0" * 64, source_format="onnx",
        producer="tests.hostile", arena_bytes=0, memory_bytes=pages * PAGE,
        inputs=[TensorSlot("x", x_dtype, [1, 4], 0, INPUT)],
        outputs=[TensorSlot("y", "float32", [1, 4], 0, OUTPUT)])
    return bytes(wasmtime.wat2wasm(wat)) + custom_section(METADATA_SECTION, metadata.to_json())


def echo_module(pages: int = 1) -> bytes:
    """A well-behaved module: y = x, in `pages` pages of memory."""
    return _module("echo", f"(memory.copy (i32.const {OUTPUT}) (i32.const {INPUT}) (i32.mul (local.get $batch) "
                           "(i32.const 16)))", pages)


def looping_module() -> bytes:
    """y = x, except that a first element below zero sends it into a loop that never ends.

    Negative inputs are the hostile requests; the same model then answers other requests.
    """
    return _module("loop", f"""
        (if (f32.lt (f32.load (i32.const {INPUT})) (f32.const 0))
          (then (loop $forever (br $forever))))
        (memory.copy (i32.const {OUTPUT}) (i32.const {INPUT}) (i32.mul (local.get $batch) (i32.const 16)))""")


def table_growing_module(elements: int) -> bytes:
    """Grows a function table by `elements` on every run (host memory outside the linear memory, 8 bytes an
    element); y = x if the grow was refused, a trap if it was granted."""
    return _module("tables", f"""
        (if (i32.ne (table.grow $t (ref.null func) (i32.const {elements})) (i32.const -1)) (then unreachable))
        (memory.copy (i32.const {OUTPUT}) (i32.const {INPUT}) (i32.mul (local.get $batch) (i32.const 16)))""",
                   functions="(table $t 1 funcref)")


def spinning_module(iterations: int) -> bytes:
    """A well-behaved module whose runs take a set time: y = x after counting down from `iterations`
    (about a millisecond per million), the cost of a small real model without compiling one."""
    return _module("spin", f"""
        (local.set $old (i32.const {iterations}))
        (loop $spin
          (local.set $old (i32.sub (local.get $old) (i32.const 1)))
          (br_if $spin (local.get $old)))
        (memory.copy (i32.const {OUTPUT}) (i32.const {INPUT}) (i32.mul (local.get $batch) (i32.const 16)))""")


def recursing_module() -> bytes:
    """Calls itself without end on every run, until the engine's stack limit traps it."""
    return _module("recurse", "(drop (call $deeper (i32.const 0)))", functions="""
        (func $deeper (param $depth i32) (result i32)
          (i32.add (call $deeper (i32.add (local.get $depth) (i32.const 1))) (i32.const 1)))""")


def bulk_copy_module(pages: int) -> bytes:
    """Copies half of its `pages` pages over the other half with memory.copy, again and again, until stopped:
    a loop whose every step is one large bulk-memory operation."""
    half = pages * PAGE // 2
    return _module("bulk", f"""
        (loop $again
          (memory.copy (i32.const 0) (i32.const {half}) (i32.const {half}))
          (br $again))""", pages)


def memory_bomb_module(fill: bool = False) -> bytes:
    """Grows its memory a page at a time, writing to every new page, until a grow fails; then returns 0.

    With `fill`, every byte of each new page is written, so all it grew is resident memory of the host."""
    write = (f"(memory.fill (i32.mul (local.get $old) (i32.const {PAGE})) (i32.const 1) (i32.const {PAGE}))"
             if fill else f"(i32.store (i32.mul (local.get $old) (i32.const {PAGE})) (i32.const 1))")
    return _module("bomb", f"""
        (block $full
          (loop $more
            (local.set $old (memory.grow (i32.const 1)))
            (br_if $full (i32.eq (local.get $old) (i32.const -1)))
            {write}
            (br $more)))""")


def bulk_fill_module(pages: int = 65536) -> bytes:
    """A `pages`-page memory (default 4 GiB, WebAssembly's most) that each run fills whole with one
    memory.fill: a single instruction, inside which nothing checks a deadline unless the host splits it."""
    length = min(pages * PAGE, 2**32 - 1)  # a u32, written as the i32 with the same bits
    signed = length - 2**32 if length >= 2**31 else length
    return _module("fill", f"(memory.fill (i32.const 0) (i32.const 7) (i32.const {signed}))", pages)


def growing_module(pages: int) -> bytes:
    """y = x, but each run first grows memory by `pages` pages, which the ABI forbids."""
    return _module("grow", f"""
        (drop (memory.grow (i32.const {pages})))
        (memory.copy (i32.const {OUTPUT}) (i32.const {INPUT}) (i32.mul (local.get $batch) (i32.const 16)))""")


def looping_start_module() -> bytes:
    """Never finishes instantiating: its start function loops forever."""
    return _module("loopstart", "(i32.const 0) (drop)", start_body="(loop $forever (br $forever))")


def trapping_start_module() -> bytes:
    """Never finishes instantiating: its start function traps."""
    return _module("trapstart", "(i32.const 0) (drop)", start_body="(unreachable)")


def trapping_module() -> bytes:
    """Traps on every run (an `unreachable` instruction), as a module with a bug would."""
    return _module("trap", "(unreachable)")


def string_input_module() -> bytes:
    """Echo's code, but its metadata declares input x as numpy's `<U1` (one-character strings), which no
    module can take: a string has no fixed layout in linear memory."""
    return _module("strings", f"(memory.copy (i32.const {OUTPUT}) (i32.const {INPUT}) (i32.mul (local.get $batch) "
                              "(i32.const 16)))", x_dtype="<U1")


def big_memory_module(pages: int) -> bytes:
    """A well-behaved module that declares `pages` pages of initial memory."""
    return echo_module(pages)


def bounded(call: Callable[[], T], what: str = "the call") -> T:
    """`call()` on a daemon thread: its result, or its exception; fails the test, instead of hanging it,
    if `what` has not returned within BOUND (a deadline or interruption that does not work)."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(call())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(BOUND)
    assert not thread.is_alive(), f"{what} did not return within {BOUND} s: interruption is broken"
    if error:
        raise error[0]
    return result[0]
