"""Range with a run-time start or delta (emitters/arange.py): one module, the three bounds declared, against
ONNX Runtime at several values — up and down, integer and float, empty — and the declarations it refuses."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from tests.parity import ort_run
from wasinfer.artifact import convert_onnx
from wasinfer.ir import UnsupportedModel
from wasinfer.runtime import ModelFault, WasmModel
from wasinfer.runtime.base import InputError


def range_model(dtype: int, opset: int = 11) -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("Range", ["start", "limit", "delta"], ["y"])], "range",
                              [helper.make_tensor_value_info(n, dtype, []) for n in ("start", "limit", "delta")],
                              [helper.make_tensor_value_info("y", dtype, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("dtype", [TensorProto.INT32, TensorProto.INT64])
def test_integer_bounds_serve_every_start_limit_and_delta(dtype: int) -> None:
    """Declared -20..20 each: up, down, uneven steps, empty (the wrong way round); a delta of 0 traps."""
    model = range_model(dtype)
    module = WasmModel(convert_onnx(model, input_values={n: (-20, 20) for n in ("start", "limit", "delta")}).wasm)
    np_type = helper.tensor_dtype_to_np_dtype(dtype)
    for start, limit, delta in ((10, 6, -3), (0, 5, 1), (-20, 20, 1), (3, 17, 4), (5, 1, 2), (-7, -19, -5),
                                (20, -20, -1), (2, 2, 3)):
        feeds = {"start": np.array(start, np_type), "limit": np.array(limit, np_type),
                 "delta": np.array(delta, np_type)}
        want, got = ort_run(model, feeds)[0], module.run(feeds)["y"]
        assert got.dtype == want.dtype and got.shape == want.shape, (start, limit, delta)
        np.testing.assert_array_equal(got, want)
    with pytest.raises(InputError, match=r"input 'limit': its values must lie in -20..20"):
        module.run({"start": np.array(0, np_type), "limit": np.array(21, np_type), "delta": np.array(1, np_type)})
    with pytest.raises(ModelFault, match="unreachable"):
        module.run({"start": np.array(0, np_type), "limit": np.array(5, np_type), "delta": np.array(0, np_type)})


def test_float_bounds_with_a_delta_declared_away_from_zero() -> None:
    model = range_model(TensorProto.FLOAT)
    module = WasmModel(convert_onnx(model, input_values={"start": (-8.0, 8.0), "limit": (-8.0, 8.0),
                                                         "delta": (0.25, 4.0)}).wasm)
    for start, limit, delta in ((1.0, 5.0, 2.0), (-8.0, 8.0, 0.25), (0.5, 0.6, 0.3), (3.0, -1.0, 1.0),
                                (-2.5, 7.1, 1.7)):
        feeds = {"start": np.array(start, np.float32), "limit": np.array(limit, np.float32),
                 "delta": np.array(delta, np.float32)}
        want, got = ort_run(model, feeds)[0], module.run(feeds)["y"]
        assert got.shape == want.shape, (start, limit, delta)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [TensorProto.FLOAT16, TensorProto.BFLOAT16])
def test_half_float_bounds_are_read_at_run_time(dtype: int) -> None:
    """float16 and bfloat16 bounds (no Wasm load for either: decoded from their bits) serve every value from one
    module, each value rounded once to the type, exactly as ONNX's reference computes it (ONNX Runtime has no
    float16 Range); a bound outside its declared range is refused naming the input (they were bound to their
    values, one module each)."""
    model = range_model(dtype, opset=27)
    module = WasmModel(convert_onnx(model, input_values={"start": (-8.0, 8.0), "limit": (-8.0, 8.0),
                                                         "delta": (0.0625, 4.0)}).wasm)
    np_type = helper.tensor_dtype_to_np_dtype(dtype)
    reference = ReferenceEvaluator(model)
    for start, limit, delta in ((1.0, 5.0, 2.0), (-8.0, 8.0, 0.0625), (-2.3, 7.1, 0.37), (0.1, 0.2, 0.3),
                                (3.0, -1.0, 1.0), (-7.7, 6.9, 0.111)):
        feeds = {"start": np.array(start, np_type), "limit": np.array(limit, np_type),
                 "delta": np.array(delta, np_type)}
        want, got = reference.run(None, feeds)[0], module.run(feeds)["y"]
        assert got.dtype == want.dtype and got.shape == want.shape, (start, limit, delta)
        np.testing.assert_array_equal(got.astype(np.float64), want.astype(np.float64))
    with pytest.raises(InputError, match=r"input 'delta': its values must lie in 0.0625..4"):
        module.run({"start": np.array(0, np_type), "limit": np.array(1, np_type), "delta": np.array(8, np_type)})


def test_a_float_delta_whose_range_holds_zero_or_an_undeclared_bound_is_refused_saying_why() -> None:
    with pytest.raises(UnsupportedModel, match=r"delta's declared range -1..1 includes 0"):
        convert_onnx(range_model(TensorProto.FLOAT), input_values={"start": (0.0, 1.0), "limit": (0.0, 9.0),
                                                                   "delta": (-1.0, 1.0)})
    with pytest.raises(UnsupportedModel, match=r"\['limit'\] computed at run time with no declared range"):
        convert_onnx(range_model(TensorProto.FLOAT), input_values={"start": (0.0, 1.0), "delta": (1.0, 2.0)})


def test_a_constant_start_and_delta_keep_the_folded_range_of_a_symbolic_limit() -> None:
    """Only the limit declared: the existing path (a constant at the largest, its length the limit's symbol)."""
    graph = helper.make_graph([helper.make_node("Range", ["start", "limit", "delta"], ["y"])], "range",
                              [helper.make_tensor_value_info("limit", TensorProto.INT64, [])],
                              [helper.make_tensor_value_info("y", TensorProto.INT64, None)],
                              [onnx.numpy_helper.from_array(np.array(v, np.int64), n)
                               for n, v in (("start", 0), ("delta", 1))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    result = convert_onnx(model, input_values={"limit": (0, 40)})
    assert "Range" not in result.stats["ops"]  # folded at the largest, cut to each run's limit
    module = WasmModel(result.wasm)
    np.testing.assert_array_equal(module.run({"limit": np.array(7, np.int64)})["y"], np.arange(7))
