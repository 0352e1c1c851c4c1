"""Indexing ops against ONNX Runtime: Slice, Gather, GatherElements, Expand, Tile, Split, Pad,
DepthToSpace and SpaceToDepth, for several dtypes, opsets and modes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.parity import assert_matches_ort, graph_model, ort_run, single_op_model, wasm_run
from wasinfer.artifact import convert_onnx
from wasinfer.backends.wasm.compiler import UnsupportedModel
from wasinfer.runtime import WasmModel
from wasinfer.runtime.base import ModelFault
from wasinfer.runtime.onnx_backend import WasinferBackend

rng = np.random.default_rng(5)


def values(shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
    if np.dtype(dtype) == np.bool_:
        return np.asarray(rng.random(shape) > 0.5)
    if np.dtype(dtype).kind in "iu":
        return np.asarray(rng.integers(0, 100, shape), dtype)
    return np.asarray(rng.standard_normal(shape) * 10, dtype)


def ints(*items: int) -> np.ndarray:
    return np.array(items, np.int64)


# ---------------------------------------------------------------- Slice

BIG = 2**63 - 1
SLICES = [  # starts, ends, axes, steps (None: input left out)
    ([1, 0], [3, 10], [0, 1], None),
    ([0], [-1], [1], None),
    ([-3, 2], [BIG, -1], [2, 0], None),  # ends clamp at the axis size
    ([-100], [100], [-1], [2]),  # starts and ends out of range, negative axis
    ([4, 9], [0, -BIG], [0, 2], [-1, -3]),  # negative steps, end through index 0
    ([10], [-100], [1], [-2]),
    ([2], [2], [0], None),  # empty result
    ([0, 0, 0], [1, 1, 3], None, None),  # axes left out: the first len(starts)
    ([1], [4], [0], [2]),
    ([-9], [-BIG], [0], [-1]),  # a start below the axis with a negative step: ONNX clamps it to 0 (one element)
]


@pytest.mark.parametrize("starts,ends,axes,steps", SLICES)
def test_slice_inputs_clamping_and_negative_steps(starts: list[int], ends: list[int], axes: list[int] | None,
                                                  steps: list[int] | None) -> None:
    x = values((5, 6, 11))
    constants = {"starts": ints(*starts), "ends": ints(*ends)}
    if axes is not None or steps is not None:
        constants["axes"] = ints(*(axes if axes is not None else range(len(starts))))
    if steps is not None:
        constants["steps"] = ints(*steps)
    assert_matches_ort(single_op_model("Slice", {"x": x}, constants=constants), {"x": x})


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.bool_, np.float16, np.float64])
def test_slice_moves_any_dtype(dtype: type) -> None:
    x = values((4, 7, 3), dtype)
    constants = {"starts": ints(3, 1), "ends": ints(-BIG, 6), "axes": ints(0, 1), "steps": ints(-2, 2)}
    assert_matches_ort(single_op_model("Slice", {"x": x}, constants=constants), {"x": x})


def test_slice_opset_9_attributes() -> None:
    x = values((3, 8))
    model = single_op_model("Slice", {"x": x}, opset=9, starts=[1, -5], ends=[3, 1000], axes=[0, 1])
    assert_matches_ort(model, {"x": x})


def run_time_slice_model(x: np.ndarray, count: int, names: tuple[str, ...] = ("starts", "ends", "axes", "steps"),
                         constants: dict[str, np.ndarray] | None = None) -> Any:
    """Slice with `names` as graph inputs of `count` int64 values each, `constants` as initializers."""
    constants = constants or {}
    inputs = [helper.make_tensor_value_info("x", helper.np_dtype_to_tensor_dtype(x.dtype), x.shape)]
    inputs += [helper.make_tensor_value_info(n, TensorProto.INT64, [count]) for n in names if n not in constants]
    graph = helper.make_graph([helper.make_node("Slice", ["x", *names], ["y"])], "slice", inputs,
                              [helper.make_tensor_value_info("y", helper.np_dtype_to_tensor_dtype(x.dtype), None)],
                              [numpy_helper.from_array(v, n) for n, v in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_slice_with_run_time_starts_ends_axes_and_steps_serves_every_slice_from_one_module() -> None:
    """All four parameters fed at run time: one module per length, run with every slice of the static table
    (clamping, negative axes and steps, empty results)."""
    x = values((5, 6, 11))
    table = [*SLICES, ([3, 1], [1, 9], [-1, 0], [-1, 3])]
    modules: dict[int, tuple[Any, Any]] = {}
    for starts, ends, axes, steps in table:
        count = len(starts)
        if count not in modules:
            model = run_time_slice_model(x, count)
            modules[count] = model, WasmModel(convert_onnx(model).wasm)
        model, module = modules[count]
        feeds = {"x": x, "starts": ints(*starts), "ends": ints(*ends),
                 "axes": ints(*(axes if axes is not None else range(count))),
                 "steps": ints(*(steps if steps is not None else [1] * count))}
        got, want = module.run(feeds)["y"], ort_run(model, feeds)[0]
        assert got.shape == want.shape, (starts, ends, axes, steps, got.shape, want.shape)
        np.testing.assert_array_equal(got, want)
    assert sorted(modules) == [1, 2, 3]


def test_slice_with_run_time_starts_and_constant_axes_varies_only_those_axes() -> None:
    """Constant axes and steps: only the sliced axes' dims vary (the metadata says which), for any dtype."""
    x = values((4, 7, 3), np.int64)
    model = run_time_slice_model(x, 1, constants={"axes": ints(1), "steps": ints(-2)})
    result = convert_onnx(model)
    assert result.metadata.outputs[0].run_time_axes == [1]
    module = WasmModel(result.wasm)
    for start, end in ((6, 0), (-1, -BIG), (BIG, 2), (0, 5)):
        feeds = {"x": x, "starts": ints(start), "ends": ints(end)}
        np.testing.assert_array_equal(module.run(feeds)["y"], ort_run(model, feeds)[0])


