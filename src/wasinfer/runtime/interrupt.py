"""Stop a module at its deadline, cheaply: every module is rewritten so that it checks an interrupt flag,
and one watchdog thread sets the flag of each call still running at its deadline.

**The rewrite** (`interruptible`, applied once when a module is compiled for an interruptible engine, and
cached with the machine code):
- a check at the entry of every function and at the head of every loop: `if (i32.atomic.load flag) unreachable`,
  where `flag` is the first word of a one-page memory the rewrite adds (and exports as
  `wasinfer:interrupt`). Every backward jump in WebAssembly goes to a loop's head, and every call enters a
  function, so a module that never returns passes a check at least once per loop iteration or call:
  a set flag stops it within one iteration of its innermost loop;
- `memory.fill` and `memory.copy` become calls to two functions that do the same work in 1 MiB chunks, in
  a loop (with its check), so that one instruction over a gigabyte (0.55 s here on fresh pages, 2.6-5.8 s
  past a 2 s deadline on a loaded machine) also stops within about a chunk's time;
- a start function is not run at instantiation but exported as `wasinfer:start`, so that the host can run
  it under the deadline too (the host must call it right after instantiating: `run_start`).

**Why not wasmtime's epoch interruption** (what wasinfer used before): its check at every loop back-edge
has a slow path that calls into the runtime, and around that call Cranelift keeps a kernel's vector
accumulators in memory instead of registers; real models ran 1.6-2.1x slower with it. The flag check
traps instead of calling, so nothing is spilled: 0-7% on the same models (docs/performance.md).

**Threat model.** The module is untrusted: hand-written or made by any tool, it gets the same rewrite,
and the flag is out of its reach. Its own instructions can only name memory 0: the rewrite decodes every
instruction and refuses any memory index but 0 (and the original module must validate on its own, so it
cannot have been written against the added memory), so no store, copy, fill or init can clear the flag.
The only writer is the host. A module can still spend its deadline inside one host call (WASI, WASI-NN),
which the host bounds itself; and, as with any deadline, work between two checks runs to its end (the
longest such stretch without a loop is a function's straight-line code, and bulk memory ops are chunked).

**The watchdog** (`Watchdog`, one per process) keeps each instance's alarm (`Alarm`, armed for one call at a
time) in a heap by deadline and sleeps until the earliest; it writes a flag only while its call is armed,
under the same lock that disarms it, so the host never writes into an instance's memory after its call
returned (when the store may be gone). An alarm already in the heap for no later than a new call's deadline
is not pushed again: when its entry comes up and the alarm is armed for later, the watchdog pushes it for
then. It wakes only when an entry comes up, or when a call is armed earlier than anything it waits for
(after an idle spell): about once per deadline period per busy instance, never per call.

The rewrite has to find every instruction, so it decodes every function body (MVP, sign extension,
saturating conversions, bulk memory, reference types, SIMD and relaxed SIMD, tail calls: what wasinfer's
compiler and common toolchains emit). A module it cannot decode to the end (exceptions, GC types, several
memories, a 64-bit memory, threads) is refused with `UnverifiableModule` rather than run with a loop
nothing can interrupt; wasmtime validates what comes out, so a decoding mistake cannot let a module
through unchecked, only fail its load. `memory.init` is left alone: its length is bounded by a data
segment, which is in the module's bytes.
"""

from __future__ import annotations

import ctypes
import functools
import heapq
import itertools
import math
import os
import threading
import time
from typing import TYPE_CHECKING

import wasmtime

if TYPE_CHECKING:
    from wasmtime._instance import InstanceExports  # what Instance.exports(store) returns

from wasinfer.backends.wasm.writer import uleb

CHUNK_BYTES = 1 << 20  # worst case here about a millisecond of page faults per chunk; the loop costs nothing
REWRITE_TAG = "interrupt-flag-1"  # part of the compiled-code cache key: code compiled before the rewrite is not reused
INTERRUPT_EXPORT = "wasinfer:interrupt"  # the added memory whose first word is the flag
START_EXPORT = "wasinfer:start"  # the start function, no longer run at instantiation

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

