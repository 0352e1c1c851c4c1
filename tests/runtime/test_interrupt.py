"""The rewrite that makes a module interruptible: a set flag stops any loop, a module cannot clear its own
flag, memory.fill and memory.copy leave the same bytes in memory as the instructions themselves (every
overlap and out-of-bounds case), compiled models compute the same bits, and refusals say why."""

from __future__ import annotations

import numpy as np
import pytest
import wasmtime

from tests import model_zoo
from tests.hostile import bounded, echo_module
from wasinfer.artifact import convert_onnx
from wasinfer.artifact.validate import random_inputs
from wasinfer.runtime import WasmModel, make_engine
from wasinfer.runtime.interrupt import (
    CHUNK_BYTES,
    INTERRUPT_EXPORT,
    START_EXPORT,
    UnverifiableModule,
    interrupt_flag,
    interruptible,
    run_start,
)
from wasinfer.runtime.wasm import compile_module

PAGES = 64  # 4 MiB: four chunks
SIZE = PAGES * 65536

BULK_WAT = f"""
(module
  (memory (export "memory") {PAGES})
  (func (export "fill") (param i32 i32 i32) (memory.fill (local.get 0) (local.get 1) (local.get 2)))
  (func (export "copy") (param i32 i32 i32) (memory.copy (local.get 0) (local.get 1) (local.get 2))))
"""


class Bulk:
    """An instance of BULK_WAT, as compiled (`rewritten` or not), with its memory preset to the same bytes."""

    def __init__(self, rewritten: bool, content: bytes):
        engine = make_engine(interruptible=rewritten)
        self.store = wasmtime.Store(engine)
        module = compile_module(engine, bytes(wasmtime.wat2wasm(BULK_WAT)))
        exports = wasmtime.Instance(self.store, module, []).exports(self.store)
        self.memory, self.exports = exports["memory"], exports
        assert isinstance(self.memory, wasmtime.Memory)
        self.memory.write(self.store, content, 0)

    def call(self, name: str, *args: int) -> tuple[str | None, bytes]:
        """The trap's reason (None if it returned) and the memory afterwards."""
        func = self.exports[name]
        assert isinstance(func, wasmtime.Func) and isinstance(self.memory, wasmtime.Memory)
        try:
            func(self.store, *args)
            reason = None
        except wasmtime.Trap as trap:
            reason = trap.message.strip().splitlines()[-1]
        return reason, self.memory.read(self.store, 0, SIZE)


CONTENT = np.random.default_rng(0).integers(0, 256, SIZE, dtype=np.uint8).tobytes()
C = CHUNK_BYTES


@pytest.mark.parametrize(("name", "args"), [
    ("copy", (0, 1000, 3 * C + 17)),  # overlapping, destination below the source: forward
    ("copy", (1000, 0, 3 * C + 17)),  # overlapping, destination above the source: backward
    ("copy", (C, 0, 2 * C)),  # exact chunks
    ("copy", (5, 5, 3 * C)),  # onto itself
    ("copy", (0, 2 * C, 2 * C)),  # apart
    ("copy", (7, 9, 100)),  # one chunk or less: the instruction itself
    ("copy", (0, 0, 0)),
    ("copy", (SIZE - C, 0, C + 1)),  # destination out of bounds: traps, writing nothing
    ("copy", (0, SIZE - 2 * C, 2 * C + 1)),  # source out of bounds
    ("copy", (0xFFFFFFF0 - (1 << 32), 0, 2 * C)),  # an address that wraps in 32 bits
    ("copy", (SIZE, 0, 0)),  # zero bytes at the very end: allowed
    ("fill", (3, 0xAB, 3 * C + 5)),
    ("fill", (0, 0x1FF, 2 * C)),  # only the low byte of the value counts
    ("fill", (SIZE - 3 * C, 1, 3 * C + 1)),  # out of bounds: traps, writing nothing
    ("fill", (SIZE + 1, 1, 0)),  # zero bytes past the end: traps
    ("fill", (10, 2, 10)),
], ids=lambda value: str(value))
def test_the_rewrite_does_what_the_instruction_does(name: str, args: tuple[int, ...]) -> None:
    original = Bulk(False, CONTENT).call(name, *args)
    rewritten = Bulk(True, CONTENT).call(name, *args)
    assert rewritten[0] == original[0]  # the same trap, or none
    assert rewritten[1] == original[1]


def test_every_module_is_rewritten_and_still_answers() -> None:
    wat = '(module (memory 1) (func (export "f") (result i32) (i32.load (i32.const 0))))'
    plain = bytes(wasmtime.wat2wasm(wat))
    assert interruptible(plain) != plain  # checks in every function, even without bulk memory
    echo = echo_module()  # y = x by one memory.copy, rewritten into a call
    x = np.array([[1.5, -2.0, 3.0, 4.25], [0.5, 6.0, -7.0, 8.0]], np.float32)
    np.testing.assert_array_equal(WasmModel(echo, make_engine(), deadline_seconds=30.0).run({"x": x})["y"], x)


