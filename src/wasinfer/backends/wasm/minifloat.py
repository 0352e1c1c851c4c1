"""The narrow float types (float16, bfloat16, the four float8 types, float4e2m1) in and out of Wasm's floats.

WebAssembly has no conversion for any of them, so each is described by its bit fields (`Minifloat`) and
converted with integer and float instructions, one element at a time, by one generic pair of instruction
sequences that Cast, CastLike, QuantizeLinear and DequantizeLinear share:

- `emit_decode`: the element's bits (an i32) → its exact value as an f32 (every one of these types is a
  subset of float32). A normal number rebiases the exponent (shift the fields into float32's place and add
  the bias difference); a subnormal one is its mantissa times 2^(1 - bias - mantissa bits); the NaN and
  infinity patterns are each type's own (e4m3fn: S.1111.111 is NaN and there is no infinity; the `fnuz`
  types: 1.0000.000 is the only NaN and there is neither -0 nor infinity; float4e2m1: no NaN, no infinity).
- `emit_encode`: an f64 → the element's bits, rounded to nearest even as ONNX's Cast specifies (and as
  ml_dtypes, which ONNX's reference implementation uses, does). The rounding is f64.nearest at the
  target's step: the step 2^(e - mantissa bits) of the value's binade e (at least the smallest normal's),
  scaled in and out exactly by powers of two, so the value is rounded once, whatever the source (float64
  and int64 sources too: no double rounding through float32). The rounded value's bits then give the
  code: its exponent and top mantissa bits, or, below the smallest normal, the count of subnormal steps.

Out of range: with `saturate` (ONNX's attribute for the float8 types, default 1; float4e2m1 always, as
ml_dtypes does) a magnitude beyond the largest finite value, infinity included, becomes that value;
without it, one that rounds past it becomes infinity where the type has one (float16, bfloat16, e5m2) and
NaN otherwise. NaN stays NaN (float4e2m1, which has none, gives -0 for NaN and +0 for -NaN, as ml_dtypes
does); -0 stays -0 except in the `fnuz` types, which have no -0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import ml_dtypes
import numpy as np

from wasinfer.backends.wasm.writer import F32, F64, I32, Func


@dataclass(frozen=True)
class Minifloat:
    """One narrow float type's fields: 1 sign bit, `exponent` and `mantissa` bits, exponent `bias`."""

    exponent: int
    mantissa: int
    bias: int
    infinity: bool  # the all-ones exponent with a zero mantissa is ±infinity (the IEEE types)
    nan: int  # the positive NaN's code (the IEEE types: the all-ones exponent, top mantissa bit)
    fnuz: bool = False  # "finite, no negative zero": the sign bit with a zero magnitude is the one NaN
    saturates: bool = False  # always saturates (no NaN or infinity to overflow into)

    @property
    def sign_bit(self) -> int:
        return 1 << (self.exponent + self.mantissa)

    @property
    def largest(self) -> float:
        """The largest finite value."""
        top = (1 << self.exponent) - 1 - self.bias  # the all-ones exponent's binade
        mantissa_max = (1 << self.mantissa) - 1
        if self.infinity:  # that binade is infinity and NaN
            top -= 1
        elif not self.fnuz and not self.saturates:  # e4m3fn: S.1111.111 is NaN
            mantissa_max -= 1
        return float(2.0 ** top * (1 + mantissa_max / (1 << self.mantissa)))

    @property
    def infinity_code(self) -> int:
        return ((1 << self.exponent) - 1) << self.mantissa


FORMATS: dict[np.dtype, Minifloat] = {  # type: ignore[type-arg]
    np.dtype(np.float16): Minifloat(5, 10, 15, infinity=True, nan=0x7E00),
    np.dtype(ml_dtypes.bfloat16): Minifloat(8, 7, 127, infinity=True, nan=0x7FC0),
    np.dtype(ml_dtypes.float8_e4m3fn): Minifloat(4, 3, 7, infinity=False, nan=0x7F),
    np.dtype(ml_dtypes.float8_e4m3fnuz): Minifloat(4, 3, 8, infinity=False, nan=0x80, fnuz=True),
    np.dtype(ml_dtypes.float8_e5m2): Minifloat(5, 2, 15, infinity=True, nan=0x7E),
    np.dtype(ml_dtypes.float8_e5m2fnuz): Minifloat(5, 2, 16, infinity=False, nan=0x80, fnuz=True),
    np.dtype(ml_dtypes.float4_e2m1fn): Minifloat(2, 1, 1, infinity=False, nan=0x8, saturates=True),
}
# The float8 types: the ones ONNX's `saturate` attribute concerns.
FLOAT8 = frozenset(np.dtype(t) for t in (ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fnuz,
                                         ml_dtypes.float8_e5m2, ml_dtypes.float8_e5m2fnuz))


