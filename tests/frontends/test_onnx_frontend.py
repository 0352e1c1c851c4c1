"""ONNX → IR: dynamic dims, shape overrides, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from tests.parity import assert_matches_ort
from wasinfer.artifact import convert_onnx
from wasinfer.frontends import FrontendError, load_onnx, parse_shape_overrides
from wasinfer.runtime import WasmModel


def relu_model(dims: list[int | str], opset: int = 13) -> helper.ModelProto:
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_dynamic_leading_dim_is_the_batch() -> None:
    loaded = load_onnx(relu_model(["batch", 3]))
    assert loaded.batch_axes == {"x": 0}
    assert loaded.graph.info("x").shape == (1, 3)


def test_a_dim_named_like_the_batch_carries_it_on_its_axis() -> None:
    """A recurrent state [2, batch, 8] beside x [batch, 8]: the batch is its axis 1; one given with
    --input-shape is taken as given (no batch), and an unnamed dynamic dim still needs a size."""
    def model(state_dims: list[int | str]) -> helper.ModelProto:
        graph = helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["state"], ["z"])], "m",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8]),
             helper.make_tensor_value_info("state", TensorProto.FLOAT, state_dims)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
             helper.make_tensor_value_info("z", TensorProto.FLOAT, None)])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])

    loaded = load_onnx(model([2, "batch", 8]))
    assert loaded.batch_axes == {"x": 0, "state": 1}
    assert loaded.graph.info("state").shape == (2, 1, 8)
    assert load_onnx(model([2, "batch", 8]), {"state": (2, 3, 8)}).batch_axes == {"x": 0}
    with pytest.raises(FrontendError, match="--input-shape state="):
        load_onnx(model([2, "steps", 8]))


def test_a_leading_dim_given_above_1_is_fixed_not_the_batch() -> None:
    """`--input-shape x=32,8` on a dynamic leading dim means 32 rows through the graph at once (a
    sequence of windows), not a batch of one-row samples; given as 1 it stays the batch."""
    fixed = load_onnx(relu_model(["batch", 8]), {"x": (32, 8)})
    assert fixed.batch_axes == {} and fixed.graph.info("x").shape == (32, 8)
    assert load_onnx(relu_model(["batch", 8]), {"x": (1, 8)}).batch_axes == {"x": 0}


def test_other_dynamic_dims_need_an_override() -> None:
    with pytest.raises(FrontendError, match="--input-shape x="):
        load_onnx(relu_model(["batch", "len"]))
    loaded = load_onnx(relu_model(["batch", "len"]), {"x": (1, 7)})
    assert loaded.graph.info("y").shape == (1, 7)


def test_override_errors_are_specific() -> None:
    with pytest.raises(FrontendError, match="rank 2"):
        load_onnx(relu_model([2, 3]), {"x": (2, 3, 4)})
    with pytest.raises(FrontendError, match="fixed at 3"):
        load_onnx(relu_model([2, 3]), {"x": (2, 4)})
    with pytest.raises(FrontendError, match="unknown inputs"):
        load_onnx(relu_model([2, 3]), {"nope": (1,)})
    with pytest.raises(FrontendError, match="NAME=d0"):
        parse_shape_overrides(["1,2,3"])


def test_a_misspelt_input_name_is_what_the_error_names() -> None:
    """`--input-shape X=...` for a model whose dynamic input is `x`: the error names the unknown `X` and the
    model's inputs, rather than asking for the shape of `x` that the user believes was given."""
    with pytest.raises(FrontendError, match=r"unknown inputs: \['X'\]; the model's inputs are \['x'\]"):
        load_onnx(relu_model(["batch", "len"]), {"X": (1, 7)})
    with pytest.raises(FrontendError, match="not an integer or a range"):
        parse_shape_overrides(["x=a,b"])


def test_a_leading_range_is_the_batch_and_other_ranges_are_symbolic_dims() -> None:
    """`1..MAX` on the leading dim says what --max-batch says; any other range is a symbolic dim, compiled at its
    largest, whose range is kept by input and axis."""
    overrides = parse_shape_overrides(["x=1..8,3", "mask=1..8,5"])
    assert overrides.shapes == {"x": (1, 3), "mask": (1, 5)} and overrides.max_batch == 8
    assert overrides.batch_limit(None) == 8 and overrides.batch_limit(8) == 8
    assert parse_shape_overrides(["x=1,3"]).batch_limit(None) == 1
    with pytest.raises(FrontendError, match="disagree"):
        overrides.batch_limit(4)
    symbolic = parse_shape_overrides(["x=1,3,48,32..1280", "y=2..8,3"])
    assert symbolic.shapes == {"x": (1, 3, 48, 1280), "y": (8, 3)} and symbolic.max_batch is None
    assert symbolic.ranges == {"x": {3: (32, 1280)}, "y": {0: (2, 8)}}
    for bad in ("x=1,3,0..4", "x=1,3,9..4"):
        with pytest.raises(FrontendError, match=r"MIN\.\.MAX with 1 <= MIN <= MAX"):
            parse_shape_overrides([bad])
    with pytest.raises(FrontendError, match="different sizes"):
        parse_shape_overrides(["x=1..8,3", "y=1..4,3"])
    model = relu_model(["batch", 3])
    result = convert_onnx(model, {"x": overrides.shapes["x"]}, max_batch=overrides.batch_limit(None))
    assert result.metadata.max_batch == 8


