"""Make a module's bulk-memory instructions interruptible: `memory.fill` and `memory.copy` become calls to
two functions that do the same work in chunks of `CHUNK_BYTES`, in a loop.

Why: a deadline stops a module by epoch interruption, which wasmtime checks at function entries and
loop back-edges. One `memory.fill` or `memory.copy` is a single instruction that runs to its end: over
1 GiB it took 0.55 s here on an idle machine (fresh pages; 0.04 s on pages already touched) and ran
2.6-5.8 s past a 2 s deadline on a loaded one. Split into 1 MiB pieces with a loop between them, the
same work stops within about a chunk's time of the deadline. The other choices were weaker: refusing
lengths that are not constant would refuse wasinfer's own modules (some of their copies depend on the
batch), and capping memory by the deadline depends on how fast a machine fills pages under load.

What the functions do is what the instructions do, byte for byte: `memory.copy` with overlapping
ranges copies as if through a buffer (forward chunks when the destination is below the source,
backward ones otherwise), and a range that is out of bounds goes to the instruction itself first, so
it traps before anything is written, with the instruction's own trap. `memory.init` is left alone: its
length is bounded by a data segment, which is in the module's bytes.

The rewrite has to find every instruction, so it decodes every function body (MVP, sign extension,
saturating conversions, bulk memory, reference types, SIMD and relaxed SIMD, tail calls: what
wasinfer's compiler and common toolchains emit). A module it cannot decode to the end (exceptions, GC
types, several memories, a 64-bit memory) is refused with `UnverifiableModule` rather than run with an
instruction nothing can interrupt; wasmtime validates what comes out, so a decoding mistake cannot let
a module through unchecked, only fail its load.
"""

from __future__ import annotations

import functools

import wasmtime

from wasinfer.codegen.wasm import uleb

CHUNK_BYTES = 1 << 20  # worst case here about a millisecond of page faults per chunk; the loop costs nothing
REWRITE_TAG = "bulk-chunked-1"  # part of the compiled-code cache key: code compiled before the rewrite is not reused

_HELPERS_WAT = f"""
(module
  (memory 1)
  ;; memory.fill(dst, value, n), CHUNK_BYTES at a time
  (func (param $dst i32) (param $value i32) (param $n i32)
    (if (i32.le_u (local.get $n) (i32.const {CHUNK_BYTES}))
      (then (memory.fill (local.get $dst) (local.get $value) (local.get $n)) (return)))
    (if (i64.gt_u (i64.add (i64.extend_i32_u (local.get $dst)) (i64.extend_i32_u (local.get $n)))
                  (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
      (then (memory.fill (local.get $dst) (local.get $value) (local.get $n)) (return)))  ;; traps, writing nothing
    (loop $more
      (memory.fill (local.get $dst) (local.get $value) (i32.const {CHUNK_BYTES}))
      (local.set $dst (i32.add (local.get $dst) (i32.const {CHUNK_BYTES})))
      (local.set $n (i32.sub (local.get $n) (i32.const {CHUNK_BYTES})))
      (br_if $more (i32.gt_u (local.get $n) (i32.const {CHUNK_BYTES}))))
    (memory.fill (local.get $dst) (local.get $value) (local.get $n)))
  ;; memory.copy(dst, src, n), CHUNK_BYTES at a time, in the direction that overlapping ranges need
  (func (param $dst i32) (param $src i32) (param $n i32) (local $bytes i64)
    (if (i32.le_u (local.get $n) (i32.const {CHUNK_BYTES}))
      (then (memory.copy (local.get $dst) (local.get $src) (local.get $n)) (return)))
    (local.set $bytes (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
    (if (i32.or
          (i64.gt_u (i64.add (i64.extend_i32_u (local.get $dst)) (i64.extend_i32_u (local.get $n))) (local.get $bytes))
          (i64.gt_u (i64.add (i64.extend_i32_u (local.get $src)) (i64.extend_i32_u (local.get $n))) (local.get $bytes)))
      (then (memory.copy (local.get $dst) (local.get $src) (local.get $n)) (return)))  ;; traps, writing nothing
    (if (i32.le_u (local.get $dst) (local.get $src))
      (then
        (loop $forward
          (memory.copy (local.get $dst) (local.get $src) (i32.const {CHUNK_BYTES}))
          (local.set $dst (i32.add (local.get $dst) (i32.const {CHUNK_BYTES})))
          (local.set $src (i32.add (local.get $src) (i32.const {CHUNK_BYTES})))
          (local.set $n (i32.sub (local.get $n) (i32.const {CHUNK_BYTES})))
          (br_if $forward (i32.gt_u (local.get $n) (i32.const {CHUNK_BYTES}))))
        (memory.copy (local.get $dst) (local.get $src) (local.get $n)))
      (else
        (loop $backward
          (local.set $n (i32.sub (local.get $n) (i32.const {CHUNK_BYTES})))
          (memory.copy (i32.add (local.get $dst) (local.get $n)) (i32.add (local.get $src) (local.get $n))
                       (i32.const {CHUNK_BYTES}))
          (br_if $backward (i32.gt_u (local.get $n) (i32.const {CHUNK_BYTES}))))
        (memory.copy (local.get $dst) (local.get $src) (local.get $n)))))
)
"""
_HELPER_TYPE = b"\x60\x03\x7f\x7f\x7f\x00"  # (func (param i32 i32 i32))

