"""Cast and CastLike between bool, (u)int2..64, float4e2m1, the float8 types, float16, bfloat16,
float32 and float64, with ONNX's rules.

float → integer truncates toward zero; out-of-range values saturate (ONNX leaves them
undefined), except that 8- and 16-bit targets keep the low bits of the 32-bit result, as a
C cast does, and so do the 4- and 2-bit ones (as ml_dtypes, ONNX's reference, does: int → int4
wraps). x → bool is x != 0 (so NaN is true). Casts that only reinterpret bits
(int8 ↔ uint8, int32 ↔ uint32, bool → uint8, ...) are a memory.copy; float32 ↔ int32 and
the widenings of (u)int8, bool and int32 go a v128 at a time.

The narrow floats (float16, bfloat16, float8, float4e2m1) have no Wasm conversion: an element is
decoded to its exact float32 value, and a value is encoded from float64 (an f32, or an integer,
widened exactly first) rounding to nearest even once, with `saturate` (opset 19, float8 targets
only; default 1) deciding what an out-of-range value becomes (backends/wasm/minifloat.py). The 4-
and 2-bit integers are one per byte (docs/abi.md): their low bits, sign-extended when signed.
float8e8m0 (opset 24, an exponent alone) is decoded exactly and encoded from the float32 value's
bits with Cast's `round_mode` (up, down, nearest) and `saturate`, as ONNX's reference does. Strings
are refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel
from wasinfer.backends.wasm.minifloat import (
    E8M0,
    FLOAT8,
    FORMATS,
    ROUND_MODES,
    emit_decode,
    emit_decode_e8m0,
    emit_encode,
    emit_encode_e8m0,
)
from wasinfer.backends.wasm.writer import I32, V128, Func
from wasinfer.ir import Graph, Node


@dataclass(frozen=True)
class Kind:
    """One dtype in memory: its load and store, and what the loaded value is (`cls`):
    i32/u32 (signed/unsigned in an i32), i64/u64, f32 or f64."""

    load: str
    store: str
    cls: str

    @property
    def reg(self) -> str:
        """The Wasm value type holding it."""
        return {"u32": "i32", "u64": "i64"}.get(self.cls, self.cls)

    @property
    def unsigned(self) -> bool:
        return self.cls.startswith("u")


KINDS = {
    np.dtype(np.bool_): Kind("i32.load8_u", "i32.store8", "u32"),
    np.dtype(np.int8): Kind("i32.load8_s", "i32.store8", "i32"),
    np.dtype(np.uint8): Kind("i32.load8_u", "i32.store8", "u32"),
    np.dtype(np.int16): Kind("i32.load16_s", "i32.store16", "i32"),
    np.dtype(np.uint16): Kind("i32.load16_u", "i32.store16", "u32"),
    np.dtype(np.int32): Kind("i32.load", "i32.store", "i32"),
    np.dtype(np.uint32): Kind("i32.load", "i32.store", "u32"),
    np.dtype(np.int64): Kind("i64.load", "i64.store", "i64"),
    np.dtype(np.uint64): Kind("i64.load", "i64.store", "u64"),
    np.dtype(np.float32): Kind("f32.load", "f32.store", "f32"),
    np.dtype(np.float64): Kind("f64.load", "f64.store", "f64"),
}

# (source register, target register) → opcode stem; the suffix says signed or unsigned
CONVERT = {
    ("i32", "i64"): "i64.extend_i32", ("i64", "i32"): "i32.wrap_i64",
    ("i32", "f32"): "f32.convert_i32", ("i32", "f64"): "f64.convert_i32",
    ("i64", "f32"): "f32.convert_i64", ("i64", "f64"): "f64.convert_i64",
    ("f32", "i32"): "i32.trunc_sat_f32", ("f32", "i64"): "i64.trunc_sat_f32",
    ("f64", "i32"): "i32.trunc_sat_f64", ("f64", "i64"): "i64.trunc_sat_f64",
    ("f32", "f64"): "f64.promote_f32", ("f64", "f32"): "f32.demote_f64",
}


def _widen(sign: str) -> tuple[tuple[str, ...], ...]:
    """16 bytes → 4 f32x4: each quarter widened to i32 lanes, then converted."""
    return tuple((f"i16x8.extend_{a}_i8x16_{sign}", f"i32x4.extend_{b}_i16x8_{sign}", "f32x4.convert_i32x4_s")
                 for a in ("low", "high") for b in ("low", "high"))


# (source, target) → the ops making each output v128 from one loaded v128 of source elements
VECTOR: dict[tuple[np.dtype, np.dtype], tuple[tuple[str, ...], ...]] = {  # type: ignore[type-arg]
    (np.dtype(np.float32), np.dtype(np.int32)): (("i32x4.trunc_sat_f32x4_s",),),
    (np.dtype(np.int32), np.dtype(np.float32)): (("f32x4.convert_i32x4_s",),),
    (np.dtype(np.int32), np.dtype(np.int64)): (("i64x2.extend_low_i32x4_s",), ("i64x2.extend_high_i32x4_s",)),
    (np.dtype(np.uint8), np.dtype(np.float32)): _widen("u"),
    (np.dtype(np.bool_), np.dtype(np.float32)): _widen("u"),
    (np.dtype(np.int8), np.dtype(np.float32)): _widen("s"),
}
# The 4- and 2-bit integers, one per byte: how many bits, and the wider integer they behave as.
NARROW_INTS = {np.dtype(ml_dtypes.int4): (4, np.dtype(np.int8)), np.dtype(ml_dtypes.uint4): (4, np.dtype(np.uint8)),
               np.dtype(ml_dtypes.int2): (2, np.dtype(np.int8)), np.dtype(ml_dtypes.uint2): (2, np.dtype(np.uint8))}


def _dtype_problem(dtype: np.dtype) -> str | None:  # type: ignore[type-arg]
    if dtype in KINDS or dtype in FORMATS or dtype in NARROW_INTS or dtype == E8M0:
        return None
    name = "string" if dtype.kind in "OUS" else str(dtype)
    return f"dtype {name} is not supported"


def _check_cast(node: Node, graph: Graph) -> list[str]:
    dtypes = [graph.info(node.inputs[0]).dtype, graph.info(node.outputs[0]).dtype]
    problems = [p for p in {_dtype_problem(d) for d in dtypes} if p]
    mode = node.attr("round_mode", "up")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if mode not in ROUND_MODES:
        problems.append(f"round_mode {mode!r} is not one of {', '.join(ROUND_MODES)}")
    return problems


def _convert_op(s: Kind, d: Kind) -> str:
    """The opcode between two different value types. int → *: the source's signedness
    decides; float → int: the target's, where only 32- and 64-bit targets saturate as
    unsigned (8/16-bit ones keep the low bits of a signed conversion)."""
    stem = CONVERT[(s.reg, d.reg)]
    if stem in ("i32.wrap_i64", "f64.promote_f32", "f32.demote_f64"):
        return stem
    unsigned = (d.unsigned and d.load in ("i32.load", "i64.load")) if s.reg.startswith("f") else s.unsigned
    return stem + ("_u" if unsigned else "_s")


def emit_convert(f: Func, src: np.dtype, dst: np.dtype) -> None:  # type: ignore[type-arg]
    """Turn the loaded `src` value on the stack into the value `dst`'s store takes."""
    s, d = KINDS[src], KINDS[dst]
    if dst == np.bool_:
        {"i32": f.i32, "i64": f.i64, "f32": f.f32, "f64": f.f64}[s.reg](0)
        f.op(f"{s.reg}.ne")
    elif s.reg != d.reg:
        f.op(_convert_op(s, d))


