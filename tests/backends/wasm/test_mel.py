"""MelWeightMatrix whose parameters each run gives (emitters/mel.py): one module, the five parameters declared,
against ONNX's reference at several values; and the float64 log and exp it computes them with."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
import wasmtime
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from wasinfer.artifact import convert_onnx
from wasinfer.backends.wasm.emitters.mel import push_exp, push_log
from wasinfer.backends.wasm.writer import F64, Module
from wasinfer.runtime import WasmModel
from wasinfer.runtime.base import InputError

NAMES = ("num_mel_bins", "dft_length", "sample_rate", "lower_edge_hertz", "upper_edge_hertz")


def mel_model() -> onnx.ModelProto:
    types = (TensorProto.INT64, TensorProto.INT64, TensorProto.INT64, TensorProto.FLOAT, TensorProto.FLOAT)
    graph = helper.make_graph([helper.make_node("MelWeightMatrix", list(NAMES), ["y"])], "mel",
                              [helper.make_tensor_value_info(n, t, []) for n, t in zip(NAMES, types, strict=True)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_one_module_serves_every_declared_parameter() -> None:
    model = mel_model()
    ranges = {"num_mel_bins": (1, 40), "dft_length": (8, 512), "sample_rate": (1000, 48000),
              "lower_edge_hertz": (0.0, 24000.0), "upper_edge_hertz": (0.0, 24000.0)}
    module = WasmModel(convert_onnx(model, input_values=ranges).wasm)
    for bins, dft, rate, low, high in ((8, 16, 8192, 0.0, 4096.0), (40, 512, 16000, 20.0, 8000.0),
                                       (23, 400, 22050, 125.0, 7600.0), (1, 8, 1000, 0.0, 500.0),
                                       (13, 257, 44100, 300.0, 11025.0)):
        feeds = {"num_mel_bins": np.array(bins, np.int64), "dft_length": np.array(dft, np.int64),
                 "sample_rate": np.array(rate, np.int64), "lower_edge_hertz": np.array(low, np.float32),
                 "upper_edge_hertz": np.array(high, np.float32)}
        want, got = ReferenceEvaluator(model).run(None, feeds)[0], module.run(feeds)["y"]
        assert got.shape == want.shape == (dft // 2 + 1, bins)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=str((bins, dft, rate, low, high)))
    with pytest.raises(InputError, match=r"input 'num_mel_bins': its values must lie in 1..40"):
        module.run({**feeds, "num_mel_bins": np.array(41, np.int64)})


@pytest.mark.parametrize("function", ["exp", "log"])
def test_float64_exp_and_log_are_within_a_few_units_in_the_last_place(function: str) -> None:
    """The kernel's bins are floors of values computed with these: they must hold float64's precision."""
    module = Module()
    index, f = module.reserve([F64], [F64], name=function)
    (push_exp if function == "exp" else push_log)(f, 0)
    module.export_func(function, index)
    store = wasmtime.Store()
    run = wasmtime.Instance(store, wasmtime.Module(store.engine, module.encode()), []).exports(store)[function]
    points = np.linspace(-20, 20, 401) if function == "exp" else np.geomspace(1e-6, 1e6, 401)
    for x in points:
        want = math.exp(x) if function == "exp" else math.log(x)
        assert abs(run(store, float(x)) - want) <= 4 * math.ulp(want) + 1e-300, x
