"""Cast and CastLike to and from the narrow types (float16, bfloat16, the float8 types, float4e2m1, 4- and 2-bit
integers) against ONNX's reference evaluator (which converts with ml_dtypes), exhaustively where the type is small
enough: every bit pattern of each 8-bit (and 4-bit) type, and all 65536 of float16 and bfloat16."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto
from onnx.reference import ReferenceEvaluator

from tests.parity import single_op_model, wasm_run
from wasinfer.artifact import convert_onnx
from wasinfer.backends.wasm.compiler import UnsupportedModel

# The probes include values past each type's range, NaN and infinities on purpose: numpy and onnx's reference
# warn when they cast or divide those, which is what the tests check against.
pytestmark = pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")

FLOAT8 = {ml_dtypes.float8_e4m3fn: TensorProto.FLOAT8E4M3FN, ml_dtypes.float8_e4m3fnuz: TensorProto.FLOAT8E4M3FNUZ,
          ml_dtypes.float8_e5m2: TensorProto.FLOAT8E5M2, ml_dtypes.float8_e5m2fnuz: TensorProto.FLOAT8E5M2FNUZ}
NARROW_FLOATS = {**FLOAT8, ml_dtypes.float4_e2m1fn: TensorProto.FLOAT4E2M1, ml_dtypes.bfloat16: TensorProto.BFLOAT16,
                 np.float16: TensorProto.FLOAT16}
NARROW_INTS = {ml_dtypes.int4: TensorProto.INT4, ml_dtypes.uint4: TensorProto.UINT4, ml_dtypes.int2: TensorProto.INT2,
               ml_dtypes.uint2: TensorProto.UINT2}
WIDE = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE}


def every_pattern(dtype: type) -> np.ndarray:
    """Every bit pattern of a narrow type (an 8-bit one's 256; a 4-bit one's 16, as ml_dtypes holds them)."""
    size = np.dtype(dtype).itemsize
    if dtype is ml_dtypes.float4_e2m1fn:
        return np.arange(16, dtype=np.uint8).view(dtype)
    return np.arange(2 ** (8 * size), dtype=np.uint8 if size == 1 else np.uint16).view(dtype)


def probes() -> np.ndarray:
    """float32 values that reach every rounding case of every narrow type: each float16 value (which covers
    every float8 value, the ties between them and their overflow thresholds), plus float32-only ones: ties and
    near-ties of bfloat16, values just past each type's largest, tiny and huge magnitudes, infinities, NaN."""
    halves = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**32, 20000, dtype=np.uint64).astype(np.uint32)
    ties = (np.arange(0, 65536, 7, dtype=np.uint32) << 16) | 0x8000  # exactly half a bfloat16 step
    edges = []
    for dtype in NARROW_FLOATS:
        big = float(ml_dtypes.finfo(dtype).max)
        edges += [big, np.nextafter(np.float32(big), np.float32(np.inf)), big * 1.03, big * 1.0625, big * 1.07,
                  big * 2, float(ml_dtypes.finfo(dtype).smallest_subnormal) / 2]
    extra = np.array([*edges, 1e-45, 3e38, np.inf, -np.inf, np.nan, -0.0], np.float32)
    values = np.concatenate([halves, bits.view(np.float32), ties.view(np.float32), extra, -extra])
    return values


def same_values(got: np.ndarray, want: np.ndarray) -> None:
    """Bit for bit, NaN for NaN (any NaN pattern of the type)."""
    assert got.dtype == want.dtype and got.shape == want.shape
    wide_got, wide_want = got.astype(np.float64), want.astype(np.float64)
    nan_got, nan_want = np.isnan(wide_got), np.isnan(wide_want)
    where = np.flatnonzero(nan_got != nan_want)
    assert not where.size, f"{where.size} NaN mismatches, first at {wide_want[where[0]]}: got {wide_got[where[0]]}"
    size = got.dtype.itemsize
    bits = (np.uint8 if size == 1 else np.uint16 if size == 2 else np.uint32 if size == 4 else np.uint64)
    differ = np.flatnonzero((got.view(bits) != want.view(bits)) & ~nan_want)
    assert not differ.size, (f"{differ.size} values differ, e.g. want {wide_want[differ[:5]]} got "
                             f"{wide_got[differ[:5]]}")


def check_cast(x: np.ndarray, to: int, opset: int = 23, **attrs: object) -> None:
    model = single_op_model("Cast", {"x": x}, opset=opset, to=to, **attrs)
    (want,) = ReferenceEvaluator(model).run(None, {"x": x})
    (got,) = wasm_run(model, {"x": x})
    same_values(got, np.asarray(want))


def pairs(sources: list[type], targets: list[type]) -> list[Any]:
    """(source, target) of different types, each named source-target."""
    return [pytest.param(s, t, id=f"{np.dtype(s).name}-{np.dtype(t).name}") for s in sources for t in targets
            if s is not t]


@pytest.mark.parametrize("src,dst", pairs(list(NARROW_FLOATS), [np.float32, np.float64, np.float16,
                                                                ml_dtypes.bfloat16]))
def test_every_pattern_of_a_narrow_float_decodes_exactly(src: type, dst: type) -> None:
    check_cast(every_pattern(src), {**WIDE, **NARROW_FLOATS}[dst])


