"""Symbolic dims (--input-shape x=...,MIN..MAX): one module, every size in the range, ONNX Runtime's results."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.parity import ort_run
from wasinfer.artifact import convert_onnx
from wasinfer.ir import UnsupportedModel
from wasinfer.runtime import InputError, WasmModel

RNG = np.random.default_rng(7)


def model(nodes: list[onnx.NodeProto], inputs: dict[str, list[int | str]], outputs: list[str],
          inits: dict[str, np.ndarray] | None = None, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "symbolic", [helper.make_tensor_value_info(n, TensorProto.FLOAT, dims) for n, dims in inputs.items()],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(v, n) for n, v in (inits or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def weights(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def check_sizes(onnx_model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]],
                ranges: dict[str, dict[int, tuple[int, int]]], sizes: list[dict[str, tuple[int, ...]]],
                atol: float = 2e-5) -> WasmModel:
    """Compile once, then run every size against ONNX Runtime."""
    result = convert_onnx(onnx_model, shapes, input_ranges=ranges, simd="plain")
    assert result.metadata.abi_version == 3
    wasm = WasmModel(result.wasm)
    for size in [sizes[-1], *sizes]:  # the largest first: the smaller runs then meet what it left past their dims
        feeds = {name: RNG.standard_normal(shape).astype(np.float32) for name, shape in size.items()}
        want = ort_run(onnx_model, feeds)
        got = wasm.run(feeds)
        for output, expected in zip([o.name for o in onnx_model.graph.output], want, strict=True):
            assert got[output].shape == expected.shape, (size, output)
            np.testing.assert_allclose(got[output], expected, rtol=1e-4, atol=atol, err_msg=f"{size} {output}")
    return wasm


def test_a_conv_pool_softmax_stack_matches_at_every_width_and_refuses_widths_outside_the_range() -> None:
    """Conv with right padding and stride 2, max pooling with padding after, softmax over the symbolic axis:
    each reads across the symbolic axis, so each needs the part past the run's width filled (0 / -inf)."""
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 2], strides=[1, 2]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 3], strides=[2, 1], pads=[0, 0, 0, 2]),
             helper.make_node("Sub", ["p", "shift"], ["n"]),  # negatives: a 0 fill would win a max, -inf must
             helper.make_node("Softmax", ["n"], ["y"], axis=3)]
    onnx_model = model(nodes, {"x": [1, 3, 10, "W"]}, ["y"],
                       {"w": weights(4, 3, 3, 3), "b": weights(4), "shift": np.full((1,), 5, np.float32)})
    wasm = check_sizes(onnx_model, {"x": (1, 3, 10, 64)}, {"x": {3: (5, 64)}},
                       [{"x": (1, 3, 10, w)} for w in (5, 6, 17, 40, 64)])
    spec = wasm.metadata.inputs[0]
    assert (spec.run_time_axes, spec.ranges, spec.symbolic_dims) == ([3], [[5, 64]], ["W"])
    assert wasm.metadata.outputs[0].run_time_axes == [3]
    for width in (4, 65):
        with pytest.raises(InputError, match=rf"input 'x': axis 3 is {width}, outside its range 5\.\.64"):
            wasm.run({"x": RNG.standard_normal((1, 3, 10, width)).astype(np.float32)})
    with pytest.raises(InputError, match=r"expected shape \[1, 3, 10, 5\.\.64\]"):
        wasm.run({"x": RNG.standard_normal((1, 3, 11, 20)).astype(np.float32)})


def test_a_bidirectional_lstm_runs_for_the_runs_length() -> None:
    """The reverse direction starts at the run's last step, and the final states are the last real step's."""
    hidden, features = 6, 5
    nodes = [helper.make_node("LSTM", ["x", "w", "r", "b"], ["y", "h", "c"], hidden_size=hidden,
                              direction="bidirectional"),
             helper.make_node("Transpose", ["y"], ["t"], perm=[0, 2, 1, 3]),
             helper.make_node("Reshape", ["t", "flat"], ["f"]),
             helper.make_node("MatMul", ["f", "proj"], ["z"])]
    onnx_model = model(nodes, {"x": ["T", 1, features]}, ["z", "h", "c"],
                       {"w": weights(2, 4 * hidden, features), "r": weights(2, 4 * hidden, hidden),
                        "b": weights(2, 8 * hidden), "flat": np.array([0, 1, -1], np.int64),
                        "proj": weights(2 * hidden, 3)})
    check_sizes(onnx_model, {"x": (30, 1, features)}, {"x": {0: (1, 30)}},
                [{"x": (t, 1, features)} for t in (1, 2, 13, 30)])