def _pow2_f64(f: Func, exponent: int) -> Func:
    """Push the f64 2^exponent (exact: -1022 <= exponent <= 1023)."""
    return f.f64(math.ldexp(1.0, exponent))


def emit_decode(f: Func, fmt: Minifloat) -> None:
    """The element's bits (an i32, zero-extended) on the stack → its value, an f32 (exact)."""
    e, m, bias = fmt.exponent, fmt.mantissa, fmt.bias
    if (e, m) == (8, 7):  # bfloat16: the upper half of a float32
        f.i32(16).op("i32.shl").op("f32.reinterpret_i32")
        return
    code, mag = f.local(I32), f.local(I32)
    f.tee(code).i32(fmt.sign_bit - 1).op("i32.and").set(mag)
    # magnitude: a subnormal's steps, or the fields moved into float32's place with the bias difference
    f.get(mag).i32(1 << m).op("i32.lt_u")
    with f.if_(F32):
        f.get(mag).op("f32.convert_i32_u").f32(math.ldexp(1.0, 1 - bias - m)).op("f32.mul")
        f.else_()
        f.get(mag).i32(23 - m).op("i32.shl").i32((127 - bias) << 23).op("i32.add").op("f32.reinterpret_i32")
    if fmt.infinity:  # the all-ones exponent: infinity, or NaN with any mantissa bit set
        f.f32(math.inf).f32(math.nan).get(mag).i32(fmt.infinity_code).op("i32.eq").op("select")
        f.get(mag).i32(fmt.infinity_code).op("i32.lt_u").op("select")  # [value, special, finite?]
    elif not fmt.fnuz and not fmt.saturates:  # e4m3fn: S.1111.111
        f.f32(math.nan).get(mag).i32(fmt.sign_bit - 1).op("i32.ne").op("select")
    # the sign (copysign from ±0.0 made of the sign bit), then the fnuz types' NaN, 1.0000.000
    f.get(code).i32(fmt.sign_bit).op("i32.and").i32(31 - e - m).op("i32.shl").op("f32.reinterpret_i32")
    f.op("f32.copysign")
    if fmt.fnuz:
        f.f32(-math.nan).get(code).i32(fmt.sign_bit).op("i32.ne").op("select")  # its sign bit is set


def emit_encode(f: Func, fmt: Minifloat, saturate: bool) -> None:
    """An f64 on the stack → the element's bits (an i32), rounded to nearest even. `saturate`: clamp
    out-of-range magnitudes (infinity too) to the largest finite value (forced for float4e2m1)."""
    e, m, bias = fmt.exponent, fmt.mantissa, fmt.bias
    saturate = saturate or fmt.saturates
    x, a, r = f.local(F64), f.local(F64), f.local(F64)
    sign, k, code = f.local(I32), f.local(I32), f.local(I32)
    f.tee(x).op("i64.reinterpret_f64").i64(63).op("i64.shr_u").op("i32.wrap_i64").i32(e + m).op("i32.shl").set(sign)
    largest = fmt.largest
    top = math.frexp(largest)[1]  # 2^top is the first power of two past the largest value
    # |x|, clamped: to the largest value when saturating, else to 2^top (infinity then rounds to 2^top too,
    # past the largest, so it overflows like any finite value beyond)
    f.get(x).op("f64.abs").f64(largest if saturate else math.ldexp(1.0, top)).op("f64.min").set(a)
    # k = the step's exponent: the binade's (from the bits; the smallest normal's at least) less m
    f.get(a).op("i64.reinterpret_f64").i64(52).op("i64.shr_u").op("i32.wrap_i64").i32(1023).op("i32.sub")
    f.set(k).get(k).i32(1 - bias).get(k).i32(1 - bias).op("i32.gt_s").op("select").i32(m).op("i32.sub").set(k)
    # r = nearest(a / 2^k) * 2^k, the powers of two built from their bits (exact)
    f.get(a).i32(1023).get(k).op("i32.sub").op("i64.extend_i32_u").i64(52).op("i64.shl").op("f64.reinterpret_i64")
    f.op("f64.mul").op("f64.nearest")
    f.i32(1023).get(k).op("i32.add").op("i64.extend_i32_u").i64(52).op("i64.shl").op("f64.reinterpret_i64")
    f.op("f64.mul").set(r)
    # the code: a subnormal's count of steps, or the exponent and mantissa fields of r's bits
    f.get(r)
    _pow2_f64(f, 1 - bias).op("f64.lt")
    with f.if_(I32):
        f.get(r)
        _pow2_f64(f, bias - 1 + m).op("f64.mul").op("i32.trunc_sat_f64_u")
        f.else_()
        f.get(r).op("i64.reinterpret_f64").i64(52 - m).op("i64.shr_u").i64((1023 - bias) << m).op("i64.sub")
        f.op("i32.wrap_i64")
    f.set(code)
    if not saturate:  # rounded past the largest finite value: infinity, or NaN where there is none
        f.i32(fmt.infinity_code if fmt.infinity else fmt.nan).get(code).get(r).f64(largest).op("f64.gt")
        f.op("select").set(code)
    signed_nan = not fmt.fnuz and not fmt.saturates
    f.i32(fmt.nan).get(code).get(x).get(x).op("f64.ne").op("select").set(code)
    if fmt.fnuz:  # no -0: the sign only on a non-zero magnitude (the NaN already has it)
        f.get(code).get(sign).op("i32.or").get(code).get(code).op("select")
    elif signed_nan:
        f.get(code).get(sign).op("i32.or")
    else:  # float4e2m1: the NaN code is -0 and the sign flips it (+NaN → -0, -NaN → +0, as ml_dtypes does)
        f.get(code).get(sign).op("i32.xor")


