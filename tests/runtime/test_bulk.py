"""The rewrite that makes memory.fill and memory.copy interruptible: the same bytes in memory as the
instructions themselves, for every overlap and every out-of-bounds case, and refusals that say why."""

from __future__ import annotations

import numpy as np
import pytest
import wasmtime

from tests import model_zoo
from tests.hostile import echo_module
from wasinfer.artifact import convert_onnx
from wasinfer.artifact.validate import random_inputs
from wasinfer.runtime import WasmModel, make_engine
from wasinfer.runtime.bulk import CHUNK_BYTES, UnverifiableModule, interruptible_bulk_memory
from wasinfer.runtime.wasm import code_tag, engine_tag

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
        engine = wasmtime.Engine()
        wasm = bytes(wasmtime.wat2wasm(BULK_WAT))
        self.store = wasmtime.Store(engine)
        module = wasmtime.Module(engine, interruptible_bulk_memory(wasm) if rewritten else wasm)
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


def test_modules_without_bulk_memory_are_left_as_they_are_and_the_others_still_answer() -> None:
    wat = '(module (memory 1) (func (export "f") (result i32) (i32.load (i32.const 0))))'
    plain = bytes(wasmtime.wat2wasm(wat))
    assert interruptible_bulk_memory(plain) is plain
    echo = echo_module()  # y = x by one memory.copy, rewritten into a call
    assert interruptible_bulk_memory(echo) != echo
    x = np.array([[1.5, -2.0, 3.0, 4.25], [0.5, 6.0, -7.0, 8.0]], np.float32)
    np.testing.assert_array_equal(WasmModel(echo, make_engine(), deadline_seconds=30.0).run({"x": x})["y"], x)


def test_a_compiled_model_computes_the_same_bits_with_its_bulk_memory_rewritten() -> None:
    """resnet_like has two dozen memory.copy / memory.fill in its kernels; a deadline gives the rewritten code."""
    wasm = convert_onnx(model_zoo.resnet_like(), max_batch=4).wasm
    assert interruptible_bulk_memory(wasm) != wasm
    plain, limited = WasmModel(wasm), WasmModel(wasm, make_engine(), deadline_seconds=30.0)
    inputs = random_inputs(plain.metadata, 3, np.random.default_rng(1))
    expected, got = plain.run(inputs), limited.run(inputs)
    for name in expected:
        np.testing.assert_array_equal(got[name].view(np.uint8), expected[name].view(np.uint8))


def test_compiled_code_is_cached_apart_from_code_compiled_before_the_rewrite() -> None:
    assert code_tag(make_engine(interruptible=True)) == engine_tag(True) + "|bulk-chunked-1"
    assert code_tag(make_engine(interruptible=False)) == engine_tag(False)  # no deadline: nothing to interrupt


@pytest.mark.parametrize(("wat", "says"), [
    ('(module (memory 1) (memory 1) (func (memory.fill (i32.const 0) (i32.const 0) (i32.const 1))))',
     "more than one memory"),
    ('(module (memory i64 1) (func (memory.fill (i64.const 0) (i32.const 0) (i64.const 1))))', "memory64"),
    ('(module (memory 1) (tag $e) (func (memory.fill (i32.const 0) (i32.const 0) (i32.const 1)) (throw $e)))',
     "instruction 0x08"),
], ids=["two-memories", "memory64", "exceptions"])
def test_what_cannot_be_decoded_is_refused_saying_what(wat: str, says: str) -> None:
    with pytest.raises(UnverifiableModule, match=says):
        interruptible_bulk_memory(bytes(wasmtime.wat2wasm(wat)))