def test_attention_over_a_symbolic_sequence_fills_the_softmax_and_the_contraction() -> None:
    """softmax(q k^T) v with the sequence symbolic: the softmax's axis gets -inf past the run's length, the
    second product contracts over it and gets 0."""
    d = 8
    nodes = [helper.make_node("MatMul", ["x", "wq"], ["q"]), helper.make_node("MatMul", ["x", "wk"], ["k"]),
             helper.make_node("MatMul", ["x", "wv"], ["v"]), helper.make_node("Transpose", ["k"], ["kt"], perm=[1, 0]),
             helper.make_node("MatMul", ["q", "kt"], ["s"]), helper.make_node("Softmax", ["s"], ["a"], axis=-1),
             helper.make_node("MatMul", ["a", "v"], ["y"]),
             helper.make_node("ReduceMean", ["y"], ["m"], axes=[0], keepdims=0)]
    onnx_model = model(nodes, {"x": ["T", d]}, ["y", "m"], {"wq": weights(d, d), "wk": weights(d, d),
                                                            "wv": weights(d, d)}, opset=13)
    check_sizes(onnx_model, {"x": (40, d)}, {"x": {0: (2, 40)}}, [{"x": (t, d)} for t in (2, 3, 21, 40)])


def test_shape_arithmetic_on_a_symbolic_dim_reshapes_at_the_runs_size() -> None:
    """x.view(n, c * h, w) as exporters write it: Shape → Gather → Mul → Concat → Reshape; then a global mean
    over the symbolic axis divides by the run's count."""
    index = {i: numpy_helper.from_array(np.array(i, np.int64), f"i{i}") for i in range(4)}
    nodes = [helper.make_node("Constant", [], [f"k{i}"], value=index[i]) for i in range(4)]
    nodes += [helper.make_node("Shape", ["x"], ["s"])]
    nodes += [helper.make_node("Gather", ["s", f"k{i}"], [f"g{i}"], axis=0) for i in range(4)]
    nodes += [helper.make_node("Mul", ["g1", "g2"], ["ch"]),
              *[helper.make_node("Unsqueeze", [n, "axis0"], [f"u{n}"]) for n in ("g0", "ch", "g3")],
              helper.make_node("Concat", ["ug0", "uch", "ug3"], ["target"], axis=0),
              helper.make_node("Reshape", ["x", "target"], ["r"]),
              helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1]),
              helper.make_node("ReduceMean", ["t"], ["m"], axes=[1], keepdims=1),
              helper.make_node("Sub", ["t", "m"], ["y"]),
              helper.make_node("GlobalAveragePool", ["x"], ["gap"])]
    onnx_model = model(nodes, {"x": [1, 2, 3, "W"]}, ["y", "gap"], {"axis0": np.array([0], np.int64)})
    check_sizes(onnx_model, {"x": (1, 2, 3, 50)}, {"x": {3: (1, 50)}}, [{"x": (1, 2, 3, w)} for w in (1, 7, 50)])


def test_inputs_that_share_a_dim_name_share_its_size() -> None:
    nodes = [helper.make_node("Add", ["a", "b"], ["y"])]
    onnx_model = model(nodes, {"a": [1, "T"], "b": [1, "T"]}, ["y"])
    wasm = check_sizes(onnx_model, {"a": (1, 9), "b": (1, 9)}, {"a": {1: (2, 9)}, "b": {1: (2, 9)}},
                       [{"a": (1, 2), "b": (1, 2)}, {"a": (1, 9), "b": (1, 9)}])
    with pytest.raises(InputError, match=r"input 'b': axis 1 is 5, but it is the dim 'T'"):
        wasm.run({"a": np.zeros((1, 4), np.float32), "b": np.zeros((1, 5), np.float32)})


def test_every_node_a_symbolic_dim_cannot_go_through_is_named_and_nothing_is_compiled() -> None:
    nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=1),
             helper.make_node("DepthToSpace", ["x"], ["n"], blocksize=2)]
    onnx_model = model(nodes, {"x": [1, 4, 3, "W"]}, ["f", "n"])
    with pytest.raises(UnsupportedModel) as raised:
        convert_onnx(onnx_model, {"x": (1, 4, 3, 16)}, input_ranges={"x": {3: (2, 16)}})
    problems = "\n".join(raised.value.problems)
    assert "node 'Flatten_0' (Flatten)" in problems and "moves elements across a symbolic axis" in problems
    assert "node 'DepthToSpace_1'" in problems and "cannot go through this op yet" in problems