def test_old_opsets_are_upgraded_by_onnx_version_converter() -> None:
    """An opset-6 Add with the legacy `broadcast` attribute compiles with numpy semantics."""
    graph = helper.make_graph([helper.make_node("Add", ["x", "b"], ["y"], broadcast=1)], "legacy",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4]),
                               helper.make_tensor_value_info("b", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 6)])
    x, b = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32), np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(WasmModel(convert_onnx(model).wasm).run({"x": x, "b": b})["y"], x + b)
    assert load_onnx(model).graph.opset == 9


def test_a_model_the_version_converter_cannot_upgrade_is_refused() -> None:
    graph = helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["y"])], "old",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    with pytest.raises(FrontendError, match="opset 8 is older than 9 and ONNX's version converter cannot"):
        load_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 8)]))


def scan8_model(lengths: bool = False) -> helper.ModelProto:
    """Opset 8's Scan: a running sum and its partial sums, per sample of a batch of 2, one sequence backwards."""
    body = helper.make_graph([helper.make_node("Add", ["s", "row"], ["s_out"]),
                              helper.make_node("Mul", ["s_out", "row2"], ["step"])], "body",
                             [helper.make_tensor_value_info(n, TensorProto.FLOAT, [3]) for n in ("s", "row", "row2")],
                             [helper.make_tensor_value_info(n, TensorProto.FLOAT, [3]) for n in ("s_out", "step")])
    node = helper.make_node("Scan", ["lens" if lengths else "", "init", "x", "z"], ["total", "steps"], body=body,
                            num_scan_inputs=2, directions=[0, 1])
    inputs = [helper.make_tensor_value_info("init", TensorProto.FLOAT, [2, 3]),
              helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 3]),
              helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 5, 3])]
    if lengths:
        inputs.append(helper.make_tensor_value_info("lens", TensorProto.INT32, [2]))
    graph = helper.make_graph([node], "scan8", inputs,
                              [helper.make_tensor_value_info("total", TensorProto.FLOAT, [2, 3]),
                               helper.make_tensor_value_info("steps", TensorProto.FLOAT, [2, 5, 3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 8)])


def test_an_opset_8_scan_runs_per_sample_of_its_batch_and_sequence_lengths_are_refused() -> None:
    """Scan-8 (a batch axis before the sequence, `directions`) as one opset-9 Scan per sample; the rest of the
    model goes through ONNX's version converter around it. A length per sample (sequence_lens) is refused."""
    rng = np.random.default_rng(2)
    feeds = {name: rng.standard_normal(shape).astype(np.float32)
             for name, shape in (("init", (2, 3)), ("x", (2, 5, 3)), ("z", (2, 5, 3)))}
    assert_matches_ort(scan8_model(), feeds)
    with pytest.raises(FrontendError, match="Scan at opset 8 with sequence_lens"):
        load_onnx(scan8_model(lengths=True))


def test_batched_run_matches_onnxruntime_sample_by_sample() -> None:
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    assert_matches_ort(relu_model(["N", 4]), {"x": x}, max_batch=8)


def test_a_declared_output_dim_is_a_guess_that_the_graphs_own_types_replace() -> None:
    """ONNX's inference cannot follow a ReduceProd of a Shape, so the frontend took the output's declared [n] with n
    as 1 (a batch, as ai.onnx.ml classifiers declare it): the module returned 1 value of 24. Silero VAD's sequence
    model declares its [sequence_length] output so and returned 1 probability of 32. Once folding makes the
    reshape target constant, the graph's own types replace the guess."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("ReduceProd", ["s"], ["p"], keepdims=1),
             helper.make_node("Reshape", ["x", "p"], ["y"])]
    graph = helper.make_graph(nodes, "flatten", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert load_onnx(model).graph.guessed == {"y"}  # what the frontend alone can say
    result = convert_onnx(model)
    assert [t.shape for t in result.metadata.outputs] == [[24]]
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    np.testing.assert_array_equal(WasmModel(result.wasm).run({"x": x})["y"], x.ravel())
