"""TFLite builtins one or a few at a time: small float32 models built here (tests/tflite_builder.py),
run by LiteRT and, converted, by the wasm runtime, with odd sizes, NHWC layouts and several values
of each option; MediaPipe's custom ops against LiteRT's builtins or the kernels' own definitions;
what cannot be expressed is declined naming the operator index, op and output."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tflite  # type: ignore[import-untyped]

from tests.scripts import load
from tests.tflite_builder import DENSE, SPARSE_CSR, Sparse, TfliteBuilder, run_litert
from wasinfer.artifact.convert import convert_model
from wasinfer.backends.wasm import UnsupportedModel
from wasinfer.frontends import FrontendError
from wasinfer.frontends.tflite import CUSTOM_OPS, SUPPORTED, builtin_table, load_tflite
from wasinfer.runtime.wasm import WasmModel

RNG = np.random.default_rng(7)
SAME, VALID = 1, 2  # tflite.Padding in options tables is SAME 0, VALID 1; these are TfLitePadding (custom ops)


def weights(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape).astype(np.float32)


def random_feeds(b: TfliteBuilder, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for t in b.inputs:
        shape = [batch if d == -1 else d for d in b.tensors[t].signature or b.tensors[t].shape or []]
        feeds[b.tensors[t].name] = rng.normal(size=shape).astype(np.float32)
    return feeds


def run_both(tmp_path: Path, b: TfliteBuilder, raw: bytes, feeds: dict[str, np.ndarray] | None = None,
             batch: int = 1, max_batch: int = 1) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """LiteRT's outputs and the compiled module's, on the same inputs."""
    path = tmp_path / "model.tflite"
    path.write_bytes(raw)
    feeds = feeds if feeds is not None else random_feeds(b, batch)
    got = WasmModel(convert_model(path, max_batch=max_batch).wasm).run(feeds)
    return run_litert(raw, feeds), got


def assert_parity(tmp_path: Path, b: TfliteBuilder, raw: bytes, feeds: dict[str, np.ndarray] | None = None,
                  rtol: float = 1e-4, atol: float = 1e-5, batch: int = 1, max_batch: int = 1) -> None:
    expected, got = run_both(tmp_path, b, raw, feeds, batch, max_batch)
    assert set(got) == set(expected)
    for name, want in expected.items():
        assert got[name].shape == want.shape, f"{name}: {got[name].shape} != {want.shape}"
        assert got[name].dtype == want.dtype, f"{name}: {got[name].dtype} != {want.dtype}"
        if want.dtype == np.float32:
            np.testing.assert_allclose(got[name], want, rtol=rtol, atol=atol, err_msg=name)
        else:
            np.testing.assert_array_equal(got[name], want, err_msg=name)


# -- one model per case: (builder → outputs) ---------------------------------------------------------------------

Case = Callable[[TfliteBuilder], list[int]]


def unary(kind: str, shape: list[int], **options: object) -> Case:
    return lambda b: [b.op(kind, [b.input(shape)], options=dict(options))]


def binary(kind: str, a: list[int], c: list[int] | np.ndarray, **options: object) -> Case:
    """`c` a shape (a second input) or an array (a constant operand, broadcast)."""
    def make(b: TfliteBuilder) -> list[int]:
        x = b.input(a)
        y = b.const(c) if isinstance(c, np.ndarray) else b.input(c)
        return [b.op(kind, [x, y], options=dict(options))]
    return make


def after_conv(kind: str, **options: object) -> Case:
    """The op on a conv's channels-first output, so the layout handling is exercised too."""
    def make(b: TfliteBuilder) -> list[int]:
        x = b.input([1, 5, 7, 4])
        c = b.op("CONV_2D", [x, b.const(weights(8, 3, 3, 4)), b.const(weights(8))],
                 options={"Padding": 0, "StrideH": 1, "StrideW": 1, "DilationHFactor": 1, "DilationWFactor": 1})
        return [b.op(kind, [c], options=dict(options))]
    return make


def with_const(kind: str, shape: list[int], *consts: np.ndarray, dtype: object = np.float32,
               outputs: int = 1, **options: object) -> Case:
    def make(b: TfliteBuilder) -> list[int]:
        made = b.op(kind, [b.input(shape), *(b.const(c) for c in consts)], outputs=outputs, options=dict(options),
                    dtype=dtype)
        return made if isinstance(made, list) else [made]
    return make


def strided(shape: list[int], begin: list[int], end: list[int], strides: list[int], **masks: int) -> Case:
    return with_const("STRIDED_SLICE", shape, np.array(begin, np.int32), np.array(end, np.int32),
                      np.array(strides, np.int32), **masks)


def pack(axis: int) -> Case:
    def make(b: TfliteBuilder) -> list[int]:
        xs = [b.input([3, 5]) for _ in range(3)]
        return [b.op("PACK", xs, options={"ValuesCount": 3, "Axis": axis})]
    return make


def compare(kind: str) -> Case:
    """A bool output, and a float one selected by it (SELECT_V2)."""
    def make(b: TfliteBuilder) -> list[int]:
        x, y = b.input([2, 3, 5]), b.input([3, 5])
        mask = b.op(kind, [x, y], dtype=np.bool_)
        return [mask, b.op("SELECT_V2", [mask, x, y])]
    return make