def emit_load_f64(f: Func, dtype: np.dtype) -> None:  # type: ignore[type-arg]
    """The element of narrow float `dtype` at the address on the stack → its value as an f64 (exact): what a kernel
    that computes in float64 with a run-time parameter of that type (a Range's bounds) reads, and what a declared
    range is checked against."""
    f.mem("i32.load16_u" if dtype.itemsize == 2 else "i32.load8_u", align=0)
    emit_decode(f, FORMATS[dtype])
    f.op("f64.promote_f32")


def emit_store_f64(f: Func, dtype: np.dtype) -> None:  # type: ignore[type-arg]
    """Store the f64 on the stack, rounded once to nearest even, as an element of narrow float `dtype` at the
    address beneath it."""
    emit_encode(f, FORMATS[dtype], saturate=False)
    f.mem("i32.store16" if dtype.itemsize == 2 else "i32.store8", align=0)


# float8e8m0 (opset 24, microscaling's scale type): an exponent alone, 2^(code - 127), no sign; 0xFF is NaN.
E8M0 = np.dtype(ml_dtypes.float8_e8m0fnu)
ROUND_MODES = ("up", "down", "nearest")


def emit_decode_e8m0(f: Func) -> None:
    """An e8m0 code (an i32) on the stack → its value, an f32: 2^(code - 127) (code 0: 2^-127, a float32
    subnormal), NaN for 0xFF."""
    code = f.local(I32)
    f.tee(code).i32(23).op("i32.shl").i32(0x00400000).get(code).op("select")  # [code << 23, 2^-127, code]
    f.op("f32.reinterpret_i32").f32(math.nan).get(code).i32(0xFF).op("i32.ne").op("select")


def emit_encode_e8m0(f: Func, round_mode: str, saturate: bool) -> None:
    """An f32 on the stack → its e8m0 code, as ONNX's reference (onnx.numpy_helper.to_float8e8m0) computes it
    from the float32's bits: the biased exponent, plus one when `round_mode` rounds up ("up": any mantissa
    bit; "nearest": the guard bit with a round, sticky or odd-exponent bit; "down": never) unless that would
    pass 0xFE with `saturate`. NaN and infinity give 0xFF; the sign is ignored."""
    bits, exponent = f.local(I32), f.local(I32)
    f.op("i32.reinterpret_f32").tee(bits).i32(23).op("i32.shr_u").i32(0xFF).op("i32.and").set(exponent)
    if round_mode == "down":
        f.i32(0)
    elif round_mode == "up":
        f.get(bits).i32(0x7FFFFF).op("i32.and").i32(0).op("i32.ne")
    else:  # guard and (round or sticky or "lsb", which the reference takes as exponent > 0)
        f.get(bits).i32(0x400000).op("i32.and").i32(0).op("i32.ne")
        f.get(bits).i32(0x3FFFFF).op("i32.and").i32(0).op("i32.ne").get(exponent).i32(0).op("i32.gt_u")
        f.op("i32.or").op("i32.and")
    if saturate:  # no step past the largest exponent
        f.get(exponent).i32(0xFE).op("i32.ne").op("i32.and")
    f.get(exponent).op("i32.add").i32(0xFF).op("i32.and")
    f.i32(0xFF).get(exponent).i32(0xFF).op("i32.ne").op("select")  # [code, 0xFF, finite?]


__all__ = ["E8M0", "FLOAT8", "FORMATS", "ROUND_MODES", "Minifloat", "emit_decode", "emit_decode_e8m0",
           "emit_encode", "emit_encode_e8m0", "emit_load_f64", "emit_store_f64"]