TYPE, IMPORT, FUNCTION, MEMORY, EXPORT, START, CODE = 1, 2, 3, 5, 7, 8, 10
# Where each known section goes (custom sections, id 0, stay where they are); 13 is the tag section.
_SECTION_ORDER = (1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11)
_VALTYPES = {0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F}  # i32 i64 f32 f64 v128 funcref externref
# SIMD (0xFD) sub-opcodes by their immediates; every other one up to 0x113 has none.
_SIMD_MEMARG = set(range(0x00, 0x0C)) | {0x5C, 0x5D}
_SIMD_MEMARG_LANE = set(range(0x54, 0x5C))
_SIMD_16_BYTES = {0x0C, 0x0D}  # v128.const, i8x16.shuffle
_SIMD_LANE = set(range(0x15, 0x23))
_SIMD_LAST = 0x113


class UnverifiableModule(ValueError):
    """The module uses what the rewrite cannot decode, so it cannot be made interruptible."""


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


def _check(flag_memory: int) -> bytes:
    """`(if (i32.atomic.load (memory flag_memory) (i32.const 0)) (then unreachable))`, encoded.

    Atomic, because a plain load may be merged with an earlier one: Cranelift replaces a load by the value
    of an identical load that dominates it when no store comes between, so a loop's check read nothing
    after its function's entry check (measured: a loop without stores never stopped). An atomic load is
    always done, and on x86-64 and AArch64 it is the same instruction as a plain one."""
    memarg = b"\x02\x00" if flag_memory == 0 else b"\x42" + uleb(flag_memory) + b"\x00"  # align 4, offset 0
    return b"\x41\x00\xfe\x10" + memarg + b"\x04\x40\x00\x0b"


def _rewrite_body(body: bytes, check: bytes, bulk: tuple[int, int] | None) -> tuple[bytes, int]:
    """The body with `check` at its entry and at the head of each loop, and, given `bulk` (the fill and
    copy helpers' function indices), each memory.fill / memory.copy replaced by a call; and how many were."""
    reader = _Reader(body)
    for _ in range(reader.uleb()):  # local declarations: count, type
        reader.uleb()
        if reader.byte() not in _VALTYPES:
            raise UnverifiableModule("a local of a typed reference type")
    out, copied_to, replaced, depth = bytearray(body[:reader.pos] + check), reader.pos, 0, 1
    while depth:
        at = reader.pos
        op = reader.byte()
        if op in (0x02, 0x03, 0x04):  # block, loop, if
            reader.blocktype()
            depth += 1
            if op == 0x03:
                out += body[copied_to:reader.pos] + check
                copied_to = reader.pos
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
                if bulk is not None:
                    out += body[copied_to:at] + b"\x10" + uleb(bulk[1] if sub == 0x0A else bulk[0])
                    copied_to, replaced = reader.pos, replaced + 1
            elif sub <= 0x07:
                pass  # saturating truncations
            elif sub == 0x08:  # memory.init: a data segment, then a memory
                reader.uleb()
                if reader.uleb() != 0:
                    raise UnverifiableModule("the module uses more than one memory")
            elif sub in (0x0C, 0x0E):  # table.init, table.copy: two indices
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


def _vector_append(wasm: bytes, section: tuple[int, int] | None, items: list[bytes]) -> bytes:
    """A vector section's payload with `items` added at its end (the section may be absent: then only them)."""
    if section is None:
        return uleb(len(items)) + b"".join(items)
    reader = _Reader(wasm, *section)
    count = reader.uleb()
    return uleb(count + len(items)) + wasm[reader.pos:section[1]] + b"".join(items)


def _export(name: str, kind: int, index: int) -> bytes:
    encoded = name.encode()
    return uleb(len(encoded)) + encoded + bytes([kind]) + uleb(index)