def logical(kind: str) -> Case:
    def make(b: TfliteBuilder) -> list[int]:
        x, y = b.input([4, 3]), b.input([4, 3])
        p = b.op("GREATER", [x, b.const(np.float32(0))], dtype=np.bool_)
        q = b.op("LESS", [y, b.const(np.float32(0.3))], dtype=np.bool_)
        out = b.op(kind, [p] if kind == "LOGICAL_NOT" else [p, q], dtype=np.bool_)
        return [out, b.op("SELECT", [out, x, y])]
    return make


def select_rows(b: TfliteBuilder) -> list[int]:
    x, y = b.input([4, 3, 2]), b.input([4, 3, 2])
    return [b.op("SELECT", [b.const(np.array([True, False, False, True])), x, y])]


def arg(kind: str, axis: int, dtype: object) -> Case:
    table = "ArgMaxOptions" if kind == "ARG_MAX" else "ArgMinOptions"
    code = 2 if dtype == np.int32 else 4  # TensorType INT32, INT64
    return lambda b: [b.op(kind, [b.input([3, 6, 5]), b.const(np.array([axis], np.int32))],
                           options={"OutputType": code}, options_table=table, dtype=dtype)]


def reduce(kind: str, axes: list[int], keep: bool) -> Case:
    return with_const(kind, [2, 5, 3, 4], np.array(axes, np.int32), KeepDims=keep)


def resize(kind: str, size: list[int], align: bool, half: bool) -> Case:
    table = "ResizeBilinearOptions" if kind == "RESIZE_BILINEAR" else "ResizeNearestNeighborOptions"
    return lambda b: [b.op(kind, [b.input([1, 5, 7, 3]), b.const(np.array(size, np.int32))],
                           options={"AlignCorners": align, "HalfPixelCenters": half}, options_table=table)]


def transpose_conv(padding: int, stride: int, out_hw: list[int], bias: bool) -> Case:
    def make(b: TfliteBuilder) -> list[int]:
        x = b.input([1, 5, 6, 3])
        inputs = [b.const(np.array([1, *out_hw, 4], np.int32)), b.const(weights(4, 3, 3, 3)), x]
        if bias:
            inputs.append(b.const(weights(4)))
        return [b.op("TRANSPOSE_CONV", inputs, options={"Padding": padding, "StrideH": stride, "StrideW": stride})]
    return make


def batch_matmul(adj_x: bool, adj_y: bool) -> Case:
    def make(b: TfliteBuilder) -> list[int]:
        x = b.input([2, 5, 3] if adj_x else [2, 3, 5])
        y = b.input([4, 5] if adj_y else [5, 4])
        return [b.op("BATCH_MATMUL", [x, y], options={"AdjX": adj_x, "AdjY": adj_y})]
    return make


def split_v(b: TfliteBuilder) -> list[int]:
    parts = b.op("SPLIT_V", [b.input([2, 9, 3]), b.const(np.array([2, -1, 4], np.int32)),
                             b.const(np.array([1], np.int32))], outputs=3, options={"NumSplits": 3})
    return list(parts)


def unpack(axis: int) -> Case:
    def make(b: TfliteBuilder) -> list[int]:
        return list(b.op("UNPACK", [b.input([3, 4, 5])], outputs=[3, 4, 5][axis],
                         options={"Num": [3, 4, 5][axis], "Axis": axis}))
    return make


def gather_nd(b: TfliteBuilder) -> list[int]:
    index = np.array([[[1, 2], [0, 0]], [[2, 3], [1, 0]], [[0, 4], [2, 1]]], np.int32)
    return [b.op("GATHER_ND", [b.input([3, 5, 4]), b.const(index)])]


def densify(sparse: Sparse, dense: np.ndarray) -> Case:
    def make(b: TfliteBuilder) -> list[int]:
        x = b.input(list(dense.shape))
        weights_t = b.op("DENSIFY", [b.const(dense, sparse=sparse)])
        return [b.op("ADD", [x, weights_t])]
    return make


def sparse_fully_connected(b: TfliteBuilder) -> list[int]:
    """Sparse FC weights as the converter's sparsity option writes them: 1x4 blocks, CSR over blocks."""
    dense = weights(6, 8) * (RNG.random((6, 2, 1)) < 0.5).repeat(4, axis=2).reshape(6, 8)
    w = b.const(dense, sparse=Sparse([DENSE, SPARSE_CSR, DENSE], block=[(1, 4)]))
    return [b.op("FULLY_CONNECTED", [b.input([3, 8]), w, b.const(weights(6))])]


def lrn(b: TfliteBuilder) -> list[int]:
    return [b.op("LOCAL_RESPONSE_NORMALIZATION", [b.input([1, 3, 4, 7])],
                 options={"Radius": 2, "Bias": 1.5, "Alpha": 0.3, "Beta": 0.75})]


def mirror(mode: int, pads: list[list[int]]) -> Case:
    return with_const("MIRROR_PAD", [1, 4, 5, 3], np.array(pads, np.int32), Mode=mode)


