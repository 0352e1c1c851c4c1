"""Loop and Scan unrolled at compile time (passes/loops.py), checked against ONNX Runtime: trip counts that are
constants, that the data decides up to a bound, or that a declared input sets; scan outputs at the run's length."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import wasinfer
from tests.parity import assert_matches_ort, ort_run
from tests.passes.test_values import convert_then_validate
from wasinfer.artifact import convert_onnx
from wasinfer.cli.main import main
from wasinfer.ir import UnsupportedModel
from wasinfer.runtime import InputError, WasmModel

rng = np.random.default_rng(11)
FLOAT = TensorProto.FLOAT


def _model(nodes: list[onnx.NodeProto], inputs: dict[str, list[int | str]], outputs: list[str],
           constants: dict[str, np.ndarray] | None = None, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "loops", [helper.make_tensor_value_info(n, FLOAT, s) for n, s in inputs.items()],
                              [helper.make_tensor_value_info(n, FLOAT, None) for n in outputs],
                              [numpy_helper.from_array(v, n) for n, v in (constants or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _body(nodes: list[onnx.NodeProto], inputs: list[tuple[str, int]], outputs: list[tuple[str, int]],
          constants: dict[str, np.ndarray] | None = None) -> onnx.GraphProto:
    scalar = (TensorProto.INT64, TensorProto.BOOL)  # a Loop's iteration number and condition: ORT wants shape []
    return helper.make_graph(nodes, "body",
                             [helper.make_tensor_value_info(n, t, [] if t in scalar else None) for n, t in inputs],
                             [helper.make_tensor_value_info(n, t, None) for n, t in outputs],
                             [numpy_helper.from_array(v, n) for n, v in (constants or {}).items()])


def test_scan_with_states_reversed_inputs_and_output_axes() -> None:
    """Two states (a running sum and a running max), two scan inputs (one read backwards, one
    along axis 1), two scan outputs (one stacked on axis 1, one in reverse order)."""
    body = _body([helper.make_node("Add", ["s_in", "a"], ["s_out"]), helper.make_node("Max", ["m_in", "b"], ["m_out"]),
                  helper.make_node("Mul", ["s_out", "m_out"], ["prod"]),
                  helper.make_node("Sub", ["a", "scale"], ["diff"])],
                 [("s_in", FLOAT), ("m_in", FLOAT), ("a", FLOAT), ("b", FLOAT)],
                 [("s_out", FLOAT), ("m_out", FLOAT), ("prod", FLOAT), ("diff", FLOAT)])
    scan = helper.make_node("Scan", ["s0", "m0", "xa", "xb"], ["s", "m", "p", "d"], body=body, num_scan_inputs=2,
                            scan_input_directions=[1, 0], scan_input_axes=[0, 1], scan_output_axes=[1, 0],
                            scan_output_directions=[0, 1])
    model = _model([scan], {"s0": [3], "m0": [3], "xa": [5, 3], "xb": [3, 5]}, ["s", "m", "p", "d"],
                   {"scale": np.array(0.5, np.float32)})
    feeds = {"s0": rng.normal(size=3), "m0": rng.normal(size=3), "xa": rng.normal(size=(5, 3)),
             "xb": rng.normal(size=(3, 5))}
    assert_matches_ort(model, {k: v.astype(np.float32) for k, v in feeds.items()})
    assert "Scan" not in convert_onnx(model).stats["ops"]  # type: ignore[operator]


def test_loop_with_a_constant_trip_count_and_scan_outputs() -> None:
    body = _body([helper.make_node("Cast", ["i"], ["f"], to=FLOAT), helper.make_node("Mul", ["v_in", "f"], ["t"]),
                  helper.make_node("Add", ["t", "x"], ["v_out"]), helper.make_node("Identity", ["c_in"], ["c_out"]),
                  helper.make_node("Relu", ["v_out"], ["each"])],
                 [("i", TensorProto.INT64), ("c_in", TensorProto.BOOL), ("v_in", FLOAT)],
                 [("c_out", TensorProto.BOOL), ("v_out", FLOAT), ("each", FLOAT)])
    loop = helper.make_node("Loop", ["trips", "", "v0"], ["v", "stacked"], body=body)
    model = _model([loop], {"x": [2, 3], "v0": [2, 3]}, ["v", "stacked"], {"trips": np.array(4, np.int64)})
    assert_matches_ort(model, {"x": rng.normal(size=(2, 3)).astype(np.float32),
                               "v0": rng.normal(size=(2, 3)).astype(np.float32)})


def _halving_loop(trips: np.ndarray | None, scan_output: bool = False) -> onnx.ModelProto:
    """v = v / 2 while sum(v) > limit, at most `trips` times: it stops when the data says so."""
    nodes = [helper.make_node("Div", ["v_in", "two"], ["v_out"]), helper.make_node("ReduceSum", ["v_out"], ["s"],
                                                                                     keepdims=0),
             helper.make_node("Greater", ["s", "limit"], ["c_out"])]
    outputs = [("c_out", TensorProto.BOOL), ("v_out", FLOAT)]
    if scan_output:
        nodes.append(helper.make_node("Identity", ["v_out"], ["each"]))
        outputs.append(("each", FLOAT))
    body = _body(nodes, [("i", TensorProto.INT64), ("c_in", TensorProto.BOOL), ("v_in", FLOAT)], outputs)
    outer = ["v", "each"] if scan_output else ["v"]
    constants = {"two": np.array(2.0, np.float32), "limit": np.array(1.0, np.float32)}
    inputs: dict[str, list[int | str]] = {"v0": [4]}
    if trips is not None:
        constants["trips"] = trips
    else:
        inputs["trips_in"] = []
    nodes_out = [helper.make_node("ReduceSum", ["v0"], ["s0"], keepdims=0),
                 helper.make_node("Greater", ["s0", "limit"], ["c0"]),
                 helper.make_node("Loop", ["trips" if trips is not None else "trips_cast", "c0", "v0"], outer,
                                  body=body, name="halve")]
    if trips is None:
        nodes_out.insert(0, helper.make_node("Cast", ["trips_in"], ["trips_cast"], to=TensorProto.INT64))
    return _model(nodes_out, inputs, outer, constants)


@pytest.mark.parametrize("start", [0.5, 3.0, 20.0, 1000.0])
def test_loop_that_stops_at_a_run_time_condition(start: float) -> None:
    """0.5: no iteration; 3: two; 20: five; 1000: all eight (the trip count wins)."""
    model = _halving_loop(np.array(8, np.int64))
    assert_matches_ort(model, {"v0": np.full(4, start / 4, np.float32)})


def _matches_ort_at_each(model: onnx.ModelProto, wasm: WasmModel, runs: list[dict[str, np.ndarray]]) -> list[int]:
    """Run each feed through the one module and ONNX Runtime; returns each run's last output's length (a scan
    output's). A loop of no iterations gives its scan outputs at [0, *the body's shape] as ONNX says; ONNX Runtime
    gives [0] there (it cannot type a body it never ran), which is all that differs then."""
    lengths = []
    for feeds in runs:
        got = wasm.run(feeds)
        for output, want in zip([o.name for o in model.graph.output], ort_run(model, feeds), strict=True):
            if want.shape == (0,) and got[output].shape[:1] == (0,):
                continue
            assert got[output].shape == want.shape, (feeds, output, got[output].shape, want.shape)
            np.testing.assert_allclose(got[output], want, rtol=1e-5, atol=1e-6, err_msg=f"{feeds} {output}")
        lengths.append(len(got[model.graph.output[-1].name]))
    return lengths


def test_scan_outputs_of_a_loop_that_stops_at_a_run_time_condition_have_the_run_s_length() -> None:
    """One module: the halvings the data asks for (2, 5, or all 8) are the scan output's length, returned at the run's
    dims (ABI 2); no iteration gives [0, 4] (ONNX Runtime gives [0] there: it cannot type a body it never ran)."""
    model = _halving_loop(np.array(8, np.int64), scan_output=True)
    result = convert_onnx(model, simd="plain")
    assert result.metadata.abi_version == 2
    assert [o.shape for o in result.metadata.outputs] == [[4], [8, 4]]  # planned for the most iterations
    wasm = WasmModel(result.wasm)
    runs = [{"v0": np.full(4, start / 4, np.float32)} for start in (3.0, 20.0, 1000.0, 20.0)]
    assert _matches_ort_at_each(model, wasm, runs) == [2, 5, 8, 5]
    assert wasm.run({"v0": np.full(4, 0.5 / 4, np.float32)})["each"].shape == (0, 4)


def _summing_loop(trip_count: list[onnx.NodeProto], inputs: dict[str, tuple[int, list[int]]],
                  opset: int = 13) -> onnx.ModelProto:
    """acc = acc * x + i and a scan output of each acc, for the trip count `m` that `trip_count` computes."""
    body = _body([helper.make_node("Mul", ["acc_in", "x"], ["product"]),
                  helper.make_node("Cast", ["i"], ["step"], to=FLOAT),
                  helper.make_node("Add", ["product", "step"], ["acc_out"]),
                  helper.make_node("Identity", ["acc_out"], ["each"]),
                  helper.make_node("Identity", ["c_in"], ["c_out"])],
                 [("i", TensorProto.INT64), ("c_in", TensorProto.BOOL), ("acc_in", FLOAT)],
                 [("c_out", TensorProto.BOOL), ("acc_out", FLOAT), ("each", FLOAT)])
    nodes = [*trip_count, helper.make_node("Loop", ["m", "", "x"], ["acc", "steps"], body=body, name="sums")]
    graph = helper.make_graph(nodes, "loops", [helper.make_tensor_value_info(n, t, s) for n, (t, s) in inputs.items()],
                              [helper.make_tensor_value_info(n, FLOAT, None) for n in ("acc", "steps")],
                              [numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
                               numpy_helper.from_array(np.array(1, np.int64), "one")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_a_trip_count_the_data_decides_is_unrolled_to_its_largest_value() -> None:
    """M = how many of x's 6 values are positive (ReduceSum of a Cast of a Greater): at most 6, whatever the data
    (passes/bounds.py), so one module runs every count from 0 to 6, and the scan output has M rows."""
    count = [helper.make_node("Greater", ["x", "zero"], ["positive"]),
             helper.make_node("Cast", ["positive"], ["ones"], to=TensorProto.INT64),
             helper.make_node("ReduceSum", ["ones"], ["m"], keepdims=0)]
    model = _summing_loop(count, {"x": (FLOAT, [6])})
    result = convert_onnx(model, simd="plain")
    assert [o.shape for o in result.metadata.outputs] == [[6], [6, 6]]
    wasm = WasmModel(result.wasm)
    signs = [[1, 1, 1, 1, 1, 1], [1, -1, 1, -1, -1, 1], [-1] * 6, [-1, -1, -1, -1, -1, 1], [1, 1, -1, 1, 1, 1]]
    runs = [{"x": (np.array(s) * rng.uniform(0.5, 1.5, 6)).astype(np.float32)} for s in signs]
    assert _matches_ort_at_each(model, wasm, runs) == [6, 3, 0, 1, 5]


def test_a_trip_count_from_a_declared_input_runs_each_count_and_refuses_one_past_the_range() -> None:
    """M = n + 1 with n an input: no bound of its own, so the compiler asks for its range by name; declared
    (--input-values n=0..7) one module runs every n in it, and a run with n = 8 is refused naming the input, the range
    and the Loop."""
    model = _summing_loop([helper.make_node("Add", ["n", "one"], ["m"])],
                          {"x": (FLOAT, [3]), "n": (TensorProto.INT64, [])})
    with pytest.raises(UnsupportedModel, match=r"'sums'.*trip count 'm' is computed at run time and has no largest "
                                               r"value.*declare the range of 'n' with --input-values NAME=MIN..MAX"):
        convert_onnx(model)
    result = convert_onnx(model, simd="plain", input_values={"n": (0, 7)})
    assert result.metadata.outputs[1].shape == [8, 3]
    wasm = WasmModel(result.wasm)
    x = rng.uniform(0.5, 1.2, 3).astype(np.float32)
    runs = [{"x": x, "n": np.array(n, np.int64)} for n in (7, 0, 3, 5)]
    assert _matches_ort_at_each(model, wasm, runs) == [8, 1, 4, 6]
    with pytest.raises(InputError, match=r"input 'n': its values must lie in 0..7 .*trip count of Loop 'sums'"):
        wasm.run({"x": x, "n": np.array(8, np.int64)})


def test_the_command_line_declares_a_trip_count_s_range_and_validate_draws_inside_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """wasinfer convert --input-values n=2..6 for M = n + 1; validate's random n stay in 2..6, and the module's scan
    output matches ONNX Runtime's at each run's length."""
    model = _summing_loop([helper.make_node("Add", ["n", "one"], ["m"])],
                          {"x": (FLOAT, [3]), "n": (TensorProto.INT64, [])})
    onnx.save(model, tmp_path / "sums.onnx")
    convert_then_validate(capsys, tmp_path / "sums.onnx", "n=2..6", samples=4)


def test_onnx_s_range_function_body_runs_every_declared_start_limit_and_delta() -> None:
    """Range as ONNX defines it in its own ops (the backend suite's test_range_*_expanded): a Loop of
    ceil((limit - start) / delta) iterations, each carrying start + i * delta, stopped by a run-time condition. With
    the three inputs' ranges declared the count is at most 20, and one module gives every range in them."""
    body = onnx.defs.get_schema("Range", 11).function_body
    graph = helper.make_graph(list(body.node), "range",
                              [helper.make_tensor_value_info(n, TensorProto.INT32, []) for n in body.input],
                              [helper.make_tensor_value_info("output", TensorProto.INT32, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    result = convert_onnx(model, simd="plain", input_values={"start": (-10, 10), "limit": (-10, 10), "delta": (-3, -1)})
    assert result.metadata.outputs[0].shape == [20]
    wasm = WasmModel(result.wasm)
    cases = [(10, 6, -3), (10, -10, -1), (3, 5, -1), (10, -10, -3), (-4, -9, -2)]
    runs = [{n: np.array(v, np.int32) for n, v in zip(("start", "limit", "delta"), case, strict=True)}
            for case in cases]
    assert _matches_ort_at_each(model, wasm, runs) == [2, 20, 0, 7, 3]


def _float_range_body() -> onnx.ModelProto:
    """ONNX's Range as its function body over float inputs (the backend suite's
    test_range_float_type_positive_delta_expanded)."""
    body = onnx.defs.get_schema("Range", 11).function_body
    graph = helper.make_graph(list(body.node), "range",
                              [helper.make_tensor_value_info(n, FLOAT, []) for n in body.input],
                              [helper.make_tensor_value_info("output", FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])


def test_a_declared_most_iterations_unrolls_a_trip_count_with_no_bound() -> None:
    """Range as its function body over float inputs with nothing declared: a delta near 0 makes the count unbounded,
    so the Loop is refused naming it and the way out; with --max-iterations 40 (`wasinfer.compile(max_iterations=40)`)
    one module gives ONNX Runtime's range for every start, limit and delta, up or down, and a run that needs more than
    40 values (or a delta of 0) is refused naming the Loop."""
    model = _float_range_body()
    with pytest.raises(UnsupportedModel, match=r"trip count .* has no largest value.*--max-iterations N"):
        convert_onnx(model)
    result = wasinfer.compile(model, simd="plain", max_iterations=40)
    assert result.metadata.outputs[0].shape == [40] and result.metadata.compile_options["max_iterations"] == 40
    wasm = WasmModel(result.wasm)
    cases = [(1.0, 5.0, 2.0), (-3.5, 4.0, 0.25), (10.0, 6.0, -3.0), (0.5, 0.6, 0.3), (4.0, -1.0, 1.0), (0.0, 40.0, 1.0)]
    runs = [{n: np.array(v, np.float32) for n, v in zip(("start", "limit", "delta"), case, strict=True)}
            for case in cases]
    assert _matches_ort_at_each(model, wasm, runs) == [2, 30, 2, 1, 0, 40]
    for start, limit, delta in ((0.0, 41.0, 1.0), (0.0, 1.0, 0.0)):
        with pytest.raises(InputError, match=r"node '.*' \(Loop\): this run's trip count is above the 40 iterations"):
            wasm.run({"start": np.array(start, np.float32), "limit": np.array(limit, np.float32),
                      "delta": np.array(delta, np.float32)})


def test_the_command_line_declares_the_most_iterations(tmp_path: Path) -> None:
    """wasinfer convert refuses the float Range body (exit status 2) and compiles it with --max-iterations 30."""
    onnx.save(_float_range_body(), tmp_path / "range.onnx")
    assert main(["convert", str(tmp_path / "range.onnx"), "-o", str(tmp_path / "none.wasm")]) == 2
    assert not (tmp_path / "none.wasm").exists()
    assert main(["convert", str(tmp_path / "range.onnx"), "--max-iterations", "30"]) == 0
    wasm = WasmModel((tmp_path / "range.wasm").read_bytes())
    got = wasm.run({n: np.array(v, np.float32) for n, v in (("start", 2.0), ("limit", 9.0), ("delta", 2.5))})
    np.testing.assert_allclose(got["output"], [2.0, 4.5, 7.0])
    with pytest.raises(InputError, match=r"above the 30 iterations it was compiled for \(--max-iterations 30\)"):
        wasm.run({n: np.array(v, np.float32) for n, v in (("start", 0.0), ("limit", 31.0), ("delta", 1.0))})


def test_iterations_past_what_the_body_holds_stop_the_run_naming_the_loop() -> None:
    """ONNX's test_loop11: each iteration adds element i of a five-element constant, so a sixth would make the
    carried sum empty, which no compiled shape holds (ONNX Runtime fails such a run too). With the trip count declared
    0..12 the Loop is unrolled to five iterations, every count up to 5 and a run-time condition give ONNX Runtime's
    result from one module, and a count of 6..12 is refused naming the Loop and the iteration (the whole model was
    refused, and the backend suite's case bound the trip count to its value); 13 is outside the declared range."""
    body = _body([helper.make_node("Identity", ["cond_in"], ["cond_out"]),
                  helper.make_node("Add", ["i", "one"], ["end"]),
                  helper.make_node("Unsqueeze", ["i", "zero"], ["first"]),
                  helper.make_node("Unsqueeze", ["end", "zero"], ["last"]),
                  helper.make_node("Slice", ["x", "first", "last"], ["element"]),
                  helper.make_node("Add", ["y_in", "element"], ["y_out"]),
                  helper.make_node("Identity", ["y_out"], ["scan_out"])],
                 [("i", TensorProto.INT64), ("cond_in", TensorProto.BOOL), ("y_in", FLOAT)],
                 [("cond_out", TensorProto.BOOL), ("y_out", FLOAT), ("scan_out", FLOAT)],
                 {"x": np.arange(1, 6, dtype=np.float32), "one": np.array(1, np.int64),
                  "zero": np.array([0], np.int64)})
    graph = helper.make_graph([helper.make_node("Loop", ["trip", "cond", "y"], ["res_y", "res_scan"], name="sums",
                                                body=body)], "loop11",
                              [helper.make_tensor_value_info("trip", TensorProto.INT64, []),
                               helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
                               helper.make_tensor_value_info("y", FLOAT, [1])],
                              [helper.make_tensor_value_info(n, FLOAT, None) for n in ("res_y", "res_scan")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    wasm = WasmModel(convert_onnx(model, simd="plain", input_values={"trip": (0, 12)}).wasm)
    y = np.array([-2.0], np.float32)
    for trip in (5, 3, 1):
        feeds = {"trip": np.array(trip, np.int64), "cond": np.array(True), "y": y}
        got = wasm.run(feeds)
        for name, want in zip(("res_y", "res_scan"), ort_run(model, feeds), strict=True):
            assert got[name].shape == want.shape, (trip, name)
            np.testing.assert_allclose(got[name], want, rtol=1e-6)
    for trip, cond in ((0, True), (4, False)):  # no iteration: [0, 1] as ONNX says (ONNX Runtime returns [0])
        got = wasm.run({"trip": np.array(trip, np.int64), "cond": np.array(cond), "y": y})
        assert got["res_scan"].shape == (0, 1) and got["res_y"].tolist() == [-2.0]
    for trip in (6, 12):
        with pytest.raises(InputError, match=r"node 'sums' \(Loop\): iteration 5 cannot run at the compiled shapes"):
            wasm.run({"trip": np.array(trip, np.int64), "cond": np.array(True), "y": y})
    with pytest.raises(InputError, match=r"input 'trip': its values must lie in 0..12"):
        wasm.run({"trip": np.array(13, np.int64), "cond": np.array(True), "y": y})


def test_loops_the_compiler_cannot_bound_are_refused_with_the_reason() -> None:
    """A trip count cast from a float input has no range to declare (floats cannot be): refused naming the loop and
    the input; a Loop without a trip count at all, naming what it needs."""
    with pytest.raises(UnsupportedModel, match=r"'halve'.*trip count 'trips_cast' is computed at run time and has no "
                                               r"largest value.*'trips_in'"):
        convert_onnx(_halving_loop(None))
    endless = _halving_loop(np.array(8, np.int64))
    endless.graph.node[-1].input[0] = ""
    with pytest.raises(UnsupportedModel, match=r"'halve'.*without a trip count .*give it a trip count"):
        convert_onnx(endless)


def test_loop_whose_trip_count_static_shapes_fold() -> None:
    """PyTorch-style: the trip count is Shape(x)[0], a constant once shapes are static."""
    body = _body([helper.make_node("Add", ["v_in", "v_in"], ["v_out"]), helper.make_node("Identity", ["c_in"],
                                                                                       ["c_out"])],
                 [("i", TensorProto.INT64), ("c_in", TensorProto.BOOL), ("v_in", FLOAT)],
                 [("c_out", TensorProto.BOOL), ("v_out", FLOAT)])
    nodes = [helper.make_node("Shape", ["x"], ["shape"]), helper.make_node("Gather", ["shape", "zero"], ["n"]),
             helper.make_node("Loop", ["n", "", "x"], ["y"], body=body)]
    model = _model(nodes, {"x": [3, 2]}, ["y"], {"zero": np.array(0, np.int64)})
    assert_matches_ort(model, {"x": rng.normal(size=(3, 2)).astype(np.float32)})


def test_a_loop_over_a_symbolic_length_that_its_condition_stops_returns_the_steps_it_ran() -> None:
    """for i in range(len(x)): acc += x[i]; out.append(acc); stop once sum(acc) >= 10 — over a sequence of 1..12 rows:
    the steps it runs are the shorter of the run's length and where the sum crosses 10, one module for all."""
    body = _body([helper.make_node("Gather", ["x", "i"], ["row"], axis=0),
                  helper.make_node("Add", ["acc_in", "row"], ["acc_out"]),
                  helper.make_node("ReduceSum", ["acc_out"], ["total"], keepdims=0),
                  helper.make_node("Less", ["total", "limit"], ["c_out"]),
                  helper.make_node("Identity", ["acc_out"], ["each"])],
                 [("i", TensorProto.INT64), ("c_in", TensorProto.BOOL), ("acc_in", FLOAT)],
                 [("c_out", TensorProto.BOOL), ("acc_out", FLOAT), ("each", FLOAT)])
    nodes = [helper.make_node("Shape", ["x"], ["shape"]), helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
             helper.make_node("Loop", ["n", "", "init"], ["acc", "steps"], body=body, name="sums")]
    model = _model(nodes, {"x": ["T", 4]}, ["acc", "steps"],
                   {"zero": np.array(0, np.int64), "init": np.zeros(4, np.float32),
                    "limit": np.array(10.0, np.float32)}, opset=13)
    result = convert_onnx(model, {"x": (12, 4)}, input_ranges={"x": {0: (1, 12)}}, simd="plain")
    assert result.metadata.abi_version == 3
    wasm = WasmModel(result.wasm)
    rows = [np.full((t, 4), 0.5, np.float32) for t in (12, 3, 7, 1)]  # the sum crosses 10 at the 5th row
    assert _matches_ort_at_each(model, wasm, [{"x": x} for x in rows]) == [5, 3, 5, 1]
