"""Inputs whose values are dims, declared with a range (--input-values, passes/values.py): one module for every
value in it against ONNX Runtime, a value outside it refused naming the input, uses that cannot be followed
refused by name, and the ONNX backend compiling such parameters once instead of binding them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import wasinfer
from tests.parity import ort_run
from wasinfer.artifact import convert_onnx
from wasinfer.cli.main import main
from wasinfer.ir import UnsupportedModel
from wasinfer.passes.values import parse_input_values
from wasinfer.runtime import InputError, WasmModel
from wasinfer.runtime.onnx_backend import VALUE_RANGE, WasinferBackend


def model(nodes: list[onnx.NodeProto], inputs: dict[str, tuple[int, list[int]]],
          outputs: dict[str, int]) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "values", [helper.make_tensor_value_info(n, t, s) for n, (t, s) in inputs.items()],
                              [helper.make_tensor_value_info(o, t, None) for o, t in outputs.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def constant_of_shape() -> onnx.ModelProto:
    fill = helper.make_tensor("value", TensorProto.FLOAT, [1], [2.5])
    return model([helper.make_node("ConstantOfShape", ["shape"], ["y"], value=fill)],
                 {"shape": (TensorProto.INT64, [2])}, {"y": TensorProto.FLOAT})


def tile() -> onnx.ModelProto:
    nodes = [helper.make_node("Tile", ["x", "repeats"], ["t"]), helper.make_node("Relu", ["t"], ["y"])]
    inputs = {"x": (TensorProto.FLOAT, [2, 3]), "repeats": (TensorProto.INT64, [2])}
    return model(nodes, inputs, {"y": TensorProto.FLOAT})


def test_one_module_makes_a_constant_of_every_declared_shape() -> None:
    source = constant_of_shape()
    result = convert_onnx(source, input_values={"shape": (0, 32)})
    [out] = result.metadata.outputs
    assert (out.shape, out.run_time_axes, out.symbolic_dims) == ([32, 32], [0, 1], ["shape[0]", "shape[1]"])
    assert result.metadata.compile_options["input_values"] == {"shape": [0, 32]}
    module = WasmModel(result.wasm)
    for shape in ([3, 4], [0, 5], [32, 32], [1, 1], [17, 2]):
        feeds = {"shape": np.array(shape, np.int64)}
        got, want = module.run(feeds)["y"], ort_run(source, feeds)[0]
        assert got.shape == want.shape == tuple(shape)
        np.testing.assert_array_equal(got, want)


def test_one_module_tiles_by_every_declared_repeat_and_what_follows_runs_at_that_size() -> None:
    source = tile()
    module = WasmModel(wasinfer.compile(source, input_values={"repeats": "0..8"}).wasm)
    x = np.random.default_rng(3).standard_normal((2, 3)).astype(np.float32)
    for repeats in ([1, 1], [3, 2], [0, 4], [8, 8], [2, 0]):
        feeds = {"x": x, "repeats": np.array(repeats, np.int64)}
        got, want = module.run(feeds)["y"], ort_run(source, feeds)[0]
        assert got.shape == want.shape, repeats
        np.testing.assert_array_equal(got, want)


def test_an_expand_to_declared_dims_and_a_range_to_a_declared_limit() -> None:
    """Expand broadcasts its dims of 1 to the values; Range(2, limit, 3) is as long as the limit says."""
    expand = model([helper.make_node("Expand", ["x", "shape"], ["y"])],
                   {"x": (TensorProto.FLOAT, [1, 1]), "shape": (TensorProto.INT64, [2])}, {"y": TensorProto.FLOAT})
    module = WasmModel(convert_onnx(expand, input_values={"shape": (1, 6)}).wasm)
    for shape in ([1, 1], [3, 5], [6, 6]):
        feeds = {"x": np.array([[7.0]], np.float32), "shape": np.array(shape, np.int64)}
        np.testing.assert_array_equal(module.run(feeds)["y"], ort_run(expand, feeds)[0])
    graph = helper.make_graph([helper.make_node("Range", ["start", "limit", "delta"], ["r"]),
                               helper.make_node("Neg", ["r"], ["y"])], "range",
                              [helper.make_tensor_value_info("limit", TensorProto.INT64, [])],
                              [helper.make_tensor_value_info("y", TensorProto.INT64, None)],
                              [numpy_helper.from_array(np.array(2, np.int64), "start"),
                               numpy_helper.from_array(np.array(3, np.int64), "delta")])
    counting = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    module = WasmModel(convert_onnx(counting, input_values={"limit": (0, 40)}).wasm)
    for limit in (0, 3, 4, 5, 20, 40):
        feeds = {"limit": np.array(limit, np.int64)}
        got, want = module.run(feeds)["y"], ort_run(counting, feeds)[0]
        assert got.shape == want.shape, limit
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("repeats", [[9, 1], [1, -1]], ids=["above", "below"])
def test_a_value_outside_the_declared_range_is_refused_naming_the_input(repeats: list[int]) -> None:
    module = WasmModel(convert_onnx(tile(), input_values={"repeats": (0, 8)}).wasm)
    x = np.ones((2, 3), np.float32)
    with pytest.raises(InputError, match=r"input 'repeats': its values must lie in 0\.\.8"):
        module.run({"x": x, "repeats": np.array(repeats, np.int64)})
    np.testing.assert_array_equal(module.run({"x": x, "repeats": np.array([1, 2], np.int64)})["y"], np.ones((2, 6)))


def test_values_used_other_than_as_dims_are_refused_by_node() -> None:
    """A value read as data (an Add) would be taken at the range's largest while compiling: refused, naming it."""
    nodes = [helper.make_node("Tile", ["x", "repeats"], ["y"]), helper.make_node("Add", ["repeats", "repeats"], ["z"])]
    source = model(nodes, {"x": (TensorProto.FLOAT, [2, 3]), "repeats": (TensorProto.INT64, [2])},
                   {"y": TensorProto.FLOAT, "z": TensorProto.INT64})
    with pytest.raises(UnsupportedModel, match=r"--input-values repeats: .*node 'Add_1' \(Add\) reads it as input 0"):
        convert_onnx(source, input_values={"repeats": (1, 4)})


