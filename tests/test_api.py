"""The public API (`wasinfer.compile`, `wasinfer.load`): what a Python application sees of the compiler and runtime."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import wasinfer
from tests.hostile import looping_module
from tests.parity import ort_run

RNG = np.random.default_rng(5)


def conv_model() -> bytes:
    """A Conv over images of any width, then a mean over each channel."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["y"])]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(RNG.standard_normal((3, 2, 3, 3)).astype(np.float32), "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def test_importing_the_package_loads_neither_the_compiler_nor_the_engine() -> None:
    """`import wasinfer` in an application that only serves: onnx and wasmtime come with their first use."""
    probe = "import sys, wasinfer; print('onnx' in sys.modules, 'wasmtime' in sys.modules, wasinfer.__version__)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", wasinfer.__version__]
    with pytest.raises(AttributeError, match="no attribute 'compiler'"):
        wasinfer.compiler  # noqa: B018


@pytest.mark.parametrize("width", [(4, 40), "4..40", "1,2,8,4..40"])
def test_compile_then_load_then_run_in_three_lines(tmp_path: Path, width: object) -> None:
    """A range as a tuple, as --input-shape's text for one dim, or for the whole shape: one module for every width,
    written whole to `output`, loaded from the result, the path or the bytes."""
    source = conv_model()
    shape = width if isinstance(width, str) and "," in width else (1, 2, 8, width)
    module = wasinfer.compile(source, tmp_path / "conv.wasm", input_shapes={"x": shape})
    assert isinstance(module, wasinfer.Module) and (tmp_path / "conv.wasm").read_bytes() == module.wasm
    for loaded in (module, tmp_path / "conv.wasm", module.wasm):
        model = wasinfer.load(loaded)
        assert isinstance(model, wasinfer.Model)
        assert [(t.name, t.shape, t.ranges) for t in model.inputs] == [("x", [1, 2, 8, -1], {3: (4, 40)})]
        assert [t.name for t in model.outputs] == ["y"]
        for w in (4, 23, 40):
            x = RNG.standard_normal((1, 2, 8, w)).astype(np.float32)
            np.testing.assert_allclose(model.run({"x": x})["y"], ort_run(__import__("onnx").load_from_string(source),
                                                                         {"x": x})[0], rtol=1e-4, atol=1e-5)
    with pytest.raises(wasinfer.InputError, match=r"input 'x': axis 3 is 41, outside its range 4\.\.40"):
        model.run({"x": np.zeros((1, 2, 8, 41), np.float32)})


def test_what_cannot_compile_is_listed_and_nothing_is_written(tmp_path: Path) -> None:
    nodes = [helper.make_node("RandomUniformLike", ["x"], ["d"]), helper.make_node("Bernoulli", ["x"], ["b"])]
    graph = helper.make_graph(nodes, "bad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 3])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in "db"])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    with pytest.raises(wasinfer.UnsupportedModel) as raised:
        wasinfer.compile(model, tmp_path / "bad.wasm")
    assert len(raised.value.problems) == 2 and not (tmp_path / "bad.wasm").exists()


def test_calibration_is_the_directory_convert_takes_or_the_samples_themselves(tmp_path: Path) -> None:
    """README: `compile` takes convert's options as keywords; `calibration="samples/"` was read as a list of
    samples (one per character) and failed with "dictionary update sequence element #0 has length 1"."""
    from tests.artifact.test_calibrate import mlp, samples

    calibration = samples(8)
    (tmp_path / "samples").mkdir()
    for index, sample in enumerate(calibration):
        np.save(tmp_path / "samples" / f"{index}.npy", sample["x"])
    model = mlp()
    from_directory = wasinfer.compile(model, quantize="int8", calibration=str(tmp_path / "samples"))
    from_path = wasinfer.compile(model, quantize="int8", calibration=tmp_path / "samples")
    assert from_directory.wasm == from_path.wasm == wasinfer.compile(model, quantize="int8",
                                                                      calibration=calibration).wasm
    assert from_directory.metadata.compile_options["calibration_samples"] == 8
    with pytest.raises(ValueError, match="not a directory"):
        wasinfer.compile(model, quantize="int8", calibration=str(tmp_path / "missing"))


def test_a_deadline_stops_a_run_that_never_ends_and_a_memory_limit_refuses_what_does_not_fit() -> None:
    model = wasinfer.load(looping_module(), deadline_ms=200)
    x = np.ones((1, 4), np.float32)
    np.testing.assert_array_equal(model.run({"x": x})["y"], x)
    with pytest.raises(wasinfer.ModelFault, match="deadline"):
        model.run({"x": -x})
    module = wasinfer.compile(conv_model(), input_shapes={"x": (1, 2, 8, 16)})
    with pytest.raises(wasinfer.ModelFault, match=r"needs \d+ bytes of linear memory at instantiation, more than the "
                                                  r"instance memory cap of 10485 bytes"):
        wasinfer.load(module, memory_limit_mb=0.01)
