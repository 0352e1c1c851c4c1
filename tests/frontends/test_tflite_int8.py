"""Full-integer TFLite models: int8 and uint8 activations (quantization parameters from the
flatbuffer), per-channel int8 weights and int32 biases, QUANTIZE/DEQUANTIZE at the boundaries.
Small models built here (tests/tflite_builder.py) run in LiteRT's integer kernels and, converted,
in the wasm module; every output must be within one quantization step of LiteRT's. Each case
prints how many values it compared, the largest difference in steps and how many are equal.
What is not converted (16-bit activations, ops without an integer mapping) is declined naming the
operator index, op and output."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.tflite_builder import Quant, TfliteBuilder, run_litert
from wasinfer.artifact.convert import convert_model
from wasinfer.backends.wasm import UnsupportedModel
from wasinfer.runtime.litert import LiteRtModel
from wasinfer.runtime.wasm import WasmModel

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
RNG = np.random.default_rng(11)
SAME, VALID = 0, 1  # tflite.Padding
NONE, RELU, RELU6 = 0, 1, 3  # tflite.ActivationFunctionType
CONV = {"Padding": SAME, "StrideH": 1, "StrideW": 1, "DilationHFactor": 1, "DilationWFactor": 1}
DTYPES = {"int8": np.int8, "uint8": np.uint8}

Case = Callable[[TfliteBuilder, type], list[int]]


def act(dtype: type, scale: float, zero: int = 0) -> Quant:
    """Activation parameters; `zero` is the int8 zero point (uint8's is 128 more, the same real range)."""
    return Quant([scale], [zero + (128 if dtype == np.uint8 else 0)])


def weights(b: TfliteBuilder, dtype: type, shape: tuple[int, ...], axis: int,
            std: float = 1.0) -> tuple[int, np.ndarray]:
    """Weights as the converter quantizes them: int8 symmetric per channel along `axis` (the
    output channels), uint8 (which LiteRT's kernels take per tensor only) asymmetric per tensor."""
    real = RNG.normal(scale=std, size=shape).astype(np.float32)
    if dtype == np.int8:
        moved = np.moveaxis(real, axis, 0).reshape(shape[axis], -1)
        scale = (np.abs(moved).max(axis=1) / 127).astype(np.float32)
        stored = np.clip(np.round(real / scale.reshape([-1 if a == axis else 1 for a in range(len(shape))])),
                         -127, 127).astype(np.int8)
        return b.const(stored, quant=Quant(scale.tolist(), [0] * len(scale), axis)), scale
    low, high = float(min(real.min(), 0)), float(max(real.max(), 0))
    step = (high - low) / 255
    zero = round(-low / step)
    stored = np.clip(np.round(real / step) + zero, 0, 255).astype(np.uint8)
    return b.const(stored, quant=Quant([step], [zero])), np.array([step], np.float32)


def bias(b: TfliteBuilder, input_scale: float, weight_scale: np.ndarray, channels: int) -> int:
    """int32, scaled by the input's scale times the weights' (per channel, or per tensor as uint8's)."""
    scale = (input_scale * weight_scale * np.ones(channels)).astype(np.float32)
    stored = np.round(RNG.normal(size=channels) / scale).astype(np.int32)
    count = channels if weight_scale.size > 1 else 1
    return b.const(stored, quant=Quant(scale[:count].tolist(), [0] * count))


def conv(activation: int, padding: int = SAME, stride: int = 1) -> Case:
    def make(b: TfliteBuilder, dtype: type) -> list[int]:
        x = b.input([1, 7, 9, 3], dtype, quant=act(dtype, 0.05, 3))
        w, w_scale = weights(b, dtype, (5, 3, 3, 3), 0)
        options = {**CONV, "Padding": padding, "StrideH": stride, "StrideW": stride,
                   "FusedActivationFunction": activation}
        return [b.op("CONV_2D", [x, w, bias(b, 0.05, w_scale, 5)], options=options, dtype=dtype,
                     quant=act(dtype, 0.12, -10))]
    return make


def depthwise(b: TfliteBuilder, dtype: type) -> list[int]:
    x = b.input([1, 6, 8, 4], dtype, quant=act(dtype, 0.04, -7))
    w, w_scale = weights(b, dtype, (1, 3, 3, 8), 3)
    options = {**CONV, "StrideH": 2, "StrideW": 2, "DepthMultiplier": 2, "FusedActivationFunction": RELU6}
    return [b.op("DEPTHWISE_CONV_2D", [x, w, bias(b, 0.04, w_scale, 8)], options=options, dtype=dtype,
                 quant=act(dtype, 0.03, -100))]


def fully_connected(b: TfliteBuilder, dtype: type) -> list[int]:
    x = b.input([3, 12], dtype, quant=act(dtype, 0.03, 5))
    w, w_scale = weights(b, dtype, (6, 12), 0)
    return [b.op("FULLY_CONNECTED", [x, w, bias(b, 0.03, w_scale, 6)], options={"FusedActivationFunction": RELU},
                 dtype=dtype, quant=act(dtype, 0.06, -128))]


def binary(kind: str, activation: int = NONE) -> Case:
    def make(b: TfliteBuilder, dtype: type) -> list[int]:
        x = b.input([2, 3, 5, 4], dtype, quant=act(dtype, 0.05, 10))
        y = b.input([5, 4], dtype, quant=act(dtype, 0.02, -20))  # broadcast
        out = act(dtype, 0.07 if kind == "ADD" else 0.06, -5)
        return [b.op(kind, [x, y], options={"FusedActivationFunction": activation}, dtype=dtype, quant=out)]
    return make


def pool(kind: str, padding: int, size: int, stride: int) -> Case:
    def make(b: TfliteBuilder, dtype: type) -> list[int]:
        q = act(dtype, 0.05, -3)
        x = b.input([1, 7, 9, 4], dtype, quant=q)
        options = {"Padding": padding, "StrideH": stride, "StrideW": stride, "FilterHeight": size,
                   "FilterWidth": size}
        return [b.op(kind, [x], options=options, dtype=dtype, quant=q)]
    return make


def stored(kind: str, *consts: np.ndarray, outputs: int = 1, same: bool = False, data_at: int = 0,
           **options: object) -> Case:
    """An op LiteRT runs on the stored integers, its output quantized otherwise than its input (`same`: where
    LiteRT requires them equal): LiteRT reads the integers it copies (averages, interpolates, pads with the
    output's zero point) with the output's parameters. The input goes in at `data_at` among the constants."""
    def make(b: TfliteBuilder, dtype: type) -> list[int]:
        x = b.input([1, 5, 7, 4], dtype, quant=act(dtype, 0.05, -3))
        inputs = [b.const(c) for c in consts]
        inputs.insert(data_at, x)
        made = b.op(kind, inputs, outputs=outputs, options=dict(options), dtype=dtype,
                    quant=act(dtype, 0.05, -3) if same else act(dtype, 0.08, 5))
        return made if isinstance(made, list) else [made]
    return make


def requantized(kind: str, *consts: np.ndarray, scale: float = 0.08, zero: int = 5, **options: object) -> Case:
    """An op LiteRT's integer kernel rescales to its output's parameters (a quantized constant operand is
    given as its stored int8 values, with scale 0.02)."""
    def make(b: TfliteBuilder, dtype: type) -> list[int]:
        x = b.input([1, 5, 7, 4], dtype, quant=act(dtype, 0.05, -3))
        operands = [b.const(c.astype(dtype) if c.dtype == np.int8 and dtype == np.uint8 else c,
                            quant=act(dtype, 0.02) if c.dtype == np.int8 else None) for c in consts]
        if dtype == np.uint8:  # stored uint8 operands: the int8 values moved by the zero point
            for t in operands:
                tensor = b.tensors[t]
                if tensor.quant is not None and tensor.data is not None:
                    tensor.data = (consts[operands.index(t)].astype(np.int16) + 128).astype(np.uint8)
        return [b.op(kind, [x, *operands], options=dict(options), dtype=dtype, quant=act(dtype, scale, zero))]
    return make


def extreme(kind: str) -> Case:
    """MAXIMUM/MINIMUM compare the stored integers: of the input and a quantized constant (MAXIMUM) or its RELU
    (MINIMUM), quantized alike."""
    def make(b: TfliteBuilder, dtype: type) -> list[int]:
        q = act(dtype, 0.05, -3)
        x = b.input([1, 5, 7, 4], dtype, quant=q)
        info = np.iinfo(dtype)
        other = b.const(RNG.integers(info.min, info.max, (4,)).astype(dtype), quant=q) if kind == "MAXIMUM" \
            else b.op("RELU", [x], dtype=dtype, quant=q)
        return [b.op(kind, [x, other], dtype=dtype, quant=q)]
    return make


def arg(kind: str) -> Case:
    def make(b: TfliteBuilder, dtype: type) -> list[int]:
        x = b.input([1, 5, 7, 4], dtype, quant=act(dtype, 0.05, -3))
        table = "ArgMaxOptions" if kind == "ARG_MAX" else "ArgMinOptions"
        return [b.op(kind, [x, b.const(np.array([3], np.int32))], options={"OutputType": 2}, options_table=table,
                     dtype=np.int32)]
    return make


def pack(b: TfliteBuilder, dtype: type) -> list[int]:
    """PACK and EXPAND_DIMS (LiteRT requires their inputs and output quantized alike), SPACE_TO_DEPTH."""
    q = act(dtype, 0.05, -3)
    x, y = b.input([1, 4, 6, 2], dtype, quant=q), b.input([1, 4, 6, 2], dtype, quant=q)
    packed = b.op("PACK", [x, y], options={"ValuesCount": 2, "Axis": 0}, dtype=dtype, quant=q)
    expanded = b.op("EXPAND_DIMS", [x, b.const(np.array(0, np.int32))], dtype=dtype, quant=q)  # alike, too
    return [packed, expanded, b.op("SPACE_TO_DEPTH", [x], options={"BlockSize": 2}, dtype=dtype,
                                   quant=act(dtype, 0.08, 5))]


def unary(kind: str) -> Case:
    def make(b: TfliteBuilder, dtype: type) -> list[int]:
        x = b.input([3, 5, 4], dtype, quant=act(dtype, 0.05, 20))
        return [b.op(kind, [x], dtype=dtype, quant=act(dtype, 0.03, -100))]
    return make


def transpose_conv(b: TfliteBuilder, dtype: type) -> list[int]:
    x = b.input([1, 5, 7, 4], dtype, quant=act(dtype, 0.05, -3))
    w, w_scale = weights(b, dtype, (3, 3, 3, 4), 0)
    return [b.op("TRANSPOSE_CONV", [b.const(np.array([1, 10, 14, 3], np.int32)), w, x, bias(b, 0.05, w_scale, 3)],
                 options={"Padding": SAME, "StrideH": 2, "StrideW": 2}, dtype=dtype, quant=act(dtype, 0.2, 0))]


def reshape(b: TfliteBuilder, dtype: type) -> list[int]:
    """After a conv, whose output the frontend holds channels-first: the RESHAPE reads TFLite's layout."""
    x = b.input([1, 4, 6, 2], dtype, quant=act(dtype, 0.05))
    w, w_scale = weights(b, dtype, (3, 1, 1, 2), 0)
    q = act(dtype, 0.04, 7)
    y = b.op("CONV_2D", [x, w, bias(b, 0.05, w_scale, 3)], options=CONV, dtype=dtype, quant=q)
    return [b.op("RESHAPE", [y, b.const(np.array([1, 72], np.int32))], options={"NewShape": [1, 72]},
                 dtype=dtype, quant=q)]


def concatenation(b: TfliteBuilder, dtype: type) -> list[int]:
    """uint8 inputs with their own scales, which LiteRT rescales to the output's; int8 ones share the
    output's parameters (LiteRT's int8 kernel only copies)."""
    params = ((2, 0.05, 0), (3, 0.02, -40), (1, 0.08, 9)) if dtype == np.uint8 else ((2, 0.06, -2),) * 3
    xs = [b.input([1, 3, 5, c], dtype, quant=act(dtype, s, z)) for c, s, z in params]
    return [b.op("CONCATENATION", xs, options={"Axis": 3}, dtype=dtype, quant=act(dtype, 0.06, -2))]


def softmax(b: TfliteBuilder, dtype: type) -> list[int]:
    x = b.input([3, 10], dtype, quant=act(dtype, 0.08, 4))
    return [b.op("SOFTMAX", [x], options={"Beta": 1.0}, dtype=dtype, quant=act(dtype, 1 / 256, -128))]


def logistic(b: TfliteBuilder, dtype: type) -> list[int]:
    x = b.input([4, 17], dtype, quant=act(dtype, 0.06, -11))
    return [b.op("LOGISTIC", [x], dtype=dtype, quant=act(dtype, 1 / 256, -128))]


def tanh(b: TfliteBuilder, dtype: type) -> list[int]:
    x = b.input([4, 17], dtype, quant=act(dtype, 0.03, 6))
    return [b.op("TANH", [x], dtype=dtype, quant=act(dtype, 1 / 128, 0))]


def mean(axes: list[int], keep: bool) -> Case:
    def make(b: TfliteBuilder, dtype: type) -> list[int]:
        x = b.input([1, 5, 7, 6], dtype, quant=act(dtype, 0.05, 12))
        return [b.op("MEAN", [x, b.const(np.array(axes, np.int32))], options={"KeepDims": keep}, dtype=dtype,
                     quant=act(dtype, 0.02, -3))]
    return make


def boundaries(b: TfliteBuilder, dtype: type) -> list[int]:
    """A float model's int8/uint8 inside: QUANTIZE of the float input, a conv, a requantizing QUANTIZE
    (new scale), DEQUANTIZE to a float output; and the quantized tensor itself as a second output. The
    new scale is coarser: a finer one would show the conv's one-step difference as more steps of it."""
    x = b.input([1, 6, 6, 2])
    q = b.op("QUANTIZE", [x], dtype=dtype, quant=act(dtype, 0.02, -1))
    w, w_scale = weights(b, dtype, (4, 3, 3, 2), 0)
    y = b.op("CONV_2D", [q, w, bias(b, 0.02, w_scale, 4)], options={**CONV, "FusedActivationFunction": RELU},
             dtype=dtype, quant=act(dtype, 0.05, -128))
    r = b.op("QUANTIZE", [y], dtype=dtype, quant=act(dtype, 0.1, -60))
    return [b.op("DEQUANTIZE", [r]), q]


def small_cnn(b: TfliteBuilder, dtype: type) -> list[int]:
    """The ops chained as a converted MobileNet-like model has them: the logits and their softmax."""
    x = b.input([1, 8, 8, 3], dtype, quant=act(dtype, 0.03, -5))
    w, w_scale = weights(b, dtype, (6, 3, 3, 3), 0)
    c = b.op("CONV_2D", [x, w, bias(b, 0.03, w_scale, 6)], options={**CONV, "FusedActivationFunction": RELU6},
             dtype=dtype, quant=act(dtype, 6 / 255, -128))
    d_w, d_scale = weights(b, dtype, (1, 3, 3, 6), 3)
    d = b.op("DEPTHWISE_CONV_2D", [c, d_w, bias(b, 6 / 255, d_scale, 6)],
             options={**CONV, "DepthMultiplier": 1}, dtype=dtype, quant=act(dtype, 0.1, 0))
    s = b.op("ADD", [c, d], dtype=dtype, quant=act(dtype, 0.12, -20))
    p = b.op("AVERAGE_POOL_2D", [s], options={"Padding": VALID, "StrideH": 2, "StrideW": 2, "FilterHeight": 2,
                                              "FilterWidth": 2}, dtype=dtype, quant=act(dtype, 0.12, -20))
    m = b.op("MAX_POOL_2D", [p], options={"Padding": VALID, "StrideH": 2, "StrideW": 2, "FilterHeight": 2,
                                          "FilterWidth": 2}, dtype=dtype, quant=act(dtype, 0.12, -20))
    flat = b.op("RESHAPE", [m, b.const(np.array([1, 24], np.int32))], dtype=dtype, quant=act(dtype, 0.12, -20))
    f_w, f_scale = weights(b, dtype, (10, 24), 0, std=0.05)
    logits = b.op("FULLY_CONNECTED", [flat, f_w, bias(b, 0.12, f_scale, 10)], dtype=dtype,
                  quant=act(dtype, 0.05, 2))
    return [logits, b.op("SOFTMAX", [logits], options={"Beta": 1.0}, dtype=dtype, quant=act(dtype, 1 / 256, -128))]


CASES: dict[str, Case] = {
    "conv": conv(NONE), "conv_relu": conv(RELU), "conv_relu6_valid_stride2": conv(RELU6, VALID, 2),
    "depthwise": depthwise, "fully_connected": fully_connected, "add": binary("ADD"),
    "add_relu": binary("ADD", RELU), "sub": binary("SUB"), "mul": binary("MUL"),
    "average_pool_same": pool("AVERAGE_POOL_2D", SAME, 3, 2), "average_pool_valid": pool("AVERAGE_POOL_2D", VALID,
                                                                                         2, 2),
    "max_pool": pool("MAX_POOL_2D", SAME, 3, 2), "reshape": reshape, "concatenation": concatenation,
    "softmax": softmax, "logistic": logistic, "tanh": tanh, "mean_hw": mean([1, 2], False),
    "mean_channels": mean([3], True), "quantize_dequantize": boundaries, "relu": unary("RELU"),
    "relu6": unary("RELU6"),
    "stored_average_pool": stored("AVERAGE_POOL_2D", Padding=SAME, StrideH=2, StrideW=2, FilterHeight=2,
                                  FilterWidth=3),
    "stored_max_pool": stored("MAX_POOL_2D", Padding=VALID, StrideH=2, StrideW=2, FilterHeight=2, FilterWidth=2),
    "stored_reshape": stored("RESHAPE", np.array([5, 28], np.int32)),
    "stored_squeeze": stored("SQUEEZE", SqueezeDims=[0]),
    "stored_transpose": stored("TRANSPOSE", np.array([0, 3, 1, 2], np.int32)),
    "stored_pad": stored("PAD", np.array([[0, 0], [1, 2], [0, 1], [0, 0]], np.int32)),
    "stored_strided_slice": stored("STRIDED_SLICE", *(np.array(v, np.int32) for v in (
        [0, 1, 0, 1], [1, 5, 7, 4], [1, 2, 3, 1]))),
    "stored_slice": stored("SLICE", np.array([0, 1, 2, 0], np.int32), np.array([1, 3, -1, 2], np.int32)),
    "stored_split": stored("SPLIT", np.array(3, np.int32), outputs=2, data_at=1, NumSplits=2),
    "stored_split_v": stored("SPLIT_V", np.array([3, 4], np.int32), np.array(2, np.int32), outputs=2, NumSplits=2),
    "stored_gather": stored("GATHER", np.array([3, 0, 3], np.int32), Axis=2),
    "stored_unpack": stored("UNPACK", outputs=4, same=True, Num=4, Axis=3),
    "stored_depth_to_space": stored("DEPTH_TO_SPACE", BlockSize=2),
    "stored_resize_nearest": stored("RESIZE_NEAREST_NEIGHBOR", np.array([9, 11], np.int32), HalfPixelCenters=True),
    "stored_resize_bilinear": stored("RESIZE_BILINEAR", np.array([9, 11], np.int32), HalfPixelCenters=True),
    "stored_resize_bilinear_same": stored("RESIZE_BILINEAR", np.array([9, 11], np.int32), same=True),
    "stored_reduce_max": stored("REDUCE_MAX", np.array([3], np.int32), same=True, KeepDims=False),
    "stored_reduce_min": stored("REDUCE_MIN", np.array([3], np.int32), same=True, KeepDims=True),
    "stored_maximum": extreme("MAXIMUM"), "stored_minimum": extreme("MINIMUM"),
    "arg_max": arg("ARG_MAX"), "arg_min": arg("ARG_MIN"), "pack_expand_dims_space_to_depth": pack,
    "sum": requantized("SUM", np.array([2], np.int32), scale=0.3, zero=2, KeepDims=False),
    "hard_swish": requantized("HARD_SWISH"), "leaky_relu": requantized("LEAKY_RELU", Alpha=0.2),
    "prelu": requantized("PRELU", np.array([10, -20, 50, 100], np.int8)),
    "batch_matmul": requantized("BATCH_MATMUL", RNG.integers(-127, 128, (1, 4, 6)).astype(np.int8), scale=0.2,
                                zero=0),
    "squared_difference": requantized("SQUARED_DIFFERENCE", np.array([10, -20, 50, 100], np.int8), scale=0.1,
                                      zero=-100),
    "l2_normalization": requantized("L2_NORMALIZATION", scale=1 / 128, zero=0),
    "log_softmax": requantized("LOG_SOFTMAX", scale=16 / 256, zero=127),
    "transpose_conv": transpose_conv,
}


def feeds_for(b: TfliteBuilder, seed: int = 0) -> dict[str, np.ndarray]:
    """Every stored integer of the input's type (float inputs: normal values)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for t in b.inputs:
        tensor = b.tensors[t]
        shape = tensor.shape or []
        if tensor.dtype == np.float32:
            feeds[tensor.name] = rng.normal(size=shape).astype(np.float32)
        else:
            info = np.iinfo(tensor.dtype)
            feeds[tensor.name] = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(tensor.dtype)
    return feeds


def steps_apart(name: str, want: np.ndarray, got: np.ndarray, step: float) -> tuple[int, int]:
    """The largest difference in quantization steps, and how many values are equal."""
    assert got.shape == want.shape and got.dtype == want.dtype, f"{name}: {got.dtype}{got.shape} != " \
        f"{want.dtype}{want.shape}"
    if want.dtype == np.float32:
        apart = np.abs(got.astype(np.float64) - want) / step
        return int(np.ceil(apart.max() - 1e-3)), int((apart < 1e-3).sum())
    apart = np.abs(got.astype(np.int64) - want.astype(np.int64))
    return int(apart.max()), int((apart == 0).sum())


INT8_ONLY = {"batch_matmul", "squared_difference"}  # LiteRT has no uint8 kernel for them


@pytest.mark.parametrize(("case", "dtype"), [(case, dtype) for case in sorted(CASES) for dtype in sorted(DTYPES)
                                             if dtype == "int8" or case not in INT8_ONLY])
def test_matches_litert_within_one_step(tmp_path: Path, case: str, dtype: str) -> None:
    b = TfliteBuilder()
    outputs = CASES[case](b, DTYPES[dtype])
    raw = b.build(outputs)
    path = tmp_path / "model.tflite"
    path.write_bytes(raw)
    feeds = feeds_for(b)
    module = WasmModel(convert_model(path).wasm)
    assert [spec.dtype for spec in module.info.inputs] == [np.dtype(b.tensors[t].dtype) for t in b.inputs]
    expected, got = run_litert(raw, feeds), module.run(feeds)
    assert set(got) == set(expected)
    for t in outputs:
        name = b.tensors[t].name
        # A float output is a DEQUANTIZE's: one step is its input's scale.
        source = next((op.inputs[0] for op in b.operators if t in op.outputs and op.kind == "DEQUANTIZE"), t)
        quant = b.tensors[source].quant  # none: an index (ARG_MAX), which must be exact
        worst, equal = steps_apart(name, expected[name], got[name], quant.scale[0] if quant else 1.0)
        size = expected[name].size
        print(f"{case} {dtype} {name}: {size} values, max {worst} step(s) apart, {equal} equal")
        assert worst <= (1 if quant else 0), f"{case} {dtype} {name}: {worst} steps apart"
        # Not a trivially equal output: neither mostly saturated nor a few values.
        assert len(np.unique(expected[name])) >= min(3, size), f"{case} {dtype} {name}: too few values"
        if expected[name].dtype != np.float32:
            top = (expected[name] == np.iinfo(expected[name].dtype).max).mean()
            assert top < 0.5, f"{case} {dtype} {name}: {top:.0%} saturated"


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_chain_is_within_one_step_per_op(tmp_path: Path, dtype: str) -> None:
    """Ops chained: the logits (after conv, depthwise conv, add, pools, reshape, fully connected) are within
    one step of LiteRT's. The softmax after them is within one step of LiteRT's softmax of the module's own
    logits; against LiteRT's whole model it may be more, as a one-step difference of its input moves a
    softmax of scale 1/256 by up to p(1 - p) * 0.05 * 256 = 3.2 of its steps."""
    b = TfliteBuilder()
    logits, probabilities = small_cnn(b, DTYPES[dtype])
    raw = b.build([logits, probabilities])
    path = tmp_path / "model.tflite"
    path.write_bytes(raw)
    feeds = feeds_for(b)
    expected, got = run_litert(raw, feeds), WasmModel(convert_model(path).wasm).run(feeds)
    names = [b.tensors[t].name for t in (logits, probabilities)]
    worst, equal = steps_apart(names[0], expected[names[0]], got[names[0]], 1.0)
    print(f"small_cnn {dtype} logits: {got[names[0]].size} values, max {worst} step(s) apart, {equal} equal")
    assert worst <= 1
    overall, _ = steps_apart(names[1], expected[names[1]], got[names[1]], 1.0)
    softmax_only = TfliteBuilder()
    x = softmax_only.input(list(got[names[0]].shape), DTYPES[dtype], name="logits", quant=b.tensors[logits].quant)
    y = softmax_only.op("SOFTMAX", [x], options={"Beta": 1.0}, dtype=DTYPES[dtype],
                        quant=b.tensors[probabilities].quant)
    reference = run_litert(softmax_only.build([y]), {"logits": got[names[0]]})[softmax_only.tensors[y].name]
    worst, equal = steps_apart(names[1], reference, got[names[1]], 1.0)
    print(f"small_cnn {dtype} softmax: max {worst} step(s) from LiteRT's softmax of the same logits, {equal} "
          f"equal; {overall} from LiteRT's whole model")
    assert worst <= 1


def test_dense_int8_fixture_matches_litert() -> None:
    """The converter's own full-integer model (float input and output, int8 inside, batch left to run
    time), which the frontend used to decline."""
    path = FIXTURES / "dense_int8.tflite"
    reference = LiteRtModel(path)
    x = np.random.default_rng(3).normal(size=(3, 4)).astype(np.float32)
    want = reference.run({"x": x})["probabilities"]
    got = WasmModel(convert_model(path, max_batch=4).wasm).run({"x": x})["probabilities"]
    worst, equal = steps_apart("probabilities", want, got, 1 / 256)  # the softmax's output scale
    print(f"dense_int8: {want.size} values, max {worst} step(s) apart, {equal} equal")
    assert worst <= 1


def test_int16_activations_are_declined(tmp_path: Path) -> None:
    """16x8 quantization (int16 activations) is not converted: the problem names the operator."""
    b = TfliteBuilder()
    q = Quant([0.001], [0])
    x = b.input([2, 8], np.int16, name="x", quant=q)
    y = b.op("ADD", [x, x], dtype=np.int16, quant=q)
    b.tensors[y].name = "y"
    path = tmp_path / "int16.tflite"
    path.write_bytes(b.build([y]))
    with pytest.raises(UnsupportedModel) as caught:
        convert_model(path)
    problems = caught.value.problems
    assert any(p.startswith("operator 0 (ADD, output 'y')") and "'x' (int16)" in p and "16-bit" in p
               for p in problems), problems


def test_op_without_integer_mapping_is_declined(tmp_path: Path) -> None:
    b = TfliteBuilder()
    q = Quant([0.05], [0])
    x = b.input([2, 8], np.int8, name="x", quant=q)
    y = b.op("EXP", [x], outputs=[b.tensor([2, 8], np.int8, "y", q)])
    path = tmp_path / "exp.tflite"
    path.write_bytes(b.build([y]))
    with pytest.raises(UnsupportedModel) as caught:
        convert_model(path)
    assert caught.value.problems[0].startswith("operator 0 (EXP, output 'y')")
    assert "EXP has no integer mapping" in caught.value.problems[0]


def test_run_time_batch(tmp_path: Path) -> None:
    """An int8 input whose batch is left to run time: 3 samples through one module, as LiteRT runs them."""
    b = TfliteBuilder()
    x = b.input([1, 4, 4, 3], np.int8, batch=True, quant=act(np.int8, 0.05, 3))
    w, w_scale = weights(b, np.int8, (5, 3, 3, 3), 0)
    c = b.op("CONV_2D", [x, w, bias(b, 0.05, w_scale, 5)], options={**CONV, "FusedActivationFunction": RELU},
             dtype=np.int8, quant=act(np.int8, 0.1, -128))
    y = b.op("MEAN", [c, b.const(np.array([1, 2], np.int32))], options={"KeepDims": False}, dtype=np.int8,
             quant=act(np.int8, 0.02, -128))
    raw = b.build([y])
    path = tmp_path / "batch.tflite"
    path.write_bytes(raw)
    feeds = {"input0": RNG.integers(-128, 127, (3, 4, 4, 3), endpoint=True).astype(np.int8)}
    result = convert_model(path, max_batch=4)
    assert result.metadata.inputs[0].batch_axis == 0
    expected, got = run_litert(raw, feeds), WasmModel(result.wasm).run(feeds)
    name = b.tensors[y].name
    worst, equal = steps_apart(name, expected[name], got[name], 1.0)
    print(f"batch of 3: {got[name].size} values, max {worst} step(s) apart, {equal} equal")
    assert got[name].shape == (3, 5) and worst <= 1


def test_raw_op_with_inputs_quantized_differently_is_declined(tmp_path: Path) -> None:
    """LiteRT's MAXIMUM compares the stored integers, which mean different values under different scales:
    declined rather than computed on the real values."""
    b = TfliteBuilder()
    x = b.input([2, 8], np.int8, name="x", quant=Quant([0.05], [0]))
    c = b.const(np.arange(8, dtype=np.int8), quant=Quant([0.1], [0]))
    y = b.op("MAXIMUM", [x, c], dtype=np.int8, quant=Quant([0.05], [0]))
    b.tensors[y].name = "y"
    path = tmp_path / "maximum.tflite"
    path.write_bytes(b.build([y]))
    with pytest.raises(UnsupportedModel) as caught:
        convert_model(path)
    assert caught.value.problems[0].startswith("operator 0 (MAXIMUM, output 'y')")
    assert "quantized differently" in caught.value.problems[0]