@pytest.mark.parametrize(("spec", "message"), [
    ("repeats=4", "expected NAME=MIN..MAX"), ("repeats=a..4", "expected NAME=MIN..MAX"),
    ("repeats=5..4", "MIN must not be above MAX"), ("4..5", "expected NAME=MIN..MAX")])
def test_bad_value_ranges_are_refused_saying_what_is_expected(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_input_values([spec])


def test_ranges_are_integers_unless_a_bound_is_not() -> None:
    """`scales=0.5..4` is a float range (for an input a kernel reads), `repeats=1..8` stays integers."""
    ranges = parse_input_values(["scales=0.5..4", "repeats=1..8", "roi=-1..1e1"])
    assert ranges == {"scales": (0.5, 4.0), "repeats": (1, 8), "roi": (-1.0, 10.0)}
    assert all(isinstance(v, int) for v in ranges["repeats"]) and isinstance(ranges["scales"][1], float)
    with pytest.raises(ValueError, match=r"expected NAME=MIN..MAX"):
        parse_input_values(["scales=0.5..inf"])


def test_only_small_integer_inputs_of_the_model_can_be_declared() -> None:
    with pytest.raises(ValueError, match="has no input 'shape'"):
        convert_onnx(tile(), input_values={"shape": (1, 4)})
    with pytest.raises(ValueError, match="dtype float32"):
        convert_onnx(tile(), input_values={"x": (1, 4)})


def test_the_command_line_declares_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    onnx.save(constant_of_shape(), tmp_path / "fill.onnx")
    assert main(["convert", str(tmp_path / "fill.onnx"), "--input-values", "shape=1..16"]) == 0
    module = WasmModel((tmp_path / "fill.wasm").read_bytes())
    assert module.run({"shape": np.array([2, 7], np.int64)})["y"].shape == (2, 7)
    assert main(["convert", str(tmp_path / "fill.onnx"), "--input-values", "shape=1.5..16"]) == 2
    assert "expected NAME=MIN..MAX" in capsys.readouterr().err


def test_validate_draws_declared_values_from_their_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """validate's random inputs keep a declared input inside its range (3..8 here: 0..2 would be refused), and the
    module matches ONNX Runtime on them."""
    onnx.save(tile(), tmp_path / "tile.onnx")
    convert_then_validate(capsys, tmp_path / "tile.onnx", "repeats=3..8", samples=3)


def convert_then_validate(capsys: pytest.CaptureFixture[str], source: Path, values: str, samples: int) -> None:
    """`wasinfer convert SOURCE --input-values VALUES`, then `wasinfer validate` of the module against SOURCE on
    `samples` random inputs (drawn inside the declared ranges): every check passes."""
    assert main(["convert", str(source), "--input-values", values]) == 0
    capsys.readouterr()
    assert main(["validate", str(source.with_suffix(".wasm")), "--reference", str(source),
                 "--samples", str(samples), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and all(check["ok"] for check in report["checks"])


def test_the_backend_compiles_declared_values_once_and_binds_only_values_outside_them() -> None:
    source = tile()
    rep = WasinferBackend.prepare(source)
    assert rep.valued == {"repeats"} and not rep.bound
    x = np.random.default_rng(4).standard_normal((2, 3)).astype(np.float32)
    for repeats in ([1, 2], [4, 0], [VALUE_RANGE[1], 1], [VALUE_RANGE[1] + 3, 1]):
        feeds = {"x": x, "repeats": np.array(repeats, np.int64)}
        np.testing.assert_array_equal(rep.run(feeds)[0], ort_run(source, feeds)[0])
    assert len(rep.modules) == 1 and len(rep.by_value) == 1  # the last one, past the range, was bound