def test_slice_with_run_time_int32_parameters_at_int32_s_ends() -> None:
    x = values((5, 6))
    names = ("starts", "ends", "axes", "steps")
    graph = helper.make_graph([helper.make_node("Slice", ["x", *names], ["y"])], "slice",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)]
                              + [helper.make_tensor_value_info(n, TensorProto.INT32, [1]) for n in names],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    module = WasmModel(convert_onnx(model).wasm)
    for parameters in ((1, 4, 1, 2), (-1, -2**31, 0, -2), (2**31 - 1, 0, -1, -1), (0, 2**31 - 1, 1, 2**31 - 1)):
        feeds = {"x": x, **{n: np.array([v], np.int32) for n, v in zip(names, parameters, strict=True)}}
        np.testing.assert_array_equal(module.run(feeds)["y"], ort_run(model, feeds)[0], err_msg=str(parameters))


@pytest.mark.parametrize(("axes", "steps"), [([0, 0], [1, 1]), ([2, 0], [1, 1]), ([-3, 1], [1, 1]), ([0, 1], [0, 1])],
                         ids=["twice", "past", "before", "step-0"])
def test_slice_with_bad_run_time_axes_or_a_zero_step_traps_the_run(axes: list[int], steps: list[int]) -> None:
    x = values((3, 4))
    module = WasmModel(convert_onnx(run_time_slice_model(x, 2)).wasm)
    with pytest.raises(ModelFault, match=r"unreachable|trap"):
        module.run({"x": x, "starts": ints(0, 0), "ends": ints(2, 2), "axes": ints(*axes), "steps": ints(*steps)})