TYPE, IMPORT, FUNCTION, MEMORY, CODE = 1, 2, 3, 5, 10
_VALTYPES = {0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F}  # i32 i64 f32 f64 v128 funcref externref
# SIMD (0xFD) sub-opcodes by their immediates; every other one up to 0x113 has none.
_SIMD_MEMARG = set(range(0x00, 0x0C)) | {0x5C, 0x5D}
_SIMD_MEMARG_LANE = set(range(0x54, 0x5C))
_SIMD_16_BYTES = {0x0C, 0x0D}  # v128.const, i8x16.shuffle
_SIMD_LANE = set(range(0x15, 0x23))
_SIMD_LAST = 0x113


class UnverifiableModule(ValueError):
    """The module uses what the rewrite cannot decode, so its bulk-memory instructions cannot be bounded."""


class _Reader:
    def __init__(self, data: bytes, pos: int = 0, end: int | None = None):
        self.data, self.pos, self.end = data, pos, len(data) if end is None else end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise UnverifiableModule("truncated WebAssembly binary")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def uleb(self) -> int:
        result = shift = 0
        while True:
            byte = self.byte()
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result
            if shift > 70:
                raise UnverifiableModule("malformed LEB128 number")

    def skip(self, count: int) -> None:
        if self.pos + count > self.end:
            raise UnverifiableModule("truncated WebAssembly binary")
        self.pos += count

    def sleb(self) -> None:
        self.uleb()  # the same bytes; the value is not needed

    def memarg(self) -> None:
        align = self.uleb()
        if align & 0x40 and self.uleb() != 0:  # multi-memory: a memory index follows
            raise UnverifiableModule("the module uses more than one memory")
        self.uleb()

    def blocktype(self) -> None:
        first = self.data[self.pos] if self.pos < self.end else -1
        if first == 0x40 or first in _VALTYPES:
            self.pos += 1
        elif 0 <= first < 0x40 or first >= 0x80:  # a type index, as a non-negative s33
            self.uleb()
        else:
            raise UnverifiableModule(f"block type 0x{first:02x} (typed references or GC)")


def _sections(wasm: bytes) -> list[tuple[int, int, int]]:
    """(id, start, end) of every section's payload."""
    if wasm[:8] != b"\x00asm\x01\x00\x00\x00":
        raise UnverifiableModule("not a WebAssembly 1.0 module (bad magic or version)")
    reader, found = _Reader(wasm, 8), []
    while reader.pos < len(wasm):
        sid = reader.byte()
        size = reader.uleb()
        start = reader.pos
        reader.skip(size)
        found.append((sid, start, start + size))
    return found


def _limits(reader: _Reader, what: str) -> None:
    flags = reader.byte()
    if flags & 0x04:
        raise UnverifiableModule(f"the {what} is 64-bit (memory64)")
    if flags & ~0x07:
        raise UnverifiableModule(f"the {what} has limits flags 0x{flags:02x}")
    reader.uleb()
    if flags & 0x01:
        reader.uleb()


