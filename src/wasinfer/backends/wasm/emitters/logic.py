"""Comparison, logic (on bools, and bitwise on integers), BitShift, selection, IsNaN/IsInf, Pow and
Mod, all elementwise with numpy broadcasting.

Every op here runs on binary.emit_elementwise. A bool tensor (one byte, 0 or 1) meets
wider operands as a mask: `mask_access(width)` loads `16 // width` bools as all-ones or
all-zeros lanes of `width` bytes (what the SIMD comparisons produce and v128.bitselect
consumes), and stores such lanes back as 0/1 bytes. So Greater on float32 goes four
elements per step, Where on int64 two, And on bool sixteen.
"""

from __future__ import annotations

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel
from wasinfer.backends.wasm.emitters.binary import (
    F32,
    INTEGER_TYPES,
    LANE_SHAPE,
    Access,
    access_for,
    check_same_dtype,
    emit_elementwise,
    lanewise,
)
from wasinfer.backends.wasm.writer import F64, I32, I64, V128, Func
from wasinfer.ir import Graph, Node
from wasinfer.lowering.layout import MOVABLE

BOOL = np.dtype(np.bool_)
ONES = bytes([1] * 16)
# Widening a v128's low bytes to lanes of 1, 2, 4 or 8 bytes.
WIDEN = {1: (), 2: ("i16x8.extend_low_i8x16_u",),
         4: ("i16x8.extend_low_i8x16_u", "i32x4.extend_low_i16x8_u"),
         8: ("i16x8.extend_low_i8x16_u", "i32x4.extend_low_i16x8_u", "i64x2.extend_low_i32x4_u")}
# Loading the `16 // width` bools of one vector step into the low bytes of a v128.
BOOL_LOAD = {1: ("v128.load", None), 2: ("i64.load", "i64x2.splat"), 4: ("i32.load", "i32x4.splat"),
             8: ("i32.load16_u", "i32x4.splat")}


