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
from wasinfer.runtime.base import InputError

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
    """A position read at run time, an empty optional read: each names the node and why; a sequence the graph
    takes as an input without a declared count names the input and the option."""
    at = _model([helper.make_node("SequenceConstruct", ["a", "b"], ["s"], name="pair"),
                 helper.make_node("SequenceAt", ["s", "i"], ["y"], name="pick")],
                {"a": (FLOAT, [2]), "b": (FLOAT, [2]), "i": (TensorProto.INT64, [])}, ["y"])
    with pytest.raises(UnsupportedModel, match=r"'pick'.*position 'i' is computed at run time"):
        convert_onnx(at)
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


def test_pieces_of_split_sizes_read_at_run_time() -> None:
    """SplitToSequence of a vector of sizes the run gives: one Split of run-time sizes makes every piece, each at
    its run's shape, read by SequenceAt and returned as the sequence itself (ONNX's test_split_to_sequence_2)."""
    from onnx.reference import ReferenceEvaluator

    from wasinfer.runtime.wasm import WasmModel

    floats = helper.make_sequence_type_proto(helper.make_tensor_type_proto(FLOAT, None))
    model = _typed_model([helper.make_node("SplitToSequence", ["x", "sizes"], ["pieces"], axis=0, name="split"),
                          helper.make_node("SequenceAt", ["pieces", "zero"], ["first"])],
                         {"x": helper.make_tensor_type_proto(FLOAT, [6, 2]),
                          "sizes": helper.make_tensor_type_proto(TensorProto.INT64, [3])},
                         {"first": helper.make_tensor_type_proto(FLOAT, None), "pieces": floats},
                         {"zero": np.array(0, np.int64)})
    module = WasmModel(convert_onnx(model).wasm)
    x = _floats(6, 2)
    for sizes in ([1, 2, 3], [6, 0, 0], [0, 4, 2], [2, 2, 2]):
        feeds = {"x": x, "sizes": np.array(sizes, np.int64)}
        got = module.run(feeds)
        want = ReferenceEvaluator(model).run(None, feeds)
        _assert_same(got["first"], want[0])
        _assert_same(got["pieces"], want[1])
        assert [len(piece) for piece in got["pieces"]] == sizes


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


# ---------------------------------------------------------------- sequence and optional graph inputs and outputs

def _sequence_type(shape: list[int | None]) -> onnx.TypeProto:
    return helper.make_sequence_type_proto(helper.make_tensor_type_proto(FLOAT, shape))