def _instance(wat: str) -> tuple[wasmtime.Store, wasmtime.Instance]:
    engine = make_engine()
    store = wasmtime.Store(engine)
    return store, wasmtime.Instance(store, compile_module(engine, bytes(wasmtime.wat2wasm(wat))), [])


@pytest.mark.parametrize("body", [
    "(loop $l (br $l))",  # no memory access at all
    "(loop $l (loop $m (br $m)) (br $l))",  # an inner loop whose check an outer one dominates
    "(loop $l (i32.store (i32.const 8) (i32.const 1)) (br $l))",
    "(loop $l (br_if $l (i32.const 1)))",
    "(block $out (loop $l (br_table $l $out (i32.const 0))))",
    "(call $again)",  # calls without end, through no loop
], ids=["empty", "nested", "storing", "br_if", "br_table", "tail-calls"])
def test_a_set_flag_stops_any_loop(body: str) -> None:
    """The flag is set before the call here (what the watchdog does at the deadline), so every shape of endless
    run must reach a check and trap, rather than hang (bounded: a hang fails the test)."""
    store, instance = _instance(f"""(module (memory 1)
      (func $again (return_call $again))
      (func (export "spin") {body}))""")
    flag = interrupt_flag(instance.exports(store), store)
    assert flag is not None and flag.value == 0
    flag.value = 1
    spin = instance.exports(store)["spin"]
    assert isinstance(spin, wasmtime.Func)
    with pytest.raises(wasmtime.Trap) as trapped:
        bounded(lambda: spin(store))
    assert trapped.value.trap_code is wasmtime.TrapCode.UNREACHABLE


@pytest.mark.parametrize("code", [
    "(i32.store 1 (i32.const 0) (i32.const 0))",
    "(memory.fill 1 (i32.const 0) (i32.const 0) (i32.const 4))",
    "(memory.init 1 0 (i32.const 0) (i32.const 0) (i32.const 1))",
], ids=["store", "fill", "init"])
def test_the_flag_is_out_of_the_module_s_reach(code: str) -> None:
    """The flag's memory takes the next index, 1 here. A module that names memory 1 while it has one memory is
    invalid as it is, but would be valid once rewritten and could clear its own flag: it is refused, by
    validation before the rewrite and by the rewrite's own decoder."""
    two = bytes(wasmtime.wat2wasm(f'(module (memory 1) (memory 1) (data "x") (func {code}))'))
    one = two.replace(b"\x05\x05\x02\x00\x01\x00\x01", b"\x05\x03\x01\x00\x01")  # drop the second memory
    assert one != two
    with pytest.raises(wasmtime.WasmtimeError, match="memory"):
        compile_module(make_engine(), one)
    with pytest.raises(UnverifiableModule, match="more than one memory"):
        interruptible(one)


def test_a_module_without_memory_cannot_store_into_the_flag_s() -> None:
    """Without a memory of its own, the flag's is memory 0: a store there is invalid as the module is, so refused."""
    storing = bytes.fromhex("0061736d01000000010401600000030201000a0b010900410041003602000b")
    with pytest.raises(wasmtime.WasmtimeError, match="memory"):
        compile_module(make_engine(), storing)


def test_a_start_function_runs_when_the_host_says_and_under_its_deadline() -> None:
    store, instance = _instance('(module (memory (export "memory") 1) (func $s (i32.store (i32.const 0) (i32.const 7)))'
                                ' (start $s))')
    memory = instance.exports(store)["memory"]
    assert isinstance(memory, wasmtime.Memory) and START_EXPORT in instance.exports(store)
    assert memory.read(store, 0, 1) == b"\x00"  # not run at instantiation
    run_start(instance.exports(store), store)
    assert memory.read(store, 0, 1) == b"\x07"
    assert INTERRUPT_EXPORT in instance.exports(store)


def test_a_compiled_model_computes_the_same_bits_with_its_bulk_memory_rewritten() -> None:
    """resnet_like has two dozen memory.copy / memory.fill in its kernels; a deadline gives the rewritten code."""
    wasm = convert_onnx(model_zoo.resnet_like(), max_batch=4).wasm
    plain, limited = WasmModel(wasm), WasmModel(wasm, make_engine(), deadline_seconds=30.0)
    inputs = random_inputs(plain.metadata, 3, np.random.default_rng(1))
    expected, got = plain.run(inputs), limited.run(inputs)
    for name in expected:
        np.testing.assert_array_equal(got[name].view(np.uint8), expected[name].view(np.uint8))


@pytest.mark.parametrize(("wat", "says"), [
    ('(module (memory 1) (memory 1) (func (memory.fill (i32.const 0) (i32.const 0) (i32.const 1))))',
     "more than one memory"),
    ('(module (memory i64 1) (func (memory.fill (i64.const 0) (i32.const 0) (i64.const 1))))', "memory64"),
    ('(module (memory 1) (tag $e) (func (memory.fill (i32.const 0) (i32.const 0) (i32.const 1)) (throw $e)))',
     "instruction 0x08"),
], ids=["two-memories", "memory64", "exceptions"])
def test_what_cannot_be_decoded_is_refused_saying_what(wat: str, says: str) -> None:
    with pytest.raises(UnverifiableModule, match=says):
        interruptible(bytes(wasmtime.wat2wasm(wat)))