def test_the_backend_binds_no_run_time_slice_parameters() -> None:
    x = values((5, 6))
    model = run_time_slice_model(x, 1, ("starts", "ends"))
    rep = WasinferBackend.prepare(model)
    for start, end in ((0, 3), (-2, BIG), (4, 1)):
        feeds = {"x": x, "starts": ints(start), "ends": ints(end)}
        np.testing.assert_array_equal(rep.run(feeds)[0], ort_run(model, feeds)[0])
    assert rep.bound == set() and len(rep.modules) == 1


# ---------------------------------------------------------------- Gather

@pytest.mark.parametrize("axis", [0, 1, -1, 2])
@pytest.mark.parametrize("indices", [np.array(2), ints(0, 2, 1), ints(-1, 0, -3, 1), ints(1, 1), ints(2, 1, 0),
                                     np.array([[0, 3], [2, -2]], np.int32)])
def test_gather_constant_indices_any_axis(axis: int, indices: np.ndarray) -> None:
    x = values((4, 5, 6))
    model = single_op_model("Gather", {"x": x}, constants={"i": indices}, axis=axis)
    assert_matches_ort(model, {"x": x})


@pytest.mark.parametrize("dtype", [np.int64, np.int32])
@pytest.mark.parametrize("ids", [[[0, 5, -1, 7, 7]], [[-8, 3], [2, -2]]])
def test_gather_embedding_lookup_of_run_time_ids(dtype: type, ids: list[list[int]]) -> None:
    """Gather(weights, input_ids): the ids (negative ones wrap) arrive at run time."""
    weights = values((8, 40))
    input_ids: np.ndarray = np.array(ids, dtype)
    model = graph_model([helper.make_node("Gather", ["weights", "ids"], ["y"], axis=0)], {"ids": input_ids}, ["y"],
                        {"weights": weights})
    assert_matches_ort(model, {"ids": input_ids})


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.uint8, np.float16])
def test_gather_run_time_data_and_indices(axis: int, dtype: type) -> None:
    x = values((3, 4, 5), dtype)
    i = np.array([[2, -1, 0], [1, 1, -3]], np.int64)
    assert_matches_ort(single_op_model("Gather", {"x": x, "i": i}, axis=axis), {"x": x, "i": i})


@pytest.mark.parametrize("bad", [8, -9, 2**40])
def test_gather_out_of_range_run_time_index_traps(bad: int) -> None:
    weights = values((8, 4))
    ids = np.array([1, bad], np.int64)
    model = graph_model([helper.make_node("Gather", ["weights", "ids"], ["y"], axis=0)], {"ids": ids}, ["y"],
                        {"weights": weights})
    with pytest.raises(ModelFault):
        wasm_run(model, {"ids": ids})


def test_gather_out_of_range_constant_index_is_refused() -> None:
    x = values((3, 4))
    model = single_op_model("Gather", {"x": x}, constants={"i": ints(0, 3)}, axis=0)
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT
    with pytest.raises(UnsupportedModel, match="outside"):
        convert_onnx(model)


# ---------------------------------------------------------------- GatherElements

@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("constant", [False, True])
def test_gather_elements(axis: int, constant: bool) -> None:
    x = values((4, 5, 3))
    i_shape = [3, 2, 3]
    i = rng.integers(-x.shape[axis], x.shape[axis], i_shape).astype(np.int64)
    if constant:
        model = single_op_model("GatherElements", {"x": x}, constants={"i": i}, axis=axis)
        assert_matches_ort(model, {"x": x})
    else:
        model = single_op_model("GatherElements", {"x": x, "i": i.astype(np.int32)}, axis=axis)
        assert_matches_ort(model, {"x": x, "i": i.astype(np.int32)})


def test_gather_elements_out_of_range_traps() -> None:
    x = values((2, 3))
    i = np.array([[0, 3]], np.int64)
    model = single_op_model("GatherElements", {"x": x, "i": i}, axis=1)
    with pytest.raises(ModelFault):
        wasm_run(model, {"x": x, "i": i})