@pytest.mark.parametrize("opset", [13, 18])  # ReduceMean's axes: an attribute, then an input
def test_instance_normalization_over_symbolic_axes_runs_as_its_parts(opset: int) -> None:
    """Per (sample, channel) mean and variance over a run's own H x W, the variance still a second pass over the
    deviations (an input of mean 5 and spread 3 keeps its precision)."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("InstanceNormalization", ["r", "scale", "bias"], ["n"], epsilon=1e-3),
             helper.make_node("Relu", ["n"], ["y"])]
    onnx_model = model(nodes, {"x": [1, 3, "H", "W"]}, ["y"], {"scale": weights(3), "bias": weights(3)}, opset=opset)
    result = convert_onnx(onnx_model, {"x": (1, 3, 24, 24)}, input_ranges={"x": {2: (5, 24), 3: (5, 24)}})
    wasm = WasmModel(result.wasm)
    for shape in ((1, 3, 24, 24), (1, 3, 5, 7), (1, 3, 17, 23)):
        x = (RNG.standard_normal(shape) * 3 + 5).astype(np.float32)
        np.testing.assert_allclose(wasm.run({"x": x})["y"], ort_run(onnx_model, {"x": x})[0], rtol=1e-4, atol=1e-4,
                                   err_msg=str(shape))


def test_layer_normalization_over_a_symbolic_axis_runs_as_its_parts_unless_its_statistics_are_read() -> None:
    """LayerNormalization over [4, T] (a scalar scale: nothing else broadcasts over a run-time length), against
    ONNX's reference evaluator; with its Mean output read, it is refused by name."""
    from onnx.reference import ReferenceEvaluator

    nodes = [helper.make_node("Add", ["x", "x"], ["r"]),
             helper.make_node("LayerNormalization", ["r", "scale", "bias"], ["y"], axis=1)]
    onnx_model = model(nodes, {"x": [1, 4, "T"]}, ["y"], {"scale": weights(1), "bias": weights(1)})
    wasm = WasmModel(convert_onnx(onnx_model, {"x": (1, 4, 40)}, input_ranges={"x": {2: (2, 40)}}).wasm)
    reference = ReferenceEvaluator(onnx_model)
    for length in (40, 2, 13):
        x = (RNG.standard_normal((1, 4, length)) + 2).astype(np.float32)
        np.testing.assert_allclose(wasm.run({"x": x})["y"], reference.run(None, {"x": x})[0], rtol=1e-4, atol=1e-5)
    nodes[1] = helper.make_node("LayerNormalization", ["r", "scale", "bias"], ["y", "mean"], axis=1)
    onnx_model = model(nodes, {"x": [1, 4, "T"]}, ["y", "mean"], {"scale": weights(1), "bias": weights(1)})
    with pytest.raises(UnsupportedModel, match=r"node 'LayerNormalization_1'.*its Mean or InvStdDev output is read"):
        convert_onnx(onnx_model, {"x": (1, 4, 40)}, input_ranges={"x": {2: (2, 40)}})


def test_a_range_whose_smallest_empties_a_dim_is_refused_naming_the_minimum() -> None:
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"])]
    onnx_model = model(nodes, {"x": [1, 1, "W"]}, ["y"], {"w": weights(1, 1, 5)})
    with pytest.raises(UnsupportedModel, match=r"at the ranges' smallest \(W=2\).*raise the range's MIN"):
        convert_onnx(onnx_model, {"x": (1, 1, 20)}, input_ranges={"x": {2: (2, 20)}})


def test_a_range_of_one_size_is_a_static_dim() -> None:
    """MIN == MAX compiles exactly as that fixed size does (ABI version 1, the same bytes)."""
    from wasinfer.frontends import parse_shape_overrides

    overrides = parse_shape_overrides(["x=1,1,16..16"])
    assert overrides.ranges == {} and overrides.shapes == {"x": (1, 1, 16)}
    onnx_model = model([helper.make_node("Conv", ["x", "w"], ["y"])], {"x": [1, 1, "W"]}, ["y"],
                       {"w": weights(1, 1, 3)})
    fixed = convert_onnx(onnx_model, {"x": (1, 1, 16)}, simd="plain")
    ranged = convert_onnx(onnx_model, overrides.shapes, input_ranges=overrides.ranges, simd="plain")
    assert ranged.metadata.abi_version == 1 and ranged.wasm[:-400] == fixed.wasm[:-400]