def _reassemble(wasm: bytes, payloads: dict[int, bytes | None]) -> bytes:
    """`wasm` with the sections in `payloads` replaced (None: dropped) or, where it has none, added in their place."""
    sections = _sections(wasm)
    unknown = sorted({sid for sid, _, _ in sections if sid != 0 and sid not in _SECTION_ORDER})
    if unknown:
        raise UnverifiableModule(f"sections of unknown kinds {unknown}")
    present = {sid for sid, _, _ in sections}
    missing = [sid for sid in _SECTION_ORDER if payloads.get(sid) is not None and sid not in present]
    out, header = bytearray(wasm[:8]), 8
    for sid, _, end in sections:
        while sid != 0 and missing and _SECTION_ORDER.index(missing[0]) < _SECTION_ORDER.index(sid):
            out += _section(missing[0], payloads[missing.pop(0)] or b"")
        if sid not in payloads:
            out += wasm[header:end]
        elif (payload := payloads[sid]) is not None:
            out += _section(sid, payload)
        header = end
    for sid in missing:
        out += _section(sid, payloads[sid] or b"")
    return bytes(out)


def interruptible(wasm: bytes) -> bytes:
    """`wasm` rewritten as the module docstring says: interrupt checks, its flag memory, chunked bulk memory,
    a deferred start function. UnverifiableModule when it cannot be decoded; the module must be valid
    (`wasmtime.Module.validate`) before it is rewritten."""
    found = {sid: (start, end) for sid, start, end in _sections(wasm) if sid != 0}
    types = _count_types(wasm, *found[TYPE]) if TYPE in found else 0
    imported, memories = _imported_functions(wasm, *found[IMPORT]) if IMPORT in found else (0, 0)
    if MEMORY in found:
        reader = _Reader(wasm, *found[MEMORY])
        for _ in range(reader.uleb()):
            _limits(reader, "memory")
            memories += 1
    if memories > 1:
        raise UnverifiableModule("the module has more than one memory")
    flag_memory = memories  # the added memory's index: after the module's own, if it has one
    check = _check(flag_memory)
    defined = _Reader(wasm, *found[FUNCTION]).uleb() if FUNCTION in found else 0
    bulk = (imported + defined, imported + defined + 1)  # the helpers' indices, after every function
    bodies, replaced = [], 0
    if CODE in found:
        reader = _Reader(wasm, *found[CODE])
        for _ in range(reader.uleb()):
            size = reader.uleb()
            body, count = _rewrite_body(wasm[reader.pos:reader.pos + size], check, bulk)
            reader.skip(size)
            bodies.append(uleb(len(body)) + body)
            replaced += count
        if reader.pos != found[CODE][1]:
            raise UnverifiableModule("the code section continues past its last body")
    payloads: dict[int, bytes | None] = {}
    if replaced:
        if TYPE not in found or FUNCTION not in found:  # wasmtime refuses such a module anyway
            raise UnverifiableModule("a code section without a type or function section")
        bodies += [uleb(len(body)) + body for body in
                   (_rewrite_body(helper, check, None)[0] for helper in _helper_bodies())]
        payloads[TYPE] = _vector_append(wasm, found[TYPE], [_HELPER_TYPE])
        payloads[FUNCTION] = _vector_append(wasm, found[FUNCTION], [uleb(types)] * 2)
    if CODE in found:
        payloads[CODE] = uleb(len(bodies)) + b"".join(bodies)
    payloads[MEMORY] = _vector_append(wasm, found.get(MEMORY), [b"\x01\x01\x01"])  # 1 page, and never more
    exports = [_export(INTERRUPT_EXPORT, 0x02, flag_memory)]
    if START in found:
        exports.append(_export(START_EXPORT, 0x00, _Reader(wasm, *found[START]).uleb()))
        payloads[START] = None
    payloads[EXPORT] = _vector_append(wasm, found.get(EXPORT), exports)
    return _reassemble(wasm, payloads)


def interrupt_flag(exports: InstanceExports, store: wasmtime.Store) -> ctypes.c_int32 | None:
    """The instance's interrupt flag (the first word of its `wasinfer:interrupt` memory), or None for a module
    that was not rewritten. Written by the watchdog only while a call of this instance is armed."""
    memory = exports.get(INTERRUPT_EXPORT)
    if not isinstance(memory, wasmtime.Memory):
        return None
    address = ctypes.cast(memory.data_ptr(store), ctypes.c_void_p).value
    assert address is not None
    return ctypes.c_int32.from_address(address)