# ---------------------------------------------------------------- Expand, Tile

@pytest.mark.parametrize("shape,target", [((3, 1), (3, 4)), ((1, 5), (4, 1, 5)), ((2, 1, 3), (2, 7, 3)),
                                          ((1,), (6, 40)), ((3, 1, 1), (1, 2, 5)), ((2, 3), (2, 3))])
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.bool_])
def test_expand(shape: tuple[int, ...], target: tuple[int, ...], dtype: type) -> None:
    x = values(shape, dtype)
    model = single_op_model("Expand", {"x": x}, constants={"shape": ints(*target)})
    assert_matches_ort(model, {"x": x})


@pytest.mark.parametrize("shape,repeats", [((3, 4), (2, 1)), ((3, 4), (1, 5)), ((2, 3, 2), (3, 2, 2)),
                                           ((5,), (1,)), ((1, 2), (40, 3))])
@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.int64])
def test_tile(shape: tuple[int, ...], repeats: tuple[int, ...], dtype: type) -> None:
    x = values(shape, dtype)
    model = single_op_model("Tile", {"x": x}, constants={"repeats": ints(*repeats)})
    assert_matches_ort(model, {"x": x})


# ---------------------------------------------------------------- Split

@pytest.mark.parametrize("opset,axis,split,outputs", [
    (11, 1, [2, 5, 1], 3), (11, 0, None, 2), (13, -1, [3, 0, 3], 3), (13, 2, None, 3),
    (18, 1, None, 3), (18, 2, [1, 5], 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.bool_])
def test_split(opset: int, axis: int, split: list[int] | None, outputs: int, dtype: type) -> None:
    x = values((4, 8, 6), dtype)
    attrs: dict[str, Any] = {"axis": axis}
    constants: dict[str, np.ndarray] = {}
    if split is not None and opset < 13:
        attrs["split"] = split
    elif split is not None:
        constants["split"] = ints(*split)
    elif opset >= 18:
        attrs["num_outputs"] = outputs  # 8 in 3: uneven, 3 3 2
    model = single_op_model("Split", {"x": x}, output_count=outputs, constants=constants, opset=opset, **attrs)
    assert_matches_ort(model, {"x": x})


def run_time_split_model(x: np.ndarray, outputs: int, axis: int) -> Any:
    """Split with its sizes a graph input; the outputs' types left for the compiler to find."""
    element = helper.np_dtype_to_tensor_dtype(x.dtype)
    names = [f"y{i}" for i in range(outputs)]
    graph = helper.make_graph([helper.make_node("Split", ["x", "split"], names, axis=axis)], "split",
                              [helper.make_tensor_value_info("x", element, x.shape),
                               helper.make_tensor_value_info("split", TensorProto.INT64, [outputs])],
                              [helper.make_tensor_value_info(n, element, None) for n in names])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.bool_])
def test_split_with_run_time_sizes_serves_every_split_from_one_module(axis: int, dtype: type) -> None:
    x = values((4, 8, 6), dtype)
    model = run_time_split_model(x, 3, axis)
    module = WasmModel(convert_onnx(model).wasm)
    n = x.shape[axis]
    for sizes in ([1, 1, n - 2], [0, n, 0], [n, 0, 0], [n - 3, 2, 1]):
        feeds = {"x": x, "split": ints(*sizes)}
        got = module.run(feeds)
        for i, want in enumerate(ort_run(model, feeds)):
            assert got[f"y{i}"].shape == want.shape, (sizes, i)
            np.testing.assert_array_equal(got[f"y{i}"], want)


@pytest.mark.parametrize("sizes", [[1, 2, 2], [2, 2, 3], [-1, 3, 4], [7, -1, 0]],
                         ids=["short", "long", "negative", "negative-last"])
