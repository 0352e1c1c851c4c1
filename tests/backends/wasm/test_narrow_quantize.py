"""QuantizeLinear and DequantizeLinear to and from the narrow types (the float8 types, float4e2m1, int4/uint4,
int2/uint2) and with float16/bfloat16 on the float side, bit for bit against ONNX's reference evaluator: per
tensor, per axis and blocked (block_size), saturate on and off, output_dtype, run-time scales."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto
from onnx.reference import ReferenceEvaluator

from tests.backends.wasm.test_narrow_casts import probes, same_values
from tests.parity import single_op_model, wasm_run
from wasinfer.artifact import convert_onnx
from wasinfer.backends.wasm.compiler import UnsupportedModel

# The probes include values past each type's range, NaN and infinities on purpose: numpy and onnx's reference
# warn when they cast or divide those, which is what the tests check against.
pytestmark = pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")

rng = np.random.default_rng(11)
FLOAT8 = [ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fnuz, ml_dtypes.float8_e5m2, ml_dtypes.float8_e5m2fnuz]
NARROW_INTS = [ml_dtypes.int4, ml_dtypes.uint4, ml_dtypes.int2, ml_dtypes.uint2]
TYPE_OF = {ml_dtypes.float8_e4m3fn: TensorProto.FLOAT8E4M3FN, ml_dtypes.float8_e5m2: TensorProto.FLOAT8E5M2,
           ml_dtypes.float8_e4m3fnuz: TensorProto.FLOAT8E4M3FNUZ, ml_dtypes.float8_e5m2fnuz: TensorProto.FLOAT8E5M2FNUZ,
           ml_dtypes.int4: TensorProto.INT4, ml_dtypes.uint4: TensorProto.UINT4, ml_dtypes.int2: TensorProto.INT2,
           ml_dtypes.uint2: TensorProto.UINT2, ml_dtypes.float4_e2m1fn: TensorProto.FLOAT4E2M1}


def check(model: Any, feeds: dict[str, np.ndarray]) -> None:
    (want,) = ReferenceEvaluator(model).run(None, feeds)
    (got,) = wasm_run(model, feeds)
    same_values(got, np.asarray(want))


@pytest.mark.parametrize("dtype", FLOAT8, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("saturate", [1, 0])
def test_quantize_to_float8_rounds_and_saturates_like_cast(dtype: type, saturate: int) -> None:
    x = probes()
    scale = np.array(0.75, np.float32)
    model = single_op_model("QuantizeLinear", {"x": x}, constants={"s": scale, "z": np.zeros((), dtype)},
                            opset=21, saturate=saturate)
    check(model, {"x": x})


@pytest.mark.parametrize("dtype", [*FLOAT8, ml_dtypes.float4_e2m1fn], ids=lambda t: np.dtype(t).name)
def test_dequantize_every_pattern_of_a_narrow_float(dtype: type) -> None:
    x = np.arange(256 if dtype is not ml_dtypes.float4_e2m1fn else 16, dtype=np.uint8).view(dtype)
    check(single_op_model("DequantizeLinear", {"x": x}, constants={"s": np.array(2.5, np.float32)}, opset=23),
          {"x": x})
    scale = np.array(0.375, np.float32).astype(np.float16)  # the output takes the scale's type: float16
    check(single_op_model("DequantizeLinear", {"x": x}, constants={"s": scale}, opset=23), {"x": x})


@pytest.mark.parametrize("dtype", NARROW_INTS, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("layout", ["tensor", "axis", "blocked"])
def test_narrow_integers_both_ways(dtype: type, layout: str) -> None:
    """Quantize clamps to the type's range and keeps its low bits; Dequantize sign-extends them."""
    x = (rng.standard_normal((4, 6)) * 3).astype(np.float32)
    x[0, :4] = [0.5, 1.5, -2.5, 100.0]  # ties to even, far out of range
    low, high = int(ml_dtypes.iinfo(dtype).min), int(ml_dtypes.iinfo(dtype).max)
    attrs: dict[str, Any] = {}
    if layout == "tensor":
        shape: tuple[int, ...] = ()
    elif layout == "axis":
        shape, attrs = (6,), {"axis": 1}
    else:
        shape, attrs = (4, 3), {"axis": 1, "block_size": 2}
    scale = rng.uniform(0.25, 1.5, shape).astype(np.float32)
    zero = rng.integers(low, high + 1, shape).astype(dtype)
    check(single_op_model("QuantizeLinear", {"x": x, "s": scale}, constants={"z": zero}, opset=21, **attrs),
          {"x": x, "s": scale})
    q = rng.integers(low, high + 1, (4, 6)).astype(dtype)
    check(single_op_model("DequantizeLinear", {"q": q}, constants={"s": scale, "z": zero}, opset=21, **attrs),
          {"q": q})


