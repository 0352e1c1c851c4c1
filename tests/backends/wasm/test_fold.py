"""MaxUnpool and Col2Im (emitters/fold.py) against ONNX Runtime: unpooling what a MaxPool picked (its Indices,
with and without an output_shape for an odd-sized pool input, 1-D to 3-D), every whole-byte dtype moved as bits,
an index outside the output trapping; folding 1-D to 3-D blocks with strides, pads and dilations; the refusals."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.parity import assert_matches_ort, graph_model, ort_run, single_op_model, wasm_run
from wasinfer.artifact import convert_onnx
from wasinfer.backends.wasm.compiler import UnsupportedModel
from wasinfer.runtime import ModelFault, WasmModel

rng = np.random.default_rng(11)


def _pool_unpool(shape: tuple[int, ...], kernel: list[int], strides: list[int], with_shape: bool,
                 pads: list[int] | None = None) -> tuple[np.ndarray, onnx.ModelProto]:
    """MaxPool (Indices) then MaxUnpool back to the pool's input shape: SegNet's decoder step. With an
    output_shape, the output's type is written into the model, as exporters write it: ONNX's shape inference
    does not read the output_shape's values."""
    x = rng.standard_normal(shape).astype(np.float32)
    attrs = {"kernel_shape": kernel, "strides": strides, **({"pads": pads} if pads else {})}
    nodes = [helper.make_node("MaxPool", ["x"], ["pooled", "indices"], **attrs),
             helper.make_node("MaxUnpool", ["pooled", "indices"] + (["shape"] if with_shape else []), ["y"], **attrs)]
    constants = {"shape": np.array(shape, np.int64)} if with_shape else {}
    model = graph_model(nodes, {"x": x}, ["y"], constants, opset=11)
    if with_shape:
        model.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", TensorProto.FLOAT, shape))
    return x, model


EXACT = [((2, 3, 8, 6), [2, 2], [2, 2], None), ((1, 3, 11), [3], [2], None),
         ((1, 2, 4, 6, 4), [2, 2, 2], [2, 2, 2], None)]
UNEVEN = [((1, 2, 7, 9), [3, 2], [2, 3], None), ((2, 2, 5, 5), [2, 2], [2, 2], [1, 1, 1, 1]),
          ((1, 2, 5, 7, 5), [2, 2, 2], [2, 2, 2], None)]


@pytest.mark.parametrize(("shape", "kernel", "strides", "pads"), EXACT)
def test_max_unpool_without_output_shape_matches_ort(shape: tuple[int, ...], kernel: list[int],
                                                     strides: list[int], pads: list[int] | None) -> None:
    """Pools that cover their input exactly: the shape MaxUnpool infers is the pool's input's."""
    x, model = _pool_unpool(shape, kernel, strides, False, pads)
    assert_matches_ort(model, {"x": x}, rtol=0, atol=0)


@pytest.mark.parametrize(("shape", "kernel", "strides", "pads"), EXACT + UNEVEN)
def test_max_unpool_to_an_output_shape_matches_ort(shape: tuple[int, ...], kernel: list[int],
                                                   strides: list[int], pads: list[int] | None) -> None:
    """Odd sizes and padded pools too: the indices count over the output_shape, the pool's input's layout."""
    x, model = _pool_unpool(shape, kernel, strides, True, pads)
    assert_matches_ort(model, {"x": x}, rtol=0, atol=0)
    got = wasm_run(model, {"x": x})[0]  # every element is the input's, in its place, or zero
    assert got.shape == x.shape and np.all((got == 0) | (got == x))


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.uint8, np.int16, np.float64, np.bool_])
def test_max_unpool_moves_any_whole_byte_dtype(dtype: type) -> None:
    """Indices over the whole output (batch and channels included), as ONNX's reference writes them."""
    x = (rng.standard_normal((2, 2, 2, 3)) * 9).astype(dtype)
    indices = rng.permutation(2 * 2 * 4 * 6)[:x.size].reshape(x.shape).astype(np.int64)
    model = single_op_model("MaxUnpool", {"x": x, "i": indices}, opset=11, kernel_shape=[2, 2], strides=[2, 2])
    want = np.zeros(2 * 2 * 4 * 6, dtype)
    want[indices.reshape(-1)] = x.reshape(-1)
    got = wasm_run(model, {"x": x, "i": indices})[0]
    assert got.dtype == x.dtype
    np.testing.assert_array_equal(got, want.reshape(2, 2, 4, 6))


@pytest.mark.parametrize("bad", [96, -1])
def test_an_index_outside_the_output_traps(bad: int) -> None:
    x = np.ones((1, 1, 2, 2), np.float32)
    indices = np.array([0, 5, bad, 7], np.int64).reshape(x.shape)
    model = single_op_model("MaxUnpool", {"x": x, "i": indices}, opset=11, kernel_shape=[2, 2], strides=[2, 2])
    with pytest.raises(ModelFault, match="unreachable"):
        wasm_run(model, {"x": x, "i": indices})