def test_split_sizes_that_do_not_add_up_trap_the_run(sizes: list[int]) -> None:
    x = values((6, 2))
    module = WasmModel(convert_onnx(run_time_split_model(x, 3, 0)).wasm)
    with pytest.raises(ModelFault, match=r"unreachable|trap"):
        module.run({"x": x, "split": ints(*sizes)})


# ---------------------------------------------------------------- Pad

PADS = [[1, 2, 0, 3], [0, 0, 2, 1], [3, 1, 3, 2], [0, 4, 0, 4]]


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
@pytest.mark.parametrize("pads", PADS)
def test_pad_modes(mode: str, pads: list[int]) -> None:
    x = values((2, 4, 5))
    full = [0, *pads[:2], 0, *pads[2:]]
    constants = {"pads": ints(*full)}
    if mode == "constant":
        constants["value"] = np.array(1.5, np.float32)
    assert_matches_ort(single_op_model("Pad", {"x": x}, constants=constants, opset=13, mode=mode), {"x": x})


@pytest.mark.parametrize("pads", [*PADS, [5, 9, 6, 1]])
def test_pad_wrap_mode(pads: list[int]) -> None:
    x = values((2, 4, 5))
    full = [0, *pads[:2], 0, *pads[2:]]
    model = single_op_model("Pad", {"x": x}, constants={"pads": ints(*full)}, opset=19, mode="wrap")
    assert_matches_ort(model, {"x": x})


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.float16, np.bool_, np.int32])
@pytest.mark.parametrize("mode", ["constant", "reflect"])
def test_pad_any_dtype_and_a_run_time_value(dtype: type, mode: str) -> None:
    x = values((1, 3, 30, 7), dtype)
    inputs = {"x": x}
    if mode == "constant":
        inputs["v"] = values((), dtype)
    model = single_op_model("Pad", inputs, constants={"pads": ints(0, 0, 2, 1, 0, 1, 3, 2)}, opset=13, mode=mode)
    if mode == "constant":
        model.graph.node[0].input[:] = ["x", "pads", "v"]
    assert_matches_ort(model, inputs)


def test_pad_negative_pads_crop_in_constant_mode() -> None:
    x = values((4, 6))
    model = single_op_model("Pad", {"x": x}, constants={"pads": ints(-1, 2, 1, -3)}, opset=13)
    assert_matches_ort(model, {"x": x})


@pytest.mark.parametrize("axes", [[1], [-1, 0]])
def test_pad_axes_input_opset_18(axes: list[int]) -> None:
    x = values((3, 4, 5))
    pads = ints(*([2, 1] * len(axes)))
    model = graph_model([helper.make_node("Pad", ["x", "pads", "", "axes"], ["y"], mode="edge")], {"x": x}, ["y"],
                        {"pads": pads, "axes": ints(*axes)}, opset=18)
    assert_matches_ort(model, {"x": x})


def test_pad_opset_9_attributes() -> None:
    x = values((3, 4))
    assert_matches_ort(single_op_model("Pad", {"x": x}, opset=9, pads=[1, 0, 2, 3], value=-2.0), {"x": x})


def test_pad_with_run_time_pads_is_refused_unless_their_range_is_declared() -> None:
    x = values((3, 4))
    model = single_op_model("Pad", {"x": x, "pads": ints(1, 1, 1, 1)}, opset=13)
    model.graph.output[0].type.CopyFrom(helper.make_tensor_type_proto(TensorProto.FLOAT, (5, 6)))
    with pytest.raises(UnsupportedModel, match="pads must be a compile-time constant"):
        convert_onnx(model)
    convert_onnx(model, input_values={"pads": (0, 4)})