def mask_access(width: int) -> Access:
    """bools in memory as masks of `width`-byte lanes (any nonzero byte is true)."""
    shape = LANE_SHAPE[width]

    def to_mask(f: Func) -> None:
        f.ops(*WIDEN[width]).v128(bytes(16)).op(f"{shape}.ne")

    def load_vector(f: Func) -> None:
        load, splat = BOOL_LOAD[width]
        f.mem(load, align=0)
        if splat:
            f.op(splat)
        to_mask(f)

    def load_scalar(f: Func) -> None:
        f.mem("i32.load8_u").op("i8x16.splat")
        to_mask(f)

    def store_vector(f: Func) -> None:
        mask = f.local(V128)
        if width == 8:  # two lanes: a byte each
            ptr = f.local(I32)
            f.set(mask).set(ptr)
            for lane in range(2):
                f.get(ptr).get(mask).lane("i64x2.extract_lane", lane).op("i32.wrap_i64").i32(1).op("i32.and")
                f.mem("i32.store8", offset=lane)
            return
        if width == 4:
            f.set(mask).get(mask).get(mask).op("i16x8.narrow_i32x4_s")
        if width >= 2:  # saturating narrows keep all-ones lanes all-ones
            f.set(mask).get(mask).get(mask).op("i8x16.narrow_i16x8_s")
        f.v128(ONES).op("v128.and")
        if width == 1:
            f.mem("v128.store", align=0)
        elif width == 2:
            f.lane("i64x2.extract_lane", 0).mem("i64.store", align=0)
        else:
            f.lane("i32x4.extract_lane", 0).mem("i32.store", align=0)

    def store_scalar(f: Func) -> None:
        f.lane("i32x4.extract_lane", 0).i32(1).op("i32.and").mem("i32.store8")

    return Access(1, 16 // width, load_vector, load_scalar, store_vector, store_scalar)


def _operands(ctx: Ctx, names: list[str], accesses: list[Access]) -> list[tuple[int, tuple[int, ...], Access]]:
    return [(ctx.addr(n), ctx.info(n).shape, a) for n, a in zip(names, accesses, strict=True)]


def _output(ctx: Ctx, node: Node, access: Access) -> tuple[int, tuple[int, ...], Access]:
    return ctx.addr(node.outputs[0]), ctx.info(node.outputs[0]).shape, access


# ---------------------------------------------------------------- comparisons

COMPARE = {"Equal": "eq", "Greater": "gt", "Less": "lt", "GreaterOrEqual": "ge", "LessOrEqual": "le"}
COMPARABLE = {np.dtype(np.float32), BOOL} | INTEGER_TYPES


def _compare_opcode(op: str, dtype: np.dtype) -> str:  # type: ignore[type-arg]
    cmp = COMPARE[op]
    if dtype == np.float32:
        return f"f32x4.{cmp}"
    shape = LANE_SHAPE[dtype.itemsize]
    return f"{shape}.{cmp}" if cmp == "eq" else f"{shape}.{cmp}_{'s' if dtype.kind == 'i' else 'u'}"


def _check_compare(node: Node, graph: Graph) -> list[str]:
    a, b = (graph.info(n).dtype for n in node.inputs[:2])
    if a != b:
        return [f"inputs have different dtypes {a} and {b}"]
    if a not in COMPARABLE:
        return [f"comparing {a} is not supported (float32, bool and integers are)"]
    return []


@kernel(*COMPARE, check=_check_compare)
def emit_compare(ctx: Ctx, node: Node) -> None:
    """out = a <op> b as bools; NaN compares false (and unequal), as in IEEE."""
    f = ctx.f
    dtype = ctx.info(node.inputs[0]).dtype
    access = access_for(dtype)

    def combine() -> None:
        if dtype != np.uint64:
            f.op(_compare_opcode(node.op_type, dtype))
            return
        # no unsigned 64-bit SIMD comparison: lane by lane, 0/1 negated into a mask
        cmp = COMPARE[node.op_type]
        opcode = "i64.eq" if cmp == "eq" else f"i64.{cmp}_u"
        lanewise(f, dtype, lambda a, b: f.i64(0).get(a).get(b).op(opcode).op("i64.extend_i32_u").op("i64.sub"))

    emit_elementwise(ctx, _output(ctx, node, mask_access(dtype.itemsize)),
                     _operands(ctx, node.inputs[:2], [access, access]), combine)



# ---------------------------------------------------------------- bool logic

LOGIC = {"And": "v128.and", "Or": "v128.or", "Xor": "v128.xor"}


def _check_bool(node: Node, graph: Graph) -> list[str]:
    return check_same_dtype(node, graph, {BOOL})


@kernel("And", "Or", "Xor", "Not", check=_check_bool)
def emit_logic(ctx: Ctx, node: Node) -> None:
    """On 0/1 bytes the bitwise ops are the logical ones; Not flips the low bit."""
    f = ctx.f
    access = access_for(BOOL)
    inputs = node.inputs[:1] if node.op_type == "Not" else node.inputs[:2]

    def combine() -> None:
        if node.op_type == "Not":
            f.v128(ONES).op("v128.xor")
        else:
            f.op(LOGIC[node.op_type])

    emit_elementwise(ctx, _output(ctx, node, access), _operands(ctx, inputs, [access] * len(inputs)), combine)


# ---------------------------------------------------------------- bitwise logic, BitShift

BITWISE = {"BitwiseAnd": "v128.and", "BitwiseOr": "v128.or", "BitwiseXor": "v128.xor"}


def _check_bitwise(node: Node, graph: Graph) -> list[str]:
    problems = check_same_dtype(node, graph, INTEGER_TYPES)
    if node.op_type == "BitShift":
        if node.attr("direction", "") not in ("LEFT", "RIGHT"):
            problems.append(f"direction={node.attr('direction', '')!r} is not 'LEFT' or 'RIGHT'")
        dtype = graph.info(node.inputs[0]).dtype
        if dtype.kind == "i" and graph.opset < 28:
            problems.append(f"BitShift on {dtype} is defined from opset 28 (the model's is {graph.opset})")
    return problems


@kernel(*BITWISE, "BitwiseNot", "BitShift", check=_check_bitwise)
def emit_bitwise(ctx: Ctx, node: Node) -> None:
    """And, Or, Xor and Not on the bits of any integer dtype, a vector at a time. BitShift shifts each
    lane by its own amount, lane by lane (SIMD shifts take one amount for all). A signed right shift is
    arithmetic. An amount outside [0, width) leaves what the sign fill alone gives (0, or -1 for a
    negative x shifted right), as the spec says, where Wasm would take the amount modulo the width:
    lanes narrower than 32 bits are shifted sign- or zero-extended, so the fill is right."""
    f = ctx.f
    dtype = ctx.info(node.outputs[0]).dtype
    access = access_for(dtype)
    inputs = node.inputs[:1] if node.op_type == "BitwiseNot" else node.inputs[:2]
    bits = dtype.itemsize * 8
    reg = "i64" if bits == 64 else "i32"
    left = node.attr("direction", "") == "LEFT"
    right = f"{reg}.shr_s" if dtype.kind == "i" else f"{reg}.shr_u"

    def shifted(a: int, b: int) -> None:
        const = f.i64 if reg == "i64" else f.i32
        f.get(a).get(b).op(f"{reg}.shl" if left else right)
        if left or dtype.kind == "u":
            const(0)
        else:  # the sign fill: x >> (width - 1) of the extended value
            f.get(a)
            const(bits - 1)
            f.op(right)
        f.get(b)
        const(bits)
        f.op(f"{reg}.lt_u").op("select")

    def combine() -> None:
        if node.op_type == "BitwiseNot":
            f.op("v128.not")
        elif node.op_type == "BitShift":
            lanewise(f, dtype, shifted)
        else:
            f.op(BITWISE[node.op_type])

    emit_elementwise(ctx, _output(ctx, node, access), _operands(ctx, inputs, [access] * len(inputs)), combine)


# ---------------------------------------------------------------- IsNaN, IsInf

def _check_classify(node: Node, graph: Graph) -> list[str]:
    problems = [] if graph.info(node.inputs[0]).dtype == np.float32 else [
        f"tensor {node.inputs[0]!r} has dtype {graph.info(node.inputs[0]).dtype}, only float32 is supported"]
    if node.op_type == "IsInf":
        problems += [f"{name}={node.attr(name)!r} is not 0 or 1" for name in ("detect_negative", "detect_positive")
                     if node.attr(name, 1) not in (0, 1)]
    return problems


@kernel("IsNaN", "IsInf", check=_check_classify)
def emit_classify(ctx: Ctx, node: Node) -> None:
    """Bools from float32: x != x (NaN), or x equal to +inf and/or -inf as detect_positive and
    detect_negative ask (neither: all false)."""
    f = ctx.f
    wanted = [value for name, value in (("detect_positive", float("inf")), ("detect_negative", float("-inf")))
              if node.attr(name, 1)]
    x = f.local(V128)

    def combine() -> None:
        f.set(x)
        if node.op_type == "IsNaN":
            f.get(x).get(x).op("f32x4.ne")
            return
        f.v128(bytes(16))
        for value in wanted:
            f.get(x).f32x4_const(value).op("f32x4.eq").op("v128.or")

    emit_elementwise(ctx, _output(ctx, node, mask_access(4)), _operands(ctx, node.inputs[:1], [F32]), combine)


# ---------------------------------------------------------------- Where

def _check_where(node: Node, graph: Graph) -> list[str]:
    problems = []
    if graph.info(node.inputs[0]).dtype != BOOL:
        problems.append(f"the condition has dtype {graph.info(node.inputs[0]).dtype}, not bool")
    x, y, out = (graph.info(n).dtype for n in (node.inputs[1], node.inputs[2], node.outputs[0]))
    if not x == y == out:
        problems.append(f"X, Y and the output have different dtypes {x}, {y}, {out}")
    elif x not in MOVABLE or x.itemsize not in LANE_SHAPE:
        problems.append(f"selecting {x} elements is not supported")
    return problems


@kernel("Where", check=_check_where)
def emit_where(ctx: Ctx, node: Node) -> None:
    """out = cond ? x : y, moving elements as bits (any whole-byte dtype up to 8 bytes)."""
    f = ctx.f
    dtype = ctx.info(node.outputs[0]).dtype
    access = access_for(dtype)
    mask, x, y = f.local(V128), f.local(V128), f.local(V128)

    def combine() -> None:
        f.set(y).set(x).set(mask).get(x).get(y).get(mask).op("v128.bitselect")

    emit_elementwise(ctx, _output(ctx, node, access),
                     _operands(ctx, node.inputs[:3], [mask_access(dtype.itemsize), access, access]), combine)


# ---------------------------------------------------------------- Pow

def _int_as_f32(dtype: np.dtype) -> Access:  # type: ignore[type-arg]
    """An integer exponent read as float32: int32 four at a time, the others one by one."""
    if dtype == np.int32:
        return Access(4, 4, lambda f: f.mem("v128.load").op("f32x4.convert_i32x4_s"),
                      lambda f: f.mem("i32.load").op("f32.convert_i32_s").op("f32x4.splat"), _no_store, _no_store)
    reg = "i64" if dtype.itemsize == 8 else "i32"
    convert = f"f32.convert_{reg}_{'u' if dtype.kind == 'u' else 's'}"
    return Access(dtype.itemsize, 1, _no_store, lambda f: f.mem(f"{reg}.load").op(convert).op("f32x4.splat"),
                  _no_store, _no_store)


def _no_store(f: Func) -> None:  # pragma: no cover - exponents are only read
    raise AssertionError("exponents are never stored")


EXPONENT_TYPES = {np.dtype(t) for t in (np.float32, np.int32, np.int64, np.uint32, np.uint64)}
INT_BASES = {np.dtype(np.int32), np.dtype(np.int64)}


def _check_pow(node: Node, graph: Graph) -> list[str]:
    x, y = (graph.info(n).dtype for n in node.inputs[:2])
    if x in INT_BASES:
        return [] if y == x else [f"an {x} base needs an {x} exponent, not {y}"]
    problems = []
    if x != np.float32 or graph.info(node.outputs[0]).dtype != np.float32:
        problems.append(f"base dtype {x} is not supported (float32, int32, int64 are)")
    if y not in EXPONENT_TYPES:
        problems.append(f"exponent dtype {y} is not supported (float32 and 32/64-bit integers are)")
    return problems


def _int_pow(f: Func, dtype: np.dtype) -> None:  # type: ignore[type-arg]
    """Integer x ** n lane by lane, by repeated squaring (wrapping on overflow); a negative n
    gives the truncated 1 / x**|n|: ±1 for x = ±1, else 0."""
    reg = "i64" if dtype.itemsize == 8 else "i32"
    const = f.i64 if reg == "i64" else f.i32
    result, base, e = (f.local(I64 if reg == "i64" else I32) for _ in range(3))

    def scalar(a: int, b: int) -> None:
        const(1)
        f.set(result).get(a).set(base)
        const(0)
        f.get(b).op(f"{reg}.sub").get(b).get(b)
        const(0)
        f.op(f"{reg}.lt_s").op("select").set(e)  # |n| (MIN stays MIN; shr_u still ends the loop)
        with f.block(), f.block(b"\x03"):
            f.get(e).op(f"{reg}.eqz").br_if(1)
            f.get(result).get(result).get(base).op(f"{reg}.mul").get(e)
            const(1)
            f.op(f"{reg}.and").op(f"{reg}.eqz").op("select").set(result)
            f.get(base).get(base).op(f"{reg}.mul").set(base)
            f.get(e)
            const(1)
            f.op(f"{reg}.shr_u").set(e).br(0)
        const(0)
        f.get(result).get(b)
        const(0)
        f.op(f"{reg}.lt_s").get(a)
        const(1)
        f.op(f"{reg}.eq").get(a)
        const(-1)
        f.op(f"{reg}.eq").op("i32.or").op("i32.eqz").op("i32.and").op("select")

    lanewise(f, dtype, scalar)


def _constant_exponent(ctx: Ctx, name: str) -> float | None:
    value = ctx.const(name)
    if value is None or value.size == 0 or not np.all(value == value.reshape(-1)[0]):
        return None
    return float(value.reshape(-1)[0])


def pow_v128(ctx: Ctx, x: int, y: int) -> None:
    """Push x ** y for the v128 locals x, y as C's powf does on the common cases: exp(y log|x|),
    negated for a negative base with an odd integer exponent, NaN for a negative base with a
    non-integer one, 1 when y is 0 or x is 1, +inf past the float range and 0 below the normal one."""
    f = ctx.f
    t, r, whole = f.local(V128), f.local(V128), f.local(V128)
    f.get(x).op("f32x4.abs").call(ctx.helper("log4")).get(y).op("f32x4.mul").set(t)
    f.f32x4_const(float("inf")).get(t).call(ctx.helper("exp4")).get(t).f32x4_const(88.72).op("f32x4.gt")
    f.op("v128.bitselect").get(t).f32x4_const(-87.3).op("f32x4.lt").op("v128.andnot").set(r)  # below: 0
    f.get(y).op("f32x4.nearest").get(y).op("f32x4.eq").set(whole)
    # odd integer exponent and a sign bit on x (so -0 too): flip the sign
    f.get(r).get(x).i32(0x80000000).op("i32x4.splat").op("v128.and").get(whole).op("v128.and")
    f.get(y).f32x4_const(0.5).op("f32x4.mul").op("f32x4.nearest").get(y).f32x4_const(0.5).op("f32x4.mul")
    f.op("f32x4.ne").op("v128.and").op("v128.xor").set(r)
    # negative base, non-integer exponent: NaN
    f.f32x4_const(float("nan")).get(r).get(x).f32x4_const(0.0).op("f32x4.lt").get(whole).op("v128.andnot")
    f.op("v128.bitselect").set(r)
    f.f32x4_const(1.0).get(r).get(y).f32x4_const(0.0).op("f32x4.eq").get(x).f32x4_const(1.0).op("f32x4.eq")
    f.op("v128.or").op("v128.bitselect")


@kernel("Pow", check=_check_pow)
def emit_pow(ctx: Ctx, node: Node) -> None:
    """A constant uniform exponent of 1, 2, 3 or 0.5 is a multiply or a square root, as in ONNX
    Runtime; otherwise exp(y log|x|) with C's sign rules (`pow_v128`). Integer bases take
    integer exponents of their own type (`_int_pow`)."""
    f = ctx.f
    base, exponent = node.inputs[:2]
    y_dtype = ctx.info(exponent).dtype
    if ctx.info(base).dtype in INT_BASES:
        access = access_for(y_dtype)
        emit_elementwise(ctx, _output(ctx, node, access), _operands(ctx, [base, exponent], [access, access]),
                         lambda: _int_pow(f, y_dtype))
        return
    y_access = F32 if y_dtype == np.float32 else _int_as_f32(y_dtype)
    constant = _constant_exponent(ctx, exponent)
    out = _output(ctx, node, F32)
    if constant in (1.0, 2.0, 3.0, 0.5) and ctx.info(node.outputs[0]).shape == ctx.info(base).shape:
        v = f.local(V128)

        def power() -> None:
            if constant == 0.5:
                f.op("f32x4.sqrt")
                return
            f.set(v).get(v)
            for _ in range(int(constant) - 1):
                f.get(v).op("f32x4.mul")

        emit_elementwise(ctx, out, _operands(ctx, [base], [F32]), power)
        return
    x, y = f.local(V128), f.local(V128)

    def combine() -> None:
        f.set(y).set(x)
        pow_v128(ctx, x, y)

    emit_elementwise(ctx, out, _operands(ctx, [base, exponent], [F32, y_access]), combine)


# ---------------------------------------------------------------- Mod

def _check_mod(node: Node, graph: Graph) -> list[str]:
    return check_same_dtype(node, graph, {np.dtype(np.float32)} | INTEGER_TYPES)


def _fmod_f32(f: Func, floored: bool) -> None:
    """Two f32x4 → C's fmodf lane by lane, in f64: a - trunc(a/b)*b is exact there for
    quotients below 2^29, and a quotient rounded up to the next integer shows as a remainder
    of the wrong sign, which adding back |b| repairs. fmod(a, ±inf) = a; b = 0 gives NaN.
    `floored` (fmod=0) then gives numpy's mod: a remainder of b's sign, zero included."""
    va, vb = f.local(V128), f.local(V128)
    a, b, r = f.local(F64), f.local(F64), f.local(F64)
    f.set(vb).set(va).get(va)
    for lane in range(4):
        f.get(va).lane("f32x4.extract_lane", lane).op("f64.promote_f32").set(a)
        f.get(vb).lane("f32x4.extract_lane", lane).op("f64.promote_f32").set(b)
        f.get(a).get(a).get(b).op("f64.div").op("f64.trunc").get(b).op("f64.mul").op("f64.sub").set(r)
        # sign of r differs from a's (r * a < 0): one |b| back toward a
        f.get(r).get(b).op("f64.abs").get(a).op("f64.copysign").op("f64.add").get(r)
        f.get(r).get(a).op("f64.mul").f64(0.0).op("f64.lt").op("select")
        f.get(a).op("f64.copysign").set(r)  # a zero remainder takes a's sign
        f.get(a).get(r).get(b).op("f64.abs").f64(float("inf")).op("f64.eq")
        f.get(a).op("f64.abs").f64(float("inf")).op("f64.ne").op("i32.and").op("select")
        if floored:
            f.set(r).get(r).get(b).op("f64.add").get(r).get(r).get(b).op("f64.mul").f64(0.0).op("f64.lt")
            f.op("select").get(b).op("f64.copysign")
        f.op("f32.demote_f64").lane("f32x4.replace_lane", lane)


def _mod_int(f: Func, dtype: np.dtype, fmod: bool) -> None:  # type: ignore[type-arg]
    """Integer remainder: C's (sign of a) with fmod=1, Python's (sign of b) otherwise; a zero
    divisor gives 0 rather than a trap."""
    reg = "i64" if dtype.itemsize == 8 else "i32"
    const = f.i64 if reg == "i64" else f.i32
    signed = dtype.kind == "i"
    r = f.local(I64 if reg == "i64" else I32)

    def rem(a: int, b: int) -> None:
        f.get(a).get(b).get(b).op(f"{reg}.eqz")  # b, or 1 where b is 0: a % 1 = 0
        if reg == "i64":
            f.op("i64.extend_i32_u")
        f.op(f"{reg}.or").op(f"{reg}.rem_{'s' if signed else 'u'}")
        if signed and not fmod:  # a nonzero remainder with b's opposite sign moves by b
            f.set(r).get(r).get(b).op(f"{reg}.add").get(r)
            f.get(r).get(b).op(f"{reg}.xor")
            const(0)
            f.op(f"{reg}.lt_s").get(r)
            const(0)
            f.op(f"{reg}.ne").op("i32.and").op("select")

    lanewise(f, dtype, rem)


@kernel("Mod", check=_check_mod)
def emit_mod(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    dtype = ctx.info(node.outputs[0]).dtype
    access = access_for(dtype)
    fmod = bool(node.attr("fmod", 0))

    def combine() -> None:
        if dtype == np.float32:
            _fmod_f32(f, not fmod)
        else:
            _mod_int(f, dtype, fmod)

    emit_elementwise(ctx, _output(ctx, node, access), _operands(ctx, node.inputs[:2], [access, access]), combine)


__all__ = ["COMPARE", "mask_access", "pow_v128"]
