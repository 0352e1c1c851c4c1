"""Sequences and optionals folded into the tensors they hold while compiling (passes/sequences.py), checked against
ONNX Runtime; what cannot be a compile-time list is refused with the reason."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.parity import assert_matches_ort
from wasinfer.artifact import convert_onnx
from wasinfer.frontends.onnx import FrontendError
from wasinfer.ir import UnsupportedModel

rng = np.random.default_rng(5)
FLOAT = TensorProto.FLOAT


def _model(nodes: list[onnx.NodeProto], inputs: dict[str, tuple[int, list[int]]], outputs: list[str],
           constants: dict[str, np.ndarray] | None = None, opset: int = 17) -> onnx.ModelProto:
    """The outputs typed as ONNX's inference types them (ONNX Runtime wants their types)."""
    graph = helper.make_graph(nodes, "sequences",
                              [helper.make_tensor_value_info(n, t, s) for n, (t, s) in inputs.items()], [],
                              [numpy_helper.from_array(v, n) for n, v in (constants or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    model.graph.output.extend(inferred[n] for n in outputs)
    return model


def _floats(*shape: int) -> np.ndarray:
    return rng.normal(size=shape).astype(np.float32)


def test_a_list_built_edited_and_read_at_constant_positions() -> None:
    """[a, b, c] → insert d at -1 → erase 0 → [b, d, c]; read at -1 and 1, its length, and a list built from empty."""
    nodes = [helper.make_node("SequenceConstruct", ["a", "b", "c"], ["s1"]),
             helper.make_node("SequenceInsert", ["s1", "d", "minus_one"], ["s2"]),
             helper.make_node("SequenceErase", ["s2", "zero"], ["s3"]),
             helper.make_node("SequenceAt", ["s3", "minus_one"], ["last"]),
             helper.make_node("SequenceAt", ["s3", "one"], ["second"]),
             helper.make_node("SequenceLength", ["s3"], ["length"]),
             helper.make_node("SequenceEmpty", [], ["e0"], dtype=FLOAT),
             helper.make_node("SequenceInsert", ["e0", "a"], ["e1"]),
             helper.make_node("SequenceInsert", ["e1", "b", "zero"], ["e2"]),
             helper.make_node("SequenceAt", ["e2", "zero"], ["front"]),
             helper.make_node("Add", ["last", "second"], ["sum"])]
    constants = {"zero": np.array(0, np.int64), "one": np.array(1, np.int64), "minus_one": np.array(-1, np.int64)}
    model = _model(nodes, {n: (FLOAT, [2, 3]) for n in "abcd"}, ["sum", "length", "front"], constants)
    assert_matches_ort(model, {n: _floats(2, 3) for n in "abcd"})
    assert not {"SequenceAt", "SequenceConstruct"} & set(convert_onnx(model).stats["ops"])  # type: ignore[arg-type]


@pytest.mark.parametrize("opset", [11, 17])
def test_split_to_sequence_and_concat_from_sequence(opset: int) -> None:
    """Pieces of one row each without keepdims, of a scalar size with a shorter last one, of given sizes; joined
    again on a new last axis and along an existing one."""
    nodes = [helper.make_node("SplitToSequence", ["x"], ["rows"], axis=0, keepdims=0),
             helper.make_node("ConcatFromSequence", ["rows"], ["stacked"], axis=-1, new_axis=1),
             helper.make_node("SplitToSequence", ["x", "two"], ["pairs"], axis=1),
             helper.make_node("SequenceLength", ["pairs"], ["count"]),
             helper.make_node("SequenceAt", ["pairs", "minus_one"], ["tail"]),
             helper.make_node("SplitToSequence", ["x", "sizes"], ["parts"], axis=1),
             helper.make_node("SequenceErase", ["parts", "zero"], ["rest"]),
             helper.make_node("ConcatFromSequence", ["rest"], ["joined"], axis=1)]
    constants = {"two": np.array(2, np.int64), "sizes": np.array([1, 3, 1], np.int64),
                 "zero": np.array(0, np.int64), "minus_one": np.array(-1, np.int64)}
    model = _model(nodes, {"x": (FLOAT, [3, 5])}, ["stacked", "count", "tail", "joined"], constants, opset)
    assert_matches_ort(model, {"x": _floats(3, 5)})


def test_sequence_map_inlines_its_body_per_element() -> None:
    """y_i = relu(row_i * w) + i-th row's sum over a list of rows, with a tensor input read whole by every copy."""
    body = helper.make_graph([helper.make_node("Mul", ["row", "w"], ["scaled"]),
                              helper.make_node("Relu", ["scaled"], ["positive"]),
                              helper.make_node("ReduceSum", ["row"], ["total"], keepdims=1),
                              helper.make_node("Add", ["positive", "total"], ["out"])], "body",
                             [helper.make_tensor_value_info("row", FLOAT, [4]),
                              helper.make_tensor_value_info("w", FLOAT, [4])],
                             [helper.make_tensor_value_info("out", FLOAT, [4])])
    nodes = [helper.make_node("SplitToSequence", ["x"], ["rows"], axis=0, keepdims=0),
             helper.make_node("SequenceMap", ["rows", "w"], ["mapped"], body=body),
             helper.make_node("ConcatFromSequence", ["mapped"], ["y"], axis=0, new_axis=1)]
    model = _model(nodes, {"x": (FLOAT, [3, 4]), "w": (FLOAT, [4])}, ["y"])
    assert_matches_ort(model, {"x": _floats(3, 4), "w": _floats(4)})


def test_optionals_known_while_compiling() -> None:
    """Optional(x) holds x, Optional() of a type holds nothing: whether each does is a constant, and the element of
    the first is x."""
    empty = helper.make_tensor_type_proto(FLOAT, [2])  # the element's type: an Optional of none
    nodes = [helper.make_node("Optional", ["x"], ["some"]), helper.make_node("Optional", [], ["none"], type=empty),
             helper.make_node("OptionalHasElement", ["some"], ["has_some"]),
             helper.make_node("OptionalHasElement", ["none"], ["has_none"]),
             helper.make_node("OptionalGetElement", ["some"], ["got"]), helper.make_node("Neg", ["got"], ["y"])]
    model = _model(nodes, {"x": (FLOAT, [2])}, ["has_some", "has_none", "y"], opset=18)
    assert_matches_ort(model, {"x": _floats(2)})


def test_what_is_no_compile_time_list_is_refused_with_the_reason() -> None:
    """A position read at run time, a piece of run-time sizes read, an empty optional read: each names the node and
    why; a sequence the graph takes as an input without a declared count names the input and the option."""
    at = _model([helper.make_node("SequenceConstruct", ["a", "b"], ["s"], name="pair"),
                 helper.make_node("SequenceAt", ["s", "i"], ["y"], name="pick")],
                {"a": (FLOAT, [2]), "b": (FLOAT, [2]), "i": (TensorProto.INT64, [])}, ["y"])
    with pytest.raises(UnsupportedModel, match=r"'pick'.*position 'i' is computed at run time"):
        convert_onnx(at)
    sizes = _model([helper.make_node("SplitToSequence", ["x", "sizes"], ["s"], axis=0, name="split"),
                    helper.make_node("SequenceAt", ["s", "zero"], ["y"], name="first")],
                   {"x": (FLOAT, [4, 2]), "sizes": (TensorProto.INT64, [2])}, ["y"], {"zero": np.array(0, np.int64)})
    with pytest.raises(UnsupportedModel, match=r"'first'.*'split' \(SplitToSequence\): its split sizes 'sizes' are "
                                               r"computed at run time"):
        convert_onnx(sizes)
    empty = helper.make_tensor_type_proto(FLOAT, [2])  # the element's type: an Optional of none
    nothing = _model([helper.make_node("Optional", [], ["none"], type=empty),
                      helper.make_node("OptionalGetElement", ["none"], ["y"], name="get")], {"x": (FLOAT, [2])},
                     ["y"], opset=18)
    with pytest.raises(UnsupportedModel, match=r"'get'.*reads an empty optional"):
        convert_onnx(nothing)
    taken = helper.make_model(helper.make_graph(
        [helper.make_node("SequenceLength", ["s"], ["n"])], "taken",
        [helper.make_value_info("s", helper.make_sequence_type_proto(helper.make_tensor_type_proto(FLOAT, [2])))],
        [helper.make_tensor_value_info("n", TensorProto.INT64, [])]), opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(FrontendError, match=r"input 's' is a sequence: give the most tensors it may hold with "
                                            r"--sequence s=MAX"):
        convert_onnx(taken)


def test_a_list_appended_to_in_an_unrolled_loop() -> None:
    """Scripted PyTorch's `out = []; for i in range(len(x)): out.append(x[i] * x[i]); torch.stack(out)`: a Loop
    carrying a sequence, unrolled (passes/loops.py), then folded like any other list."""
    element = helper.make_sequence_type_proto(helper.make_tensor_type_proto(FLOAT, [3]))
    body = helper.make_graph([helper.make_node("Gather", ["x", "i"], ["row"], axis=0),
                              helper.make_node("Mul", ["row", "row"], ["square"]),
                              helper.make_node("SequenceInsert", ["list_in", "square"], ["list_out"]),
                              helper.make_node("Identity", ["c_in"], ["c_out"])], "body",
                             [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                              helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
                              helper.make_value_info("list_in", element)],
                             [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
                              helper.make_value_info("list_out", element)])
    nodes = [helper.make_node("SequenceEmpty", [], ["empty"], dtype=FLOAT), helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Loop", ["n", "", "empty"], ["rows"], body=body),
             helper.make_node("ConcatFromSequence", ["rows"], ["y"], axis=0, new_axis=1)]
    model = _model(nodes, {"x": (FLOAT, [4, 3])}, ["y"], {"zero": np.array(0, np.int64)}, opset=13)
    assert_matches_ort(model, {"x": _floats(4, 3)})