DECLARED_PADS = [[0, 0, 0, 0], [1, 2, 0, 3], [2, 2, 2, 2], [0, 1, 1, 0], [5, 5, 5, 5], [-1, 0, 0, -1],
                 [-1, -1, -1, -1]]


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "wrap"])
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.uint8])
def test_pad_with_declared_pads_serves_every_pad_from_one_module(mode: str, dtype: type) -> None:
    """--input-values pads=-1..5: one module for every pad in every mode (crops in constant mode, reflections
    within the axis, as ONNX Runtime takes them), the value a run-time input."""
    x = values((3, 4), dtype)
    inputs = {"x": x, "pads": ints(0, 0, 0, 0)} | ({"value": np.array(7, dtype)} if mode == "constant" else {})
    model = single_op_model("Pad", inputs, opset=13, mode=mode)
    module = WasmModel(convert_onnx(model, input_values={"pads": (-1, 5)}).wasm)
    for pads in DECLARED_PADS:
        if (mode != "constant" and min(pads) < 0) or (mode == "reflect" and max(pads) >= 3):
            continue  # ONNX Runtime refuses these
        feeds = {**inputs, "pads": ints(*pads)}
        got, want = module.run(feeds)["y0"], ort_run(model, feeds)[0]
        assert got.shape == want.shape, (pads, got.shape, want.shape)
        np.testing.assert_array_equal(got, want, err_msg=str(pads))


# ---------------------------------------------------------------- DepthToSpace, SpaceToDepth