def _bit_copy(src: np.dtype, dst: np.dtype) -> bool:  # type: ignore[type-arg]
    """Same-size integers (and bool → integer) share their bit pattern."""
    integer = {"b", "i", "u"}
    return (src == dst or (src.itemsize == dst.itemsize and src.kind in integer and dst.kind in integer
                           and dst != np.bool_))


def _load(f: Func, dtype: np.dtype) -> np.dtype:  # type: ignore[type-arg]
    """Load the element at the address on the stack as the value it stands for; returns the dtype whose
    value that is (float32 for a narrow float, (u)int8 for a narrow integer, else `dtype` itself)."""
    if dtype in FORMATS:
        f.mem("i32.load16_u" if dtype.itemsize == 2 else "i32.load8_u")
        emit_decode(f, FORMATS[dtype])
        return np.dtype(np.float32)
    if dtype == E8M0:
        f.mem("i32.load8_u")
        emit_decode_e8m0(f)
        return np.dtype(np.float32)
    if dtype in NARROW_INTS:
        bits, wide = NARROW_INTS[dtype]
        f.mem("i32.load8_u")
        if wide == np.int8:  # sign-extend the low bits
            f.i32(32 - bits).op("i32.shl").i32(32 - bits).op("i32.shr_s")
        return wide
    f.mem(KINDS[dtype].load)
    return dtype