@pytest.mark.parametrize("dst", list(NARROW_FLOATS), ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("saturate", [1, 0])
def test_float32_rounds_to_nearest_even_with_each_types_overflow(dst: type, saturate: int) -> None:
    """saturate (float8 targets only): out-of-range magnitudes, infinities too, become the largest value;
    without it they become infinity (float16, bfloat16, e5m2) or NaN (e4m3fn and the fnuz types)."""
    check_cast(probes(), NARROW_FLOATS[dst], saturate=saturate)


def correctly_rounded(x: np.ndarray, dtype: type) -> np.ndarray:
    """float64 → `dtype` rounded once, to nearest even. ml_dtypes (so ONNX's reference) goes through float32
    first, which can land a value just off a tie on the tie; rounding to float32 *to odd* first cannot (float32
    keeps more than two bits beyond any narrow type's mantissa), so that is the exact reference here."""
    narrow = x.astype(np.float32)
    inexact = narrow.astype(np.float64) != x
    toward_zero = np.where(np.abs(narrow.astype(np.float64)) > np.abs(x), np.nextafter(narrow, np.float32(0)), narrow)
    odd = np.where(inexact, (toward_zero.view(np.uint32) | 1).view(np.float32), narrow)
    return odd.astype(dtype)


@pytest.mark.parametrize("dst", [*FLOAT8, ml_dtypes.float4_e2m1fn, ml_dtypes.bfloat16],
                         ids=lambda t: np.dtype(t).name)
def test_float16_and_float64_sources_round_once(dst: type) -> None:
    halves = np.arange(65536, dtype=np.uint16).view(np.float16)
    check_cast(halves, NARROW_FLOATS[dst])
    # float64 values just off a tie (or a float32 step from one): through float32 they would round as the tie
    finite = probes().astype(np.float64)
    finite = finite[np.isfinite(finite) & (np.abs(finite) <= float(ml_dtypes.finfo(dst).max))]
    doubles = np.concatenate([finite * (1 + 2.0 ** -30), finite * (1 - 2.0 ** -30), [1 + 2.0 ** -8 + 2.0 ** -40]])
    model = single_op_model("Cast", {"x": doubles}, opset=23, to=NARROW_FLOATS[dst])
    (got,) = wasm_run(model, {"x": doubles})
    same_values(got, correctly_rounded(doubles, dst))
    tie_plus = np.array([2.0 ** -10 * (1 + 2.0 ** -30)])  # e4m3fn: just past half its smallest subnormal 2^-9
    if dst is ml_dtypes.float8_e4m3fn:
        assert wasm_run(single_op_model("Cast", {"x": tie_plus}, opset=23, to=NARROW_FLOATS[dst]),
                        {"x": tie_plus})[0].astype(np.float64)[0] == 2.0 ** -9


def test_every_bfloat16_pattern_to_float32_and_back() -> None:
    patterns = every_pattern(ml_dtypes.bfloat16)
    check_cast(patterns, TensorProto.FLOAT)
    check_cast(patterns.astype(np.float32), TensorProto.BFLOAT16)


@pytest.mark.parametrize("src,dst", pairs(list(NARROW_FLOATS), list(NARROW_FLOATS)))
def test_narrow_float_to_narrow_float(src: type, dst: type) -> None:
    x = every_pattern(src) if np.dtype(src).itemsize == 1 else probes().astype(src)
    check_cast(x, NARROW_FLOATS[dst])


@pytest.mark.parametrize("dtype", list(NARROW_INTS), ids=lambda t: np.dtype(t).name)
def test_narrow_integers_to_and_from_wider_types(dtype: type) -> None:
    """In: every value, sign-extended when signed. Out: integers and truncated floats keep their low bits."""
    for to in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT8, TensorProto.UINT8, TensorProto.INT64,
               TensorProto.BFLOAT16):
        check_cast(np.arange(-8, 16).astype(dtype), to)
    check_cast(np.arange(-40, 40, dtype=np.int32), NARROW_INTS[dtype])
    check_cast(np.arange(-20, 20, dtype=np.int64) * 3, NARROW_INTS[dtype])
    check_cast(np.linspace(-19.5, 19.5, 79, dtype=np.float32), NARROW_INTS[dtype])


def test_castlike_to_a_float8_with_saturate_off() -> None:
    x = probes()[:4000]
    like = np.zeros(1, ml_dtypes.float8_e4m3fn)
    model = single_op_model("CastLike", {"x": x}, constants={"like": like}, opset=21, saturate=0)
    (want,) = ReferenceEvaluator(model).run(None, {"x": x})
    same_values(wasm_run(model, {"x": x})[0], np.asarray(want))


@pytest.mark.parametrize("round_mode", ["up", "down", "nearest"])
@pytest.mark.parametrize("saturate", [1, 0])
def test_float8e8m0_from_float32_and_float16_by_round_mode(round_mode: str, saturate: int) -> None:
    """An exponent alone: from the float32's bits, rounded up, down or to nearest, saturating at 2^127 or not."""
    check_cast(probes(), TensorProto.FLOAT8E8M0, opset=24, saturate=saturate, round_mode=round_mode)
    check_cast(np.arange(65536, dtype=np.uint16).view(np.float16), TensorProto.FLOAT8E8M0, opset=24,
               saturate=saturate, round_mode=round_mode)


def test_every_float8e8m0_pattern_decodes_exactly() -> None:
    patterns = np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e8m0fnu)
    for to in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE):
        check_cast(patterns, to, opset=24)


def test_an_unknown_round_mode_is_refused_by_name() -> None:
    x = np.ones(3, np.float32)
    with pytest.raises(UnsupportedModel, match="round_mode 'sideways' is not one of up, down, nearest"):
        convert_onnx(single_op_model("Cast", {"x": x}, opset=24, to=TensorProto.FLOAT8E8M0, round_mode="sideways"))