def test_a_range_of_multiples_lets_a_downsampled_map_meet_its_upsampled_copy() -> None:
    """An FPN's `up(conv_stride2(x)) + x` is only defined at even widths; MIN..MAX:STEP says so, and the dims meet.
    Without the step the compiler cannot tell, and names the node."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["d"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("ConvTranspose", ["d", "wt"], ["u"], strides=[2, 2]),
             helper.make_node("Resize", ["d", "", "scales"], ["r"], mode="nearest",
                              coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
             helper.make_node("Add", ["r", "x"], ["s"]), helper.make_node("Add", ["s", "u"], ["y"])]
    onnx_model = model(nodes, {"x": [1, 2, "H", "W"]}, ["y"],
                       {"w": weights(2, 2, 3, 3), "wt": weights(2, 2, 2, 2),
                        "scales": np.array([1, 1, 2, 2], np.float32)})
    ranges = {"x": {2: (8, 40, 8), 3: (8, 40, 8)}}
    wasm = check_sizes(onnx_model, {"x": (1, 2, 40, 40)}, ranges,
                       [{"x": (1, 2, h, w)} for h, w in ((8, 8), (16, 40), (24, 32), (40, 40))])
    assert wasm.metadata.inputs[0].steps == [8, 8]
    with pytest.raises(InputError, match=r"axis 3 is 12, not a multiple of 8 \(its range is 8\.\.40:8\)"):
        wasm.run({"x": np.zeros((1, 2, 8, 12), np.float32)})
    with pytest.raises(UnsupportedModel, match=r"node 'Add_3' \(Add\).*axis 2 is"):
        convert_onnx(onnx_model, {"x": (1, 2, 40, 40)}, input_ranges={"x": {2: (8, 40), 3: (8, 40)}})


@pytest.mark.parametrize("mode,coordinates,nearest", [
    ("linear", "half_pixel", "round_prefer_floor"),  # torch's bilinear upsampling
    ("linear", "asymmetric", "floor"),
    ("cubic", "pytorch_half_pixel", "floor"),
    ("nearest", "half_pixel", "round_prefer_floor"),  # ONNX's default nearest
    ("nearest", "asymmetric", "round_prefer_ceil"),  # rounds the last outputs onto the clamped edge
])
def test_a_resize_by_whole_factors_clamps_at_the_run_s_edge(mode: str, coordinates: str, nearest: str) -> None:
    """A source index past the run's last element is clamped to it: the part past the run's dims is filled with
    that element first, so the kernel (running over the largest layout) reads what clamping would."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Resize", ["r", "", "scales"], ["y"], mode=mode,
                              coordinate_transformation_mode=coordinates, nearest_mode=nearest)]
    onnx_model = model(nodes, {"x": [1, 2, "H", "W"]}, ["y"], {"scales": np.array([1, 1, 3, 2], np.float32)},
                       opset=13)
    check_sizes(onnx_model, {"x": (1, 2, 20, 24)}, {"x": {2: (3, 20), 3: (3, 24)}},
                [{"x": (1, 2, h, w)} for h, w in ((3, 3), (11, 17), (20, 5), (20, 24))], atol=1e-5)
    nodes[1] = helper.make_node("Resize", ["r", "", "scales"], ["y"], mode="linear",
                                coordinate_transformation_mode="align_corners")
    onnx_model = model(nodes, {"x": [1, 2, "H", "W"]}, ["y"], {"scales": np.array([1, 1, 2, 2], np.float32)},
                       opset=13)
    with pytest.raises(UnsupportedModel, match=r"node 'Resize_1'.*align_corners over a symbolic axis"):
        convert_onnx(onnx_model, {"x": (1, 2, 20, 24)}, input_ranges={"x": {2: (3, 20), 3: (3, 24)}})