def test_quantize_to_float4_adds_its_zero_point_and_saturates() -> None:
    x = np.concatenate([probes()[::37], np.linspace(-8, 8, 65, dtype=np.float32)])
    zero = np.array(0.5, np.float32).astype(ml_dtypes.float4_e2m1fn)
    model = single_op_model("QuantizeLinear", {"x": x}, constants={"s": np.array(1.5, np.float32), "z": zero},
                            opset=23)
    check(model, {"x": x})


@pytest.mark.parametrize("half", [np.float16, ml_dtypes.bfloat16], ids=lambda t: np.dtype(t).name)
def test_half_precision_float_side(half: type) -> None:
    """x / scale is rounded to x's type first (numpy computes in it), the dequantized value to the scale's."""
    x = (rng.standard_normal((3, 8)) * 40).astype(half)
    scale = rng.uniform(0.1, 2.0, (8,)).astype(half)
    for dtype in (np.int8, ml_dtypes.int4, ml_dtypes.float8_e4m3fn):
        model = single_op_model("QuantizeLinear", {"x": x}, constants={"s": scale, "z": np.zeros(8, dtype)},
                                opset=21, axis=1)
        check(model, {"x": x})
    q = rng.integers(-128, 128, (3, 8)).astype(np.int8)
    check(single_op_model("DequantizeLinear", {"q": q}, constants={"s": scale}, opset=21, axis=1), {"q": q})
    # every finite value of the type within ±1000: quotients a float32 rounding away from a tie that the
    # type's own rounding lands on (quantized from the float32 quotient, some would round the other way)
    every = np.arange(65536, dtype=np.uint16).view(half)
    every = every[np.isfinite(every.astype(np.float32)) & (np.abs(every.astype(np.float32)) <= 1000)]
    for dtype in (np.int16, ml_dtypes.float8_e5m2):
        model = single_op_model("QuantizeLinear", {"x": every}, opset=21,
                                constants={"s": np.array(0.3, half), "z": np.zeros((), dtype)})
        check(model, {"x": every})


def test_output_dtype_without_a_zero_point() -> None:
    x = (rng.standard_normal((2, 5)) * 9).astype(np.float32)
    for dtype in (ml_dtypes.int4, ml_dtypes.float8_e5m2):
        model = single_op_model("QuantizeLinear", {"x": x}, constants={"s": np.array(0.5, np.float32)}, opset=21,
                                output_dtype=TYPE_OF[dtype])
        check(model, {"x": x})
    q = np.arange(10, dtype=np.uint8).reshape(2, 5)
    model = single_op_model("DequantizeLinear", {"q": q}, constants={"s": np.array(0.5, np.float32)}, opset=23,
                            output_dtype=TensorProto.BFLOAT16)
    check(model, {"q": q})


def test_precision_is_refused_by_name() -> None:
    x = np.ones((2, 3), np.float32)
    model = single_op_model("QuantizeLinear", {"x": x}, constants={"s": np.array(0.5, np.float32),
                                                                  "z": np.zeros((), ml_dtypes.float8_e4m3fn)},
                            opset=25, precision=TensorProto.FLOAT)
    with pytest.raises(UnsupportedModel, match="precision attribute is not supported"):
        convert_onnx(model)
