"""A small WebAssembly binary writer: just enough of the core spec for compiled models.

Kernels emit instructions through `Func`; `Module` lays out the sections. The encoding
follows the WebAssembly core specification (binary format, chapter 5); SIMD opcodes use
the 0xFD prefix and bulk-memory ones the 0xFC prefix.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

I32, I64, F32, F64, V128 = 0x7F, 0x7E, 0x7D, 0x7C, 0x7B
VALTYPE_NAMES = {"i32": I32, "i64": I64, "f32": F32, "f64": F64, "v128": V128}


def uleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def sleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        done = (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40)
        out.append(byte if done else byte | 0x80)
        if done:
            return bytes(out)


def name_bytes(name: str) -> bytes:
    raw = name.encode()
    return uleb(len(raw)) + raw


def vector(items: list[bytes]) -> bytes:
    return uleb(len(items)) + b"".join(items)


# Opcodes without immediates, by their text-format names.
PLAIN = {
    "unreachable": b"\x00", "nop": b"\x01", "return": b"\x0f", "drop": b"\x1a", "select": b"\x1b",
    "i32.eqz": b"\x45", "i32.eq": b"\x46", "i32.ne": b"\x47", "i32.lt_s": b"\x48", "i32.lt_u": b"\x49",
    "i32.gt_s": b"\x4a", "i32.gt_u": b"\x4b", "i32.le_s": b"\x4c", "i32.le_u": b"\x4d",
    "i32.ge_s": b"\x4e", "i32.ge_u": b"\x4f",
    "i64.eqz": b"\x50", "i64.eq": b"\x51", "i64.ne": b"\x52", "i64.lt_s": b"\x53", "i64.gt_s": b"\x55",
    "i64.le_s": b"\x57", "i64.ge_s": b"\x59",
    "f32.eq": b"\x5b", "f32.ne": b"\x5c", "f32.lt": b"\x5d", "f32.gt": b"\x5e", "f32.le": b"\x5f",
    "f32.ge": b"\x60",
    "i32.add": b"\x6a", "i32.sub": b"\x6b", "i32.mul": b"\x6c", "i32.div_s": b"\x6d",
    "i32.div_u": b"\x6e", "i32.rem_s": b"\x6f", "i32.rem_u": b"\x70", "i32.and": b"\x71", "i32.or": b"\x72",
    "i32.xor": b"\x73", "i32.shl": b"\x74", "i32.shr_s": b"\x75", "i32.shr_u": b"\x76",
    "i64.add": b"\x7c", "i64.sub": b"\x7d", "i64.mul": b"\x7e", "i64.div_s": b"\x7f",
    "f32.abs": b"\x8b", "f32.neg": b"\x8c", "f32.ceil": b"\x8d", "f32.floor": b"\x8e",
    "f32.trunc": b"\x8f", "f32.nearest": b"\x90", "f32.sqrt": b"\x91", "f32.add": b"\x92",
    "f32.sub": b"\x93", "f32.mul": b"\x94", "f32.div": b"\x95", "f32.min": b"\x96",
    "f32.max": b"\x97",
    "i32.wrap_i64": b"\xa7", "i32.trunc_f32_s": b"\xa8", "i64.extend_i32_s": b"\xac",
    "i64.extend_i32_u": b"\xad", "i64.trunc_f32_s": b"\xae", "f32.convert_i32_s": b"\xb2",
    "f32.convert_i64_s": b"\xb4", "f32.demote_f64": b"\xb6", "f64.promote_f32": b"\xbb",
    "i32.reinterpret_f32": b"\xbc", "f32.reinterpret_i32": b"\xbe",
    "f64.ne": b"\x62", "i32.trunc_f64_s": b"\xaa", "f64.convert_i32_s": b"\xb7", "f64.convert_i64_s": b"\xb9",
    "f32.convert_i32_u": b"\xb3", "f64.convert_i32_u": b"\xb8",
    "i32.trunc_sat_f64_s": b"\xfc\x02", "i64.trunc_sat_f64_s": b"\xfc\x06",
    "i32.trunc_sat_f32_s": b"\xfc\x00", "i64.trunc_sat_f32_s": b"\xfc\x04",
    "f64.eq": b"\x61", "f64.lt": b"\x63", "f64.gt": b"\x64", "f64.le": b"\x65", "f64.ge": b"\x66",
    "f32.convert_i64_u": b"\xb5", "f64.convert_i64_u": b"\xba",
    "i32.trunc_sat_f32_u": b"\xfc\x01", "i32.trunc_sat_f64_u": b"\xfc\x03",
    "i64.trunc_sat_f32_u": b"\xfc\x05", "i64.trunc_sat_f64_u": b"\xfc\x07",
}

# Loads and stores: opcode and natural alignment (log2 bytes).
MEMORY = {
    "i32.load": (b"\x28", 2), "i64.load": (b"\x29", 3), "f32.load": (b"\x2a", 2),
    "f64.load": (b"\x2b", 3), "i32.load8_s": (b"\x2c", 0), "i32.load8_u": (b"\x2d", 0),
    "i32.load16_s": (b"\x2e", 1), "i32.load16_u": (b"\x2f", 1),
    "i32.store": (b"\x36", 2), "i64.store": (b"\x37", 3),
    "f32.store": (b"\x38", 2), "f64.store": (b"\x39", 3), "i32.store8": (b"\x3a", 0),
    "i32.store16": (b"\x3b", 1),
    "v128.load": (b"\xfd" + uleb(0), 4), "v128.store": (b"\xfd" + uleb(11), 4),
    # 8 bytes widened to 8 i16 lanes in the load; 4 bytes splatted to every i32 lane
    "v128.load8x8_s": (b"\xfd" + uleb(1), 3), "v128.load8x8_u": (b"\xfd" + uleb(2), 3),
    "v128.load32_splat": (b"\xfd" + uleb(9), 2),
    "v128.load64_zero": (b"\xfd" + uleb(93), 3),  # 8 bytes into the low half, the high half zero
    "v128.load32_zero": (b"\xfd" + uleb(92), 2),  # 4 bytes into lane 0, the rest zero
}

SIMD = {
    "i8x16.swizzle": 14, "i32x4.splat": 17, "f32x4.splat": 19,
    "v128.not": 77, "v128.and": 78, "v128.andnot": 79, "v128.or": 80, "v128.xor": 81,
    "v128.bitselect": 82, "v128.any_true": 83,
    "f32x4.eq": 65, "f32x4.ne": 66, "f32x4.lt": 67, "f32x4.gt": 68, "f32x4.le": 69, "f32x4.ge": 70,
    "i32x4.add": 174, "i32x4.sub": 177, "i32x4.mul": 181, "i32x4.shl": 171,
    "i32x4.shr_s": 172, "i32x4.shr_u": 173, "i32x4.min_s": 182, "i32x4.max_s": 184,
    "f32x4.ceil": 103, "f32x4.floor": 104, "f32x4.trunc": 105, "f32x4.nearest": 106,
    "f32x4.abs": 224, "f32x4.neg": 225, "f32x4.sqrt": 227, "f32x4.add": 228, "f32x4.sub": 229,
    "f32x4.mul": 230, "f32x4.div": 231, "f32x4.min": 232, "f32x4.max": 233,
    "f32x4.pmin": 234, "f32x4.pmax": 235,
    "i32x4.trunc_sat_f32x4_s": 248, "f32x4.convert_i32x4_s": 250,
    "i16x8.extend_low_i8x16_s": 135, "i16x8.extend_high_i8x16_s": 136,
    "i16x8.extend_low_i8x16_u": 137, "i16x8.extend_high_i8x16_u": 138,
    "i32x4.extend_low_i16x8_s": 167, "i32x4.extend_high_i16x8_s": 168,
    "i32x4.extend_low_i16x8_u": 169, "i32x4.extend_high_i16x8_u": 170,
    "i64x2.extend_low_i32x4_s": 199, "i64x2.extend_high_i32x4_s": 200,
}

LANE_OPS = {"f32x4.extract_lane": 31, "f32x4.replace_lane": 32, "i32x4.extract_lane": 27}

# Integer lanes and comparisons (elementwise logic and integer arithmetic, kernels/logic.py, binary.py).
PLAIN.update({"i64.ne": b"\x52", "i64.lt_u": b"\x54", "i64.gt_u": b"\x56", "i64.le_u": b"\x58",
              "i64.ge_u": b"\x5a", "i64.div_u": b"\x80", "i64.rem_s": b"\x81", "i64.rem_u": b"\x82",
              "i64.and": b"\x83", "i64.or": b"\x84", "i64.xor": b"\x85", "i64.lt_s": b"\x53",
              "f64.abs": b"\x99", "f64.trunc": b"\x9d", "f64.add": b"\xa0", "f64.sub": b"\xa1",
              "f64.mul": b"\xa2", "f64.div": b"\xa3", "f64.copysign": b"\xa6", "i64.shr_u": b"\x88",
              "i64.shl": b"\x86", "i64.shr_s": b"\x87"})
PLAIN.update({"f64.ceil": b"\x9b", "f64.floor": b"\x9c", "f64.neg": b"\x9a", "f64.min": b"\xa4", "f64.max": b"\xa5",
              "f64.nearest": b"\x9e", "i64.reinterpret_f64": b"\xbd", "f64.reinterpret_i64": b"\xbf"})
SIMD.update({"i8x16.splat": 15, "i16x8.splat": 16, "i64x2.splat": 18,
             **{f"{shape}.{cmp}": base + k for shape, base in (("i8x16", 35), ("i16x8", 45), ("i32x4", 55))
                for k, cmp in enumerate(("eq", "ne", "lt_s", "lt_u", "gt_s", "gt_u", "le_s", "le_u", "ge_s", "ge_u"))},
             "i64x2.eq": 214, "i64x2.ne": 215, "i64x2.lt_s": 216, "i64x2.gt_s": 217, "i64x2.le_s": 218,
             "i64x2.ge_s": 219, "i8x16.narrow_i16x8_s": 101, "i16x8.narrow_i32x4_s": 133,
             "i8x16.add": 110, "i8x16.sub": 113, "i8x16.min_s": 118, "i8x16.min_u": 119, "i8x16.max_s": 120,
             "i8x16.max_u": 121, "i16x8.add": 142, "i16x8.sub": 145, "i16x8.mul": 149, "i16x8.min_s": 150,
             "i16x8.min_u": 151, "i16x8.max_s": 152, "i16x8.max_u": 153, "i32x4.min_u": 183, "i32x4.max_u": 185,
             "i8x16.abs": 96, "i8x16.neg": 97, "i16x8.abs": 128, "i16x8.neg": 129, "i32x4.abs": 160,
             "i32x4.neg": 161, "i64x2.abs": 192, "i64x2.neg": 193, "i64x2.add": 206, "i64x2.sub": 209,
             "i64x2.mul": 213, "i64x2.extend_low_i32x4_u": 201,
             # integer kernels (emitters/qgemm.py): exact i16 pair products summed into i32 lanes
             "i32x4.dot_i16x8_s": 186, "i8x16.narrow_i16x8_u": 102, "i16x8.narrow_i32x4_u": 134,
             # sums of adjacent lanes, widened (emitters/qelementwise.py's pool)
             "i16x8.extadd_pairwise_i8x16_s": 124, "i16x8.extadd_pairwise_i8x16_u": 125,
             "i32x4.extadd_pairwise_i16x8_s": 126, "i32x4.extadd_pairwise_i16x8_u": 127,
             # relaxed SIMD's 8-bit dot (the int8 kernels' relaxed variant): per i32 lane, c + the four
             # products of a's signed bytes and b's 7-bit ones; and the byte shift that splits b off
             "i32x4.relaxed_dot_i8x16_i7x16_add_s": 0x113, "i8x16.shr_u": 109})
# the narrow float types' conversions (backends/wasm/minifloat.py)
PLAIN.update({"f64.nearest": b"\x9e", "f64.min": b"\xa4", "f32.copysign": b"\x98", "i64.reinterpret_f64": b"\xbd",
              "f64.reinterpret_i64": b"\xbf"})
LANE_OPS.update({"i8x16.extract_lane_s": 21, "i8x16.extract_lane_u": 22, "i8x16.replace_lane": 23,
                 "i16x8.extract_lane_s": 24, "i16x8.extract_lane_u": 25, "i16x8.replace_lane": 26,
                 "i32x4.replace_lane": 28, "i64x2.extract_lane": 29, "i64x2.replace_lane": 30})
# relaxed SIMD's a * b + c, one FMA where the host has one (the float kernels' relaxed variant: GEMM, sigmoid, tanh)
SIMD.update({"f32x4.relaxed_madd": 0x105})


@dataclass
class Func:
    """One function body under construction; `locals` beyond the params are declared on use."""

    params: list[int]
    results: list[int]
    name: str = ""
    local_types: list[int] = field(default_factory=list)
    code: bytearray = field(default_factory=bytearray)
    depth: int = 0

    def local(self, valtype: int) -> int:
        self.local_types.append(valtype)
        return len(self.params) + len(self.local_types) - 1

    def op(self, name: str) -> Func:
        if name in PLAIN:
            self.code += PLAIN[name]
        elif name in SIMD:
            self.code += b"\xfd" + uleb(SIMD[name])
        else:
            raise KeyError(f"unknown opcode {name}")
        return self

    def ops(self, *names: str) -> Func:
        for name in names:
            self.op(name)
        return self

    def mem(self, name: str, offset: int = 0, align: int | None = None) -> Func:
        opcode, natural = MEMORY[name]
        self.code += opcode + uleb(natural if align is None else align) + uleb(offset)
        return self

    def lane(self, name: str, index: int) -> Func:
        self.code += b"\xfd" + uleb(LANE_OPS[name]) + bytes([index])
        return self

    def i32(self, value: int) -> Func:
        if value >= 2**31:
            value -= 2**32
        self.code += b"\x41" + sleb(value)
        return self

    def i64(self, value: int) -> Func:
        self.code += b"\x42" + sleb(value)
        return self

    def f64(self, value: float) -> Func:
        self.code += b"\x44" + struct.pack("<d", value)
        return self

    def f32(self, value: float) -> Func:
        self.code += b"\x43" + struct.pack("<f", value)
        return self

    def v128(self, lanes: bytes) -> Func:
        assert len(lanes) == 16
        self.code += b"\xfd" + uleb(12) + lanes
        return self

    def shuffle32(self, lanes: tuple[int, int, int, int]) -> Func:
        """i8x16.shuffle picking 32-bit lanes 0-3 of the first operand, 4-7 of the second."""
        picked = bytes(4 * lane + byte for lane in lanes for byte in range(4))
        self.code += b"\xfd" + uleb(13) + picked
        return self

    def shuffle8(self, lanes: tuple[int, ...]) -> Func:
        """i8x16.shuffle: byte lanes 0-15 of the first operand, 16-31 of the second."""
        assert len(lanes) == 16 and all(0 <= lane < 32 for lane in lanes)
        self.code += b"\xfd" + uleb(13) + bytes(lanes)
        return self

    def f32x4_const(self, value: float) -> Func:
        return self.v128(struct.pack("<4f", value, value, value, value))

    def get(self, index: int) -> Func:
        self.code += b"\x20" + uleb(index)
        return self

    def set(self, index: int) -> Func:
        self.code += b"\x21" + uleb(index)
        return self

    def tee(self, index: int) -> Func:
        self.code += b"\x22" + uleb(index)
        return self

    def call(self, index: int) -> Func:
        self.code += b"\x10" + uleb(index)
        return self

    def br(self, depth: int) -> Func:
        self.code += b"\x0c" + uleb(depth)
        return self

    def br_if(self, depth: int) -> Func:
        self.code += b"\x0d" + uleb(depth)
        return self

    def memory_copy(self) -> Func:
        self.code += b"\xfc" + uleb(10) + b"\x00\x00"
        return self

    def memory_fill(self) -> Func:
        self.code += b"\xfc" + uleb(11) + b"\x00"
        return self

    def addr(self, base: int, index_local: int | None = None, scale: int = 4) -> Func:
        """Push `base + index*scale` (an i32 byte address)."""
        if index_local is None:
            return self.i32(base)
        self.get(index_local)
        if scale != 1:
            self.i32(scale).op("i32.mul")
        if base:
            self.i32(base).op("i32.add")
        return self

    def inc(self, index: int, step: int | None = None, by_local: int | None = None) -> Func:
        self.get(index)
        if by_local is not None:
            self.get(by_local)
        else:
            self.i32(1 if step is None else step)
        return self.op("i32.add").set(index)

    @contextmanager
    def block(self, kind: bytes = b"\x02", blocktype: int = 0x40) -> Iterator[None]:
        self.code += kind + bytes([blocktype])
        self.depth += 1
        yield
        self.depth -= 1
        self.code += b"\x0b"

    @contextmanager
    def if_(self, blocktype: int = 0x40) -> Iterator[None]:
        with self.block(b"\x04", blocktype):
            yield

    def else_(self) -> Func:
        self.code += b"\x05"
        return self

    @contextmanager
    def for_range(self, var: int, start: int, stop: int | tuple[str, int], step: int = 1) -> Iterator[None]:
        """`for var in range(start, stop, step)` with an i32 counter.

        `stop` is a constant, or ("local", index) for a bound known only at run time.
        Constant bounds that are non-empty compile to a bottom-tested loop.
        """
        self.i32(start).set(var)
        if isinstance(stop, int):
            if start >= stop:
                # Empty loop: emit the body unreachable-free but never executed.
                with self.block():
                    self.br(0)
                    with self.block(b"\x03"):
                        yield
                return
            with self.block(b"\x03"):
                yield
                self.inc(var, step).get(var).i32(stop).op("i32.lt_s").br_if(0)
            return
        _, bound = stop
        with self.block(), self.block(b"\x03"):
            self.get(var).get(bound).op("i32.ge_s").br_if(1)
            yield
            self.inc(var, step).br(0)

    def body(self) -> bytes:
        groups: list[bytes] = []
        for valtype in self.local_types:
            groups.append(uleb(1) + bytes([valtype]))
        payload = vector(groups) + bytes(self.code) + b"\x0b"
        return uleb(len(payload)) + payload


@dataclass
class Module:
    """Collects types, imports, functions, data and exports; `encode` writes the binary."""

    types: list[tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    imports: list[tuple[str, str, int]] = field(default_factory=list)  # module, name, type index
    funcs: list[tuple[int, Func]] = field(default_factory=list)
    exports: list[tuple[str, int, int]] = field(default_factory=list)  # name, kind, index
    data: list[tuple[int, bytes]] = field(default_factory=list)
    custom: list[tuple[str, bytes]] = field(default_factory=list)
    memory_pages: int = 1
    max_pages: int | None = None
    start: int | None = None

    def type_index(self, params: list[int], results: list[int]) -> int:
        sig = (tuple(params), tuple(results))
        if sig not in self.types:
            self.types.append(sig)
        return self.types.index(sig)

    def import_func(self, module: str, name: str, params: list[int], results: list[int]) -> int:
        assert not self.funcs, "imports must be declared before functions"
        self.imports.append((module, name, self.type_index(params, results)))
        return len(self.imports) - 1

    def add(self, func: Func) -> int:
        self.funcs.append((self.type_index(func.params, func.results), func))
        return len(self.imports) + len(self.funcs) - 1

    def reserve(self, params: list[int], results: list[int], name: str = "") -> tuple[int, Func]:
        """Declare a function now (so others can call it) and fill its body later."""
        func = Func(params, results, name)
        return self.add(func), func

    def export_func(self, name: str, index: int) -> None:
        self.exports.append((name, 0x00, index))

    def encode(self) -> bytes:
        def section(sid: int, payload: bytes) -> bytes:
            return bytes([sid]) + uleb(len(payload)) + payload

        out = bytearray(b"\x00asm\x01\x00\x00\x00")
        types = [b"\x60" + vector([bytes([p]) for p in ps]) + vector([bytes([r]) for r in rs])
                 for ps, rs in self.types]
        out += section(1, vector(types))
        if self.imports:
            out += section(2, vector([name_bytes(m) + name_bytes(n) + b"\x00" + uleb(t)
                                      for m, n, t in self.imports]))
        out += section(3, vector([uleb(t) for t, _ in self.funcs]))
        limits = (b"\x01" + uleb(self.memory_pages) + uleb(self.max_pages)
                  if self.max_pages is not None else b"\x00" + uleb(self.memory_pages))
        out += section(5, vector([limits]))
        exports = [name_bytes(n) + bytes([k]) + uleb(i) for n, k, i in self.exports]
        exports.append(name_bytes("memory") + b"\x02" + uleb(0))
        out += section(7, vector(exports))
        if self.start is not None:
            out += section(8, uleb(self.start))
        out += section(12, uleb(len(self.data)))  # DataCount: lets memory.copy validate
        out += section(10, vector([f.body() for _, f in self.funcs]))
        segments = [b"\x00\x41" + sleb(offset if offset < 2**31 else offset - 2**32) + b"\x0b"
                    + uleb(len(blob)) + blob for offset, blob in self.data]
        out += section(11, vector(segments))
        for name, payload in self.custom:
            out += section(0, name_bytes(name) + payload)
        names = [uleb(len(self.imports) + i) + name_bytes(f.name)
                 for i, (_, f) in enumerate(self.funcs) if f.name]
        if names:
            out += section(0, name_bytes("name") + b"\x01" + uleb(len(vector(names))) + vector(names))
        return bytes(out)
