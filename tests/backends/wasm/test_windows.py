"""Hann, Hamming and Blackman windows whose size each run gives (emitters/windows.py): one module, the size
declared 1..64, against ONNX Runtime at several sizes, periodic and symmetric."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.parity import ort_run
from wasinfer.artifact import convert_onnx
from wasinfer.ir import UnsupportedModel
from wasinfer.runtime import WasmModel
from wasinfer.runtime.base import InputError


def window_model(op: str, periodic: int) -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node(op, ["size"], ["y"], periodic=periodic)], op,
                              [helper.make_tensor_value_info("size", TensorProto.INT64, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("periodic", [1, 0])
@pytest.mark.parametrize("op", ["HannWindow", "HammingWindow", "BlackmanWindow"])
def test_one_module_serves_every_window_size(op: str, periodic: int) -> None:
    model = window_model(op, periodic)
    module = WasmModel(convert_onnx(model, input_values={"size": (1, 64)}).wasm)
    for size in (10, 2, 64, 33, 1 if periodic else 3):
        feeds = {"size": np.array(size, np.int64)}
        want, got = ort_run(model, feeds)[0], module.run(feeds)["y"]
        assert got.shape == want.shape == (size,)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-7, err_msg=f"size {size}")


def test_a_size_outside_its_declared_range_is_refused_naming_the_input() -> None:
    module = WasmModel(convert_onnx(window_model("HannWindow", 1), input_values={"size": (1, 64)}).wasm)
    with pytest.raises(InputError, match=r"input 'size': its values must lie in 1..64"):
        module.run({"size": np.array(65, np.int64)})


def test_an_undeclared_run_time_size_is_refused_saying_how_to_declare_it() -> None:
    model = window_model("BlackmanWindow", 1)
    model.graph.output[0].type.tensor_type.shape.dim.add().dim_value = 10  # one example's shape, as ONNX's cases
    with pytest.raises(UnsupportedModel, match=r"size is computed at run time; .*--input-values"):
        convert_onnx(model)