def _typed_model(nodes: list[onnx.NodeProto], inputs: dict[str, onnx.TypeProto], outputs: dict[str, onnx.TypeProto],
                 constants: dict[str, np.ndarray] | None = None, opset: int = 18) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "lists", [helper.make_value_info(n, t) for n, t in inputs.items()],
                              [helper.make_value_info(n, t) for n, t in outputs.items()],
                              [numpy_helper.from_array(v, n) for n, v in (constants or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _assert_same(got: object, want: object) -> None:
    """A tensor, a list of tensors or None, exactly as ONNX's reference evaluator gives it."""
    if want is None:
        assert got is None
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    else:
        assert isinstance(got, np.ndarray)
        np.testing.assert_allclose(got, np.asarray(want), rtol=1e-5, atol=1e-6)


def test_one_module_takes_sequences_of_every_count_and_element_length_in_range() -> None:
    """--sequence s=2..4 with each element's length 1..8: one module, its count and every element's dims given by
    each run; SequenceLength, SequenceAt from the front, and the sequence returned, against ONNX's reference
    evaluator at three counts and mixed lengths."""
    from onnx.reference import ReferenceEvaluator

    from wasinfer.runtime.wasm import WasmModel

    nodes = [helper.make_node("SequenceLength", ["s"], ["n"]),
             helper.make_node("SequenceAt", ["s", "zero"], ["first"]),
             helper.make_node("ReduceSum", ["first"], ["total"], keepdims=0),
             helper.make_node("SequenceAt", ["s", "one"], ["second"]), helper.make_node("Neg", ["second"], ["neg"]),
             helper.make_node("Identity", ["s"], ["back"])]
    model = _typed_model(nodes, {"s": _sequence_type(["N"])},  # as exporters write it: each element's N its own
                         {"n": helper.make_tensor_type_proto(TensorProto.INT64, []),
                          "total": helper.make_tensor_type_proto(FLOAT, []),
                          "neg": helper.make_tensor_type_proto(FLOAT, [None]), "back": _sequence_type([None])},
                         {"zero": np.array(0, np.int64), "one": np.array(1, np.int64)})
    result = convert_onnx(model, sequences={"s": (2, 4)}, input_shapes={"s": (8,)}, input_ranges={"s": {0: (1, 8)}})
    assert [t.name for t in result.metadata.inputs] == ["s.0", "s.1", "s.2", "s.3", "s.count"]
    assert [t.symbolic_dims for t in result.metadata.inputs[:2]] == [["s.0.0"], ["s.1.0"]]
    assert [(s.name, s.kind, s.count) for s in result.metadata.list_outputs] == [("back", "sequence", "back.count")]
    module, reference = WasmModel(result.wasm), ReferenceEvaluator(model)
    for sizes in [(3, 5), (1, 8, 2), (8, 8, 8, 1)]:
        given = [_floats(k) for k in sizes]
        got = module.run({"s": given})
        for name, want in zip(["n", "total", "neg", "back"], reference.run(None, {"s": given}), strict=True):
            _assert_same(got[name], want)
    with pytest.raises(InputError, match=r"input 's': a sequence of 2..4 tensors .*--sequence s=2..4.*, got 5"):
        module.run({"s": [_floats(2)] * 5})
    with pytest.raises(InputError, match=r"input 's': a sequence of 2..4 .* count \('s.count'\) gives more"):
        module.run({**{f"s.{i}": _floats(2) for i in range(4)}, "s.count": np.array(7, np.int64)}, tensors=True)


def test_a_sequence_of_a_fixed_count_is_edited_split_and_concatenated_in_one_module() -> None:
    """--sequence s=3..3: the list is known while compiling, so SequenceInsert, SequenceErase, ConcatFromSequence
    and SplitToSequence fold as for a list the graph builds, on elements whose lengths each run gives (1..6)."""
    from onnx.reference import ReferenceEvaluator

    from wasinfer.runtime.wasm import WasmModel

    nodes = [helper.make_node("SequenceInsert", ["s", "x", "zero"], ["s1"]),
             helper.make_node("SequenceErase", ["s1", "minus_one"], ["s2"]),
             helper.make_node("ConcatFromSequence", ["s2"], ["joined"], axis=0),
             helper.make_node("SplitToSequence", ["x", "two"], ["pieces"], axis=0)]
    model = _typed_model(nodes, {"s": _sequence_type([None]), "x": helper.make_tensor_type_proto(FLOAT, [4])},
                         {"joined": helper.make_tensor_type_proto(FLOAT, [None]), "pieces": _sequence_type([None])},
                         {"zero": np.array(0, np.int64), "minus_one": np.array(-1, np.int64),
                          "two": np.array(2, np.int64)})
    result = convert_onnx(model, sequences={"s": (3, 3)}, input_shapes={"s": (6,)}, input_ranges={"s": {0: (1, 6)}})
    assert "s.count" not in [t.name for t in result.metadata.inputs]  # a fixed count: no count to give
    module, reference = WasmModel(result.wasm), ReferenceEvaluator(model)
    for sizes in [(1, 2, 3), (6, 6, 6), (4, 1, 5)]:
        given = {"s": [_floats(k) for k in sizes], "x": _floats(4)}
        got = module.run(given)
        for name, want in zip(["joined", "pieces"], reference.run(None, given), strict=True):
            _assert_same(got[name], want)
    with pytest.raises(InputError, match=r"input 's': a sequence of exactly 3 tensors"):
        module.run({"s": [_floats(2)] * 2, "x": _floats(4)})


def test_an_if_decided_at_run_time_returns_sequences_and_optionals() -> None:
    """Branches that return lists of different lengths (the count chosen by the condition) and an optional present
    on one side only (its flag chosen so), against the reference evaluator for both conditions."""
    from onnx.reference import ReferenceEvaluator

    from wasinfer.runtime.wasm import WasmModel

    element = helper.make_tensor_type_proto(FLOAT, [3])
    then = helper.make_graph([helper.make_node("Neg", ["x"], ["a"]),
                              helper.make_node("SequenceConstruct", ["a", "x"], ["then_seq"]),
                              helper.make_node("Optional", ["a"], ["then_opt"])], "then", [],
                             [helper.make_value_info("then_seq", helper.make_sequence_type_proto(element)),
                              helper.make_value_info("then_opt", helper.make_optional_type_proto(element))])
    other = helper.make_graph([helper.make_node("Abs", ["x"], ["b"]),
                               helper.make_node("SequenceConstruct", ["b"], ["else_seq"]),
                               helper.make_node("Optional", [], ["else_opt"], type=element)], "else", [],
                              [helper.make_value_info("else_seq", helper.make_sequence_type_proto(element)),
                               helper.make_value_info("else_opt", helper.make_optional_type_proto(element))])
    model = _typed_model([helper.make_node("If", ["c"], ["seq", "opt"], then_branch=then, else_branch=other)],
                         {"c": helper.make_tensor_type_proto(TensorProto.BOOL, []), "x": element},
                         {"seq": helper.make_sequence_type_proto(element),
                          "opt": helper.make_optional_type_proto(element)})
    result = convert_onnx(model)
    assert [(s.name, s.count, s.present) for s in result.metadata.list_outputs] == [
        ("seq", "seq.count", None), ("opt", None, "opt.present")]
    module, reference = WasmModel(result.wasm), ReferenceEvaluator(model)
    for condition in (True, False):
        given = {"c": np.array(condition), "x": _floats(3)}
        got = module.run(given)
        sequence, _ = reference.run(None, given)  # (it gives an optional as a list of its tensor: checked below)
        _assert_same(got["seq"], sequence)
        _assert_same(got["opt"], -given["x"] if condition else None)
        assert len(got["seq"]) == (2 if condition else 1)


def test_a_loop_builds_the_sequence_it_returns() -> None:
    """ONNX's test_loop13_seq pattern: a Loop appends x[:i+1] to a sequence each iteration and the graph returns
    it, so its elements grow in length; the trip count a constant, unrolled (passes/loops.py)."""
    from onnx.reference import ReferenceEvaluator

    from wasinfer.runtime.wasm import WasmModel

    floats = helper.make_sequence_type_proto(helper.make_tensor_type_proto(FLOAT, None))
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["i", "one"], ["end"]), helper.make_node("Unsqueeze", ["end", "axes"], ["ends"]),
         helper.make_node("Slice", ["x", "starts", "ends"], ["part"]),
         helper.make_node("SequenceInsert", ["seq_in", "part"], ["seq_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []), helper.make_value_info("seq_in", floats)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_value_info("seq_out", floats)])
    model = _typed_model([helper.make_node("SequenceEmpty", [], ["empty"], dtype=FLOAT),
                          helper.make_node("Loop", ["trips", "yes", "empty"], ["built"], body=body)],
                         {"x": helper.make_tensor_type_proto(FLOAT, [5])}, {"built": floats},
                         {"trips": np.array(4, np.int64), "yes": np.array(True), "one": np.array(1, np.int64),
                          "axes": np.array([0], np.int64), "starts": np.array([0], np.int64)})
    x = _floats(5)
    got = WasmModel(convert_onnx(model).wasm).run({"x": x})
    _assert_same(got["built"], ReferenceEvaluator(model).run(None, {"x": x})[0])
    assert [a.shape for a in got["built"]] == [(1,), (2,), (3,), (4,)]


def test_optional_inputs_and_outputs_present_and_absent() -> None:
    """An optional tensor input: its presence given by each run (None when absent), read by OptionalHasElement and
    passed through to an optional output; OptionalGetElement on an absent one refuses the run, as ONNX fails it."""
    from wasinfer.runtime.wasm import WasmModel

    optional = helper.make_optional_type_proto(helper.make_tensor_type_proto(FLOAT, [2]))
    model = _typed_model([helper.make_node("OptionalHasElement", ["o"], ["has"]),
                          helper.make_node("Identity", ["o"], ["same"])],
                         {"o": optional}, {"has": helper.make_tensor_type_proto(TensorProto.BOOL, []),
                                           "same": optional})
    module = WasmModel(convert_onnx(model).wasm)
    assert [t.name for t in module.metadata.inputs] == ["o.present", "o.value"]
    for given in (_floats(2), None):  # (the reference evaluator cannot pass an absent optional through Identity)
        got = module.run({"o": given})
        _assert_same(got["has"], np.array(given is not None))
        _assert_same(got["same"], given)
    reads = _typed_model([helper.make_node("OptionalGetElement", ["o"], ["y"], name="get")], {"o": optional},
                         {"y": helper.make_tensor_type_proto(FLOAT, [2])})
    reader = WasmModel(convert_onnx(reads).wasm)
    x = _floats(2)
    np.testing.assert_array_equal(reader.run({"o": x})["y"], x)
    with pytest.raises(InputError, match=r"node 'get' \(OptionalGetElement\) reads 'o', which this run gives absent"):
        reader.run({"o": None})


def test_a_sequence_input_needs_its_count_and_a_count_each_run_decides_moves_nothing() -> None:
    """No --sequence: refused naming the input and the option; a run-time count read from the end, or by an op
    that would move elements by it, is refused naming the node and what to declare instead."""
    from wasinfer.frontends.lists import ListInputError, parse_sequence_counts

    counted = _typed_model([helper.make_node("SequenceLength", ["s"], ["n"])], {"s": _sequence_type([2])},
                           {"n": helper.make_tensor_type_proto(TensorProto.INT64, [])})
    with pytest.raises(FrontendError, match=r"input 's' is a sequence: give the most tensors .* --sequence s=MAX"):
        convert_onnx(counted)
    with pytest.raises(FrontendError, match=r"--sequence names unknown inputs: \['t'\]"):
        convert_onnx(counted, sequences={"t": (1, 2)})
    assert parse_sequence_counts(["s=3", "t=1..4"]) == {"s": (0, 3), "t": (1, 4)}
    with pytest.raises(ListInputError, match=r"--sequence 's=4..2'"):
        parse_sequence_counts(["s=4..2"])
    last = _typed_model([helper.make_node("SequenceAt", ["s", "minus_one"], ["y"], name="last")],
                        {"s": _sequence_type([2])}, {"y": helper.make_tensor_type_proto(FLOAT, [2])},
                        {"minus_one": np.array(-1, np.int64)})
    with pytest.raises(UnsupportedModel, match=r"'last'.*counts from the end of 's', whose count each run decides"):
        convert_onnx(last, sequences={"s": (1, 3)})
    joined = _typed_model([helper.make_node("ConcatFromSequence", ["s"], ["y"], axis=0, name="join")],
                          {"s": _sequence_type([2])}, {"y": helper.make_tensor_type_proto(FLOAT, [None])})
    with pytest.raises(UnsupportedModel, match=r"'join'.*'s' holds 1..3 tensors, a count each run decides"):
        convert_onnx(joined, sequences={"s": (1, 3)})


def test_a_loop_carries_an_optional_sequence_input_it_fills_when_absent() -> None:
    """ONNX's test_loop16_seq_none pattern: the first iteration's If asks whether the optional input is present
    (each run says) and starts from [0.0] if not; later iterations carry the sequence they built, which is never an
    optional (its OptionalHasElement folds to true, so their Ifs are inlined as constant ones)."""
    from wasinfer.runtime.wasm import WasmModel

    floats = helper.make_sequence_type_proto(helper.make_tensor_type_proto(FLOAT, None))
    maybe = helper.make_optional_type_proto(floats)
    start = helper.make_graph([helper.make_node("Constant", [], ["zero_f"], value=numpy_helper.from_array(
        np.array(0, np.float32))), helper.make_node("SequenceConstruct", ["zero_f"], ["fresh"])], "fresh", [],
        [helper.make_value_info("fresh", floats)])
    given = helper.make_graph([helper.make_node("OptionalGetElement", ["opt_in"], ["kept"])], "given", [],
                              [helper.make_value_info("kept", floats)])
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("OptionalHasElement", ["opt_in"], ["has"]), helper.make_node("Not", ["has"], ["none"]),
         helper.make_node("If", ["none"], ["seq"], then_branch=start, else_branch=given),
         helper.make_node("Add", ["i", "one"], ["end"]), helper.make_node("Unsqueeze", ["end", "axes"], ["ends"]),
         helper.make_node("Slice", ["x", "starts", "ends"], ["part"]),
         helper.make_node("SequenceInsert", ["seq", "part"], ["seq_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []), helper.make_value_info("opt_in", maybe)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_value_info("seq_out", floats)])
    model = _typed_model([helper.make_node("Loop", ["trips", "yes", "o"], ["built"], body=body)],
                         {"o": maybe, "x": helper.make_tensor_type_proto(FLOAT, [3])}, {"built": floats},
                         {"trips": np.array(3, np.int64), "yes": np.array(True), "one": np.array(1, np.int64),
                          "axes": np.array([0], np.int64), "starts": np.array([0], np.int64)})
    module = WasmModel(convert_onnx(model, sequences={"o": (1, 1)}, input_shapes={"o": ()}).wasm)
    x = _floats(3)
    for seed, first in ((None, np.array(0, np.float32)), ([np.array(7, np.float32)], np.array(7, np.float32))):
        _assert_same(module.run({"o": seed, "x": x})["built"], [first, x[:1], x[:2], x[:3]])


def test_appending_to_a_sequence_whose_count_each_run_decides() -> None:
    """SequenceInsert at the end of a --sequence s=1..3 input, twice: slot k takes the new tensor where the run's
    count is k (a Where on the count), so one module appends after 1, 2 or 3 tensors; the returned sequence and its
    length against the reference evaluator. A new tensor of another shape than the slots is refused naming why."""
    from onnx.reference import ReferenceEvaluator

    from wasinfer.runtime.wasm import WasmModel

    pairs = _sequence_type([2])
    nodes = [helper.make_node("Neg", ["x"], ["negated"]), helper.make_node("SequenceInsert", ["s", "x"], ["s2"]),
             helper.make_node("SequenceInsert", ["s2", "negated"], ["s3"]),
             helper.make_node("SequenceLength", ["s3"], ["n"])]
    model = _typed_model(nodes, {"s": pairs, "x": helper.make_tensor_type_proto(FLOAT, [2])},
                         {"s3": pairs, "n": helper.make_tensor_type_proto(TensorProto.INT64, [])})
    module, reference = WasmModel(convert_onnx(model, sequences={"s": (1, 3)}).wasm), ReferenceEvaluator(model)
    for count in (1, 2, 3):
        given = {"s": [_floats(2) for _ in range(count)], "x": _floats(2)}
        got = module.run(given)
        for name, want in zip(["s3", "n"], reference.run(None, given), strict=True):
            _assert_same(got[name], want)
    longer = _typed_model([helper.make_node("SequenceInsert", ["s", "x"], ["s2"], name="append")],
                          {"s": pairs, "x": helper.make_tensor_type_proto(FLOAT, [3])}, {"s2": _sequence_type([None])})
    with pytest.raises(UnsupportedModel, match=r"'append'.*must have the new tensor's type and shape; they differ"):
        convert_onnx(longer, sequences={"s": (1, 3)})