def _imported_functions(wasm: bytes, start: int, end: int) -> tuple[int, int]:
    """(imported functions, imported memories)."""
    reader = _Reader(wasm, start, end)
    functions = memories = 0
    for _ in range(reader.uleb()):
        for _ in range(2):  # module and field names
            reader.skip(reader.uleb())
        kind = reader.byte()
        if kind == 0x00:
            reader.uleb()
            functions += 1
        elif kind == 0x01:  # table: a reference type, then limits
            if reader.byte() not in _VALTYPES:
                raise UnverifiableModule("an imported table of a typed reference type")
            _limits(reader, "table")
        elif kind == 0x02:
            _limits(reader, "memory")
            memories += 1
        elif kind == 0x03:
            if reader.byte() not in _VALTYPES:
                raise UnverifiableModule("an imported global of a typed reference type")
            reader.byte()
        else:
            raise UnverifiableModule(f"an import of kind 0x{kind:02x} (tags or others)")
    return functions, memories


def _count_types(wasm: bytes, start: int, end: int) -> int:
    reader = _Reader(wasm, start, end)
    count = reader.uleb()
    for _ in range(count):
        if reader.byte() != 0x60:
            raise UnverifiableModule("a type that is not a plain function type (GC or recursive types)")
        for _ in range(2):  # parameters, results
            for _ in range(reader.uleb()):
                if reader.byte() not in _VALTYPES:
                    raise UnverifiableModule("a function type with typed references")
    return count


def _rewrite_body(body: bytes, fill: int, copy: int) -> tuple[bytes, int]:
    """The body with each memory.fill / memory.copy replaced by a call; and how many were replaced."""
    reader = _Reader(body)
    for _ in range(reader.uleb()):  # local declarations: count, type
        reader.uleb()
        if reader.byte() not in _VALTYPES:
            raise UnverifiableModule("a local of a typed reference type")
    out, copied_to, replaced, depth = bytearray(), 0, 0, 1
    while depth:
        at = reader.pos
        op = reader.byte()
        if op in (0x02, 0x03, 0x04):  # block, loop, if
            reader.blocktype()
            depth += 1
        elif op == 0x0B:  # end
            depth -= 1
        elif op in (0x00, 0x01, 0x05, 0x0F, 0x1A, 0x1B, 0xD1) or 0x45 <= op <= 0xC4:
            pass  # no immediates (else, return, drop, select, ref.is_null, numeric instructions)
        elif op in (0x0C, 0x0D, 0x10, 0x12, 0x14, 0x15, 0xD2) or 0x20 <= op <= 0x26:
            reader.uleb()  # br, br_if, call, return_call, call_ref, return_call_ref, ref.func, locals, globals, tables
        elif op in (0x11, 0x13):  # call_indirect, return_call_indirect: type, table
            reader.uleb()
            reader.uleb()
        elif op == 0x0E:  # br_table
            for _ in range(reader.uleb() + 1):
                reader.uleb()
        elif op == 0x1C:  # select with types
            for _ in range(reader.uleb()):
                if reader.byte() not in _VALTYPES:
                    raise UnverifiableModule("a typed select of typed references")
        elif 0x28 <= op <= 0x3E:
            reader.memarg()
        elif op in (0x3F, 0x40):  # memory.size, memory.grow
            if reader.uleb() != 0:
                raise UnverifiableModule("the module uses more than one memory")
        elif op in (0x41, 0x42):
            reader.sleb()
        elif op == 0x43:
            reader.skip(4)
        elif op == 0x44:
            reader.skip(8)
        elif op == 0xD0:  # ref.null
            if reader.byte() not in _VALTYPES:
                raise UnverifiableModule("ref.null of a typed reference")
        elif op == 0xFC:
            sub = reader.uleb()
            if sub in (0x0A, 0x0B):  # memory.copy (two memory indices), memory.fill (one)
                for _ in range(2 if sub == 0x0A else 1):
                    if reader.uleb() != 0:
                        raise UnverifiableModule("the module uses more than one memory")
                out += body[copied_to:at] + b"\x10" + uleb(copy if sub == 0x0A else fill)
                copied_to, replaced = reader.pos, replaced + 1
            elif sub <= 0x07:
                pass  # saturating truncations
            elif sub in (0x08, 0x0C, 0x0E):  # memory.init, table.init, table.copy: two indices
                reader.uleb()
                reader.uleb()
            elif sub in (0x09, 0x0D, 0x0F, 0x10, 0x11):  # data.drop, elem.drop, table.grow/size/fill
                reader.uleb()
            else:
                raise UnverifiableModule(f"instruction 0xfc {sub}")
        elif op == 0xFD:
            sub = reader.uleb()
            if sub in _SIMD_MEMARG:
                reader.memarg()
            elif sub in _SIMD_MEMARG_LANE:
                reader.memarg()
                reader.skip(1)
            elif sub in _SIMD_16_BYTES:
                reader.skip(16)
            elif sub in _SIMD_LANE:
                reader.skip(1)
            elif sub > _SIMD_LAST:
                raise UnverifiableModule(f"SIMD instruction 0xfd {sub}")
        else:
            raise UnverifiableModule(f"instruction 0x{op:02x} (exceptions, GC or an unknown proposal)")
    if reader.pos != len(body):
        raise UnverifiableModule("a function body continues past its final end")
    if not replaced:
        return body, 0
    return bytes(out + body[copied_to:]), replaced