FOLDS = [([5, 5], [2, 2], {}), ([7, 6], [3, 2], {"strides": [2, 1], "pads": [1, 0, 2, 1], "dilations": [1, 2]}),
         ([9], [3], {"strides": [2], "pads": [1, 1]}), ([4, 5, 3], [2, 1, 2], {"pads": [1, 0, 1, 0, 1, 1]}),
         ([6, 5], [1, 1], {}), ([8, 8], [3, 3], {"strides": [3, 3], "pads": [1, 1, 1, 1], "dilations": [2, 2]})]


@pytest.mark.parametrize(("image", "block", "attrs"), FOLDS)
def test_col2im_matches_ort(image: list[int], block: list[int], attrs: dict[str, list[int]]) -> None:
    rank = len(image)
    dilations, pads = attrs.get("dilations", [1] * rank), attrs.get("pads", [0] * 2 * rank)
    strides = attrs.get("strides", [1] * rank)
    blocks = int(np.prod([(image[a] + pads[a] + pads[rank + a] - dilations[a] * (block[a] - 1) - 1) // strides[a] + 1
                          for a in range(rank)]))
    x = rng.standard_normal((2, 3 * int(np.prod(block)), blocks)).astype(np.float32)
    model = single_op_model("Col2Im", {"x": x}, constants={"image": np.array(image, np.int64),
                                                           "block": np.array(block, np.int64)}, opset=18, **attrs)
    assert_matches_ort(model, {"x": x}, rtol=1e-6, atol=1e-6)


def test_col2im_refusals_name_what_is_wrong() -> None:
    x = rng.standard_normal((1, 4, 16)).astype(np.float32)
    model = single_op_model("Col2Im", {"x": x, "image": np.array([5, 5], np.int64)},
                            constants={"block": np.array([2, 2], np.int64)}, opset=18)
    with pytest.raises(UnsupportedModel, match="'Col2Im_0'"):
        wasm_run(model, {"x": x, "image": np.array([5, 5], np.int64)})
    wrong = rng.standard_normal((1, 4, 15)).astype(np.float32)
    model = single_op_model("Col2Im", {"x": wrong}, constants={"image": np.array([5, 5], np.int64),
                                                               "block": np.array([2, 2], np.int64)}, opset=18)
    with pytest.raises(UnsupportedModel, match=r"input of shape \[1, 4, 15\] is not \[N, C \* 4, 16\]"):
        wasm_run(model, {"x": wrong})


def test_max_unpool_output_shape_must_be_a_constant() -> None:
    """A run-time output_shape would set a shape the module was not compiled for: refused by name."""
    x = np.ones((1, 1, 2, 2), np.float32)
    indices = np.array([0, 3, 12, 15], np.int64).reshape(x.shape)
    shape = np.array([1, 1, 5, 5], np.int64)
    model = single_op_model("MaxUnpool", {"x": x, "i": indices, "shape": shape}, opset=11, kernel_shape=[2, 2],
                            strides=[2, 2])
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("y0", TensorProto.FLOAT, [1, 1, 5, 5]))
    with pytest.raises(UnsupportedModel, match=r"'MaxUnpool_0'.*output_shape 'shape' is computed at run time"):
        wasm_run(model, {"x": x, "i": indices, "shape": shape})


@pytest.mark.parametrize("attrs", [{}, {"strides": [2, 1], "pads": [1, 0, 2, 1], "dilations": [1, 2]}])
def test_col2im_with_declared_run_time_shapes_serves_every_shape(attrs: dict[str, list[int]]) -> None:
    """image_shape and block_shape fed at run time, declared 1..9: one module folds one input [1, 12, 20] as
    several (image, block) pairs that fit it (3, 2, 1 channels), against ONNX Runtime; a pair that does not fit
    the input traps the run."""
    graph = helper.make_graph(
        [helper.make_node("Col2Im", ["x", "image", "block"], ["y"], **attrs)], "fold",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 12, 20]),
         helper.make_tensor_value_info("image", TensorProto.INT64, [2]),
         helper.make_tensor_value_info("block", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    module = WasmModel(convert_onnx(model, input_values={"image": (1, 9), "block": (1, 9)}).wasm)
    x = rng.standard_normal((1, 12, 20)).astype(np.float32)
    strides, pads, dilations = attrs.get("strides", [1, 1]), attrs.get("pads", [0] * 4), attrs.get("dilations", [1, 1])
    found = 0
    for image in ([5, 6], [4, 8], [9, 3], [6, 6], [8, 4], [7, 5]):
        for block in ([2, 2], [1, 4], [3, 2], [1, 1], [2, 3], [4, 3], [6, 1]):
            positions = [(image[a] + pads[a] + pads[2 + a] - dilations[a] * (block[a] - 1) - 1) // strides[a] + 1
                         for a in range(2)]
            if 12 % (block[0] * block[1]) or positions[0] * positions[1] != 20 or min(positions) < 1:
                continue
            feeds = {"x": x, "image": np.array(image, np.int64), "block": np.array(block, np.int64)}
            want, got = ort_run(model, feeds)[0], module.run(feeds)["y"]
            assert got.shape == want.shape, (image, block)
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
            found += 1
    assert found >= 3  # several shapes through the one module
    with pytest.raises(ModelFault, match="unreachable"):  # 5 x 5 blocks of 2 x 2: 16 positions, not 20
        module.run({"x": x, "image": np.array([5, 5], np.int64), "block": np.array([2, 2], np.int64)})