class Alarm:
    """One instance's deadline, armed for each of its calls in turn: whose flag to set, when, and whether it was
    set. An instance keeps one for its life, so arming a call allocates nothing and pushes nothing onto the
    watchdog's heap while the alarm is already there for a time no later than the call's deadline."""

    __slots__ = ("at", "entry", "entry_at", "fired", "flag", "heap", "live")

    def __init__(self, flag: ctypes.c_int32):
        self.flag, self.at, self.live, self.fired = flag, math.inf, False, False
        # its current entry in the watchdog's heap, if any: the heap (a forked child's watchdog starts a new one,
        # without the parent's entries), the entry's order number and when it comes up
        self.heap: list[tuple[float, int, Alarm]] | None = None
        self.entry, self.entry_at = -1, math.inf


class Watchdog:
    """Sets the interrupt flag of every armed call still running at its deadline (see the module docstring).

    `arm` before a call, `disarm` after it returns or traps (always, and before the instance's store may be
    closed); `disarm` says whether the flag was set, which is how a trap is known to be the deadline's.
    The thread starts with the first alarm, is a daemon, and is started again in a forked child.

    Each alarm has at most one current entry in the heap. Arming pushes one only where the alarm has none,
    or has one for later than this call's deadline (the older entry is then stale, and dropped when it comes
    up); otherwise the current entry comes up no later than the deadline, and the watchdog, finding the
    alarm armed for later, pushes it again for then. So a call under a 30 s deadline costs a lock, a clock
    read and a few stores (arm + disarm 0.68 us here, against 1.33 us with a new Alarm pushed per call),
    and the heap holds about one entry per instance, not one per call of the last deadline period (80,000
    entries after as many calls).
    """

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # arm and disarm take the lock itself: a Condition's `with` is two more Python calls per call
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._alarms: list[tuple[float, int, Alarm]] = []
        self._order = itertools.count()  # ties in the heap never compare two alarms; names an alarm's entry
        self._wake_at = math.inf  # when the thread means to wake next (inf: it waits to be told)
        self._thread: threading.Thread | None = None

    def arm(self, alarm: Alarm, seconds: float) -> Alarm:
        """Clear the alarm's flag and have it set `seconds` from now, unless `disarm` comes first."""
        alarm.flag.value = 0
        at = time.monotonic() + seconds
        with self._lock:
            alarm.at, alarm.live, alarm.fired = at, True, False
            if alarm.heap is not self._alarms or at < alarm.entry_at:
                self._push(alarm, at)
        return alarm

    def disarm(self, alarm: Alarm) -> bool:
        """After this the flag is not written again for `alarm`'s call; True if it was set (the call ran past its
        deadline). Disarming twice is harmless."""
        with self._lock:
            alarm.live = False
            return alarm.fired

    def _push(self, alarm: Alarm, at: float) -> None:
        """A new current entry for `alarm` at `at` (under the lock); wake the thread if it sleeps past it."""
        entry = next(self._order)
        alarm.heap, alarm.entry, alarm.entry_at = self._alarms, entry, at
        heapq.heappush(self._alarms, (at, entry, alarm))
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="wasinfer-watchdog", daemon=True)
            self._thread.start()
        elif at < self._wake_at:
            self._wakeup.notify()

    def _watch(self) -> None:
        with self._wakeup:
            while True:
                now = time.monotonic()
                alarms = self._alarms
                while alarms and alarms[0][0] <= now:
                    _, entry, alarm = heapq.heappop(alarms)
                    if entry != alarm.entry:
                        continue  # stale: the alarm was pushed again for earlier than this
                    alarm.heap = None
                    if not alarm.live:
                        continue
                    if alarm.at <= now:
                        alarm.flag.value = 1
                        alarm.fired = True
                    else:  # armed again since, for later: come back then
                        self._push(alarm, alarm.at)
                self._wake_at = alarms[0][0] if alarms else math.inf
                self._wakeup.wait(None if not alarms else self._wake_at - now)


WATCHDOG = Watchdog()


def run_start(exports: InstanceExports, store: wasmtime.Store) -> None:
    """Run the module's start function, which the rewrite deferred, if it has one (callers arm a deadline first)."""
    start = exports.get(START_EXPORT)
    if isinstance(start, wasmtime.Func):
        start(store)
