"""Outputs whose shape each run decides (ABI version 2): NonZero and Compress against ONNX Runtime, the metadata
and the runtime's reading of the dims, what follows them, and the uses that are refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from tests.artifact.engines import NODE_PROBLEM, requires_node
from tests.artifact.test_node_engine import run_in_node
from tests.artifact.test_wasi import npy_stream, read_npy_stream, run_node_wasi, run_wasmtime_wasi
from tests.parity import ort_run
from wasinfer.artifact import convert_onnx
from wasinfer.artifact.metadata import Metadata
from wasinfer.backends.wasm.abi import RUN_TIME_SHAPES_ABI_VERSION
from wasinfer.ir import UnsupportedModel
from wasinfer.runtime import ModelFault, WasmModel


def one_node(op: str, inputs: dict[str, tuple[int, TensorProto.DataType]], output_type: int, **attrs: object) -> object:
    graph = helper.make_graph([helper.make_node(op, list(inputs), ["y"], **attrs)], op.lower(),
                              [helper.make_tensor_value_info(n, t, list(s)) for n, (s, t) in inputs.items()],
                              [helper.make_tensor_value_info("y", output_type, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize(("shape", "dtype", "onnx_type"), [
    ((3, 4), np.float32, TensorProto.FLOAT), ((2, 3, 5), np.int64, TensorProto.INT64),
    ((7,), np.bool_, TensorProto.BOOL), ((4, 1, 3), np.int32, TensorProto.INT32),
], ids=["f32-2d", "i64-3d", "bool-1d", "i32-3d"])
def test_nonzero_matches_onnx_runtime_whatever_the_count(shape: tuple[int, ...], dtype: type, onnx_type: int) -> None:
    model = one_node("NonZero", {"x": (shape, onnx_type)}, TensorProto.INT64)
    module = WasmModel(convert_onnx(model).wasm)
    rng = np.random.default_rng(4)
    for fill in ("random", "zeros", "ones"):
        x = {"random": (rng.random(shape) < 0.4), "zeros": np.zeros(shape), "ones": np.ones(shape)}[fill].astype(dtype)
        got, want = module.run({"x": x})["y"], ort_run(model, {"x": x})[0]
        assert got.dtype == np.int64 and got.shape == want.shape, (fill, got.shape, want.shape)
        np.testing.assert_array_equal(got, want)


def test_nonzero_counts_nan_and_not_negative_zero() -> None:
    model = one_node("NonZero", {"x": ((4,), TensorProto.FLOAT)}, TensorProto.INT64)
    x = np.array([np.nan, -0.0, 0.0, 1e-45], np.float32)
    np.testing.assert_array_equal(WasmModel(convert_onnx(model).wasm).run({"x": x})["y"], [[0, 3]])


@pytest.mark.parametrize(("shape", "length", "axis"), [
    ((3, 4), 4, 1), ((3, 4), 2, 0), ((2, 3, 4), 3, -2), ((3, 4), 12, None), ((3, 4), 5, None), ((2, 5), 7, 1),
], ids=["axis-1", "shorter-condition", "negative-axis", "flattened", "flattened-short", "longer-condition"])
def test_compress_matches_onnx_runtime(shape: tuple[int, ...], length: int, axis: int | None) -> None:
    attrs = {} if axis is None else {"axis": axis}
    model = one_node("Compress", {"x": (shape, TensorProto.FLOAT), "c": ((length,), TensorProto.BOOL)},
                     TensorProto.FLOAT, **attrs)
    module = WasmModel(convert_onnx(model).wasm)
    rng = np.random.default_rng(len(shape) + length)
    x = rng.standard_normal(shape).astype(np.float32)
    for condition in (rng.random(length) < 0.5, np.zeros(length, bool), np.ones(length, bool)):
        feeds = {"x": x, "c": condition}
        got, want = module.run(feeds)["y"], ort_run(model, feeds)[0]
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_the_metadata_says_which_axes_each_run_decides_and_hosts_see_minus_one() -> None:
    result = convert_onnx(one_node("NonZero", {"x": ((3, 4), TensorProto.FLOAT)}, TensorProto.INT64))
    assert result.metadata.abi_version == RUN_TIME_SHAPES_ABI_VERSION
    [spec] = result.metadata.outputs
    assert (spec.shape, spec.run_time_axes) == ([2, 12], [1]) and spec.dims_offset is not None
    assert Metadata.from_json(result.metadata.to_json()) == result.metadata
    assert WasmModel(result.wasm).info.outputs[0].shape == [2, -1]


def test_dims_past_the_largest_shape_spend_the_instance() -> None:
    """A hostile module could write any dims: the runtime never reads past the slot, it faults the instance."""
    result = convert_onnx(one_node("NonZero", {"x": ((3, 4), TensorProto.FLOAT)}, TensorProto.INT64))
    module = WasmModel(result.wasm)
    [spec] = module.metadata.outputs
    assert spec.dims_offset is not None
    module._view[spec.dims_offset:spec.dims_offset + 8].view(np.int32)[:] = [2, 99]  # what a module could write
    with pytest.raises(ModelFault, match=r"wrote dims \[2, 99\] for output 'y', outside its largest shape"):
        module._run_time_shape(spec)
    with pytest.raises(ModelFault, match="unusable after an earlier fault"):
        module.run({"x": np.ones((3, 4), np.float32)})


def test_what_follows_a_run_time_shape_runs_at_the_run_s_size() -> None:
    """A detector's post-processing: NonMaxSuppression's selected rows, the box index column, the boxes gathered by
    it, scaled. The count each run selects is a symbol the kernels after it read (the gathered indices past it are
    filled with 0, so no index runs out of bounds), and the output comes back at the run's size."""
    boxes, scores = 40, 3
    index = helper.make_tensor("two", TensorProto.INT64, [], [2])
    nodes = [helper.make_node("Constant", [], ["k"], value=index),
             helper.make_node("NonMaxSuppression", ["b", "s", "limit", "iou"], ["sel"]),
             helper.make_node("Gather", ["sel", "k"], ["which"], axis=1),
             helper.make_node("Squeeze", ["b", "zero"], ["flat"]),
             helper.make_node("Gather", ["flat", "which"], ["picked"], axis=0),
             helper.make_node("Mul", ["picked", "scale"], ["y"]),
             helper.make_node("Cast", ["which"], ["wf"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(
        nodes, "post", [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, boxes, 4]),
                        helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, scores, boxes])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("wf", TensorProto.FLOAT, None)],
        [helper.make_tensor("limit", TensorProto.INT64, [1], [5]), helper.make_tensor("iou", TensorProto.FLOAT, [1],
                                                                                       [0.3]),
         helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
         helper.make_tensor("scale", TensorProto.FLOAT, [4], [2.0, 0.5, 2.0, 0.5])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    result = convert_onnx(model)
    assert result.metadata.abi_version == RUN_TIME_SHAPES_ABI_VERSION
    assert [o.run_time_axes for o in result.metadata.outputs] == [[0], [0]]
    module = WasmModel(result.wasm)
    rng = np.random.default_rng(5)
    counts = set()
    for spread in (0.05, 1.0, 20.0, 0.05):  # crowded boxes select few, spread ones many; then few again
        corners = rng.random((1, boxes, 2)).astype(np.float32) * spread
        feeds = {"b": np.concatenate([corners, corners + 0.1], axis=2),
                 "s": rng.random((1, scores, boxes)).astype(np.float32)}
        want = ort_run(model, feeds)
        got = module.run(feeds)
        counts.add(want[0].shape[0])
        for name, expected in zip(("y", "wf"), want, strict=True):
            assert got[name].shape == expected.shape
            np.testing.assert_allclose(got[name], expected, rtol=1e-6)
    assert len(counts) > 1  # the runs selected different counts


def test_what_cannot_follow_a_run_time_shape_yet_is_refused_by_name() -> None:
    nodes = [helper.make_node("NonZero", ["x"], ["y"]), helper.make_node("CumSum", ["y", "axis"], ["z"])]
    graph = helper.make_graph(nodes, "nz", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
                              [helper.make_tensor_value_info("z", TensorProto.INT64, None)],
                              [helper.make_tensor("axis", TensorProto.INT64, [], [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(UnsupportedModel, match=r"node 'CumSum_1' \(CumSum\): reads 'y' .*cannot go through this op"):
        convert_onnx(model)


def test_a_run_time_batch_through_nonzero_is_refused_saying_why() -> None:
    """NonZero mixes the samples of a batch, so --max-batch 2 makes the batch a symbolic dim (one run over all of
    it), which NonZero cannot take yet: refused by name."""
    model = one_node("NonZero", {"x": (("N", 4), TensorProto.FLOAT)}, TensorProto.INT64)  # type: ignore[dict-item]
    with pytest.raises(UnsupportedModel, match=r"node 'NonZero_0' \(NonZero\): reads 'x' \[N, 4\]; a symbolic dim"):
        convert_onnx(model, max_batch=2)


@requires_node
def test_the_abi_example_in_node_reads_the_dims_too(tmp_path: Path) -> None:
    """docs/abi.md's JavaScript example (tests/js/abi_run.mjs) takes version-2 modules: the output it writes is the
    run's actual elements, as many bytes as the dims say."""
    model = one_node("Compress", {"x": ((3, 4), TensorProto.FLOAT), "c": ((4,), TensorProto.BOOL)},
                     TensorProto.FLOAT, axis=1)
    wasm = convert_onnx(model, simd="plain").wasm
    feeds = {"x": np.arange(12, dtype=np.float32).reshape(3, 4), "c": np.array([True, False, False, True])}
    (got,) = run_in_node(wasm, feeds, tmp_path)
    assert got == WasmModel(wasm).run(feeds)["y"].tobytes() == ort_run(model, feeds)[0].tobytes()


@pytest.mark.parametrize("engine", ["wasmtime", "node"])
def test_the_wasi_command_writes_each_run_s_shape_in_the_npy_header(engine: str, tmp_path: Path) -> None:
    """The .npy header carries the dims the run wrote (space-padded to the largest's digits), and as many bytes
    follow as they hold: numpy reads back exactly ONNX Runtime's output, for any count, none included."""
    if engine == "node" and NODE_PROBLEM is not None:
        pytest.skip(NODE_PROBLEM)
    model = one_node("NonZero", {"x": ((4, 30), TensorProto.FLOAT)}, TensorProto.INT64)
    wasm = convert_onnx(model, wasi=True).wasm
    rng = np.random.default_rng(9)
    for index, x in enumerate([(rng.random((4, 30)) < 0.3).astype(np.float32), np.zeros((4, 30), np.float32),
                               np.ones((4, 30), np.float32)]):
        run = run_wasmtime_wasi if engine == "wasmtime" else run_node_wasi
        status, stdout, stderr = run(wasm, npy_stream(x), tmp_path / str(index))
        assert status == 0, stderr
        [got] = read_npy_stream(stdout, 1)
        want = ort_run(model, {"x": x})[0]
        assert got.shape == want.shape and np.array_equal(got, want)


def nms_model(center: int, optional: int) -> object:
    """NonMaxSuppression over boxes [2, 40, 4] and scores [2, 3, 40], with the first `optional` of its three
    optional inputs given (max per class, IoU threshold, score threshold) as run-time inputs."""
    names = ["boxes", "scores", "max_per_class", "iou", "floor"][:2 + optional]
    types = {"boxes": ((2, 40, 4), TensorProto.FLOAT), "scores": ((2, 3, 40), TensorProto.FLOAT),
             "max_per_class": ((), TensorProto.INT64), "iou": ((), TensorProto.FLOAT), "floor": ((), TensorProto.FLOAT)}
    return one_node("NonMaxSuppression", {n: types[n] for n in names}, TensorProto.INT64, center_point_box=center)


@pytest.mark.parametrize("center", [0, 1], ids=["corners", "centres"])
@pytest.mark.parametrize("optional", [0, 2, 3], ids=["no-limit", "limit-and-iou", "all"])
def test_non_max_suppression_selects_what_onnx_runtime_selects(center: int, optional: int) -> None:
    """Random overlapping boxes (corners in any order, or centres and sizes) and distinct scores: the same
    (batch, class, box) rows in the same order, for limits and thresholds that keep few, some and all."""
    model = nms_model(center, optional)
    module = WasmModel(convert_onnx(model).wasm)
    rng = np.random.default_rng(center * 10 + optional)
    for limit, iou, floor in [(3, 0.5, 0.2), (40, 0.3, 0.0), (0, 0.5, 0.5), (-2, 0.7, 0.9), (10, 1.0, -1.0)]:
        corners = rng.random((2, 40, 2, 2), np.float32)
        boxes = corners.reshape(2, 40, 4) if center == 0 else \
            np.concatenate([rng.random((2, 40, 2)), rng.random((2, 40, 2)) * 0.4], axis=2).astype(np.float32)
        feeds = {"boxes": boxes, "scores": rng.permutation(240).reshape(2, 3, 40).astype(np.float32) / 240,
                 "max_per_class": np.array(limit, np.int64), "iou": np.array(iou, np.float32),
                 "floor": np.array(floor, np.float32)}
        feeds = {name: feeds[name] for name in ["boxes", "scores", "max_per_class", "iou", "floor"][:2 + optional]}
        got, want = module.run(feeds)["y"], ort_run(model, feeds)[0]
        assert got.shape == want.shape, (limit, iou, floor, got.shape, want.shape)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("largest", [1, 0])
def test_top_k_with_a_run_time_k_matches_onnx_runtime_for_every_k(largest: int) -> None:
    """k as a run-time input: both outputs come back at this run's k (0 and the whole axis included), compactly."""
    model = one_node("TopK", {"x": ((3, 7, 2), TensorProto.FLOAT), "k": ((1,), TensorProto.INT64)},
                     TensorProto.FLOAT, axis=1, largest=largest)
    model.graph.node[0].output.append("i")  # type: ignore[attr-defined]
    model.graph.output.append(helper.make_tensor_value_info("i", TensorProto.INT64, None))  # type: ignore[attr-defined]
    module = WasmModel(convert_onnx(model).wasm)
    x = np.random.default_rng(largest).permutation(42).reshape(3, 7, 2).astype(np.float32)
    for k in (0, 1, 3, 7):
        feeds = {"x": x, "k": np.array([k], np.int64)}
        got, want = module.run(feeds), ort_run(model, feeds)
        np.testing.assert_array_equal(got["y"], want[0])
        np.testing.assert_array_equal(got["i"], want[1])
    with pytest.raises(ModelFault, match="unreachable"):  # k past the axis: ONNX Runtime fails the run too
        module.run({"x": x, "k": np.array([8], np.int64)})