def _store_value(f: Func, src: np.dtype, dst: np.dtype, saturate: bool,  # type: ignore[type-arg]
                 round_mode: str = "up") -> None:
    """Turn the loaded value of dtype `src` (a plain one) into `dst`'s element and store it."""
    if dst == E8M0:  # from the value as a float32, as ONNX's reference converts
        emit_convert(f, src, np.dtype(np.float32))
        emit_encode_e8m0(f, round_mode, saturate)
        f.mem("i32.store8")
    elif dst in FORMATS:
        s = KINDS[src]
        if s.reg == "f32":
            f.op("f64.promote_f32")
        elif s.reg != "f64":
            f.op(f"f64.convert_{s.reg}_{'u' if s.unsigned else 's'}")
        emit_encode(f, FORMATS[dst], saturate and dst in FLOAT8)
        f.mem("i32.store16" if dst.itemsize == 2 else "i32.store8")
    elif dst in NARROW_INTS:  # the low bits of the 32-bit result, as for 8-bit targets
        bits, _ = NARROW_INTS[dst]
        emit_convert(f, src, np.dtype(np.int32))
        f.i32((1 << bits) - 1).op("i32.and").mem("i32.store8")
    else:
        emit_convert(f, src, dst)
        f.mem(KINDS[dst].store)


@kernel("Cast", "CastLike", check=_check_cast)
def emit_cast(ctx: Ctx, node: Node) -> None:
    """CastLike's target is its second input's dtype, which the output already carries."""
    f = ctx.f
    src_info, dst_info = ctx.info(node.inputs[0]), ctx.info(node.outputs[0])
    src_type, dst_type = src_info.dtype, dst_info.dtype
    src, dst = ctx.addr(node.inputs[0]), ctx.addr(node.outputs[0])
    count = src_info.size
    if _bit_copy(src_type, dst_type):
        if count:
            f.i32(dst).i32(src).i32(src_info.nbytes).memory_copy()
        return
    ps, pd, i = f.local(I32), f.local(I32), f.local(I32)
    f.i32(src).set(ps).i32(dst).set(pd)
    done = 0
    parts = VECTOR.get((src_type, dst_type))
    if parts:  # one v128 of source elements per step
        step = 16 // src_type.itemsize
        done = count // step * step
        v = f.local(V128)
        if done:
            with f.for_range(i, 0, done // step):
                f.get(ps).mem("v128.load").set(v)
                for index, ops in enumerate(parts):
                    f.get(pd).get(v).ops(*ops).mem("v128.store", offset=16 * index)
                f.inc(ps, 16).inc(pd, 16 * len(parts))
    saturate = bool(node.attr("saturate", 1))
    mode = node.attr("round_mode", "up")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if count > done:
        with f.for_range(i, done, count):
            f.get(pd).get(ps)
            loaded = _load(f, src_type)
            _store_value(f, loaded, dst_type, saturate, mode)
            f.inc(ps, src_type.itemsize).inc(pd, dst_type.itemsize)
