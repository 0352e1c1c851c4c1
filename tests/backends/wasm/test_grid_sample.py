"""GridSample and AffineGrid (emitters/grid_sample.py) against ONNX Runtime: every mode, padding mode and
align_corners, both opsets' mode names, odd sizes, grids reaching far outside the input, 3-D (volumetric)
sampling, a spatial transformer of the two together, and the refusals."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from onnx import TensorProto, helper

from tests.parity import assert_matches_ort, graph_model, ort_run, single_op_model, wasm_run
from wasinfer.artifact import convert_onnx
from wasinfer.backends.wasm.compiler import UnsupportedModel
from wasinfer.runtime import WasmModel
from wasinfer.runtime.base import InputError, ModelFault

rng = np.random.default_rng(16)
OPSET16_MODES = {"linear": "bilinear", "nearest": "nearest", "cubic": "bicubic"}


def _grid(*shape: int, reach: float = 1.6) -> np.ndarray:
    """Normalised coordinates, some past the borders (reach > 1) so every padding mode matters."""
    return rng.uniform(-reach, reach, shape).astype(np.float32)


@pytest.mark.parametrize(("mode", "padding", "align"),
                         list(itertools.product(["linear", "nearest", "cubic"], ["zeros", "border", "reflection"],
                                                [0, 1])))
@pytest.mark.parametrize("opset", [16, 20])
def test_grid_sample_2d_matches_ort(mode: str, padding: str, align: int, opset: int) -> None:
    x = rng.standard_normal((2, 3, 5, 7)).astype(np.float32)
    grid = _grid(2, 4, 6, 2)
    name = OPSET16_MODES[mode] if opset == 16 else mode
    model = single_op_model("GridSample", {"x": x, "grid": grid}, opset=opset, mode=name, padding_mode=padding,
                            align_corners=align)
    assert_matches_ort(model, {"x": x, "grid": grid}, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
def test_grid_sample_far_outside_and_on_the_borders(padding: str) -> None:
    """Coordinates many spans away (reflection folds them back), exactly on the edges, and a one-pixel axis."""
    for shape in ((1, 2, 1, 6), (1, 2, 4, 3)):
        x = rng.standard_normal(shape).astype(np.float32)
        edges = np.array([-1.0, 1.0, -7.3, 9.1, 0.0, 3.02, -2.5, 0.999], np.float32)
        grid = np.stack(np.meshgrid(edges, edges[::-1]), axis=-1)[None].astype(np.float32)
        for mode, align in itertools.product(["bilinear", "nearest", "bicubic"], [0, 1]):
            model = single_op_model("GridSample", {"x": x, "grid": grid}, opset=16, mode=mode,
                                    padding_mode=padding, align_corners=align)
            assert_matches_ort(model, {"x": x, "grid": grid}, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("mode", "padding", "align"),
                         list(itertools.product(["linear", "nearest"], ["zeros", "border", "reflection"], [0, 1])))
def test_grid_sample_volumetric_matches_ort(mode: str, padding: str, align: int) -> None:
    """Opset 20's 3-D form: 8 corners for linear, the grid's (x, y, z) addressing (W, H, D)."""
    x = rng.standard_normal((2, 3, 4, 5, 3)).astype(np.float32)
    grid = _grid(2, 3, 2, 5, 3)
    model = single_op_model("GridSample", {"x": x, "grid": grid}, opset=20, mode=mode, padding_mode=padding,
                            align_corners=align)
    assert_matches_ort(model, {"x": x, "grid": grid}, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("align", [0, 1])
@pytest.mark.parametrize("size", [(2, 3, 5, 7), (1, 1, 1, 1), (3, 2, 1, 6)])
def test_affine_grid_2d_matches_ort(size: tuple[int, ...], align: int) -> None:
    theta = rng.standard_normal((size[0], 2, 3)).astype(np.float32)
    model = single_op_model("AffineGrid", {"theta": theta}, constants={"size": np.array(size, np.int64)},
                            opset=20, align_corners=align)
    assert_matches_ort(model, {"theta": theta}, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("align", [0, 1])
def test_affine_grid_3d_matches_ort(align: int) -> None:
    theta = rng.standard_normal((2, 3, 4)).astype(np.float32)
    model = single_op_model("AffineGrid", {"theta": theta}, constants={"size": np.array([2, 3, 4, 5, 3], np.int64)},
                            opset=20, align_corners=align)
    assert_matches_ort(model, {"theta": theta}, rtol=1e-5, atol=1e-6)


def test_spatial_transformer_identity_theta_gives_back_the_image() -> None:
    """AffineGrid of the identity then GridSample with align_corners reads every pixel at its own centre."""
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    theta = np.tile(np.array([[1, 0, 0], [0, 1, 0]], np.float32), (2, 1, 1))
    nodes = [helper.make_node("AffineGrid", ["theta", "size"], ["grid"], align_corners=1),
             helper.make_node("GridSample", ["x", "grid"], ["y"], align_corners=1)]
    model = graph_model(nodes, {"x": x, "theta": theta}, ["y"], {"size": np.array(x.shape, np.int64)}, opset=20)
    got = wasm_run(model, {"x": x, "theta": theta})[0]
    np.testing.assert_allclose(got, x, rtol=0, atol=1e-5)
    assert_matches_ort(model, {"x": x, "theta": theta}, rtol=1e-5, atol=1e-5)


def test_unsupported_attributes_and_dtypes_are_refused_by_name() -> None:
    x = rng.standard_normal((1, 2, 3, 4)).astype(np.float32)
    grid = _grid(1, 2, 2, 2)
    model = single_op_model("GridSample", {"x": x, "grid": grid}, opset=16, padding_mode="wrap")
    with pytest.raises(UnsupportedModel, match="padding_mode 'wrap'"):
        wasm_run(model, {"x": x, "grid": grid})
    volume = rng.standard_normal((1, 2, 3, 4, 5)).astype(np.float32)
    model = single_op_model("GridSample", {"x": volume, "grid": _grid(1, 2, 2, 2, 3)}, opset=20, mode="cubic")
    with pytest.raises(UnsupportedModel, match="mode 'cubic' is 2-D only"):
        wasm_run(model, {"x": volume, "grid": _grid(1, 2, 2, 2, 3)})
    doubles = x.astype(np.float64)
    model = single_op_model("GridSample", {"x": doubles, "grid": grid.astype(np.float64)}, opset=16)
    with pytest.raises(UnsupportedModel, match="only float32"):
        wasm_run(model, {"x": doubles, "grid": grid.astype(np.float64)})
    theta = rng.standard_normal((1, 2, 3)).astype(np.float32)
    feeds = {"theta": theta, "size": np.array([1, 1, 4, 4], np.int64)}
    model = single_op_model("AffineGrid", feeds, opset=20)
    with pytest.raises(UnsupportedModel, match=r"'AffineGrid_0' \(AffineGrid\): cannot infer the shape"):
        wasm_run(model, feeds)
    # with the output's type written into the model, a run-time size would be ignored: refused by name
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("y0", TensorProto.FLOAT, [1, 4, 4, 2]))
    with pytest.raises(UnsupportedModel, match="size 'size' is computed at run time"):
        wasm_run(model, feeds)


@pytest.mark.parametrize("align", [0, 1])
@pytest.mark.parametrize("rank", [2, 3])
def test_affine_grid_with_a_declared_run_time_size_serves_every_size(rank: int, align: int) -> None:
    """One module, the size's values declared 0..9: grids of several sizes (a one-position axis included) against
    ONNX Runtime; a size whose batch is not theta's traps the run, one past the range is refused naming it."""
    batch = 2
    graph = helper.make_graph(
        [helper.make_node("AffineGrid", ["theta", "size"], ["grid"], align_corners=align)], "affine",
        [helper.make_tensor_value_info("theta", TensorProto.FLOAT, [batch, rank, rank + 1]),
         helper.make_tensor_value_info("size", TensorProto.INT64, [rank + 2])],
        [helper.make_tensor_value_info("grid", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    module = WasmModel(convert_onnx(model, input_values={"size": (0, 9)}).wasm)
    theta = np.random.default_rng(3).standard_normal((batch, rank, rank + 1)).astype(np.float32)
    spatial = [(5, 6), (1, 9), (9, 2)] if rank == 2 else [(2, 3, 4), (9, 1, 5), (3, 3, 3)]
    for dims in spatial:
        feeds = {"theta": theta, "size": np.array([batch, 3, *dims], np.int64)}
        want, got = ort_run(model, feeds)[0], module.run(feeds)["grid"]
        assert got.shape == want.shape == (batch, *dims, rank)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match=r"input 'size': its values must lie in 0..9"):
        module.run({"theta": theta, "size": np.array([batch, 3, *spatial[0][:-1], 10], np.int64)})
    with pytest.raises(ModelFault, match="unreachable"):  # size[0] is not theta's batch (the instance is spent)
        module.run({"theta": theta, "size": np.array([batch + 1, 3, *spatial[0]], np.int64)})
