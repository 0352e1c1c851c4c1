"""Max/Average/Lp pools (and their Global forms), LRN, standalone BatchNormalization and LpNormalization
against ONNX Runtime."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import helper

from tests.parity import assert_matches_ort, single_op_model, wasm_run
from wasinfer.artifact import convert_onnx
from wasinfer.backends.wasm import UnsupportedModel

rng = np.random.default_rng(0)


def rand(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def pool_case(op: str, x_shape: tuple[int, ...], opset: int = 19, **attrs: object) -> None:
    x = rand(*x_shape)
    assert_matches_ort(single_op_model(op, {"x": x}, opset=opset, **attrs), {"x": x})


POOLS = [
    ((1, 3, 8, 8), {"kernel_shape": [3, 3]}),
    ((1, 3, 9, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 3, 9, 7), {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [0, 1, 2, 0]}),  # asymmetric
    ((1, 2, 11, 10), {"kernel_shape": [5, 5], "pads": [2, 2, 2, 2]}),  # padding larger than 1
    ((1, 3, 9, 7), {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [0, 1, 2, 0], "ceil_mode": 1}),
    ((1, 3, 10, 10), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),  # last window overhangs
    ((1, 3, 7, 7), {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
    ((1, 2, 9, 9), {"kernel_shape": [3, 3], "dilations": [2, 2], "pads": [1, 1, 2, 2]}),
    ((1, 2, 9, 9), {"kernel_shape": [3, 3], "dilations": [2, 1], "strides": [2, 2], "ceil_mode": 1,
                    "pads": [1, 1, 1, 1]}),
    ((1, 3, 8, 8), {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ((1, 3, 8, 9), {"kernel_shape": [2, 3], "auto_pad": "SAME_LOWER"}),
    ((1, 3, 8, 8), {"kernel_shape": [3, 3], "auto_pad": "VALID", "strides": [2, 2]}),
    ((2, 3, 11), {"kernel_shape": [3], "strides": [2], "ceil_mode": 1}),  # 1-D
    ((1, 2, 13), {"kernel_shape": [4], "pads": [1, 2]}),
    ((1, 2, 4, 5, 6), {"kernel_shape": [2, 3, 2], "pads": [1, 1, 0, 0, 1, 1]}),  # 3-D
    ((1, 2, 12, 13), {"kernel_shape": [9, 9], "strides": [1, 3]}),  # more taps than unrolled
    ((2, 2, 7, 7), {"kernel_shape": [7, 7], "pads": [3, 3, 3, 3]}),
]


@pytest.mark.parametrize("x_shape,attrs", POOLS)
def test_maxpool(x_shape: tuple[int, ...], attrs: dict[str, object]) -> None:
    pool_case("MaxPool", x_shape, **attrs)


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("x_shape,attrs", POOLS)
def test_averagepool(x_shape: tuple[int, ...], attrs: dict[str, object], count_include_pad: int) -> None:
    pool_case("AveragePool", x_shape, count_include_pad=count_include_pad, **attrs)


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("x_shape,attrs", [POOLS[1], POOLS[4], POOLS[7], POOLS[10], POOLS[13], POOLS[14]])
def test_lppool(x_shape: tuple[int, ...], attrs: dict[str, object], p: int) -> None:
    pool_case("LpPool", x_shape, opset=18, p=p, **attrs)


def test_pools_opset_9_form() -> None:
    pool_case("MaxPool", (1, 3, 9, 9), opset=9, kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1])
    pool_case("AveragePool", (1, 3, 9, 9), opset=9, kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1)


def test_maxpool_with_negative_inputs_and_padding() -> None:
    """Padding never wins a max, even when every real value is negative."""
    x = -np.abs(rand(1, 2, 5, 6)) - 1
    assert_matches_ort(single_op_model("MaxPool", {"x": x}, kernel_shape=[3, 3], pads=[1, 1, 1, 1]), {"x": x})


@pytest.mark.parametrize("op,attrs", [("GlobalAveragePool", {}), ("GlobalMaxPool", {}), ("GlobalLpPool", {}),
                                      ("GlobalLpPool", {"p": 1}), ("GlobalLpPool", {"p": 3})])
@pytest.mark.parametrize("x_shape", [(2, 3, 7, 7), (1, 3, 3), (1, 5, 2, 2, 3), (1, 4, 1, 1), (1, 2, 13, 9)])
def test_global_pools(op: str, attrs: dict[str, object], x_shape: tuple[int, ...]) -> None:
    x = rand(*x_shape)
    assert_matches_ort(single_op_model(op, {"x": x}, **attrs), {"x": x})


def test_ceil_mode_shape_disagreement_is_refused() -> None:
    """ONNX Runtime drops a last window that would start in the end padding; ONNX's shape
    inference (1.23) keeps it. The kernel refuses rather than fill a row no reference agrees on."""
    x = rand(1, 2, 5, 5)
    model = single_op_model("MaxPool", {"x": x}, kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)
    with pytest.raises(UnsupportedModel, match="differs from the computed"):
        convert_onnx(model)


@pytest.mark.parametrize("storage_order", [0, 1])
@pytest.mark.parametrize("x_shape,attrs", [POOLS[1], POOLS[4], POOLS[7], POOLS[12], POOLS[14], POOLS[15], POOLS[9]])
def test_maxpool_indices(x_shape: tuple[int, ...], attrs: dict[str, object], storage_order: int) -> None:
    x = rand(*x_shape)
    model = single_op_model("MaxPool", {"x": x}, output_count=2, opset=12, storage_order=storage_order, **attrs)
    assert_matches_ort(model, {"x": x})


def test_maxpool_indices_ties_and_infinities() -> None:
    """The first of equal maxima wins; a window of -inf reports its first real tap, never padding."""
    ties = rng.integers(0, 3, (1, 2, 7, 8)).astype(np.float32)
    infinite = np.full((1, 1, 4, 5), -np.inf, np.float32)
    for x in (ties, infinite):
        model = single_op_model("MaxPool", {"x": x}, output_count=2, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        assert_matches_ort(model, {"x": x})


# ---------------------------------------------------------------- LRN


@pytest.mark.parametrize("x_shape,attrs", [
    ((1, 7, 5, 5), {"size": 5}),
    ((2, 10, 3, 7), {"size": 3, "alpha": 0.01, "beta": 0.5, "bias": 2.0}),
    ((1, 3, 2, 3), {"size": 1, "alpha": 0.3, "beta": 1.3}),
    ((1, 4, 6, 6), {"size": 7, "alpha": 0.5}),  # window wider than the channels
])
def test_lrn(x_shape: tuple[int, ...], attrs: dict[str, object]) -> None:
    x = rand(*x_shape)
    assert_matches_ort(single_op_model("LRN", {"x": x}, **attrs), {"x": x})


def test_lrn_even_size_follows_the_spec() -> None:
    """ONNX Runtime refuses even sizes; the spec's window is [c - floor((n-1)/2), c + ceil((n-1)/2)]."""
    x, size, alpha, beta, bias = rand(1, 6, 3, 5), 4, 0.2, 0.75, 1.0
    squares = np.stack([np.sum(x[:, max(0, c - (size - 1) // 2):c + math.ceil((size - 1) / 2) + 1] ** 2, axis=1)
                        for c in range(x.shape[1])], axis=1)
    want = x / (bias + alpha / size * squares) ** beta
    got = wasm_run(single_op_model("LRN", {"x": x}, size=size, alpha=alpha), {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- BatchNormalization


def bn_params(channels: int) -> dict[str, np.ndarray]:
    return {"scale": rand(channels), "bias": rand(channels), "mean": rand(channels),
            "var": np.abs(rand(channels)) + 0.1}


@pytest.mark.parametrize("opset", [9, 15])
@pytest.mark.parametrize("x_shape", [(2, 5, 3, 3), (1, 6), (3, 7), (1, 3, 4, 5, 2), (1, 5, 7)])
def test_batchnorm_constant_params(opset: int, x_shape: tuple[int, ...]) -> None:
    x = rand(*x_shape)
    model = single_op_model("BatchNormalization", {"x": x}, constants=bn_params(x_shape[1]), opset=opset,
                            epsilon=1e-3)
    assert_matches_ort(model, {"x": x})


def test_batchnorm_runtime_params() -> None:
    x, params = rand(2, 6, 3, 5), bn_params(6)
    feeds = {"x": x, "scale": params["scale"], "bias": params["bias"]}
    model = single_op_model("BatchNormalization", feeds, constants={"mean": params["mean"], "var": params["var"]})
    assert_matches_ort(model, feeds)


@pytest.mark.parametrize("activation", ["Relu", "LeakyRelu", "Tanh"])
def test_batchnorm_after_add_with_fused_activation(activation: str) -> None:
    """The case BN folding leaves (a BN whose producer is not a Conv); its activation fuses into it."""
    a, b = rand(1, 5, 4, 3), rand(1, 5, 4, 3)
    params = bn_params(5)
    nodes = [helper.make_node("Add", ["a", "b"], ["c"]),
             helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["n"]),
             helper.make_node(activation, ["n"], ["y"])]
    inputs = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, v.shape) for n, v in (("a", a), ("b", b))]
    output = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, a.shape)
    graph = helper.make_graph(nodes, "bn", inputs, [output],
                              [onnx.numpy_helper.from_array(v, n) for n, v in params.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    stats = convert_onnx(model).stats
    assert stats["activations_fused"] == 1 and stats["bn_folded"] == 0
    assert_matches_ort(model, {"a": a, "b": b})


def test_batchnorm_training_mode_is_refused() -> None:
    x = rand(2, 3, 4)
    model = single_op_model("BatchNormalization", {"x": x}, output_count=3, constants=bn_params(3), opset=15,
                            training_mode=1)
    with pytest.raises(UnsupportedModel, match="training_mode"):
        convert_onnx(model)


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("shape,axis", [((7,), 0), ((3, 5), -1), ((3, 5), 0), ((2, 3, 9), 1), ((2, 3, 9), 2)])
def test_lp_normalization_matches_ort(p: int, shape: tuple[int, ...], axis: int) -> None:
    """Along any axis; a line of zeros stays zeros (no NaN), as in ONNX Runtime."""
    x = rand(*shape)
    x.reshape(-1)[:shape[-1]] = 0.0
    assert_matches_ort(single_op_model("LpNormalization", {"x": x}, axis=axis, p=p), {"x": x}, rtol=1e-6, atol=1e-7)


def test_lp_normalization_refuses_p_3() -> None:
    x = rand(2, 3)
    with pytest.raises(UnsupportedModel, match="p=3 is not 1 or 2"):
        convert_onnx(single_op_model("LpNormalization", {"x": x}, p=3))