@functools.cache
def _helper_bodies() -> tuple[bytes, bytes]:
    """The encoded bodies of the fill and copy helpers (they use only their locals and memory 0)."""
    helpers = bytes(wasmtime.wat2wasm(_HELPERS_WAT))
    [(_, start, end)] = [s for s in _sections(helpers) if s[0] == CODE]
    reader = _Reader(helpers, start, end)
    bodies = []
    for _ in range(reader.uleb()):
        size = reader.uleb()
        bodies.append(helpers[reader.pos:reader.pos + size])
        reader.skip(size)
    fill, copy = bodies
    return fill, copy


def _section(sid: int, payload: bytes) -> bytes:
    return bytes([sid]) + uleb(len(payload)) + payload


def _vector_append(wasm: bytes, start: int, end: int, items: list[bytes]) -> bytes:
    """A vector section's payload with `items` added at its end."""
    reader = _Reader(wasm, start, end)
    count = reader.uleb()
    return uleb(count + len(items)) + wasm[reader.pos:end] + b"".join(items)


def interruptible_bulk_memory(wasm: bytes) -> bytes:
    """`wasm` with every memory.fill and memory.copy done in interruptible chunks (see the module docstring);
    the same bytes when it has none. UnverifiableModule when it cannot be decoded."""
    found = {sid: (start, end) for sid, start, end in _sections(wasm) if sid != 0}
    if CODE not in found:
        return wasm
    types = _count_types(wasm, *found[TYPE]) if TYPE in found else 0
    imported, imported_memories = _imported_functions(wasm, *found[IMPORT]) if IMPORT in found else (0, 0)
    memories = imported_memories
    if MEMORY in found:
        reader = _Reader(wasm, *found[MEMORY])
        for _ in range(reader.uleb()):
            _limits(reader, "memory")
            memories += 1
    if memories > 1:
        raise UnverifiableModule("the module has more than one memory")
    defined = _Reader(wasm, *found[FUNCTION]).uleb() if FUNCTION in found else 0
    fill, copy = imported + defined, imported + defined + 1
    reader = _Reader(wasm, *found[CODE])
    bodies, replaced = [], 0
    for _ in range(reader.uleb()):
        size = reader.uleb()
        body, count = _rewrite_body(wasm[reader.pos:reader.pos + size], fill, copy)
        reader.skip(size)
        bodies.append(uleb(len(body)) + body)
        replaced += count
    if reader.pos != found[CODE][1]:
        raise UnverifiableModule("the code section continues past its last body")
    if not replaced:
        return wasm
    if TYPE not in found or FUNCTION not in found:  # wasmtime refuses such a module anyway
        raise UnverifiableModule("a code section without a type or function section")
    helpers = [uleb(len(body)) + body for body in _helper_bodies()]
    payloads = {
        TYPE: _vector_append(wasm, *found[TYPE], [_HELPER_TYPE]),
        FUNCTION: _vector_append(wasm, *found[FUNCTION], [uleb(types)] * 2),
        CODE: uleb(len(bodies) + 2) + b"".join(bodies) + b"".join(helpers),
    }
    out, header = bytearray(wasm[:8]), 8
    for sid, _, end in _sections(wasm):
        out += _section(sid, payloads[sid]) if sid in payloads else wasm[header:end]
        header = end
    return bytes(out)