def test_a_node_that_computes_with_a_symbolic_dim_reads_it_from_the_run() -> None:
    """x / width and x * sqrt(1 / width): the width is Shape(x)[3] cast to float, computed at run time rather than
    folded at the range's largest."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "three"], ["w"], axis=0),
             helper.make_node("Cast", ["w"], ["wf"], to=TensorProto.FLOAT),
             helper.make_node("Div", ["x", "wf"], ["scaled"]),
             helper.make_node("Reciprocal", ["wf"], ["inv"]), helper.make_node("Sqrt", ["inv"], ["root"]),
             helper.make_node("Mul", ["scaled", "root"], ["y"])]
    onnx_model = model(nodes, {"x": [1, 2, 3, "W"]}, ["y"], {"three": np.array(3, np.int64)})
    check_sizes(onnx_model, {"x": (1, 2, 3, 30)}, {"x": {3: (2, 30)}}, [{"x": (1, 2, 3, w)} for w in (2, 11, 30)])


def test_a_loop_whose_trip_count_is_a_symbolic_dim_runs_that_many_times() -> None:
    """for i in range(len(x)): acc = acc * 0.5 + x[i] — the trip count is Shape(x)[0]; unrolled to the range's
    largest, each iteration runs only while i < the run's length."""
    body = helper.make_graph(
        [helper.make_node("Gather", ["xs", "i"], ["row"], axis=0),
         helper.make_node("Mul", ["acc", "half"], ["decayed"]),
         helper.make_node("Add", ["decayed", "row"], ["acc_out"]),
         helper.make_node("Identity", ["cond"], ["cond_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("acc", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [4])],
        [numpy_helper.from_array(np.array(0.5, np.float32), "half")])
    nodes = [helper.make_node("Identity", ["x"], ["xs"]),
             helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Loop", ["n", "", "init"], ["y"], body=body)]
    onnx_model = model(nodes, {"x": ["T", 4]}, ["y"],
                       {"zero": np.array(0, np.int64), "init": np.zeros(4, np.float32)}, opset=13)
    check_sizes(onnx_model, {"x": (12, 4)}, {"x": {0: (1, 12)}}, [{"x": (t, 4)} for t in (1, 5, 12)])


def test_a_negative_index_along_a_symbolic_axis_counts_from_the_run_s_end() -> None:
    """x[-1] and x[-2] of a sequence: the last rows of each run, not of the largest; an index that some sizes in
    the range do not have is refused."""
    nodes = [helper.make_node("Gather", ["x", "last"], ["a"], axis=0),
             helper.make_node("Gather", ["x", "pair"], ["b"], axis=0), helper.make_node("Relu", ["b"], ["y"])]
    onnx_model = model(nodes, {"x": ["T", 3]}, ["a", "y"],
                       {"last": np.array(-1, np.int64), "pair": np.array([-2, 0], np.int64)})
    check_sizes(onnx_model, {"x": (9, 3)}, {"x": {0: (2, 9)}}, [{"x": (t, 3)} for t in (2, 5, 9)])
    with pytest.raises(UnsupportedModel, match=r"gathers index -2 along a symbolic axis as small as 1"):
        convert_onnx(onnx_model, {"x": (9, 3)}, input_ranges={"x": {0: (1, 9)}})


@pytest.mark.parametrize("backwards", [0, 1])
def test_a_scan_along_a_symbolic_axis_runs_the_run_s_length(backwards: int) -> None:
    """A running sum (its final state and every partial one) over a sequence of any length, forwards and backwards:
    unrolled to the largest, each step guarded by i < T; the partial sums are the run's T, and a sum over them (a
    reduction across the symbolic axis) sees only those. A scan output written in reverse is declined by name."""
    body = helper.make_graph([helper.make_node("Add", ["s", "row"], ["s_out"]),
                              helper.make_node("Identity", ["s_out"], ["echo"])], "body",
                             [helper.make_tensor_value_info("s", TensorProto.FLOAT, [3]),
                              helper.make_tensor_value_info("row", TensorProto.FLOAT, [3])],
                             [helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [3]),
                              helper.make_tensor_value_info("echo", TensorProto.FLOAT, [3])])
    nodes = [helper.make_node("Scan", ["init", "x"], ["total", "partial"], body=body, num_scan_inputs=1,
                              scan_input_directions=[backwards]),
             helper.make_node("ReduceSum", ["partial", "axis0"], ["summed"], keepdims=0)]
    inits = {"init": weights(3), "axis0": np.array([0], np.int64)}
    onnx_model = model(nodes, {"x": ["T", 3]}, ["total", "partial", "summed"], inits, opset=13)
    check_sizes(onnx_model, {"x": (8, 3)}, {"x": {0: (1, 8)}}, [{"x": (t, 3)} for t in (1, 5, 8)])
    nodes[0] = helper.make_node("Scan", ["init", "x"], ["total", "partial"], body=body, num_scan_inputs=1,
                                scan_output_directions=[1])
    onnx_model = model(nodes, {"x": ["T", 3]}, ["total", "partial", "summed"], inits, opset=13)
    with pytest.raises(UnsupportedModel, match=r"node 'Scan_0'.*writes a scan output in reverse"):
        convert_onnx(onnx_model, {"x": (8, 3)}, input_ranges={"x": {0: (1, 8)}})


def test_a_loop_over_a_symbolic_length_collects_one_scan_output_per_iteration() -> None:
    """for i in range(len(x)): acc = acc * 0.5 + x[i]; out.append(acc * 2) — scripted PyTorch's loop with a list of
    per-step results: the stacked outputs are the run's T, then Softmax over them."""
    body = helper.make_graph(
        [helper.make_node("Gather", ["xs", "i"], ["row"], axis=0),
         helper.make_node("Mul", ["acc", "half"], ["decayed"]),
         helper.make_node("Add", ["decayed", "row"], ["acc_out"]),
         helper.make_node("Add", ["acc_out", "acc_out"], ["step_out"]),
         helper.make_node("Identity", ["cond"], ["cond_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("acc", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [4]),
         helper.make_tensor_value_info("step_out", TensorProto.FLOAT, [4])],
        [numpy_helper.from_array(np.array(0.5, np.float32), "half")])
    nodes = [helper.make_node("Identity", ["x"], ["xs"]),
             helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Loop", ["n", "", "init"], ["y", "steps"], body=body),
             helper.make_node("Softmax", ["steps"], ["p"], axis=0)]
    onnx_model = model(nodes, {"x": ["T", 4]}, ["y", "steps", "p"],
                       {"zero": np.array(0, np.int64), "init": np.zeros(4, np.float32)}, opset=13)
    check_sizes(onnx_model, {"x": (12, 4)}, {"x": {0: (1, 12)}}, [{"x": (t, 4)} for t in (1, 5, 12)])


def test_positions_up_to_a_symbolic_length_follow_the_run_and_a_fold_that_cannot_is_refused() -> None:
    """Range(0, len(x)) of a transformer's position ids, gathered from an embedding table: folded at the largest
    length, each value is its position, so every run's prefix is right. A sum over a symbolic dim of values folded
    at the largest length would be right at that length only: refused by name."""
    index = {i: numpy_helper.from_array(np.array(i, np.int64), f"i{i}") for i in (0, 1)}
    nodes = [helper.make_node("Constant", [], [f"k{i}"], value=index[i]) for i in (0, 1)]
    nodes += [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "k0"], ["n"], axis=0),
              helper.make_node("Range", ["k0", "n", "k1"], ["positions"]),
              helper.make_node("Gather", ["table", "positions"], ["embedded"], axis=0),
              helper.make_node("Add", ["x", "embedded"], ["y"])]
    onnx_model = model(nodes, {"x": ["T", 4]}, ["y"], {"table": weights(16, 4)}, opset=13)
    check_sizes(onnx_model, {"x": (16, 4)}, {"x": {0: (1, 16)}}, [{"x": (t, 4)} for t in (1, 7, 16)])
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("ConstantOfShape", ["s"], ["ones"],
                              value=numpy_helper.from_array(np.ones(1, np.float32))),
             helper.make_node("ReduceSum", ["ones", "axes"], ["count"], keepdims=0),
             helper.make_node("Mul", ["x", "count"], ["y"])]
    onnx_model = model(nodes, {"x": [2, "T"]}, ["y"], {"axes": np.array([1], np.int64)}, opset=13)
    with pytest.raises(UnsupportedModel, match=r"node 'ReduceSum_2' \(ReduceSum\): it reads across a symbolic dim"):
        convert_onnx(onnx_model, {"x": (2, 16)}, input_ranges={"x": {1: (1, 16)}})


def test_slices_of_a_symbolic_axis_from_a_fixed_start_and_splits_of_a_static_one() -> None:
    """x[1:], x[:-2], x[2:5] along a sequence (the largest layout keeps each at its place), and a split of the
    feature axis; x[-3:] and x[-5:-1] (the last frames) read from where the run's dim ends; x[-5:] of a sequence as
    short as 4 would hold fewer than 5: refused by name."""
    def const(values: list[int]) -> np.ndarray:
        return np.array(values, np.int64)

    nodes = [helper.make_node("Slice", ["x", "one", "big", "zero"], ["tail"]),
             helper.make_node("Slice", ["x", "zero", "minus2", "zero"], ["head"]),
             helper.make_node("Slice", ["x", "two", "five", "zero"], ["mid"]),
             helper.make_node("Split", ["x", "parts"], ["p0", "p1"], axis=1),
             helper.make_node("ReduceSum", ["tail", "zero"], ["s0"], keepdims=1),
             helper.make_node("Add", ["head", "s0"], ["y"]), helper.make_node("Mul", ["p0", "p0"], ["z"])]
    onnx_model = model(nodes, {"x": ["T", 6]}, ["y", "mid", "z", "p1"],
                       {"one": const([1]), "big": const([2**62]), "zero": const([0]), "minus2": const([-2]),
                        "two": const([2]), "five": const([5]), "parts": const([2, 4])}, opset=13)
    check_sizes(onnx_model, {"x": (12, 6)}, {"x": {0: (4, 12)}}, [{"x": (t, 6)} for t in (4, 5, 12)])
    nodes = [helper.make_node("Relu", ["x"], ["r"]),  # the slices read a kernel's output, not the input buffer
             helper.make_node("Slice", ["r", "minus3", "big", "zero"], ["last"]),
             helper.make_node("Slice", ["r", "minus5", "minus1", "zero"], ["before_last"])]
    onnx_model = model(nodes, {"x": ["T", 6]}, ["last", "before_last"],
                       {"minus3": const([-3]), "minus5": const([-5]), "minus1": const([-1]), "big": const([2**62]),
                        "zero": const([0])}, opset=13)
    check_sizes(onnx_model, {"x": (12, 6)}, {"x": {0: (5, 12)}}, [{"x": (t, 6)} for t in (5, 7, 12)])
    with pytest.raises(UnsupportedModel, match=r"node 'Slice_2' \(Slice\).*slices from -5 along a symbolic axis "
                                               r"as small as 4"):
        convert_onnx(onnx_model, {"x": (12, 6)}, input_ranges={"x": {0: (4, 12)}})


def test_a_position_table_sliced_to_the_sequence_s_length_follows_the_run() -> None:
    """`x + table[:, :x.shape[1]]`: the Slice's end is a symbolic dim (Shape → Gather → Unsqueeze); an end that
    may pass the table's length is refused by name."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "one"], ["t"], axis=0),
             helper.make_node("Unsqueeze", ["t", "zero"], ["end"]),
             helper.make_node("Slice", ["table", "zero", "end", "axis1"], ["positions"]),
             helper.make_node("Add", ["x", "positions"], ["y"])]
    inits = {"table": weights(1, 64, 8), "one": np.array(1, np.int64), "zero": np.array([0], np.int64),
             "axis1": np.array([1], np.int64)}
    onnx_model = model(nodes, {"x": [1, "T", 8]}, ["y"], inits, opset=13)
    check_sizes(onnx_model, {"x": (1, 40, 8)}, {"x": {1: (1, 40)}}, [{"x": (1, t, 8)} for t in (1, 17, 40)])
    with pytest.raises(UnsupportedModel, match=r"node 'Slice_3' \(Slice\): .*to T \(only from 0, in steps of 1, of "
                                               r"a static dim at least as long\)"):
        convert_onnx(onnx_model, {"x": (1, 80, 8)}, input_ranges={"x": {1: (1, 80)}})


def test_a_batch_range_beside_another_range_is_a_symbolic_dim_too() -> None:
    """`x=1..4,2,10,8..40`: a batch of images of one width, any width: the batch is a symbol as the width is."""
    from wasinfer.frontends import parse_shape_overrides

    overrides = parse_shape_overrides(["x=1..4,2,10,8..40"])
    assert overrides.max_batch is None and overrides.ranges == {"x": {3: (8, 40), 0: (1, 4)}}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["y"])]
    onnx_model = model(nodes, {"x": ["N", 2, 10, "W"]}, ["y"], {"w": weights(3, 2, 3, 3)})
    check_sizes(onnx_model, overrides.shapes, overrides.ranges,
                [{"x": (n, 2, 10, w)} for n, w in ((1, 8), (3, 17), (4, 40))])


def test_max_batch_beside_a_range_makes_the_batch_a_symbolic_dim() -> None:
    """`--max-batch 4 --input-shape x=1,2,10,8..40`: as `x=1..4,2,10,8..40`, one run over the whole batch."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["y"])]
    onnx_model = model(nodes, {"x": ["N", 2, 10, "W"]}, ["y"], {"w": weights(3, 2, 3, 3)})
    result = convert_onnx(onnx_model, {"x": (1, 2, 10, 40)}, input_ranges={"x": {3: (8, 40)}}, max_batch=4)
    spec = result.metadata.inputs[0]
    assert (spec.run_time_axes, spec.ranges) == ([0, 3], [[1, 4], [8, 40]])
    wasm = WasmModel(result.wasm)
    for shape in ((4, 2, 10, 40), (1, 2, 10, 8), (3, 2, 10, 21)):
        x = RNG.standard_normal(shape).astype(np.float32)
        np.testing.assert_allclose(wasm.run({"x": x})["y"], ort_run(onnx_model, {"x": x})[0], rtol=1e-4, atol=2e-5)


def test_constant_padding_of_a_symbolic_axis_fills_the_part_past_the_run_s_dim_with_its_value() -> None:
    """Pad(x, [0, 1, 0, 2], value 3) along a sequence: the two padded columns land right after the run's width."""
    nodes = [helper.make_node("Pad", ["x", "pads", "value"], ["p"]), helper.make_node("Relu", ["p"], ["y"])]
    onnx_model = model(nodes, {"x": [2, "W"]}, ["y"],
                       {"pads": np.array([0, 1, 0, 2], np.int64), "value": np.array(3.0, np.float32)})
    check_sizes(onnx_model, {"x": (2, 20)}, {"x": {1: (2, 20)}}, [{"x": (2, w)} for w in (2, 9, 20)])


@pytest.mark.parametrize("mode,pads", [
    ("reflect", [0, 3, 0, 5]),  # a few: unrolled copies
    ("reflect", [0, 8, 0, 8]),  # torch.stft(center=True)'s n_fft / 2 on each side: a loop
    ("edge", [0, 2, 0, 7]),
    ("reflect", [2, 1, 1, 3]),  # both axes symbolic
])
def test_reflect_and_edge_padding_of_a_symbolic_axis_reflect_from_where_the_run_s_dim_ends(
        mode: str, pads: list[int]) -> None:
    """The end of a padded sequence copies from its run's last elements, not from the largest layout's; a pad
    that would reflect more than the range's smallest run holds is refused by name."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Pad", ["r", "pads"], ["y"], mode=mode)]
    two = pads[0] or pads[2]
    onnx_model = model(nodes, {"x": ["H" if two else 3, "W"]}, ["y"], {"pads": np.array(pads, np.int64)})
    ranges = {"x": {0: (9, 20), 1: (9, 30)} if two else {1: (9, 30)}}
    shapes = [(9, 9), (13, 30), (20, 17)] if two else [(3, w) for w in (9, 16, 30)]
    check_sizes(onnx_model, {"x": (20 if two else 3, 30)}, ranges, [{"x": shape} for shape in shapes])
    with pytest.raises(UnsupportedModel, match=rf"node 'Pad_1' \(Pad\).*{mode} padding of \d+ along a symbolic axis "
                                               r"as small as 2"):
        convert_onnx(onnx_model, {"x": (20 if two else 3, 30)},
                     input_ranges={"x": {a: (2, hi) for a, (_, hi) in ranges["x"].items()}})


def test_a_concat_along_a_symbolic_axis_puts_each_part_where_the_run_s_last_ends() -> None:
    """A KV cache's [past; new] along the sequence, both of run-time length, then a softmax over it."""
    nodes = [helper.make_node("Concat", ["past", "new", "new"], ["kv"], axis=1),
             helper.make_node("Softmax", ["kv"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, "kv", [helper.make_tensor_value_info("past", TensorProto.FLOAT, [2, "P", 3]),
                                            helper.make_tensor_value_info("new", TensorProto.FLOAT, [2, "N", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    check_sizes(onnx_model, {"past": (2, 10, 3), "new": (2, 4, 3)}, {"past": {1: (1, 10)}, "new": {1: (1, 4)}},
                [{"past": (2, p, 3), "new": (2, n, 3)} for p, n in ((1, 1), (7, 2), (10, 4), (3, 4))])


def test_a_batch_a_node_mixes_runs_whole_as_a_symbolic_dim_when_a_larger_batch_is_asked_for() -> None:
    """An LSTM over the leading dim (a sequence of windows, as Silero VAD's sequence model has it): running it per
    sample would give each window a fresh state; with --max-batch 6 the leading dim is a symbolic dim 1..6."""
    hidden = 4
    nodes = [helper.make_node("Pad", ["x", "pads"], ["p"]),
             helper.make_node("Unsqueeze", ["p", "one"], ["seq"]),
             helper.make_node("LSTM", ["seq", "w", "r"], ["y", "h"], hidden_size=hidden),
             helper.make_node("Squeeze", ["h", "zero"], ["state"])]
    onnx_model = model(nodes, {"x": ["windows", 3]}, ["state"],
                       {"pads": np.array([0, 1, 0, 0], np.int64), "one": np.array([1], np.int64),
                        "zero": np.array([0], np.int64), "w": weights(1, 4 * hidden, 4),
                        "r": weights(1, 4 * hidden, hidden)})
    result = convert_onnx(onnx_model, {"x": (1, 3)}, max_batch=6, simd="plain")
    assert result.metadata.max_batch == 1 and result.metadata.inputs[0].ranges == [[1, 6]]
    wasm = WasmModel(result.wasm)
    for windows in (1, 4, 6):
        x = RNG.standard_normal((windows, 3)).astype(np.float32)
        np.testing.assert_allclose(wasm.run({"x": x})["state"], ort_run(onnx_model, {"x": x})[0], rtol=1e-4,
                                   atol=2e-5)
