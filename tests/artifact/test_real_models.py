"""The model zoo (tests/model_zoo.py) compiled end to end and compared with ONNX Runtime:
dynamic dims pinned with input_shapes, a run-time batch > 1 where the leading dim is the
batch, If inlined on shape facts or guarded on run-time conditions, recurrent layers,
attention."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests import model_zoo
from tests.artifact.test_wasi import npy_stream, run_wasmtime_wasi
from tests.parity import assert_matches_ort, ort_run, wasm_run
from wasinfer.artifact import convert_onnx
from wasinfer.backends.wasm.compiler import UnsupportedModel
from wasinfer.frontends import FrontendError
from wasinfer.runtime import InputError, WasmModel

rng = np.random.default_rng(21)


def images(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("build", [model_zoo.mobilenet_like, model_zoo.resnet_like])
def test_cnn_classifiers_with_a_run_time_batch(build: Callable[[], onnx.ModelProto]) -> None:
    model = build()
    assert_matches_ort(model, {"image": images(3, 3, 32, 32)}, max_batch=4)
    stats: dict[str, Any] = convert_onnx(model).stats
    assert stats["bn_folded"] and stats["kernels"] < len(model.graph.node)  # BN folded, activations fused


@pytest.mark.parametrize("width", [32, 44])
def test_crnn_with_its_width_given(width: int) -> None:
    model = model_zoo.crnn()
    assert_matches_ort(model, {"image": images(2, 1, 16, width)}, max_batch=2,
                       input_shapes={"image": (1, 1, 16, width)})


@pytest.mark.parametrize("length", [7, 16])
def test_transformer_encoder_with_padding_mask(length: int) -> None:
    model = model_zoo.transformer_encoder()
    ids = rng.integers(0, 64, (3, length)).astype(np.int64)
    mask = np.ones((3, length), np.int64)
    mask[1, length - 3:] = 0
    mask[2, 1:] = 0
    shapes: dict[str, tuple[int, ...]] = {"input_ids": (1, length), "attention_mask": (1, length)}
    assert_matches_ort(model, {"input_ids": ids, "attention_mask": mask}, max_batch=3, input_shapes=shapes,
                       atol=1e-4)
    result = convert_onnx(model, input_shapes=shapes)
    assert {"Shape", "Range", "ConstantOfShape", "Concat"}.isdisjoint(result.stats["ops"])  # type: ignore[arg-type]


@pytest.mark.parametrize("width", [8, 6, 3])
def test_if_on_a_shape_fact_is_inlined(width: int) -> None:
    """8: then-branch and nested then (Relu); 6: nested else (Abs); 3: the outer else."""
    model = model_zoo.if_model()
    assert_matches_ort(model, {"x": images(2, width) * 3}, max_batch=2, input_shapes={"x": (1, width)})
    assert "If" not in convert_onnx(model, input_shapes={"x": (1, width)}).stats["ops"]  # type: ignore[operator]


def _run_time_if(then_nodes: list[onnx.NodeProto], else_nodes: list[onnx.NodeProto], then_out: str, else_out: str,
                 shape: list[int], per_row: bool = False,
                 extra: list[onnx.TensorProto] | None = None) -> onnx.ModelProto:
    """y = If(sum(x) > 0, then, else) over x of `shape`, decided by the data (`per_row`: the sum of
    axis 1, so that a one-row x decides per sample)."""
    then_branch = helper.make_graph(then_nodes, "t", [], [helper.make_tensor_value_info(then_out, TensorProto.FLOAT,
                                                                                        None)])
    else_branch = helper.make_graph(else_nodes, "e", [], [helper.make_tensor_value_info(else_out, TensorProto.FLOAT,
                                                                                        None)])
    nodes = [helper.make_node("ReduceSum", ["x", "row"] if per_row else ["x"], ["s"], keepdims=0),
             helper.make_node("Greater", ["s", "zero"], ["positive"]),
             helper.make_node("If", ["positive"], ["y"], name="choose", then_branch=then_branch,
                              else_branch=else_branch)]
    graph = helper.make_graph(nodes, "if_rt", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [onnx.numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
                               onnx.numpy_helper.from_array(np.array(2.0, np.float32), "two"),
                               onnx.numpy_helper.from_array(np.array([1], np.int64), "row"), *(extra or [])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_if_on_a_run_time_condition_runs_the_branch_the_data_picks() -> None:
    """Both branches are compiled, guarded by the condition; the outer value x and the outer
    constant `two` are read inside them; a Where picks each output."""
    model = _run_time_if([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["r", "two"], ["a"])],
                         [helper.make_node("Neg", ["x"], ["b"])], "a", "b", [2, 3])
    for x in (np.ones((2, 3), np.float32), -np.ones((2, 3), np.float32), images(2, 3) - 0.5):
        assert_matches_ort(model, {"x": x})
    result = convert_onnx(model)
    assert "If" not in result.stats["ops"] and "Where" in result.stats["ops"]  # type: ignore[operator]


def test_run_time_ifs_nest_and_decide_per_sample() -> None:
    """An If inside a branch is guarded by both conditions; with a run-time batch each sample
    takes its own branch (the graph runs once per sample), as ONNX Runtime does on each row."""
    inner_then = helper.make_graph([helper.make_node("Abs", ["x"], ["p"])], "it", [],
                                   [helper.make_tensor_value_info("p", TensorProto.FLOAT, None)])
    inner_else = helper.make_graph([helper.make_node("Sigmoid", ["x"], ["q"])], "ie", [],
                                   [helper.make_tensor_value_info("q", TensorProto.FLOAT, None)])
    then_nodes = [helper.make_node("ReduceMax", ["x"], ["m"], axes=[1], keepdims=0),
                  helper.make_node("Greater", ["m", "two"], ["big"]),
                  helper.make_node("If", ["big"], ["a"], name="inner", then_branch=inner_then, else_branch=inner_else)]
    model = _run_time_if(then_nodes, [helper.make_node("Tanh", ["x"], ["b"])], "a", "b", [1, 4], per_row=True)
    rows = np.array([[3, 1, 1, 1], [0.5, 0.2, 0.1, 0.3], [-1, -2, -0.5, -3], [-4, 5, -1, 1]], np.float32)
    for row in rows:  # then/then, then/else, else, and a sample that crosses zero
        assert_matches_ort(model, {"x": row[None]})
    batched = onnx.ModelProto()
    batched.CopyFrom(model)
    batched.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    got = wasm_run(batched, {"x": rows}, max_batch=4)[0]
    want = np.concatenate([ort_run(model, {"x": row[None]})[0] for row in rows])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_if_whose_branches_differ_in_shape_is_refused() -> None:
    model = _run_time_if([helper.make_node("Relu", ["x"], ["a"])],
                         [helper.make_node("ReduceSum", ["x"], ["b"], keepdims=0)], "a", "b", [2, 3])
    says = r"'choose/output0'.*its branches give 'y' float32 \[2, 3\] and float32 \[\]"
    with pytest.raises(UnsupportedModel, match=says):
        convert_onnx(model)


def test_recurrent_stack() -> None:
    model = model_zoo.recurrent_model()
    x = images(6, 3, 8)
    assert_matches_ort(model, {"x": x}, input_shapes={"x": (6, 3, 8)})


def test_attention_block_with_a_run_time_batch() -> None:
    assert_matches_ort(model_zoo.attention_block(), {"x": images(3, 10, 16)}, max_batch=4, atol=1e-4)


def test_zoo_models_are_small() -> None:
    for build in model_zoo.ZOO.values():
        model = build()
        weights = sum(int(np.prod(init.dims)) * 4 for init in model.graph.initializer)
        assert 0 < weights < 2_000_000


# ---------------------------------------------------------------- a dynamic leading dim that is not a batch

def _one_node(op: str, dims: list[int | str], out_dims: list[int | str], inits: dict[str, np.ndarray] | None = None,
              **attrs: Any) -> onnx.ModelProto:
    inits = inits or {}
    graph = helper.make_graph([helper.make_node(op, ["x", *inits], ["y"], **attrs)], op,
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_dims)],
                              [onnx.numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


MIXING = [
    ("ReduceSum", ["N", 3], [1, 3], {"axes": np.array([0], np.int64)}, {}),
    ("Softmax", ["N", 3], ["N", 3], {}, {"axis": 0}),
    ("CumSum", ["N", 3], ["N", 3], {"axis": np.array(0, np.int64)}, {}),
    ("Gemm", ["N", 3], [3, 3], {"b": np.ones((4, 3), np.float32)}, {"transA": 1}),
    ("Flatten", ["N", 3], [1, "M"], {}, {"axis": 0}),
]


@pytest.mark.parametrize(("op", "dims", "out_dims", "inits", "attrs"), MIXING, ids=[m[0] for m in MIXING])
def test_a_leading_dim_that_mixes_samples_is_not_the_batch(op: str, dims: list[int | str],
                                                           out_dims: list[int | str], inits: dict[str, np.ndarray],
                                                           attrs: dict[str, object]) -> None:
    """Per-sample runs would give wrong answers, so the dim must be given and is compiled as is."""
    model = _one_node(op, dims, out_dims, inits, **attrs)
    with pytest.raises(FrontendError, match=f"cannot be a per-sample batch: node .*{op}"):
        convert_onnx(model)
    assert_matches_ort(model, {"x": images(4, 3)}, input_shapes={"x": (4, 3)})


def test_a_dynamic_time_axis_is_not_the_batch() -> None:
    model = model_zoo.recurrent_model()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "T"
    assert_matches_ort(model, {"x": images(6, 2, 8)}, input_shapes={"x": (6, 2, 8)})


def test_a_batch_moved_by_transpose_is_followed() -> None:
    """Softmax over the last axis is per sample before the Transpose, and mixes after it."""
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0]), helper.make_node("Softmax", ["t"], ["y"])]
    graph = helper.make_graph(nodes, "moved", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, "N"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    assert_matches_ort(model, {"x": images(5, 3)}, input_shapes={"x": (5, 3)})
    per_sample = _one_node("Softmax", ["N", 3], ["N", 3], axis=-1)
    assert_matches_ort(per_sample, {"x": images(5, 3)}, max_batch=8)


def test_an_if_on_the_batch_size_pins_the_batch() -> None:
    """`if x.shape[0] == 1:` decided per sample would always take the then-branch."""
    then_branch = helper.make_graph([helper.make_node("Relu", ["x"], ["a"])], "t", [],
                                    [helper.make_tensor_value_info("a", TensorProto.FLOAT, None)])
    else_branch = helper.make_graph([helper.make_node("Neg", ["x"], ["b"])], "e", [],
                                    [helper.make_tensor_value_info("b", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
             helper.make_node("Equal", ["n", "one"], ["single"]),
             helper.make_node("If", ["single"], ["y"], name="on_batch", then_branch=then_branch,
                              else_branch=else_branch)]
    graph = helper.make_graph(nodes, "if_batch", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                              [onnx.numpy_helper.from_array(np.array(v, np.int64), k)
                               for k, v in (("zero", 0), ("one", 1))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(FrontendError, match=r"'on_batch'.*depends on the batch size"):
        convert_onnx(model)
    for rows in (1, 3):
        assert_matches_ort(model, {"x": images(rows, 4)}, input_shapes={"x": (rows, 4)})


def test_a_reshape_target_folded_from_shape_arithmetic_gets_its_types() -> None:
    """ONNX's data propagation does not follow Div, so the frontend leaves the Reshape (and all
    after it) untyped; once folding makes the target constant, inference types them."""
    def i64(name: str, value: object) -> onnx.TensorProto:
        return onnx.numpy_helper.from_array(np.array(value, np.int64), name)

    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "two"], ["d"], axis=0),
             helper.make_node("Div", ["d", "four"], ["dh"]),
             helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
             helper.make_node("Gather", ["s", "one"], ["l"], axis=0),
             *[helper.make_node("Unsqueeze", [v, "ax0"], [v + "1"]) for v in ("b", "l", "dh")],
             helper.make_node("Concat", ["b1", "l1", "four1", "dh1"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["r"]),
             helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3]),
             helper.make_node("Softmax", ["t"], ["sm"], axis=-1),
             helper.make_node("ReduceMean", ["sm", "ax3"], ["y"], keepdims=0)]
    inits = [i64("two", 2), i64("four", 4), i64("zero", 0), i64("one", 1), i64("ax0", [0]), i64("four1", [4]),
             i64("ax3", [3])]
    graph = helper.make_graph(nodes, "div", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "S", 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    assert_matches_ort(model, {"x": images(3, 5, 32)}, max_batch=3, input_shapes={"x": (1, 5, 32)})


@pytest.mark.parametrize("batch", [1, 3])
def test_a_recurrent_state_carries_the_batch_on_axis_1(batch: int) -> None:
    """The batch's axis comes from the data flow: the state input [2, batch, hidden] carries it on
    axis 1 (its dim has the batch's name), and so does the next state the LSTM's outputs make."""
    model = model_zoo.stateful_recurrent()
    result = convert_onnx(model, max_batch=3)
    axes = {spec.name: spec.batch_axis for spec in result.metadata.inputs + result.metadata.outputs}
    assert axes == {"x": 0, "state": 1, "score": 0, "next_state": 1}
    state = images(2, batch, 5) - 0.5
    assert_matches_ort(model, {"x": images(batch, 6, 4), "state": state}, max_batch=3)


def _branch_for_other_sizes() -> onnx.ModelProto:
    """y = If(sum(x) > 0, 2·relu(x), its else branch written for another size): x has dynamic dims, compiled
    at [2, 3], but the else branch reshapes it to [4, -1] (as an exporter's branch for 8-element inputs
    would), which no shape fits: at [2, 3] that branch is not a computation, as Silero VAD's 8 kHz branch
    is not at 512 samples. ONNX Runtime, which loads it with dynamic dims, fails only a run that takes it."""
    return _run_time_if([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["r", "two"], ["a"])],
                        [helper.make_node("Reshape", ["x", "four_rows"], ["b"])], "a", "b", ["rows", "cols"],
                        extra=[onnx.numpy_helper.from_array(np.array([4, -1], np.int64), "four_rows")])


AT_2_BY_3 = {"x": (2, 3)}


def test_a_branch_that_cannot_run_at_the_compiled_shapes_is_refused_at_run_time_as_onnx_runtime_does() -> None:
    model = _branch_for_other_sizes()
    result = convert_onnx(model, AT_2_BY_3)
    assert len(result.metadata.run_errors) == 1 and "'choose' (If) takes its else branch" in \
        result.metadata.run_errors[0]
    taken = np.abs(images(2, 3)) + 0.1
    module = WasmModel(result.wasm)
    np.testing.assert_allclose(module.run({"x": taken})["y"], ort_run(model, {"x": taken})[0], rtol=1e-6)
    refused = -taken
    with pytest.raises(Exception, match="Reshape"):  # ONNX Runtime cannot run that branch either
        ort_run(model, {"x": refused})
    with pytest.raises(InputError, match=r"'choose' \(If\) takes its else branch, which cannot run at the compiled"):
        module.run({"x": refused})
    np.testing.assert_allclose(module.run({"x": taken})["y"], 2 * taken)  # the instance goes on


def test_the_wasi_command_reports_a_refused_branch_on_stderr_with_exit_status_2(tmp_path: Path) -> None:
    wasm = convert_onnx(_branch_for_other_sizes(), AT_2_BY_3, wasi=True).wasm
    x = -np.abs(images(2, 3)) - 0.1
    status, stdout, stderr = run_wasmtime_wasi(wasm, npy_stream(x), tmp_path)
    assert (status, stdout) == (2, b"")
    assert "wasinfer: node 'choose' (If) takes its else branch, which cannot run at the compiled input shapes" in stderr


def test_an_output_whose_batch_cannot_be_followed_is_refused_by_name() -> None:
    """Tile's batch is not followed; here it also stacks two copies of each sample on axis 0, so the
    per-sample results could not be laid out along the batch: convert says so instead of guessing."""
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Tile", ["x", "repeats"], ["y"])], "tile",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(np.array([2, 1], np.int64), "repeats")]),
        opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(UnsupportedModel, match=r"output 'y' \(shape \[2, 3\] per sample\).*cannot be followed"):
        convert_onnx(model, max_batch=2)
    one = convert_onnx(model)  # one sample per run: nothing to follow, the shapes are those compiled
    assert [spec.batch_axis for spec in one.metadata.inputs + one.metadata.outputs] == [None, None]
    assert_matches_ort(model, {"x": images(1, 3)})


def test_a_run_time_if_whose_branches_declare_no_types_takes_them_from_its_inlined_branches() -> None:
    """Exporters often declare branch outputs without shapes, so ONNX's inference leaves the If's
    outputs untyped; once inlined, the branches' values are typed and the If's outputs take their
    type (here through a Shape-folded Reshape in one branch)."""
    then_nodes = [helper.make_node("Shape", ["x"], ["shape"]), helper.make_node("Relu", ["x"], ["r"]),
                  helper.make_node("Reshape", ["r", "shape"], ["a"])]
    model = _run_time_if(then_nodes, [helper.make_node("Neg", ["x"], ["b"])], "a", "b", [2, 3])
    for branch in (model.graph.node[-1].attribute[0].g, model.graph.node[-1].attribute[1].g):
        assert not branch.output[0].type.tensor_type.HasField("shape")
    for x in (np.ones((2, 3), np.float32), -np.ones((2, 3), np.float32)):
        assert_matches_ort(model, {"x": x})