@pytest.mark.parametrize("mode", ["DCR", "CRD"])
@pytest.mark.parametrize("shape,blocksize", [((1, 8, 2, 3), 2), ((2, 18, 3, 2), 3), ((1, 4, 5, 5), 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.int8])
def test_depth_to_space(mode: str, shape: tuple[int, ...], blocksize: int, dtype: type) -> None:
    x = values(shape, dtype)
    assert_matches_ort(single_op_model("DepthToSpace", {"x": x}, blocksize=blocksize, mode=mode), {"x": x})


@pytest.mark.parametrize("shape,blocksize", [((1, 2, 4, 6), 2), ((2, 3, 6, 3), 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_space_to_depth(shape: tuple[int, ...], blocksize: int, dtype: type) -> None:
    x = values(shape, dtype)
    assert_matches_ort(single_op_model("SpaceToDepth", {"x": x}, blocksize=blocksize), {"x": x})


# ---------------------------------------------------------------- whole models

def test_embedding_lookup_per_sample_of_a_batch() -> None:
    """Token ids with a run-time batch dimension, then a per-token op on the embeddings."""
    weights = values((50, 16))
    nodes = [helper.make_node("Gather", ["weights", "ids"], ["e"], axis=0), helper.make_node("Relu", ["e"], ["y"])]
    graph = helper.make_graph(nodes, "embed", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6, 16])],
                              [numpy_helper.from_array(weights, "weights")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    ids = rng.integers(-50, 50, (3, 6)).astype(np.int64)
    assert_matches_ort(model, {"ids": ids}, max_batch=3)


@pytest.mark.parametrize("op,constants,attrs", [
    ("Expand", {"shape": ints(300, 1, 200)}, {}),
    ("Tile", {"repeats": ints(50, 40)}, {}),
    ("Slice", {"starts": ints(1, 0), "ends": ints(-1, 200), "axes": ints(0, 1), "steps": ints(1, 3)}, {}),
    ("Pad", {"pads": ints(5, 7, 9, 3)}, {"mode": "reflect"}),
    ("Pad", {"pads": ints(20, 70, 90, 30), "value": np.array(2.5, np.float32)}, {}),
    ("Gather", {"i": np.array([[5, 1, 3, 7]] * 50, np.int64)}, {"axis": 1}),
])
def test_big_outputs_take_loops_not_tables(op: str, constants: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
    """Outputs of 10^4..10^5 elements come from a module of a few KiB: no per-element tables."""
    x = values((1, 200) if op == "Expand" else (30, 20) if op != "Pad" else (12, 40))
    model = single_op_model(op, {"x": x}, constants=constants, **attrs)
    assert_matches_ort(model, {"x": x})
    assert len(convert_onnx(model, simd="plain").wasm) < 6000 + 8 * sum(c.size for c in constants.values())


@pytest.mark.parametrize(("data_shape", "count"), [((3, 1), 3), ((3, 1), 2), ((2, 1, 4), 4), ((5,), 2)])
def test_expand_with_a_declared_shape_against_dims_other_than_1(data_shape: tuple[int, ...], count: int) -> None:
    """The shape declared 0..6 each: a dim other than 1 stays (its value 1 or the dim), a dim of 1 or a new one is
    the run's value; several shapes through one module against ONNX Runtime, a value that does not broadcast
    traps the run."""
    graph = helper.make_graph([helper.make_node("Expand", ["x", "shape"], ["y"])], "expand",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(data_shape)),
                               helper.make_tensor_value_info("shape", TensorProto.INT64, [count])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    module = WasmModel(convert_onnx(model, input_values={"shape": (0, 6)}).wasm)
    x = np.random.default_rng(8).standard_normal(data_shape).astype(np.float32)
    rank = max(len(data_shape), count)
    aligned = [None] * (rank - len(data_shape)) + list(data_shape)
    for seed in range(4):
        choices = np.random.default_rng(seed)
        shape = [int(choices.choice([1, d])) if d not in (None, 1) else int(choices.integers(0, 7))
                 for d in aligned[rank - count:]]
        feeds = {"x": x, "shape": np.array(shape, np.int64)}
        want, got = ort_run(model, feeds)[0], module.run(feeds)["y"]
        assert got.shape == want.shape, shape
        np.testing.assert_array_equal(got, want)
    wrong = [2 if d not in (None, 1, 2) else 1 for d in aligned[rank - count:]]  # 2 against a 3, 4 or 5
    with pytest.raises(ModelFault, match="unreachable"):
        module.run({"x": x, "shape": np.array(wrong, np.int64)})


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "wrap"])
@pytest.mark.parametrize("constant_axes", [True, False])
def test_pad_with_declared_pads_and_an_axes_input(mode: str, constant_axes: bool) -> None:
    """Pads declared 0..3 beside an axes input (a constant, or declared -4..3 too): the kernel reads which axis
    each pad is for; several pads (and axes) through one module against ONNX Runtime; an axis named twice traps."""
    x = np.random.default_rng(5).standard_normal((3, 4, 5, 6)).astype(np.float32)  # reflect: pads below each dim
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4, 5, 6]),
              helper.make_tensor_value_info("pads", TensorProto.INT64, [4])]
    inits = [numpy_helper.from_array(np.array([1, -1], np.int64), "axes")] if constant_axes else []
    if not constant_axes:
        inputs.append(helper.make_tensor_value_info("axes", TensorProto.INT64, [2]))
    graph = helper.make_graph([helper.make_node("Pad", ["x", "pads", "", "axes"], ["y"], mode=mode)], "pad",
                              inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    ranges = {"pads": (0, 3)} if constant_axes else {"pads": (0, 3), "axes": (-4, 3)}
    module = WasmModel(convert_onnx(model, input_values=ranges).wasm)
    cases = [([0, 2, 0, 2], [1, -1]), ([2, 1, 1, 2], [1, 3]), ([0, 0, 0, 0], [0, 2]), ([1, 2, 2, 1], [-2, 0])]
    for pads, axes in cases if not constant_axes else [(p, [1, -1]) for p, _ in cases]:
        feeds = {"x": x, "pads": np.array(pads, np.int64)}
        if not constant_axes:
            feeds["axes"] = np.array(axes, np.int64)
        want, got = ort_run(model, feeds)[0], module.run(feeds)["y"]
        assert got.shape == want.shape, (pads, axes)
        np.testing.assert_array_equal(got, want)
    if not constant_axes:
        with pytest.raises(ModelFault, match="unreachable"):  # axis 1 twice
            module.run({"x": x, "pads": np.array([1, 1, 1, 1], np.int64), "axes": np.array([1, -3], np.int64)})