CONV_OPTS = {"Padding": 0, "StrideH": 1, "StrideW": 1, "DilationHFactor": 1, "DilationWFactor": 1}
NHWC_PADS = [[0, 0], [2, 1], [0, 3], [0, 0]]
CASES: dict[str, Case] = {
    # elementwise, unary
    **{k.lower(): unary(k, [2, 7, 3]) for k in ("ABS", "NEG", "EXP", "CEIL", "FLOOR", "TANH", "LOGISTIC", "RELU",
                                                 "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "HARD_SWISH", "ELU",
                                                 "SQUARE", "ROUND", "SIN", "COS", "SIGN")},
    "leaky_relu": unary("LEAKY_RELU", [3, 5], Alpha=0.15),
    "gelu": unary("GELU", [3, 5]),
    "gelu_tanh": unary("GELU", [3, 5], Approximate=True),
    "hard_swish_nhwc": after_conv("HARD_SWISH"),
    "round_halves": lambda b: [b.op("ROUND", [b.op("MUL", [b.input([3, 7]), b.const(np.float32(4))])])],
    # elementwise, binary (a second input, or a broadcast constant)
    **{k.lower(): binary(k, [2, 3, 5], [3, 5]) for k in ("ADD", "SUB", "MUL", "MAXIMUM", "MINIMUM",
                                                        "SQUARED_DIFFERENCE")},
    "div": binary("DIV", [2, 3, 5], weights(5) + 3.0),
    "add_relu6": binary("ADD", [2, 3, 5], weights(3, 5), FusedActivationFunction=3),
    "pow": binary("POW", [2, 5], np.array(1.5, np.float32)),
    "floor_div": binary("FLOOR_DIV", [4, 5], np.array([1.5, -2.0, 0.7, -0.4, 3.0], np.float32)),
    "floor_mod": binary("FLOOR_MOD", [4, 5], np.array([1.5, -2.0, 0.7, -0.4, 3.0], np.float32)),
    "prelu_nhwc": lambda b: [b.op("PRELU", [b.input([1, 5, 6, 3]), b.const(weights(1, 1, 3))])],
    "add_n": lambda b: [b.op("ADD_N", [b.input([3, 4]), b.input([3, 4]), b.const(weights(3, 4))])],
    "rsqrt": lambda b: [b.op("RSQRT", [b.op("ADD", [b.op("ABS", [b.input([3, 5])]), b.const(np.float32(0.5))])])],
    "sqrt_log": lambda b: [b.op("LOG", [b.op("SQRT", [b.op("ADD", [b.op("ABS", [b.input([3, 5])]),
                                                                   b.const(np.float32(0.5))])])])],
    # comparisons, logic, selection
    **{f"compare_{k.lower()}": compare(k) for k in ("EQUAL", "NOT_EQUAL", "LESS", "LESS_EQUAL", "GREATER",
                                                    "GREATER_EQUAL")},
    **{k.lower(): logical(k) for k in ("LOGICAL_AND", "LOGICAL_OR", "LOGICAL_NOT")},
    "select_rows": select_rows,
    # reductions
    **{f"{k.lower()}_{'keep' if keep else 'drop'}": reduce(k, axes, keep)
       for k in ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD")
       for axes, keep in (([1, -1], True), ([2], False))},
    "mean_hw": reduce("MEAN", [1, 2], False),
    "arg_max_int32": arg("ARG_MAX", 1, np.int32),
    "arg_min_int64": arg("ARG_MIN", -1, np.int64),
    # layout
    "depth_to_space": unary("DEPTH_TO_SPACE", [1, 3, 5, 12], BlockSize=2),
    "depth_to_space_3": after_conv("DEPTH_TO_SPACE", BlockSize=2),
    "space_to_depth": unary("SPACE_TO_DEPTH", [1, 6, 9, 2], BlockSize=3),
    "pack_0": pack(0), "pack_1": pack(1), "pack_last": pack(-1),
    "unpack_0": unpack(0), "unpack_2": unpack(2),
    "split": lambda b: list(b.op("SPLIT", [b.const(np.array(2, np.int32)), b.input([1, 4, 9])], outputs=3,
                                 options={"NumSplits": 3})),
    "split_v": split_v,
    "tile": with_const("TILE", [2, 3], np.array([3, 2], np.int32)),
    "broadcast_to": with_const("BROADCAST_TO", [3, 1], np.array([2, 3, 4], np.int32)),
    "reverse": with_const("REVERSE_V2", [3, 4, 5], np.array([1, 2], np.int32)),
    "transpose": with_const("TRANSPOSE", [2, 3, 4, 5], np.array([0, 3, 1, 2], np.int32)),
    "concat_nhwc": lambda b: [b.op("CONCATENATION", [b.input([1, 3, 4, 2]), b.input([1, 3, 4, 5])],
                                   options={"Axis": 3})],
    # slicing and gathering
    "strided_plain": strided([5, 6, 7], [1, 0, 6], [5, 6, 0], [2, 1, -2]),
    "strided_masks": strided([5, 6, 7], [1, 4, 2], [3, 1, 5], [1, -1, 2], BeginMask=0b010, EndMask=0b011),
    "strided_shrink": strided([5, 6, 7], [-1, 1, 0], [0, 5, 7], [1, 2, 1], ShrinkAxisMask=0b001),
    "strided_ellipsis": strided([2, 5, 6, 7], [0, 1], [0, 6], [1, 2], EllipsisMask=0b01),
    "strided_new_axis": strided([5, 6], [0, 1, 0], [0, 5, 6], [1, 1, 3], NewAxisMask=0b001),
    "strided_all": strided([3, 5, 6, 7], [1, 0, 0, 2, 0], [2, 0, 0, 7, 0], [1, 1, 1, 2, 1],
                           ShrinkAxisMask=0b00001, EllipsisMask=0b00010, NewAxisMask=0b10100),
    "strided_offset": strided([5, 6], [1, 2], [3, 3], [1, 1], Offset=True),
    "slice": with_const("SLICE", [3, 6, 5], np.array([1, 2, 0], np.int32), np.array([2, -1, 3], np.int32)),
    "gather": with_const("GATHER", [4, 6, 3], np.array([[5, 0], [2, 2]], np.int32), Axis=1),
    "gather_nd": gather_nd,
    # padding
    "pad": with_const("PAD", [1, 4, 5, 3], np.array(NHWC_PADS, np.int32)),
    "padv2": with_const("PADV2", [2, 5], np.array([[1, 0], [2, 3]], np.int32), np.float32(-1.5)),
    "mirror_reflect": mirror(0, NHWC_PADS),
    "mirror_symmetric": mirror(1, [[0, 0], [2, 1], [0, 3], [1, 2]]),
    "mirror_symmetric_full": mirror(1, [[0, 0], [4, 4], [5, 0], [0, 0]]),
    # normalisation
    "l2_normalization": unary("L2_NORMALIZATION", [3, 7]),
    "l2_normalization_nhwc": after_conv("L2_NORMALIZATION"),
    "lrn": lrn,
    "lrn_nhwc": after_conv("LOCAL_RESPONSE_NORMALIZATION", Radius=1, Bias=2.0, Alpha=0.5, Beta=0.5),
    "softmax_beta": unary("SOFTMAX", [3, 7], Beta=0.7),
    "log_softmax": unary("LOG_SOFTMAX", [3, 7]),
    # matrix products and convolutions
    **{f"batch_matmul_{int(x)}{int(y)}": batch_matmul(x, y) for x in (False, True) for y in (False, True)},
    "fully_connected": lambda b: [b.op("FULLY_CONNECTED", [b.input([3, 8]), b.const(weights(6, 8)),
                                                           b.const(weights(6))])],
    "transpose_conv_same": transpose_conv(0, 2, [10, 12], True),
    "transpose_conv_same_odd": transpose_conv(0, 2, [9, 11], False),
    "transpose_conv_valid": transpose_conv(1, 2, [11, 13], True),
    "transpose_conv_stride1": transpose_conv(0, 1, [5, 6], True),
    "conv_depthwise": lambda b: [b.op("DEPTHWISE_CONV_2D", [b.input([1, 7, 6, 3]), b.const(weights(1, 3, 3, 6)),
                                                            b.const(weights(6))],
                                      options={**CONV_OPTS, "DepthMultiplier": 2, "StrideH": 2})],
    # resizing
    **{f"{kind.lower()}_{size[0]}x{size[1]}_{int(align)}{int(half)}": resize(kind, size, align, half)
       for kind in ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR") for size in ([10, 14], [4, 11])
       for align, half in ((False, False), (True, False), (False, True))},
    "l2_pool_same": unary("L2_POOL_2D", [1, 7, 6, 3], Padding=0, StrideH=2, StrideW=2, FilterHeight=3,
                          FilterWidth=2),
    "l2_pool_valid_nhwc": after_conv("L2_POOL_2D", Padding=1, StrideH=1, StrideW=2, FilterHeight=2, FilterWidth=3),
    "cumsum": with_const("CUMSUM", [3, 5, 4], np.array(1, np.int32)),
    "cumsum_exclusive_reverse": with_const("CUMSUM", [3, 5, 4], np.array(-1, np.int32), Exclusive=True,
                                           Reverse=True),
    "topk": lambda b: list(b.op("TOPK_V2", [b.input([3, 9]), b.const(np.array(4, np.int32))],
                                outputs=[b.tensor(None), b.tensor(None, np.int32)])),
    "average_pool_same": unary("AVERAGE_POOL_2D", [1, 7, 6, 3], Padding=0, StrideH=2, StrideW=2, FilterHeight=3,
                               FilterWidth=3),
    "max_pool_valid_relu": after_conv("MAX_POOL_2D", Padding=1, StrideH=2, StrideW=1, FilterHeight=2,
                                      FilterWidth=3, FusedActivationFunction=1),
    "reshapes": lambda b: [b.op("EXPAND_DIMS", [b.op("SQUEEZE", [b.op("RESHAPE", [
        b.input([2, 3, 4]), b.const(np.array([2, 1, 12], np.int32))], options={"NewShape": [2, 1, 12]})],
        options={"SqueezeDims": [1]}), b.const(np.array(1, np.int32))])],
    "cast_like_masks": lambda b: [b.op("ADD", [b.op("CAST", [b.op("GREATER", [x, b.const(np.float32(0))],
                                                                  dtype=np.bool_)]),
                                                b.op("ZEROS_LIKE", [x])]) for x in [b.input([3, 5])]],
    "cast_to_int": lambda b: [b.op("CAST", [b.op("MUL", [b.input([3, 5]), b.const(np.float32(3))])],
                                   dtype=np.int32)],
    # sparse constants
    "densify_csr": densify(Sparse([DENSE, SPARSE_CSR]),
                           weights(4, 6) * (RNG.random((4, 6)) < 0.4)),
    "densify_csr_csr": densify(Sparse([SPARSE_CSR, SPARSE_CSR]), (weights(5, 3) * np.array([[1], [0], [1], [1], [0]])
                                                                   * (RNG.random((5, 3)) < 0.6)).astype(np.float32)),
    "densify_block": densify(Sparse([DENSE, SPARSE_CSR, DENSE], block=[(1, 2)]),
                             weights(3, 8) * np.repeat(RNG.random((3, 4)) < 0.5, 2, axis=1)),
    "sparse_fully_connected": sparse_fully_connected,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_builtin_matches_litert(case: str, tmp_path: Path) -> None:
    b = TfliteBuilder()
    raw = b.build(CASES[case](b))
    assert_parity(tmp_path, b, raw, atol=1e-4 if case.startswith("lrn") else 1e-5)


EDGE_VALUES = {
    "round": np.repeat(np.array([[-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5],
                                 [0.49, -0.51, 1e-3, 7.5, -7.5, 0.0, 2.4999]], np.float32)[:, :, None], 3, axis=2),
    "l2_normalization": np.array([[1e-7] * 7, [0.0] * 7, [3.0, -4.0, 0, 0, 0, 0, 1e-3]], np.float32),
    "floor_div": np.array([[-3, 3, 1.4, -1.4, 0], [7, -7, 2.1, 0.35, -0.2], [4.5, -4.5, 1, 1, 6],
                           [-6, 6, 0.7, -0.7, 2.9]], np.float32),
    "floor_mod": np.array([[-3, 3, 1.4, -1.4, 0], [7, -7, 2.1, 0.35, -0.2], [4.5, -4.5, 1, 1, 6],
                           [-6, 6, 0.7, -0.7, 2.9]], np.float32),
    "arg_max_int32": np.tile(np.array([[1.0, 3.0, 3.0, 0.0, 3.0]], np.float32), (3, 6, 1)),
}


@pytest.mark.parametrize("case", sorted(EDGE_VALUES))
def test_builtin_edge_values(case: str, tmp_path: Path) -> None:
    """Ties and boundaries random inputs miss: ROUND's halves (to even), L2_NORMALIZATION's epsilon (on
    the norm), FLOOR_DIV/FLOOR_MOD's signs, ARG_MAX's first of equal maxima."""
    b = TfliteBuilder()
    raw = b.build(CASES[case](b))
    assert_parity(tmp_path, b, raw, feeds={b.tensors[b.inputs[0]].name: EDGE_VALUES[case]})


def test_every_supported_op_is_compared_with_litert() -> None:
    """docs/conformance.md says each converted op is tested here: the ops these models use (and the
    custom ops' and LSTM's tests below) cover the frontend's list."""
    used = {"UNIDIRECTIONAL_SEQUENCE_LSTM", *CUSTOM_OPS}
    for make in CASES.values():
        b = TfliteBuilder()
        make(b)
        used.update(op.kind for op in b.operators)
    fixtures = {"DEQUANTIZE", "QUANTIZE"}  # mobilenet_mini_fp16.tflite (test_tflite_frontend.py); test_tflite_int8.py
    assert SUPPORTED - used - fixtures == set()


def test_status_table_names_real_builtins_and_is_current() -> None:
    """The frontend's table has one row per LiteRT builtin (and the custom ops), says "declined" exactly
    for what the frontend does not convert, and docs/conformance.md shows it as the code says."""
    rows = builtin_table()
    builtins = {k for k in vars(tflite.BuiltinOperator) if not k.startswith("_")}
    assert [name for name, _, _ in rows] == [*sorted(builtins, key=lambda k: getattr(tflite.BuiltinOperator, k)),
                                             *sorted(CUSTOM_OPS)]
    assert {name for name, status, _ in rows if status != "declined"} == SUPPORTED
    module = load("scripts/tflite_table.py")
    assert module.main(["--check"]) == 0, "docs/conformance.md is stale: run python scripts/tflite_table.py"
    assert "| ATAN2 | declined | no kernel in the compiler |" in module.DOC.read_text()


def test_run_time_batch(tmp_path: Path) -> None:
    """New builtins in a model whose batch is left to run time, with 3 samples."""
    b = TfliteBuilder()
    x = b.input([1, 4, 6, 8], batch=True)
    d = b.op("DEPTH_TO_SPACE", [x], options={"BlockSize": 2})
    m = b.op("MIRROR_PAD", [d, b.const(np.array([[0, 0], [1, 2], [2, 0], [0, 0]], np.int32))], options={"Mode": 1})
    s = b.op("STRIDED_SLICE", [m, b.const(np.array([0, 1], np.int32)), b.const(np.array([0, -1], np.int32)),
                               b.const(np.array([1, 2], np.int32))], options={"EllipsisMask": 1})
    n = b.op("L2_NORMALIZATION", [s])
    assert_parity(tmp_path, b, b.build([n]), batch=3, max_batch=4)


def test_densified_weights_are_dense_constants(tmp_path: Path) -> None:
    """The sparse constant becomes its dense array at convert time: no DENSIFY work is left."""
    b = TfliteBuilder()
    dense = weights(4, 6) * (RNG.random((4, 6)) < 0.4)
    raw = b.build(densify(Sparse([DENSE, SPARSE_CSR]), dense)(b))
    path = tmp_path / "model.tflite"
    path.write_bytes(raw)
    graph = load_tflite(path).graph
    assert [n.op_type for n in graph.nodes] == ["Add"]
    np.testing.assert_array_equal(next(v for v in graph.constants.values() if v.shape == (4, 6)), dense)


def lstm_model(time_major: bool, peepholes: bool, batch: int = 2, steps: int = 5, features: int = 3,
               hidden: int = 4, cifg: bool = False, clip: float = 0.0,
               dynamic: bool = False) -> tuple[TfliteBuilder, int]:
    """A Keras-style LSTM layer as the converter fuses it: 24 inputs, the states variable tensors."""
    b = TfliteBuilder()
    x = b.input([steps, batch, features] if time_major else [batch, steps, features], name="x",
                batch=dynamic and not time_major)
    scale = 0.5

    def const(*shape: int) -> int:
        return b.const(weights(*shape) * scale)

    inputs = [x]
    inputs += [-1 if cifg and gate == 0 else const(hidden, features) for gate in range(4)]
    inputs += [-1 if cifg and gate == 0 else const(hidden, hidden) for gate in range(4)]
    inputs += [const(hidden) if peepholes and not (cifg and gate == 0) else -1 for gate in range(3)]
    inputs += [-1 if cifg and gate == 0 else const(hidden) for gate in range(4)]
    inputs += [-1, -1, b.state([batch, hidden]), b.state([batch, hidden]), -1, -1, -1, -1]
    y = b.op("UNIDIRECTIONAL_SEQUENCE_LSTM", inputs, options={
        "FusedActivationFunction": 4, "CellClip": clip, "ProjClip": 0.0, "TimeMajor": time_major})
    return b, y


@pytest.mark.parametrize("time_major,peepholes", [(True, False), (False, False), (False, True), (True, True)])
def test_unidirectional_sequence_lstm(tmp_path: Path, time_major: bool, peepholes: bool) -> None:
    b, y = lstm_model(time_major, peepholes)
    assert_parity(tmp_path, b, b.build([y]))


def test_unidirectional_sequence_lstm_run_time_batch(tmp_path: Path) -> None:
    """Batch-major input with the batch left to run time: 3 samples at once against LiteRT one sample
    at a time (its state tensors are allocated for one sample and cannot be resized)."""
    b, y = lstm_model(False, False, batch=1, dynamic=True)
    raw = b.build([y])
    path = tmp_path / "model.tflite"
    path.write_bytes(raw)
    x = weights(3, 5, 3)
    got = WasmModel(convert_model(path, max_batch=4).wasm).run({"x": x})
    want = np.concatenate([run_litert(raw, {"x": x[i:i + 1]})[b.tensors[y].name] for i in range(3)])
    np.testing.assert_allclose(got[b.tensors[y].name], want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant,reason", [({"cifg": True}, "CIFG"), ({"clip": 3.0}, "cell_clip")])
def test_unidirectional_sequence_lstm_declined(tmp_path: Path, variant: dict[str, object], reason: str) -> None:
    b, y = lstm_model(False, False, **variant)  # type: ignore[arg-type]
    problems = declined(tmp_path, b, [y], build=True)
    assert len(problems) == 1 and problems[0].startswith("operator 0 (UNIDIRECTIONAL_SEQUENCE_LSTM")
    assert reason in problems[0]


@pytest.mark.parametrize("damage", ["huge_shape", "wrong_shape"])
def test_damaged_sparse_constant_is_a_frontend_error(tmp_path: Path, damage: str) -> None:
    """Sparsity metadata that does not fit the tensor's shape fails the read naming the file, and
    a claimed shape is not allocated before it is checked."""
    b = TfliteBuilder()
    dense = weights(4, 6) * (RNG.random((4, 6)) < 0.4)
    dense[0, 5] = 0.5  # a value in the last column: its index cannot fit the damaged [4, 5] (without one, the
    # sparse data is a valid [4, 5] tensor and only the graph's shapes disagree: the outcome depended on the mask)
    outputs = densify(Sparse([DENSE, SPARSE_CSR]), dense)(b)
    raw_ok = b.build(outputs)
    assert raw_ok
    sparse = next(t for t in b.tensors if t.sparse is not None)
    sparse.shape = [1 << 20, 1 << 20] if damage == "huge_shape" else [4, 5]
    path = tmp_path / "model.tflite"
    path.write_bytes(b._write(outputs))
    with pytest.raises(FrontendError, match="not a valid TensorFlow Lite model") as caught:
        convert_model(path)
    assert ("GiB" if damage == "huge_shape" else "do not fit its size") in str(caught.value)


# -- MediaPipe's custom ops ----------------------------------------------------------------------------------------


def pool_params(padding: int, stride: tuple[int, int], window: tuple[int, int], activation: int = 0) -> bytes:
    """TfLitePoolParams as the converter writes it: padding, stride_width, stride_height, filter_width,
    filter_height, activation, then the computed padding the kernel fills in."""
    return struct.pack("<10i", padding, stride[1], stride[0], window[1], window[0], activation, 0, 0, 0, 0)


@pytest.mark.parametrize("padding,stride,size", [(SAME, 2, 12), (SAME, 2, 11), (VALID, 2, 11), (SAME, 1, 7),
                                                 (VALID, 3, 13)])
def test_convolution2d_transpose_bias_matches_transpose_conv(tmp_path: Path, padding: int, stride: int,
                                                             size: int) -> None:
    """MediaPipe's transpose conv with bias against LiteRT's TRANSPOSE_CONV + bias for the output size
    the custom kernel computes: stride * (in - 1) + k - max(0, k - (in - 1) % stride - 1) for SAME."""
    filt, bias = weights(5, 3, 3, 4), weights(5)
    in_h, in_w = 5, 6
    out = []
    for n in (in_h, in_w):
        trim = max(0, 3 - (n - 1) % stride - 1) if padding == SAME else 0
        out.append(stride * (n - 1) + 3 - trim)
    custom = TfliteBuilder()
    x = custom.input([1, in_h, in_w, 4], name="x")
    y = custom.tensor([1, *out, 5], name="y")
    custom.op("CUSTOM:Convolution2DTransposeBias", [x, custom.const(filt), custom.const(bias)], outputs=[y],
              custom=struct.pack("<4i", padding, stride, stride, 0))
    builtin = TfliteBuilder()
    bx = builtin.input([1, in_h, in_w, 4], name="x")
    conv = builtin.op("TRANSPOSE_CONV", [builtin.const(np.array([1, *out, 5], np.int32)), builtin.const(filt), bx,
                                         builtin.const(bias)],
                      options={"Padding": 0 if padding == SAME else 1, "StrideH": stride, "StrideW": stride})
    builtin.tensors[conv].name = "y"
    path = tmp_path / "custom.tflite"
    path.write_bytes(custom.build([y]))
    feeds = {"x": weights(1, in_h, in_w, 4)}
    want = run_litert(builtin.build([conv]), feeds)["y"]
    got = WasmModel(convert_model(path).wasm).run(feeds)["y"]
    assert got.shape == (1, *out, 5)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def pool_argmax_reference(x: np.ndarray, padding: int, stride: tuple[int, int],
                          window: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's MaxPoolingWithArgmax2D kernel, loop for loop (max_pool_argmax.cc)."""
    n, h, w, c = x.shape
    (sh, sw), (fh, fw) = stride, window
    oh, ow = ((-(-h // sh), -(-w // sw)) if padding == SAME else ((h - fh + sh) // sh, (w - fw + sw) // sw))
    ph = max(((oh - 1) * sh + fh - h) // 2, 0) if padding == SAME else 0
    pw = max(((ow - 1) * sw + fw - w) // 2, 0) if padding == SAME else 0
    values, indices = np.zeros((n, oh, ow, c), np.float32), np.zeros((n, oh, ow, c), np.float32)
    for b, oy, ox, ch in np.ndindex(n, oh, ow, c):
        y0, x0 = oy * sh - ph, ox * sw - pw
        best, at = np.finfo(np.float32).min, (0, 0)
        for fy in range(max(0, -y0), min(fh, h - y0)):
            for fx in range(max(0, -x0), min(fw, w - x0)):
                if x[b, y0 + fy, x0 + fx, ch] > best:
                    best, at = x[b, y0 + fy, x0 + fx, ch], (fy, fx)
        values[b, oy, ox, ch], indices[b, oy, ox, ch] = best, at[0] * fw + at[1] + np.float32(0.1)
    return values, indices


@pytest.mark.parametrize("padding,stride,window", [(SAME, (2, 2), (2, 2)), (SAME, (2, 1), (4, 2)),
                                                   (VALID, (2, 2), (3, 3)), (SAME, (3, 2), (3, 3))])
def test_max_pooling_with_argmax(tmp_path: Path, padding: int, stride: tuple[int, int],
                                 window: tuple[int, int]) -> None:
    x = weights(2, 9, 7, 3)
    want_values, want_indices = pool_argmax_reference(x, padding, stride, window)
    b = TfliteBuilder()
    inp = b.input([2, 9, 7, 3], name="x")
    outs = [b.tensor(list(want_values.shape), name="values"), b.tensor(list(want_values.shape), name="indices")]
    b.op("CUSTOM:MaxPoolingWithArgmax2D", [inp], outputs=outs, custom=pool_params(padding, stride, window))
    path = tmp_path / "model.tflite"
    path.write_bytes(b.build(outs))
    got = WasmModel(convert_model(path).wasm).run({"x": x})
    np.testing.assert_array_equal(got["values"], want_values)
    np.testing.assert_allclose(got["indices"], want_indices, rtol=0, atol=1e-6)


def unpool_reference(x: np.ndarray, indices: np.ndarray, window: tuple[int, int]) -> np.ndarray:
    """MediaPipe's MaxUnpooling2D kernel for stride = filter (max_unpooling.cc)."""
    n, h, w, c = x.shape
    fh, fw = window
    out = np.zeros((n, h * fh, w * fw, c), np.float32)
    for b, y, xx, ch in np.ndindex(n, h, w, c):
        idx = int(indices[b, y, xx, ch])
        oy, ox = y * fh + idx // fw, xx * fw + idx % fw
        if 0 <= oy < h * fh and 0 <= ox < w * fw:
            out[b, oy, ox, ch] = x[b, y, xx, ch]
    return out


@pytest.mark.parametrize("window", [(2, 2), (3, 2)])
def test_max_pooling_then_unpooling(tmp_path: Path, window: tuple[int, int]) -> None:
    """The segmentation models' pair: pool with argmax, then unpool the values back to their cells."""
    x = weights(1, 6 * window[0] // 2, 8, 3)
    b = TfliteBuilder()
    inp = b.input(list(x.shape), name="x")
    pooled_shape = [1, x.shape[1] // window[0], x.shape[2] // window[1], 3]
    values, indices = b.tensor(pooled_shape, name="values"), b.tensor(pooled_shape, name="indices")
    params = pool_params(SAME, window, window)
    b.op("CUSTOM:MaxPoolingWithArgmax2D", [inp], outputs=[values, indices], custom=params)
    out = b.tensor(list(x.shape), name="y")
    b.op("CUSTOM:MaxUnpooling2D", [values, indices], outputs=[out], custom=params)
    path = tmp_path / "model.tflite"
    path.write_bytes(b.build([out]))
    got = WasmModel(convert_model(path).wasm).run({"x": x})["y"]
    want_values, want_indices = pool_argmax_reference(x, SAME, window, window)
    np.testing.assert_array_equal(got, unpool_reference(want_values, want_indices, window))
    assert np.count_nonzero(got) == want_values.size  # one cell per window, the others zero


# -- what is declined ------------------------------------------------------------------------------------------------


def declined(tmp_path: Path, b: TfliteBuilder, outputs: list[int], build: bool = False) -> list[str]:
    """The problems convert lists; `build` infers shapes with LiteRT first (else they must be given)."""
    path = tmp_path / "model.tflite"
    path.write_bytes(b.build(outputs) if build else b._write(outputs))
    with pytest.raises(UnsupportedModel) as caught:
        convert_model(path)
    return caught.value.problems


def test_unsupported_builtins_name_index_op_and_output(tmp_path: Path) -> None:
    b = TfliteBuilder()
    x = b.input([2, 5])
    y = b.op("ADD", [x, x])
    sin = b.tensor([2, 5], name="angle")
    b.op("ATAN2", [y, x], outputs=[sin])
    overlap = b.tensor([1, 4, 6, 1], name="unpooled")
    img = b.input([1, 3, 3, 1])
    b.op("CUSTOM:MaxUnpooling2D", [img, img], outputs=[overlap], custom=pool_params(SAME, (1, 1), (2, 2)))
    odd = b.tensor([1, 3, 3, 1], name="mystery")
    b.op("CUSTOM:MyOwnOp", [img], outputs=[odd])
    problems = declined(tmp_path, b, [sin, overlap, odd])
    assert len(problems) == 3
    assert problems[0].startswith("operator 1 (ATAN2, output 'angle')") and "not supported" in problems[0]
    assert problems[1].startswith("operator 2 (CUSTOM:MaxUnpooling2D, output 'unpooled')")
    assert "overlapping windows" in problems[1]
    assert problems[2].startswith("operator 3 (CUSTOM:MyOwnOp, output 'mystery')") and "not supported" in problems[2]


def test_unsupported_options_are_declined(tmp_path: Path) -> None:
    b = TfliteBuilder()
    x = b.input([1, 4, 4, 2])
    short = b.tensor([1, 8, 8, 2], name="short")
    b.op("CUSTOM:Convolution2DTransposeBias", [x, b.const(weights(2, 3, 3, 2)), b.const(weights(2))],
         outputs=[short], custom=b"\x01\x00")
    runtime = b.tensor([1, 4, 4, 2], name="runtime_indices")
    b.op("GATHER_ND", [x, b.op("CAST", [x], dtype=np.int32)], outputs=[runtime])
    problems = declined(tmp_path, b, [short, runtime])
    assert problems[0].startswith("operator 0 (CUSTOM:Convolution2DTransposeBias, output 'short')")
    assert "custom options of 2 bytes" in problems[0]
    assert any(p.startswith("operator 2 (GATHER_ND, output 'runtime_indices')") for p in problems)


def test_malformed_options_are_declined_not_crashes(tmp_path: Path) -> None:
    """Options no converter writes (a zero block size, a zero stride, a huge window, a rank-0 PACK)
    are each a problem naming the operator, not an exception out of convert."""
    b = TfliteBuilder()
    x = b.input([1, 4, 4, 4])
    d2s = b.tensor([1, 8, 8, 1], name="d2s")
    b.op("DEPTH_TO_SPACE", [x], outputs=[d2s], options={"BlockSize": 0})
    deconv = b.tensor([1, 8, 8, 2], name="deconv")
    b.op("CUSTOM:Convolution2DTransposeBias", [x, b.const(weights(2, 3, 3, 4)), b.const(weights(2))],
         outputs=[deconv], custom=struct.pack("<3i", SAME, 0, 0))
    pooled = [b.tensor([1, 1, 1, 4], name="pooled"), b.tensor([1, 1, 1, 4], name="where")]
    b.op("CUSTOM:MaxPoolingWithArgmax2D", [x], outputs=pooled, custom=pool_params(SAME, (1, 1), (1000, 1000)))
    scalar = b.input([])
    packed = b.tensor([], name="packed")
    b.op("PACK", [scalar], outputs=[packed], options={"ValuesCount": 1, "Axis": 0})
    problems = declined(tmp_path, b, [d2s, deconv, pooled[0], packed])
    assert [p.split(":")[0] for p in problems] == [
        "operator 0 (DEPTH_TO_SPACE, output 'd2s')", "operator 1 (CUSTOM", "operator 2 (CUSTOM",
        "operator 3 (PACK, output 'packed')"]
    assert "block size 0" in problems[0] and "strides must be positive" in problems[1]
    assert "at most 256 taps" in problems[2] and "malformed" in problems[3]
