"""TensorFlow Lite (`.tflite`, float32 or full-integer int8/uint8) → IR, by way of the ONNX ops the compiler
already has.

Each operator of the main subgraph becomes one or a few ONNX nodes; the result is an ONNX
model that `load_onnx` turns into the IR, so shape inference, dynamic-batch handling and
`--input-shape` work exactly as for ONNX models, and the same passes and kernels compile it.

Layout. TFLite is NHWC with OHWI conv filters (depthwise: 1HW(C*M)); ONNX's Conv and pools
are NCHW. Every rank-4 value may exist in either layout, or both: a conv or pool asks for
its input channels-first and writes its output channels-first; an op whose meaning depends
on memory order (RESHAPE, SOFTMAX, FULLY_CONNECTED, a graph output) asks for TFLite's
layout; elementwise ops, CONCATENATION, PAD and MEAN work in whichever layout their input
already has. A Transpose is emitted only when a value is first asked for in the layout it
does not have yet, so consecutive convs (with activations, residual adds and concats
between them) exchange channels-first values and no Transpose pair is emitted to be cancelled
later; `merge_transposes` composes the model's own TRANSPOSE with a relayout after it. A
relayout that moves only size-1 dims is a Reshape (a view, no copy). Filters are transposed
here, once, as numpy arrays.

Padding. SAME becomes explicit pads with the odd row/column at the bottom/right, as TFLite
pads (SAME_UPPER, defined alike, when the size is only known at run time); a zero PAD that
only feeds VALID convs is folded into their pads.

Ops: the SUPPORTED set below; MAPPINGS says what each becomes and `builtin_table` lists every
LiteRT builtin's status (docs/conformance.md, written by scripts/tflite_table.py). Among them:
convs, pools (L2 too), FULLY_CONNECTED, BATCH_MATMUL, TRANSPOSE_CONV, the elementwise ops with
their fused activations, comparisons and LOGICAL_* (bool tensors), SELECT/SELECT_V2, the
reductions, ARG_MAX/ARG_MIN, CUMSUM, TOPK_V2, the reshapes, PACK/UNPACK, SPLIT/SPLIT_V,
STRIDED_SLICE (every mask, offset), GATHER/GATHER_ND (constant indices), PAD/PADV2/MIRROR_PAD
(SYMMETRIC as a Gather), DEPTH_TO_SPACE/SPACE_TO_DEPTH, RESIZE_*, L2_NORMALIZATION,
LOCAL_RESPONSE_NORMALIZATION, UNIDIRECTIONAL_SEQUENCE_LSTM, DEQUANTIZE of float16 constants,
DENSIFY; and MediaPipe's custom ops Convolution2DTransposeBias, MaxPoolingWithArgmax2D and
MaxUnpooling2D, whose parameters are the kernel's C struct (TfLiteTransposeConvParams,
TfLitePoolParams) as the converter writes it into custom_options, not a flexbuffer.

Sparse constants (TFLite's sparsity format) are made dense when the file is read (`densify`),
so DENSIFY and sparse weights cost nothing at run time.

Full-integer models. Each tensor's scale, zero point and quantized_dimension come from the
flatbuffer. A quantized tensor's value here is its float value: an op of QUANTIZED_OPS reads
DequantizeLinear of each int8/uint8 input (constants: of the stored integers, per channel along
the quantized dimension wherever the filter transpose moved it, folded at compile time; int32
biases scaled by input scale times weight scale, as the integer kernel's accumulator), runs the float
op mapped above, and `requantize` rounds each int8/uint8 output with QuantizeLinear and reads it
back with DequantizeLinear, as LiteRT's integer kernels round once per op. Ops LiteRT runs on the
stored integers (RAW: reshapes, slices, splits, pools, resizes, MAXIMUM/MINIMUM, TRANSPOSE, PAD,
...) round with their input's parameters, whatever the output's say, and need their inputs
quantized alike. int8/uint8 model inputs and outputs stay integers at the boundary.

What is declined (every problem listed at once, nothing written): ops without a mapping,
int8/uint8 tensors around an op outside QUANTIZED_OPS, 16-bit activations, dynamic-range
(hybrid) ops, run-time tensors other than float32 (bool and int32/int64 only around comparisons,
logic, SELECT, ARG_MAX/ARG_MIN, TOPK_V2 and CAST), and options the mapping does not cover.
DEQUANTIZE of float16 constants (the converter's float16 option) is evaluated here: the weights
are float32 in the module.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import tflite  # type: ignore[import-untyped]
from onnx import helper, numpy_helper
from tflite.utils import BUILTIN_OPCODE2NAME  # type: ignore[import-untyped]

from wasinfer.frontends.onnx import FrontendError, Loaded, load_onnx
from wasinfer.ir import UnsupportedModel

MAGIC = b"TFL3"  # the flatbuffer file identifier, at byte 4
OPSET = 14  # HardSwish; Clip, Squeeze and Pad take their parameters as inputs
NHWC_TO_NCHW = (0, 3, 1, 2)
NCHW_TO_NHWC = (0, 2, 3, 1)

_T = tflite.TensorType
DTYPES: dict[int, np.dtype[Any]] = {
    _T.FLOAT32: np.dtype(np.float32), _T.FLOAT16: np.dtype(np.float16), _T.FLOAT64: np.dtype(np.float64),
    _T.INT32: np.dtype(np.int32), _T.INT64: np.dtype(np.int64), _T.BOOL: np.dtype(np.bool_),
    _T.INT8: np.dtype(np.int8), _T.UINT8: np.dtype(np.uint8), _T.INT16: np.dtype(np.int16),
}
QUANTIZED_TYPES = {_T.INT8, _T.UINT8, _T.INT16, _T.INT4} if hasattr(_T, "INT4") else {_T.INT8, _T.UINT8, _T.INT16}
INTEGER_TYPES = {_T.INT8, _T.UINT8}  # the quantized activations and weights converted
TYPE_NAMES = {v: k.lower() for k, v in vars(_T).items() if not k.startswith("_")}

_A = tflite.ActivationFunctionType
UNARY = {"RELU": "Relu", "LOGISTIC": "Sigmoid", "TANH": "Tanh", "HARD_SWISH": "HardSwish", "EXP": "Exp",
         "LOG": "Log", "ABS": "Abs", "NEG": "Neg", "SQRT": "Sqrt", "FLOOR": "Floor", "CEIL": "Ceil", "ELU": "Elu",
         "RELU6": "Clip", "RELU_N1_TO_1": "Clip", "RELU_0_TO_1": "Clip", "LEAKY_RELU": "LeakyRelu",
         "ROUND": "Round", "SIN": "Sin", "COS": "Cos", "SIGN": "Sign"}
CLIP_RANGES = {"RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0), "RELU_0_TO_1": (0.0, 1.0)}
BINARY = {"ADD": "Add", "SUB": "Sub", "MUL": "Mul", "DIV": "Div", "MAXIMUM": "Max", "MINIMUM": "Min",
          "PRELU": "PRelu"}
# Ops whose output is their input with another shape: the target comes from the output's shape.
RESHAPES = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS"}
CONVS = {"CONV_2D", "DEPTHWISE_CONV_2D"}
# Reductions; ReduceSum takes its axes as an input from opset 13, the others from opset 18.
REDUCTIONS = {"MEAN": "ReduceMean", "SUM": "ReduceSum", "REDUCE_MAX": "ReduceMax", "REDUCE_MIN": "ReduceMin",
              "REDUCE_PROD": "ReduceProd"}
COMPARISONS = {"EQUAL": "Equal", "NOT_EQUAL": "Equal", "LESS": "Less", "LESS_EQUAL": "LessOrEqual",
               "GREATER": "Greater", "GREATER_EQUAL": "GreaterOrEqual"}
LOGICAL = {"LOGICAL_AND": "And", "LOGICAL_OR": "Or", "LOGICAL_NOT": "Not"}
# MediaPipe's custom ops (mediapipe/util/tflite/operations), as the segmentation and selfie models carry them.
CUSTOM_OPS = {"CUSTOM:Convolution2DTransposeBias", "CUSTOM:MaxPoolingWithArgmax2D", "CUSTOM:MaxUnpooling2D"}
SUPPORTED = {*UNARY, *BINARY, *RESHAPES, *CONVS, *REDUCTIONS, *COMPARISONS, *LOGICAL, *CUSTOM_OPS, "AVERAGE_POOL_2D",
             "MAX_POOL_2D", "FULLY_CONNECTED", "CONCATENATION", "SOFTMAX", "LOG_SOFTMAX", "PAD", "PADV2", "MIRROR_PAD",
             "TRANSPOSE", "DEQUANTIZE", "SQUARED_DIFFERENCE", "POW", "RSQRT", "SQUARE", "BATCH_MATMUL",
             "STRIDED_SLICE", "SLICE", "SPLIT", "SPLIT_V", "GATHER", "GATHER_ND", "RESIZE_BILINEAR",
             "RESIZE_NEAREST_NEIGHBOR", "TRANSPOSE_CONV", "GELU", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "PACK", "UNPACK",
             "L2_NORMALIZATION", "LOCAL_RESPONSE_NORMALIZATION", "SELECT", "SELECT_V2", "FLOOR_DIV", "FLOOR_MOD",
             "ROUND", "ADD_N", "ARG_MAX", "ARG_MIN", "DENSIFY", "TILE", "BROADCAST_TO", "REVERSE_V2", "ZEROS_LIKE",
             "CAST", "UNIDIRECTIONAL_SEQUENCE_LSTM", "L2_POOL_2D", "CUMSUM", "TOPK_V2", "QUANTIZE"}
# Full-integer models: the ops converted with int8/uint8 tensors, as DequantizeLinear of each quantized input,
# the float op, QuantizeLinear of each quantized output. REQUANTIZED ops rescale their result to the output's
# scale and zero point, as LiteRT's integer kernels do (int32 accumulation, one multiplier: the float op rounds
# once, at the end, so the two agree within one step). RAW ops work on the stored integers (LiteRT copies,
# compares or averages them and reads the result with the output's parameters), so they round with the input's
# parameters; with equal parameters EXACT_RAW ops need no rounding at all.
REQUANTIZED = {*CONVS, "FULLY_CONNECTED", "ADD", "SUB", "MUL", "CONCATENATION", "SOFTMAX", "LOGISTIC", "TANH",
               "MEAN", "RELU", "RELU6", "QUANTIZE", "DEQUANTIZE", "HARD_SWISH", "LEAKY_RELU", "PRELU", "BATCH_MATMUL",
               "TRANSPOSE_CONV", "SUM", "L2_NORMALIZATION", "LOG_SOFTMAX", "SQUARED_DIFFERENCE"}
RAW = {*RESHAPES, "MAX_POOL_2D", "AVERAGE_POOL_2D", "RESIZE_BILINEAR", "TRANSPOSE", "PAD", "STRIDED_SLICE",
       "SLICE", "SPLIT", "SPLIT_V", "GATHER", "PACK", "UNPACK", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH",
       "RESIZE_NEAREST_NEIGHBOR", "REDUCE_MAX", "REDUCE_MIN", "MAXIMUM", "MINIMUM", "ARG_MAX", "ARG_MIN"}
EXACT_RAW = RAW - {"AVERAGE_POOL_2D", "RESIZE_BILINEAR"}
DATA_INPUT = {"SPLIT": 1}  # the input a RAW op copies from, where it is not the first
QUANTIZED_OPS = REQUANTIZED | RAW
# Ops whose run-time tensors may be bool or integer (the rest take and give float32 only).
ANY_TYPE = {*COMPARISONS, *LOGICAL, "SELECT", "SELECT_V2", "ARG_MAX", "ARG_MIN", "CAST", "TOPK_V2"}
RUNTIME_TYPES = {_T.FLOAT32, _T.BOOL, _T.INT32, _T.INT64}
INT_MAX = np.iinfo(np.int64).max
MAX_DENSE_BYTES = 1 << 31  # a sparse constant made dense, at most (a damaged file may claim any shape)
PADDING_SAME, PADDING_VALID = 1, 2  # TfLitePadding, in custom ops' parameter structs
MAX_WINDOW_TAPS = 256  # MaxPoolingWithArgmax2D slices once per window offset
# The ops converted by a _Converter method of that name (the others: see _Converter.convert).
EXTRA = {"DEPTH_TO_SPACE": "depth_space", "SPACE_TO_DEPTH": "depth_space", "PACK": "pack", "UNPACK": "unpack",
         "L2_NORMALIZATION": "l2_normalization", "LOCAL_RESPONSE_NORMALIZATION": "local_response_normalization",
         **dict.fromkeys([*COMPARISONS, *LOGICAL], "compare"), "SELECT": "select", "SELECT_V2": "select",
         "FLOOR_DIV": "floor_div_mod", "FLOOR_MOD": "floor_div_mod", "ADD_N": "add_n", "ARG_MAX": "arg",
         "ARG_MIN": "arg", "CAST": "cast", "DENSIFY": "densify_op", "ZEROS_LIKE": "zeros",
         "TILE": "tile", "BROADCAST_TO": "tile", "REVERSE_V2": "reverse", "GATHER_ND": "gather_nd",
         "CUSTOM:Convolution2DTransposeBias": "transpose_conv_bias", "CUSTOM:MaxPoolingWithArgmax2D": "pool_argmax",
         "CUSTOM:MaxUnpooling2D": "unpool", "UNIDIRECTIONAL_SEQUENCE_LSTM": "lstm", "L2_POOL_2D": "l2_pool",
         "CUMSUM": "cumsum", "TOPK_V2": "top_k"}
# UNIDIRECTIONAL_SEQUENCE_LSTM's inputs: the per-gate weights (input, forget, cell, output gates) in ONNX's
# i, o, f, c order, the peepholes in ONNX's i, o, f order.
LSTM_INPUT_WEIGHTS, LSTM_RECURRENT_WEIGHTS, LSTM_BIASES = (1, 4, 2, 3), (5, 8, 6, 7), (12, 15, 13, 14)
LSTM_PEEPHOLES, LSTM_PROJECTION, LSTM_STATES, LSTM_LAYER_NORM = (9, 11, 10), (16, 17), (18, 19), (20, 21, 22, 23)

# What each supported op becomes, for docs/conformance.md's TFLite table (builtin_table below). One
# ONNX op is "converted"; anything more (or nothing at run time) is "lowered".
MAPPINGS: dict[str, tuple[str, str]] = {
    **{k: ("converted", f"{v}") for k, v in UNARY.items() if v != "Clip"},
    **{k: ("converted", f"Clip {lo:g}..{hi:g}") for k, (lo, hi) in CLIP_RANGES.items()},
    **{k: ("converted", f"{v} (+ fused activation)") for k, v in BINARY.items()},
    **{k: ("converted", "Reshape (a view)") for k in RESHAPES},
    **{k: ("converted", f"{v}, or GlobalAveragePool for the mean over H and W" if k == "MEAN" else v)
       for k, v in REDUCTIONS.items()},
    **{k: ("converted", v) for k, v in COMPARISONS.items() if k != "NOT_EQUAL"},
    **{k: ("converted", v) for k, v in LOGICAL.items()},
    "CONV_2D": ("converted", "Conv; filters transposed to OIHW at convert time, a zero PAD before a VALID conv folded"),
    "DEPTHWISE_CONV_2D": ("converted", "Conv with one group per input channel"),
    "TRANSPOSE_CONV": ("converted", "ConvTranspose with explicit pads (SAME crops as TFLite)"),
    "FULLY_CONNECTED": ("converted", "Gemm (rows flattened by a Reshape; DEFAULT weights format only)"),
    "AVERAGE_POOL_2D": ("converted", "AveragePool (padded taps not counted, as TFLite)"),
    "MAX_POOL_2D": ("converted", "MaxPool"),
    "CONCATENATION": ("converted", "Concat"), "SOFTMAX": ("converted", "Softmax (beta ≠ 1: Mul first)"),
    "LOG_SOFTMAX": ("converted", "LogSoftmax"), "PAD": ("converted", "Pad"), "PADV2": ("converted", "Pad"),
    "MIRROR_PAD": ("converted", "Pad reflect; SYMMETRIC: one Gather of constant indices per padded axis"),
    "TRANSPOSE": ("converted", "Transpose"), "SLICE": ("lowered", "Slice + Reshape"),
    "STRIDED_SLICE": ("lowered", "Slice + Reshape: begin/end/ellipsis/new-axis/shrink masks, offset"),
    "SPLIT": ("converted", "Split"), "SPLIT_V": ("converted", "Split"),
    "GATHER": ("converted", "Gather (constant indices; batch_dims 0)"),
    "GATHER_ND": ("lowered", "Reshape + Gather of flattened constant indices"),
    "RESIZE_BILINEAR": ("converted", "Resize linear: align_corners, half_pixel_centers or TFLite's legacy grid"),
    "RESIZE_NEAREST_NEIGHBOR": ("converted", "Resize nearest, with TFLite's rounding per grid"),
    "DEQUANTIZE": ("converted", "DequantizeLinear (int8/uint8); float16 constants: evaluated at convert time"),
    "QUANTIZE": ("converted", "QuantizeLinear to int8/uint8 (from int8/uint8: DequantizeLinear first)"),
    "SQUARED_DIFFERENCE": ("lowered", "Sub + Mul"), "POW": ("converted", "Pow"),
    "RSQRT": ("lowered", "Sqrt + Reciprocal"), "SQUARE": ("lowered", "Mul"),
    "BATCH_MATMUL": ("lowered", "MatMul; adj_x/adj_y as Transpose"), "GELU": ("lowered", "Erf or Tanh form"),
    "DEPTH_TO_SPACE": ("converted", "DepthToSpace DCR"), "SPACE_TO_DEPTH": ("converted", "SpaceToDepth"),
    "PACK": ("lowered", "Unsqueeze + Concat"), "UNPACK": ("lowered", "Split + Squeeze"),
    "L2_NORMALIZATION": ("lowered", "ReduceL2 + Max(1e-6) + Div"),
    "LOCAL_RESPONSE_NORMALIZATION": ("converted", "LRN (size 2r+1, alpha * size)"),
    "NOT_EQUAL": ("lowered", "Equal + Not"), "SELECT": ("converted", "Where (rank-1 condition: Reshape first)"),
    "SELECT_V2": ("converted", "Where"),
    "FLOOR_DIV": ("lowered", "Round((a - Mod(a, b)) / b): exact as TFLite's double division (float32)"),
    "FLOOR_MOD": ("converted", "Mod fmod=0 (float32)"), "ADD_N": ("converted", "Sum"),
    "ARG_MAX": ("lowered", "ArgMax + Cast to int32"), "ARG_MIN": ("lowered", "ArgMin + Cast to int32"),
    "CAST": ("converted", "Cast (float32, bool, int32, int64)"),
    "DENSIFY": ("lowered", "the sparse constant densified at convert time"),
    "ZEROS_LIKE": ("lowered", "a constant (static shape)"),
    "TILE": ("converted", "Tile"), "BROADCAST_TO": ("converted", "Expand"),
    "REVERSE_V2": ("converted", "Slice with step -1"),
    "L2_POOL_2D": ("lowered", "Mul + AveragePool + Sqrt (the root of the mean square over the taps inside)"),
    "CUMSUM": ("converted", "CumSum (exclusive, reverse)"),
    "TOPK_V2": ("lowered", "TopK (largest, sorted) + Cast of the indices to int32"),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": ("converted", "LSTM (peepholes; no CIFG, projection, layer norm or clipping)"),
    "CUSTOM:Convolution2DTransposeBias": ("converted", "ConvTranspose with bias"),
    "CUSTOM:MaxPoolingWithArgmax2D": ("lowered", "Pad + Slice per window offset + Concat + ReduceMax/ArgMax"),
    "CUSTOM:MaxUnpooling2D": ("lowered", "Equal + Where + Transpose + Reshape (stride = filter)"),
}
# Why a builtin without a mapping is declined, where there is more to say than "no mapping yet".
_NO_KERNEL = "no kernel in the compiler"
_GROUPS: dict[str, tuple[str, ...]] = {
    "quantization-aware training's op: convert the model with full-integer quantization": ("FAKE_QUANT",),
    _NO_KERNEL: ("ATAN2", "BITCAST", "BITWISE_XOR", "RIGHT_SHIFT", "SEGMENT_SUM",
                 "UNSORTED_SEGMENT_PROD", "UNSORTED_SEGMENT_MAX", "UNSORTED_SEGMENT_SUM", "UNSORTED_SEGMENT_MIN",
                 "SCATTER_ND", "CONV_3D", "CONV_3D_TRANSPOSE", "DYNAMIC_UPDATE_SLICE", "REVERSE_SEQUENCE"),
    "integer (ids) model inputs are not supported": ("EMBEDDING_LOOKUP",),
    "the output's shape depends on run-time values": ("WHERE", "UNIQUE", "NON_MAX_SUPPRESSION_V4",
                                                       "NON_MAX_SUPPRESSION_V5", "RANGE", "FILL", "SHAPE", "RANK",
                                                       "BROADCAST_ARGS"),
    "subgraphs (control flow) are not converted": ("IF", "WHILE", "CALL", "CALL_ONCE"),
    "resource, hash-table and variable tensors": ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "HASHTABLE",
                                                  "HASHTABLE_FIND", "HASHTABLE_IMPORT", "HASHTABLE_SIZE",
                                                  "HASHTABLE_LOOKUP", "LSH_PROJECTION", "SKIP_GRAM",
                                                  "CONCAT_EMBEDDINGS", "EMBEDDING_LOOKUP_SPARSE"),
    "random numbers": ("RANDOM_STANDARD_NORMAL", "RANDOM_UNIFORM", "MULTINOMIAL"),
    "complex numbers": ("RFFT2D", "IMAG", "REAL", "COMPLEX_ABS"),
    "recurrent layer without a mapping yet (UNIDIRECTIONAL_SEQUENCE_LSTM is converted)": (
        "LSTM", "RNN", "SVDF", "UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_RNN",
        "BIDIRECTIONAL_SEQUENCE_LSTM"),
    "not an operator a model runs": ("CUSTOM", "DELEGATE", "PLACEHOLDER_FOR_GREATER_OP_CODES"),
}
DECLINED: dict[str, str] = {op: reason for reason, ops in _GROUPS.items() for op in ops}


def builtin_table() -> list[tuple[str, str, str]]:
    """Every LiteRT builtin (the `tflite` package's BuiltinOperator), then the custom ops converted:
    (name, status, how or why; whether full-integer models' int8/uint8 form converts too). StableHLO ops
    are one row each, declined."""
    names = sorted((k for k in vars(tflite.BuiltinOperator) if not k.startswith("_")),
                   key=lambda k: getattr(tflite.BuiltinOperator, k))
    rows = []
    for name in [*names, *sorted(CUSTOM_OPS)]:
        if name in MAPPINGS:
            status, detail = MAPPINGS[name]
            rows.append((name, status, f"{detail}; int8/uint8 too" if name in QUANTIZED_OPS else detail))
        elif name.startswith("STABLEHLO_"):
            rows.append((name, "declined", "StableHLO ops (a converter option) are not converted"))
        else:
            rows.append((name, "declined", DECLINED.get(name, "no mapping yet")))
    return rows


def is_tflite(source: str | Path) -> bool:
    """A `.tflite` file by its content (the flatbuffer identifier), whatever its name."""
    try:
        with open(source, "rb") as file:
            head = file.read(8)
    except OSError:
        return False
    return len(head) == 8 and head[4:8] == MAGIC


@dataclass
class _Quant:
    """A tensor's quantization parameters: real = (stored - zero) * scale, one (scale, zero) per tensor or
    one per slice along `axis` (TFLite's quantized_dimension, in the file's layout)."""

    scale: np.ndarray  # float32
    zero: np.ndarray  # int64, as many as scale
    axis: int

    @property
    def per_axis(self) -> bool:
        return self.scale.size > 1

    def same(self, other: _Quant | None) -> bool:
        return other is not None and np.array_equal(self.scale, other.scale) and np.array_equal(
            self.zero, other.zero)


@dataclass
class _Tensor:
    index: int
    name: str  # the tensor's own name in the file
    type: int  # tflite.TensorType
    shape: tuple[int, ...]  # -1 where the model leaves the dim to run time
    data: np.ndarray | None  # constants
    quantized: bool
    sparse: bool = False
    quant: _Quant | None = None

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass
class _Op:
    index: int
    kind: str  # BUILTIN name, or CUSTOM:<code>
    inputs: list[int]  # -1 for an omitted optional input
    outputs: list[int]
    options: Any  # the flatbuffer table of the builtin options, or None
    custom_options: bytes = b""  # a custom op's parameters, as its kernel reads them

    def opts(self, cls: type) -> Any:
        opts = cls()
        if self.options is not None:
            opts.Init(self.options.Bytes, self.options.Pos)
        return opts


class _Declined(Exception):
    """One operator cannot be mapped; the message says why."""


def _read_tensor(model: tflite.Model, raw: bytes, graph: tflite.SubGraph, index: int) -> _Tensor:
    t = graph.Tensors(index)
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    signature = tuple(int(d) for d in t.ShapeSignatureAsNumpy()) if t.ShapeSignatureLength() else shape
    data = None
    buffer = model.Buffers(t.Buffer()) if t.Buffer() < model.BuffersLength() else None
    dtype = DTYPES.get(t.Type())
    sparsity = t.Sparsity()
    if buffer is not None and dtype is not None:
        payload = b""
        if buffer.DataLength():
            payload = buffer.DataAsNumpy().tobytes()
        elif buffer.Offset() > 1:  # models over 2 GiB keep buffers after the flatbuffer
            payload = raw[buffer.Offset():buffer.Offset() + buffer.Size()]
        if payload:
            values = np.frombuffer(payload, dtype)
            data = densify(values, shape, sparsity) if sparsity is not None else values.reshape(shape).copy()
    quant = t.Quantization()
    quantized = t.Type() in QUANTIZED_TYPES or (quant is not None and quant.ScaleLength() > 0)
    params = None
    if quant is not None and quant.ScaleLength() > 0:
        scale = quant.ScaleAsNumpy().astype(np.float32)
        zero = quant.ZeroPointAsNumpy().astype(np.int64) if quant.ZeroPointLength() else np.zeros(1, np.int64)
        if zero.size == 1:
            zero = np.repeat(zero, scale.size)
        if zero.size != scale.size:
            raise ValueError(f"tensor {index} has {scale.size} scales and {zero.size} zero points")
        params = _Quant(scale, zero, int(quant.QuantizedDimension()))
    name = (t.Name() or b"").decode(errors="replace") or f"tensor_{index}"
    return _Tensor(index, name, t.Type(), signature if len(signature) == len(shape) else shape, data, quantized,
                   sparsity is not None and data is None, params)


def _index_vector(metadata: tflite.DimensionMetadata, segments: bool) -> np.ndarray:
    """A SPARSE_CSR dimension's array_segments or array_indices (a union of int32/uint16/uint8 vectors)."""
    kind = metadata.ArraySegmentsType() if segments else metadata.ArrayIndicesType()
    table = metadata.ArraySegments() if segments else metadata.ArrayIndices()
    vectors = {tflite.SparseIndexVector.Int32Vector: tflite.Int32Vector,
               tflite.SparseIndexVector.Uint16Vector: tflite.Uint16Vector,
               tflite.SparseIndexVector.Uint8Vector: tflite.Uint8Vector}
    if kind not in vectors or table is None:
        raise ValueError("a SPARSE_CSR dimension without its segments and indices")
    vector = vectors[kind]()
    vector.Init(table.Bytes, table.Pos)
    return vector.ValuesAsNumpy().astype(np.int64) if vector.ValuesLength() else np.zeros(0, np.int64)


def densify(values: np.ndarray, shape: tuple[int, ...], sparsity: tflite.SparsityParameters) -> np.ndarray:
    """A sparse constant (TFLite's sparsity format) as its dense array: done once at convert time, so
    DENSIFY and sparse weights cost nothing at run time.

    The stored dims are the tensor's dims, each blocked one split into (blocks, block size), the
    block dims appended (`block_map[i]` names the dim block dim `rank + i` splits), visited in
    `traversal_order`. A DENSE level has `dense_size` children per parent; a SPARSE_CSR level
    keeps, for parent p, the children `array_segments[p]` to `array_segments[p + 1]`, whose
    coordinates are `array_indices`; a value's position at the last level indexes `values`.
    """
    rank = len(shape)
    order = sparsity.TraversalOrderAsNumpy().tolist() if sparsity.TraversalOrderLength() else list(range(rank))
    block_map = sparsity.BlockMapAsNumpy().tolist() if sparsity.BlockMapLength() else []
    if sparsity.DimMetadataLength() != len(order) or sorted(order) != list(range(rank + len(block_map))):
        raise ValueError(f"sparsity metadata for {len(order)} dims does not fit a rank-{rank} tensor "
                         f"with {len(block_map)} block dims")
    if any(d < 0 for d in shape) or int(np.prod(shape, dtype=np.float64)) * values.itemsize > MAX_DENSE_BYTES:
        raise ValueError(f"a sparse tensor of shape {list(shape)}: dense it would exceed "
                         f"{MAX_DENSE_BYTES >> 30} GiB")
    blocks = {target: sparsity.DimMetadata(order.index(rank + i)).DenseSize() for i, target in enumerate(block_map)}
    if any(size < 1 or shape[d] % size for d, size in blocks.items()):
        raise ValueError(f"block sizes {blocks} do not divide shape {list(shape)}")
    sizes = [shape[d] // blocks.get(d, 1) for d in range(rank)] + [blocks[d] for d in block_map]
    positions = np.zeros(1, np.int64)  # one parent at the root
    coords = np.zeros((len(order), 1), np.int64)  # coordinate of each stored dim, per entry
    for level, dim in enumerate(order):
        metadata = sparsity.DimMetadata(level)
        if metadata.Format() == tflite.DimensionType.DENSE:
            size = metadata.DenseSize()
            if size != sizes[dim]:
                raise ValueError(f"dense size {size} of stored dim {dim}, expected {sizes[dim]}")
            children = np.arange(size, dtype=np.int64)
            coords = np.repeat(coords, size, axis=1)
            positions = (positions[:, None] * size + children[None, :]).reshape(-1)
            coords[dim] = np.tile(children, len(positions) // max(size, 1))
        else:
            segments, indices = _index_vector(metadata, True), _index_vector(metadata, False)
            if (len(segments) != len(positions) + 1 or segments[0] != 0 or np.any(np.diff(segments) < 0)
                    or segments[-1] != len(indices) or np.any(indices < 0) or np.any(indices >= sizes[dim])):
                raise ValueError(f"the segments or indices of stored dim {dim} do not fit its size {sizes[dim]}")
            starts, ends = segments[positions], segments[positions + 1]
            counts = ends - starts
            coords = np.repeat(coords, counts, axis=1)
            positions = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends, strict=True)]) \
                if len(positions) else np.zeros(0, np.int64)
            coords[dim] = indices[positions]
    if len(positions) and positions.max() >= len(values):
        raise ValueError(f"{len(values)} stored values, the metadata addresses {positions.max() + 1}")
    dense_coords = coords[:rank].copy()
    for i, target in enumerate(block_map):  # a blocked dim's coordinate is block * size + offset
        dense_coords[target] = dense_coords[target] * blocks[target] + coords[rank + i]
    dense = np.zeros(shape, values.dtype)
    dense[tuple(dense_coords)] = values[positions]
    return dense


def _read_ops(model: tflite.Model, graph: tflite.SubGraph) -> list[_Op]:
    ops = []
    for index in range(graph.OperatorsLength()):
        op = graph.Operators(index)
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        kind = BUILTIN_OPCODE2NAME.get(builtin, f"BUILTIN_{builtin}")
        if kind == "CUSTOM":
            kind = f"CUSTOM:{(code.CustomCode() or b'').decode(errors='replace')}"
        inputs = [int(i) for i in op.InputsAsNumpy()] if op.InputsLength() else []
        outputs = [int(i) for i in op.OutputsAsNumpy()] if op.OutputsLength() else []
        custom = op.CustomOptionsAsNumpy().tobytes() if op.CustomOptionsLength() else b""
        ops.append(_Op(index, kind, inputs, outputs, op.BuiltinOptions(), custom))
    return ops


def _signature_names(model: tflite.Model, graph: tflite.SubGraph) -> dict[int, str]:
    """Tensor index → signature name (inputs, then outputs, in the signature's order), when the one
    signature is the main subgraph's inputs and outputs.

    The names clients see: LiteRT serves the same model under these names (runtime/litert.py).
    """
    if model.SignatureDefsLength() != 1:
        return {}
    sig = model.SignatureDefs(0)
    if sig.SubgraphIndex() != 0:
        return {}
    ins = {sig.Inputs(i).TensorIndex(): sig.Inputs(i).Name().decode() for i in range(sig.InputsLength())}
    outs = {sig.Outputs(i).TensorIndex(): sig.Outputs(i).Name().decode() for i in range(sig.OutputsLength())}
    graph_ins = set(graph.InputsAsNumpy().tolist()) if graph.InputsLength() else set()
    graph_outs = set(graph.OutputsAsNumpy().tolist()) if graph.OutputsLength() else set()
    if set(ins) != graph_ins or set(outs) != graph_outs or len(set(ins.values()) | set(outs.values())) != len(
            ins) + len(outs):
        return {}
    return ins | outs


class _Converter:
    """Writes the ONNX nodes for one subgraph; see the module docstring for the layout rules."""

    def __init__(self, tensors: list[_Tensor], ops: list[_Op], outputs: list[int], names: dict[int, str]):
        self.tensors, self.ops, self.graph_outputs = tensors, ops, outputs
        self.names = names
        self.used_names = {names[t] for t in outputs}  # given to the outputs at the end (_rename_output)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, np.ndarray] = {}
        self.consts: dict[int, np.ndarray] = {t.index: t.data for t in tensors if t.data is not None}
        self.tl: dict[int, str] = {}  # tensor → its value in TFLite's layout
        self.cf: dict[int, str] = {}  # rank-4 tensor → its value channels-first
        self.folded_pads: dict[int, tuple[int, list[int]]] = {}  # PAD output → (its input, [t, l, b, r])
        self.integer: dict[str, str] = {}  # a quantized tensor's float value → the stored integers it was read from
        self.consumers: dict[int, list[_Op]] = {}
        for op in ops:
            for t in op.inputs:
                self.consumers.setdefault(t, []).append(op)
        self.node_name = ""

    # -- names and constants ------------------------------------------------------------------------------------

    def fresh(self, hint: str) -> str:
        """A new value name: the hint itself when free (so a tensor's value in TFLite's layout keeps the
        tensor's name), else the hint with a number."""
        name, n = hint, 1
        while name in self.used_names:
            n += 1
            name = f"{hint}_{n}"
        self.used_names.add(name)
        return name

    def constant(self, hint: str, value: np.ndarray) -> str:
        name = self.fresh(hint)
        self.inits[name] = value
        return name

    def node(self, op_type: str, inputs: list[str], output_hint: str, **attrs: Any) -> str:
        output = self.fresh(output_hint)
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=self.fresh(f"{self.node_name}/{op_type}"),
                                           **attrs))
        return output

    def const_of(self, t: int) -> np.ndarray | None:
        return self.consts.get(t)

    def quant_params(self, quant: _Quant, dtype: np.dtype[Any], hint: str) -> list[str]:
        """QuantizeLinear's / DequantizeLinear's scale and zero point; the zero point's type is the integer
        type QuantizeLinear writes."""
        shape = (quant.scale.size,) if quant.per_axis else ()
        return [self.constant(f"{hint}/scale", quant.scale.reshape(shape)),
                self.constant(f"{hint}/zero_point", quant.zero.astype(dtype).reshape(shape))]

    def dequantized(self, stored: np.ndarray, quant: _Quant, axis: int, hint: str) -> str:
        """Quantized constants as DequantizeLinear of the stored integers (`axis`: where the quantized
        dimension is in `stored`, which the caller may have transposed); folding evaluates it at compile time."""
        attrs = {"axis": axis} if quant.per_axis else {}
        integers = self.constant(f"{hint}/stored", np.ascontiguousarray(stored))
        return self.node("DequantizeLinear", [integers, *self.quant_params(quant, stored.dtype, hint)], hint, **attrs)

    def const_value(self, t: int, value: np.ndarray, hint: str, perm: tuple[int, ...] | None = None,
                    lead: int = 0) -> str:
        """A constant as its reader wants it: `value` is the stored array with `lead` size-1 dims put in front,
        then transposed by `perm`; int8/uint8 ones are dequantized with their scales."""
        quant = self.tensors[t].quant
        if quant is None or self.tensors[t].type not in INTEGER_TYPES:
            return self.constant(hint, value)
        axis = quant.axis + lead
        return self.dequantized(value, quant, perm.index(axis) if perm is not None else axis, hint)

    def bias(self, t: int, x: int, w: int) -> str:
        """A conv's or FULLY_CONNECTED's bias. An int32 one is added to the integer kernel's accumulator, so
        its scale is the input's times the weights' (per output channel), whatever the file says."""
        tensor, x_quant, w_quant = self.tensors[t], self.tensors[x].quant, self.tensors[w].quant
        if tensor.type != _T.INT32:
            return self.value(t)
        stored = self.const_of(t)
        if stored is None or x_quant is None or w_quant is None or x_quant.per_axis:
            raise _Declined("an int32 bias must be a constant, with a quantized input and weights")
        scale = (x_quant.scale.astype(np.float64) * w_quant.scale).astype(np.float32)
        return self.dequantized(stored, _Quant(scale, np.zeros(scale.size, np.int64), 0), 0,
                                f"{self.names[t]}/real")

    def requantize(self, op: _Op, t: int) -> None:
        """Round an int8/uint8 output as LiteRT's integer kernel does: QuantizeLinear with the output's scale
        and zero point (REQUANTIZED ops) or the input's (RAW ops, which LiteRT runs on the stored integers;
        none at all when they are equal and the op moves values without computing new ones), and
        DequantizeLinear with the output's for the ops that read it."""
        tensor, channels_first = self.tensors[t], t in self.cf
        quant = tensor.quant
        assert quant is not None  # _type_problem declined int8/uint8 tensors without parameters
        rounding = quant
        if op.kind in RAW:
            source = self.tensors[op.inputs[DATA_INPUT.get(op.kind, 0)]]
            if source.quant is None or source.type != tensor.type:
                raise _Declined(f"the input is {TYPE_NAMES.get(source.type)}, the output "
                                f"{TYPE_NAMES.get(tensor.type)}: LiteRT copies the stored integers")
            others = [self.tensors[i] for i in op.inputs if i >= 0 and self.tensors[i].type in INTEGER_TYPES]
            if any(not source.quant.same(other.quant) for other in others):
                raise _Declined("inputs quantized differently: LiteRT compares or copies their stored integers")
            if op.kind in ("MAX_POOL_2D", "AVERAGE_POOL_2D") and not source.quant.same(quant) and op.opts(
                    tflite.Pool2DOptions).FusedActivationFunction() != _A.NONE:
                raise _Declined("a fused activation with input and output quantized differently")
            if source.quant.same(quant) and op.kind in EXACT_RAW:
                return
            rounding = source.quant
        hint = self.out_hint(t, channels_first)
        name = self.cf[t] if channels_first else self.tl[t]
        dtype = DTYPES[tensor.type]
        params = self.quant_params(quant, dtype, hint)
        integers = self.node("QuantizeLinear", [name, *(params if rounding is quant else self.quant_params(
            rounding, dtype, f"{hint}/input"))], f"{hint}/q")
        value = self.node("DequantizeLinear", [integers, *params], f"{hint}/dq")
        if rounding is quant:
            self.integer[value] = integers
        self.define(t, value, channels_first)

    def dequantize_input(self, t: int) -> str:
        """An int8/uint8 model input (LiteRT takes the stored integers) as the float values ops read."""
        quant, dtype = self.tensors[t].quant, DTYPES[self.tensors[t].type]
        assert quant is not None
        self.node_name = "input"
        value = self.node("DequantizeLinear", [self.names[t], *self.quant_params(quant, dtype, self.names[t])],
                          f"{self.names[t]}/dq")
        self.integer[value] = self.names[t]
        return value

    def stored(self, t: int) -> str:
        """An int8/uint8 tensor's stored integers in TFLite's layout, for a model output (a channels-first
        one moved back as integers: a quarter of the bytes, no rounding)."""
        if t not in self.tl and self.cf.get(t) in self.integer:
            self.node_name = "output"
            return self._relayout(self.integer[self.cf[t]], t, NCHW_TO_NHWC, "/stored")
        value = self.value(t)
        if value in self.integer:
            return self.integer[value]
        quant = self.tensors[t].quant
        assert quant is not None
        self.node_name = "output"
        hint = self.names[t]
        return self.node("QuantizeLinear", [value, *self.quant_params(quant, DTYPES[self.tensors[t].type], hint)],
                         f"{hint}/q")

    def ints(self, t: int, what: str) -> list[int]:
        value = self.const_of(t)
        if value is None:
            raise _Declined(f"the {what} must be a constant")
        return [int(v) for v in np.asarray(value).reshape(-1)]

    # -- layouts --------------------------------------------------------------------------------------------------

    def _relayout(self, source: str, t: int, perm: tuple[int, ...], suffix: str) -> str:
        """Transpose between layouts; a Reshape (a view) when only size-1 dims move."""
        tensor = self.tensors[t]
        _, h, w, c = tensor.shape
        hint = self.names[t] + suffix
        if all(d >= 0 for d in (h, w, c)) and (c == 1 or (h == 1 and w == 1)):
            dims = [0, h, w, c] if perm == NCHW_TO_NHWC else [0, c, h, w]
            return self.node("Reshape", [source, self.constant(f"{hint}/shape", np.array(dims, np.int64))], hint)
        return self.node("Transpose", [source], hint, perm=list(perm))

    def value(self, t: int) -> str:
        """The tensor in TFLite's layout."""
        if t in self.tl:
            return self.tl[t]
        if t in self.consts:
            self.tl[t] = self.const_value(t, self.consts[t], self.names[t])
        elif t in self.cf:
            self.tl[t] = self._relayout(self.cf[t], t, NCHW_TO_NHWC, "")
        else:
            raise KeyError(t)
        return self.tl[t]

    def channels_first(self, t: int) -> str:
        """A rank-4 tensor as N, C, H, W."""
        if t in self.cf:
            return self.cf[t]
        if t in self.consts:
            self.cf[t] = self.const_value(t, self.consts[t].transpose(NHWC_TO_NCHW), f"{self.names[t]}/nchw",
                                          NHWC_TO_NCHW)
        else:
            self.cf[t] = self._relayout(self.value(t), t, NHWC_TO_NCHW, "/nchw")
        return self.cf[t]

    def prefers_channels_first(self, t: int) -> bool:
        return t in self.cf and t not in self.tl

    def layout_for(self, inputs: list[int], rank: int) -> bool:
        """Whether an op that works in either layout should run channels-first: when a runtime input
        is channels-first only, and every runtime input has the output's rank 4 (so broadcasting
        means the same in both layouts; constants are permuted to match)."""
        runtime = [t for t in inputs if t >= 0 and t not in self.consts]
        if rank != 4 or any(self.tensors[t].rank != 4 for t in runtime):
            return False
        return any(self.prefers_channels_first(t) for t in runtime)

    def operand(self, t: int, channels_first: bool) -> str:
        if not channels_first:
            return self.value(t)
        if t in self.consts and self.consts[t].ndim < 4:  # broadcasts from the right: align to rank 4 first
            lead = 4 - self.consts[t].ndim
            value = self.consts[t].reshape((1,) * lead + self.consts[t].shape)
            return self.const_value(t, value.transpose(NHWC_TO_NCHW), f"{self.names[t]}/nchw", NHWC_TO_NCHW, lead)
        return self.channels_first(t)

    def define(self, t: int, name: str, channels_first: bool) -> None:
        (self.cf if channels_first else self.tl)[t] = name

    def activate(self, name: str, code: int, hint: str) -> str:
        """A fused activation as its own node (fuse_activations puts it back into the producer's kernel)."""
        if code == _A.NONE:
            return name
        if code == _A.RELU:
            return self.node("Relu", [name], hint)
        if code == _A.TANH:
            return self.node("Tanh", [name], hint)
        if code in (_A.RELU6, _A.RELU_N1_TO_1):
            lo, hi = (0.0, 6.0) if code == _A.RELU6 else (-1.0, 1.0)
            return self.clip(name, lo, hi, hint)
        raise _Declined(f"fused activation {code} (SIGN_BIT) is not supported")

    def clip(self, name: str, lo: float, hi: float, hint: str) -> str:
        return self.node("Clip", [name, self.constant(f"{hint}/min", np.array(lo, np.float32)),
                                  self.constant(f"{hint}/max", np.array(hi, np.float32))], hint)

    def same_pads(self, x: int, kernel: list[int], strides: list[int], dilations: list[int]) -> dict[str, Any]:
        """TFLite's SAME: ceil(in / stride) outputs, the odd pixel of padding at the bottom/right.

        Explicit pads when the input's size is static (ONNX Runtime, the tests' second opinion,
        does not take SAME_UPPER with dilations); else SAME_UPPER, which the spec defines alike.
        """
        dims = self.tensors[x].shape[1:3]
        if any(d < 0 for d in dims):
            return {"auto_pad": "SAME_UPPER"}
        begin, end = [], []
        for size, k, stride, dilation in zip(dims, kernel, strides, dilations, strict=True):
            total = max(0, (-(-size // stride) - 1) * stride + (k - 1) * dilation + 1 - size)
            begin.append(total // 2)
            end.append(total - total // 2)
        return {"pads": begin + end}

    def out_hint(self, t: int, channels_first: bool) -> str:
        return self.names[t] + ("/nchw" if channels_first else "")

    def reshape_target(self, t: int) -> np.ndarray | None:
        """The output's shape as a Reshape target: -1 for its one run-time dim (the batch)."""
        shape = self.tensors[t].shape
        return np.array(shape, np.int64) if sum(d < 0 for d in shape) <= 1 else None

    # -- ops ------------------------------------------------------------------------------------------------------

    def convert(self, op: _Op) -> None:
        self.node_name = f"{op.kind}_{op.index}"
        kind = op.kind
        if kind in CONVS:
            self.conv(op)
        elif kind == "TRANSPOSE_CONV":
            self.transpose_conv(op)
        elif kind == "GELU":
            self.gelu(op)
        elif kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            self.pool(op)
        elif kind == "FULLY_CONNECTED":
            self.fully_connected(op)
        elif kind in BINARY or kind in ("SQUARED_DIFFERENCE", "POW"):
            self.binary(op)
        elif kind in UNARY or kind in ("RSQRT", "SQUARE"):
            self.unary(op)
        elif kind in RESHAPES:
            self.reshape(op)
        elif kind == "CONCATENATION":
            self.concat(op)
        elif kind in ("SOFTMAX", "LOG_SOFTMAX"):
            self.softmax(op)
        elif kind in REDUCTIONS:
            self.reduce(op)
        elif kind in ("PAD", "PADV2", "MIRROR_PAD"):
            self.pad(op)
        elif kind == "TRANSPOSE":
            self.transpose(op)
        elif kind == "BATCH_MATMUL":
            self.batch_matmul(op)
        elif kind in ("STRIDED_SLICE", "SLICE"):
            self.slice(op)
        elif kind in ("SPLIT", "SPLIT_V"):
            self.split(op)
        elif kind == "GATHER":
            self.gather(op)
        elif kind in ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"):
            self.resize(op)
        elif kind in EXTRA:
            getattr(self, EXTRA[kind])(op)
        else:
            self.dequantize(op)
        for t in op.outputs:
            if t >= 0 and self.tensors[t].type in INTEGER_TYPES and t not in self.consts:
                self.requantize(op, t)

    def conv(self, op: _Op) -> None:
        x, w, out = op.inputs[0], op.inputs[1], op.outputs[0]
        depthwise = op.kind == "DEPTHWISE_CONV_2D"
        opts = op.opts(tflite.DepthwiseConv2DOptions if depthwise else tflite.Conv2DOptions)
        filt = self.const_of(w)
        if filt is None or filt.ndim != 4:
            raise _Declined("the filter must be a rank-4 constant")
        channels = self.tensors[x].shape[3]
        if channels < 0:
            raise _Declined("the input's channel count must be static")
        perm = (3, 0, 1, 2) if depthwise else (0, 3, 1, 2)
        if depthwise:  # 1, KH, KW, C*M → C*M, 1, KH, KW; output channel c*M + m is group c's m-th
            weight, groups = filt.transpose(perm), channels
            if filt.shape[0] != 1 or filt.shape[3] % channels:
                raise _Declined(f"filter shape {list(filt.shape)} does not fit {channels} input channels")
        else:  # O, KH, KW, I → O, I, KH, KW (I < C: grouped)
            weight = filt.transpose(perm)
            if channels % filt.shape[3] or filt.shape[0] % (channels // filt.shape[3]):
                raise _Declined(f"filter shape {list(filt.shape)} does not fit {channels} input channels")
            groups = channels // filt.shape[3]
        attrs: dict[str, Any] = {
            "kernel_shape": list(weight.shape[2:]), "strides": [opts.StrideH(), opts.StrideW()],
            "dilations": [opts.DilationHFactor(), opts.DilationWFactor()], "group": int(groups)}
        if opts.Padding() == tflite.Padding.SAME:
            attrs.update(self.same_pads(x, attrs["kernel_shape"], attrs["strides"], attrs["dilations"]))
        else:
            attrs["pads"] = [0, 0, 0, 0]
            if x in self.folded_pads:
                x, (top, left, bottom, right) = self.folded_pads[x]
                attrs["pads"] = [top, left, bottom, right]
        inputs = [self.channels_first(x), self.const_value(w, np.ascontiguousarray(weight), f"{self.names[w]}/oihw",
                                                           perm)]
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            inputs.append(self.bias(op.inputs[2], x, w))
        y = self.node("Conv", inputs, f"{self.names[out]}/conv", **attrs)
        self.define(out, self.activate(y, opts.FusedActivationFunction(), self.out_hint(out, True)), True)

    def transpose_conv(self, op: _Op) -> None:
        """TRANSPOSE_CONV (inputs: output shape, OHWI filter, x, bias) as ConvTranspose with explicit pads:
        SAME crops the smaller half of the excess at the top/left, as TFLite's SAME conv pads there."""
        shape_t, w, x, out = op.inputs[0], op.inputs[1], op.inputs[2], op.outputs[0]
        opts = op.opts(tflite.TransposeConvOptions)
        filt = self.const_of(w)
        if filt is None or filt.ndim != 4:
            raise _Declined("the filter must be a rank-4 constant")
        out_dims = self.ints(shape_t, "output shape")[1:3]
        in_dims = self.tensors[x].shape[1:3]
        if any(d < 0 for d in in_dims) or self.tensors[x].shape[3] != filt.shape[3]:
            raise _Declined("the input's size must be static, its channels the filter's")
        strides = [opts.StrideH(), opts.StrideW()]
        begin, end, extra = [], [], []
        for size, k, stride, target in zip(in_dims, filt.shape[1:3], strides, out_dims, strict=True):
            total = stride * (size - 1) + k - target  # > 0: cropped; < 0: zeros appended
            head = max(total, 0) // 2 if opts.Padding() == tflite.Padding.SAME else 0
            begin.append(head)
            end.append(max(total, 0) - head)
            extra.append(max(-total, 0))
        inputs = [self.channels_first(x), self.const_value(w, np.ascontiguousarray(filt.transpose(3, 0, 1, 2)),
                                                           f"{self.names[w]}/iohw", (3, 0, 1, 2))]
        if len(op.inputs) > 3 and op.inputs[3] >= 0:
            inputs.append(self.bias(op.inputs[3], x, w))
        y = self.node("ConvTranspose", inputs, f"{self.names[out]}/deconv", kernel_shape=list(filt.shape[1:3]),
                      strides=strides, pads=begin + end, output_padding=extra)
        act = opts.FusedActivationFunction() if op.options is not None else _A.NONE
        self.define(out, self.activate(y, act, self.out_hint(out, True)), True)

    def gelu(self, op: _Op) -> None:
        """0.5 x (1 + erf(x / sqrt 2)), or with `approximate` the tanh form, from elementwise ops."""
        x, out = op.inputs[0], op.outputs[0]
        cf = self.layout_for([x], self.tensors[out].rank)
        source, hint = self.operand(x, cf), self.names[out]

        def scalar(tag: str, value: float) -> str:
            return self.constant(f"{hint}/{tag}", np.array(value, np.float32))

        if op.opts(tflite.GeluOptions).Approximate():
            cube = self.node("Mul", [self.node("Mul", [source, source], f"{hint}/square"), source], f"{hint}/cube")
            inner = self.node("Add", [source, self.node("Mul", [cube, scalar("c", 0.044715)], f"{hint}/cubic")],
                              f"{hint}/inner")
            core = self.node("Tanh", [self.node("Mul", [inner, scalar("k", float(np.sqrt(2 / np.pi)))],
                                                f"{hint}/scaled")], f"{hint}/tanh")
        else:
            core = self.node("Erf", [self.node("Mul", [source, scalar("k", float(1 / np.sqrt(2)))],
                                               f"{hint}/scaled")], f"{hint}/erf")
        half = self.node("Mul", [source, scalar("half", 0.5)], f"{hint}/half")
        gate = self.node("Add", [core, scalar("one", 1.0)], f"{hint}/gate")
        self.define(out, self.node("Mul", [half, gate], self.out_hint(out, cf)), cf)

    def pool(self, op: _Op) -> None:
        x, out = op.inputs[0], op.outputs[0]
        opts = op.opts(tflite.Pool2DOptions)
        attrs: dict[str, Any] = {"kernel_shape": [opts.FilterHeight(), opts.FilterWidth()],
                                 "strides": [opts.StrideH(), opts.StrideW()]}
        if opts.Padding() == tflite.Padding.SAME:  # AveragePool's count_include_pad=0: TFLite's divisor too
            attrs.update(self.same_pads(x, attrs["kernel_shape"], attrs["strides"], [1, 1]))
        op_type = "AveragePool" if op.kind == "AVERAGE_POOL_2D" else "MaxPool"
        y = self.node(op_type, [self.channels_first(x)], f"{self.names[out]}/pool", **attrs)
        self.define(out, self.activate(y, opts.FusedActivationFunction(), self.out_hint(out, True)), True)

    def fully_connected(self, op: _Op) -> None:
        x, w, out = op.inputs[0], op.inputs[1], op.outputs[0]
        opts = op.opts(tflite.FullyConnectedOptions)
        if opts.WeightsFormat() != tflite.FullyConnectedOptionsWeightsFormat.DEFAULT:
            raise _Declined("only the DEFAULT weights format is supported")
        weight = self.const_of(w)
        if weight is None or weight.ndim != 2:
            raise _Declined("the weights must be a rank-2 constant")
        source = self.value(x)
        if self.tensors[x].rank != 2:  # every leading dim is a row
            source = self.node("Reshape", [source, self.constant(
                f"{self.names[x]}/rows", np.array([-1, weight.shape[1]], np.int64))], f"{self.names[x]}/rows")
        inputs = [source, self.value(w)]
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            inputs.append(self.bias(op.inputs[2], x, w))
        y = self.node("Gemm", inputs, f"{self.names[out]}/gemm", transB=1)
        y = self.activate(y, opts.FusedActivationFunction(), self.names[out] + "/act")
        if self.tensors[out].rank != 2:
            target = self.reshape_target(out)
            if target is None:
                raise _Declined("the output has more than one run-time dim")
            y = self.node("Reshape", [y, self.constant(f"{self.names[out]}/shape", target)], self.names[out])
        self.define(out, y, False)

    def binary(self, op: _Op) -> None:
        out = op.outputs[0]
        options = {"ADD": tflite.AddOptions, "SUB": tflite.SubOptions, "MUL": tflite.MulOptions,
                   "DIV": tflite.DivOptions}.get(op.kind)
        act = op.opts(options).FusedActivationFunction() if options and op.options is not None else _A.NONE
        cf = self.layout_for(op.inputs, self.tensors[out].rank)
        operands = [self.operand(t, cf) for t in op.inputs[:2]]
        if op.kind == "SQUARED_DIFFERENCE":
            d = self.node("Sub", operands, self.names[out] + "/difference")
            y = self.node("Mul", [d, d], self.out_hint(out, cf))
        else:
            y = self.node(BINARY.get(op.kind, "Pow"), operands, self.names[out] + "/raw")
        self.define(out, self.activate(y, act, self.out_hint(out, cf)), cf)

    def unary(self, op: _Op) -> None:
        x, out = op.inputs[0], op.outputs[0]
        cf = self.layout_for([x], self.tensors[out].rank)
        source, hint = self.operand(x, cf), self.out_hint(out, cf)
        if op.kind in CLIP_RANGES:
            y = self.clip(source, *CLIP_RANGES[op.kind], hint)
        elif op.kind == "LEAKY_RELU":
            y = self.node("LeakyRelu", [source], hint, alpha=float(op.opts(tflite.LeakyReluOptions).Alpha()))
        elif op.kind == "RSQRT":
            y = self.node("Reciprocal", [self.node("Sqrt", [source], f"{hint}/sqrt")], hint)
        elif op.kind == "SQUARE":
            y = self.node("Mul", [source, source], hint)
        else:
            y = self.node(UNARY[op.kind], [source], hint)
        self.define(out, y, cf)

    def reshape(self, op: _Op) -> None:
        x, out = op.inputs[0], op.outputs[0]
        target = self.reshape_target(out)
        if target is None and op.kind == "RESHAPE" and len(op.inputs) > 1 and op.inputs[1] in self.consts:
            target = np.array(self.ints(op.inputs[1], "shape"), np.int64)
        if target is None:
            raise _Declined("the target shape depends on run-time values")
        self.define(out, self.node("Reshape", [self.value(x), self.constant(
            f"{self.names[out]}/shape", target)], self.names[out]), False)

    def concat(self, op: _Op) -> None:
        out = op.outputs[0]
        opts = op.opts(tflite.ConcatenationOptions)
        rank = self.tensors[out].rank
        axis = opts.Axis() % rank if rank else 0
        cf = self.layout_for(op.inputs, rank)
        if cf:
            axis = NHWC_TO_NCHW.index(axis)
        y = self.node("Concat", [self.operand(t, cf) for t in op.inputs], self.names[out] + "/raw", axis=axis)
        self.define(out, self.activate(y, opts.FusedActivationFunction(), self.out_hint(out, cf)), cf)

    def softmax(self, op: _Op) -> None:
        x, out = op.inputs[0], op.outputs[0]
        source = self.value(x)
        if op.kind == "SOFTMAX":
            beta = float(op.opts(tflite.SoftmaxOptions).Beta())
            if beta != 1.0:
                source = self.node("Mul", [source, self.constant(f"{self.names[out]}/beta", np.array(
                    beta, np.float32))], f"{self.names[out]}/scaled")
        op_type = "Softmax" if op.kind == "SOFTMAX" else "LogSoftmax"
        self.define(out, self.node(op_type, [source], self.names[out], axis=-1), False)

    def reduce(self, op: _Op) -> None:
        x, out = op.inputs[0], op.outputs[0]
        rank = self.tensors[x].rank
        axes = sorted({a % rank for a in self.ints(op.inputs[1], "axes")}) if rank else []
        keep = bool(op.opts(tflite.ReducerOptions).KeepDims())
        if op.kind == "MEAN" and rank == 4 and axes == [1, 2]:  # global pooling
            pooled = self.node("GlobalAveragePool", [self.channels_first(x)],
                               self.names[out] + ("/nchw" if keep else "/pool"))
            if keep:
                self.define(out, pooled, True)
            else:
                self.define(out, self.node("Reshape", [pooled, self.constant(
                    f"{self.names[out]}/shape", np.array([0, -1], np.int64))], self.names[out]), False)
            return
        if not axes:
            raise _Declined("reducing over no axes is not supported")
        cf = self.layout_for([x], rank) and keep
        if cf:
            axes = sorted(NHWC_TO_NCHW.index(a) for a in axes)
        op_type, hint = REDUCTIONS[op.kind], self.out_hint(out, cf)
        if op_type == "ReduceSum":
            y = self.node(op_type, [self.operand(x, cf), self.constant(f"{hint}/axes", np.array(axes, np.int64))],
                          hint, keepdims=int(keep))
        else:
            y = self.node(op_type, [self.operand(x, cf)], hint, axes=axes, keepdims=int(keep))
        self.define(out, y, cf)

    def _pad_amounts(self, op: _Op) -> np.ndarray:
        pads = self.const_of(op.inputs[1])
        rank = self.tensors[op.inputs[0]].rank
        if pads is None or pads.shape != (rank, 2):
            raise _Declined("the paddings must be a constant of shape [rank, 2]")
        return pads.astype(np.int64)

    def _foldable(self, op: _Op, pads: np.ndarray) -> bool:
        """A zero PAD of H and W whose every consumer is a VALID conv: it becomes the convs' pads."""
        out = op.outputs[0]
        if op.kind == "MIRROR_PAD":
            return False
        if op.kind == "PADV2" and (len(op.inputs) < 3 or self.const_of(op.inputs[2]) is None
                                   or float(np.asarray(self.consts[op.inputs[2]]).reshape(-1)[0]) != 0.0):
            return False
        if pads.shape != (4, 2) or pads[0].any() or pads[3].any() or (pads < 0).any() or out in self.graph_outputs:
            return False
        out_quant = self.tensors[out].quant
        if out_quant is not None and not out_quant.same(self.tensors[op.inputs[0]].quant):
            return False  # the stored integers are read with other parameters (see pad)
        for consumer in self.consumers.get(out, []):
            opts = consumer.opts(tflite.DepthwiseConv2DOptions if consumer.kind == "DEPTHWISE_CONV_2D"
                                 else tflite.Conv2DOptions) if consumer.kind in CONVS else None
            if opts is None or consumer.inputs[0] != out or opts.Padding() != tflite.Padding.VALID:
                return False
        return True

    def pad(self, op: _Op) -> None:
        x, out = op.inputs[0], op.outputs[0]
        pads = self._pad_amounts(op)
        if self._foldable(op, pads):
            self.folded_pads[out] = (x, [int(pads[1, 0]), int(pads[2, 0]), int(pads[1, 1]), int(pads[2, 1])])
            return
        cf = self.layout_for([x], self.tensors[out].rank)
        if cf:
            pads = pads[list(NHWC_TO_NCHW)]
        mode = "constant"
        if op.kind == "MIRROR_PAD":
            if op.opts(tflite.MirrorPadOptions).Mode() != tflite.MirrorPadMode.REFLECT:
                self.define(out, self.symmetric_pad(op, self.operand(x, cf), pads, cf), cf)
                return
            mode = "reflect"
        inputs = [self.operand(x, cf), self.constant(f"{self.names[out]}/pads", pads.T.reshape(-1))]
        if op.kind == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
            value = self.const_of(op.inputs[2])
            if value is None:
                raise _Declined("the pad value must be a constant")
            inputs.append(self.constant(f"{self.names[out]}/value", np.asarray(value, np.float32).reshape(())))
        x_quant, out_quant = self.tensors[x].quant, self.tensors[out].quant
        if op.kind == "PAD" and self.tensors[out].type in INTEGER_TYPES and x_quant is not None and out_quant \
                is not None and x_quant.zero[0] != out_quant.zero[0]:
            # LiteRT pads the stored integers with the output's zero point; `requantize` reads them with the
            # output's parameters, so here the pad is the value the input's parameters store as that integer.
            shift = np.float32((out_quant.zero[0] - x_quant.zero[0]) * x_quant.scale[0])
            inputs.append(self.constant(f"{self.names[out]}/value", np.array(shift, np.float32)))
        self.define(out, self.node("Pad", inputs, self.out_hint(out, cf), mode=mode), cf)

    def symmetric_pad(self, op: _Op, source: str, pads: np.ndarray, channels_first: bool) -> str:
        """MIRROR_PAD SYMMETRIC (the edge repeated; ONNX's Pad has no such mode) as one Gather of constant
        indices per padded axis: [p-1 .. 0, 0 .. n-1, n-1 .. n-q]."""
        shape = list(self.tensors[op.inputs[0]].shape)
        if channels_first:
            shape = [shape[p] for p in NHWC_TO_NCHW]
        hint = self.out_hint(op.outputs[0], channels_first)
        for axis, (before, after) in enumerate(pads.tolist()):
            if not before and not after:
                continue
            size = shape[axis]
            if size < 0 or before > size or after > size or before < 0 or after < 0:
                raise _Declined(f"SYMMETRIC padding of axis {axis} by {before}, {after} needs a static size at "
                                "least that large")
            index = np.concatenate([np.arange(before)[::-1], np.arange(size),
                                    np.arange(size - 1, size - 1 - after, -1)])
            source = self.node("Gather", [source, self.constant(f"{hint}/mirror{axis}", index.astype(np.int64))],
                               hint, axis=axis)
        return source

    def transpose(self, op: _Op) -> None:
        x, out = op.inputs[0], op.outputs[0]
        perm = self.ints(op.inputs[1], "permutation")
        if self.prefers_channels_first(x):  # compose with channels-first → TFLite's layout: one Transpose
            source, perm = self.cf[x], [NCHW_TO_NHWC[p] for p in perm]
        else:
            source = self.value(x)
        if perm == list(range(len(perm))):
            self.define(out, self.node("Identity", [source], self.names[out]), False)
        else:
            self.define(out, self.node("Transpose", [source], self.names[out], perm=perm), False)

    def batch_matmul(self, op: _Op) -> None:
        out = op.outputs[0]
        opts = op.opts(tflite.BatchMatMulOptions)
        operands = []
        for t, adjoint in zip(op.inputs[:2], (opts.AdjX(), opts.AdjY()), strict=True):
            name, rank = self.value(t), self.tensors[t].rank
            if adjoint:  # the last two axes swapped
                perm = [*range(rank - 2), rank - 1, rank - 2]
                name = (self.constant(f"{self.names[t]}/adjoint", self.consts[t].transpose(perm)) if t in self.consts
                        else self.node("Transpose", [name], f"{self.names[t]}/adjoint", perm=perm))
            operands.append(name)
        self.define(out, self.node("MatMul", operands, self.names[out]), False)

    def slice(self, op: _Op) -> None:
        """STRIDED_SLICE and SLICE as an ONNX Slice, then a Reshape to the output's shape, which drops the
        shrunk axes and inserts the new ones."""
        x, out = op.inputs[0], op.outputs[0]
        begin = self.ints(op.inputs[1], "begin")
        if op.kind == "SLICE":
            sizes = self.ints(op.inputs[2], "size")
            starts, ends = begin, [INT_MAX if n < 0 else b + n for b, n in zip(begin, sizes, strict=True)]
            steps = [1] * len(begin)
        else:
            starts, ends, steps = self._strided(op, begin, self.tensors[x].rank)
        axes = list(range(len(starts)))
        hint = self.names[out]
        arrays = [np.array(v, np.int64) for v in (starts, ends, axes, steps)]
        sliced = self.node("Slice", [self.value(x)] + [self.constant(f"{hint}/{part}", a) for part, a in zip(
            ("starts", "ends", "axes", "steps"), arrays, strict=True)], f"{hint}/slice")
        target = self.reshape_target(out)
        if target is None:
            raise _Declined("the output has more than one run-time dim")
        self.define(out, self.node("Reshape", [sliced, self.constant(f"{hint}/shape", target)], hint), False)

    def _strided(self, op: _Op, begin: list[int], rank: int) -> tuple[list[int], list[int], list[int]]:
        """STRIDED_SLICE's sparse spec made dense, as TensorFlow does: the ellipsis stands for every dim
        the other entries do not name (one at the end if there is none), a new axis names no input dim,
        a shrunk axis is [begin, begin + 1) whatever the masks say; `offset` makes end relative to begin."""
        end, strides = self.ints(op.inputs[2], "end"), self.ints(op.inputs[3], "strides")
        opts = op.opts(tflite.StridedSliceOptions)
        if opts.Offset():
            end = [b + e for b, e in zip(begin, end, strict=True)]
        ellipsis, new_axis, shrink = opts.EllipsisMask(), opts.NewAxisMask(), opts.ShrinkAxisMask()
        if bin(ellipsis).count("1") > 1:
            raise _Declined("more than one ellipsis")
        full = (0, INT_MAX, 1, False)
        dense: list[tuple[int, int, int, bool]] = []  # start, end, step, shrunk
        count = len(begin)
        for i in range(count):
            if ellipsis >> i & 1:
                named_after = sum(1 for j in range(i + 1, count) if not new_axis >> j & 1)
                dense += [full] * (rank - len(dense) - named_after)
            elif new_axis >> i & 1:
                continue
            elif shrink >> i & 1:
                dense.append((begin[i], INT_MAX if begin[i] == -1 else begin[i] + 1, 1, True))
            else:
                step = strides[i]
                if step == 0:
                    raise _Declined("a stride is 0")
                far = INT_MAX if step > 0 else -INT_MAX
                start = (0 if step > 0 else INT_MAX) if opts.BeginMask() >> i & 1 else begin[i]
                dense.append((start, far if opts.EndMask() >> i & 1 else end[i], step, False))
        dense += [full] * (rank - len(dense))
        if len(dense) != rank:
            raise _Declined(f"the slice names {len(dense)} dims of a rank-{rank} input")
        return [d[0] for d in dense], [d[1] for d in dense], [d[2] for d in dense]

    def split(self, op: _Op) -> None:
        if op.kind == "SPLIT":  # axis, x
            axis_t, x = op.inputs[0], op.inputs[1]
        else:  # x, size_splits, axis
            x, axis_t = op.inputs[0], op.inputs[2]
        rank = self.tensors[x].rank
        axis = self.ints(axis_t, "axis")[0] % rank
        sizes = [self.tensors[t].shape[axis] for t in op.outputs]
        if any(n < 0 for n in sizes):
            raise _Declined("the split sizes must be static")
        outputs = [self.fresh(self.names[t]) for t in op.outputs]
        self.nodes.append(helper.make_node(
            "Split", [self.value(x), self.constant(f"{self.names[x]}/split", np.array(sizes, np.int64))], outputs,
            name=self.fresh(f"{self.node_name}/Split"), axis=axis))
        for t, name in zip(op.outputs, outputs, strict=True):
            self.define(t, name, False)

    def gather(self, op: _Op) -> None:
        x, indices, out = op.inputs[0], op.inputs[1], op.outputs[0]
        opts = op.opts(tflite.GatherOptions)
        if opts.BatchDims():
            raise _Declined("batch_dims is not supported")
        if indices not in self.consts:
            raise _Declined("the indices must be a constant")
        index = self.constant(f"{self.names[indices]}/int64", self.consts[indices].astype(np.int64))
        self.define(out, self.node("Gather", [self.value(x), index], self.names[out],
                                   axis=opts.Axis() % self.tensors[x].rank), False)

    def resize(self, op: _Op) -> None:
        """RESIZE_* as ONNX Resize on the channels-first value, with TFLite's sampling grid: half-pixel
        centres, aligned corners, or (neither) the legacy top-left grid."""
        x, out = op.inputs[0], op.outputs[0]
        bilinear = op.kind == "RESIZE_BILINEAR"
        opts = op.opts(tflite.ResizeBilinearOptions if bilinear else tflite.ResizeNearestNeighborOptions)
        height, width = self.ints(op.inputs[1], "size")
        channels = self.tensors[x].shape[3]
        if self.tensors[x].rank != 4 or channels < 0:
            raise _Declined("the input must be rank 4 with a static channel count")
        if opts.AlignCorners():
            mode, nearest = "align_corners", "round_prefer_ceil"
        elif opts.HalfPixelCenters():
            mode, nearest = ("half_pixel", "floor") if bilinear else ("tf_half_pixel_for_nn", "floor")
        else:
            mode, nearest = "asymmetric", "floor"
        batch = self.tensors[x].shape[0]
        sizes = np.array([max(batch, 1), channels, height, width], np.int64)  # a run-time batch runs per sample
        hint = self.out_hint(out, True)
        attrs: dict[str, Any] = {"mode": "linear" if bilinear else "nearest", "coordinate_transformation_mode": mode}
        if not bilinear:
            attrs["nearest_mode"] = nearest
        y = self.node("Resize", [self.channels_first(x), "", "", self.constant(f"{hint}/sizes", sizes)], hint,
                      **attrs)
        self.define(out, y, True)

    def depth_space(self, op: _Op) -> None:
        """DEPTH_TO_SPACE / SPACE_TO_DEPTH on the channels-first value: TensorFlow's channel order is
        ONNX's DCR (channel (i * block + j) * C + c holds pixel (i, j) of channel c)."""
        x, out = op.inputs[0], op.outputs[0]
        to_space = op.kind == "DEPTH_TO_SPACE"
        opts = op.opts(tflite.DepthToSpaceOptions if to_space else tflite.SpaceToDepthOptions)
        if self.tensors[x].rank != 4:
            raise _Declined("the input must be rank 4 (NHWC)")
        if opts.BlockSize() < 1:
            raise _Declined(f"block size {opts.BlockSize()}")
        attrs: dict[str, Any] = {"blocksize": int(opts.BlockSize())}
        if to_space:
            attrs["mode"] = "DCR"
        y = self.node("DepthToSpace" if to_space else "SpaceToDepth", [self.channels_first(x)],
                      self.out_hint(out, True), **attrs)
        self.define(out, y, True)

    def axes(self, hint: str, axes: list[int]) -> str:
        return self.constant(f"{hint}/axes", np.array(axes, np.int64))

    def pack(self, op: _Op) -> None:
        """PACK: each value Unsqueezed (a view) at the axis, then one Concat."""
        out = op.outputs[0]
        axis = op.opts(tflite.PackOptions).Axis() % self.tensors[out].rank
        axes = self.axes(self.names[out], [axis])
        parts = [self.node("Unsqueeze", [self.value(t), axes], f"{self.names[out]}/part") for t in op.inputs]
        self.define(out, self.node("Concat", parts, self.names[out], axis=axis), False)

    def unpack(self, op: _Op) -> None:
        """UNPACK: a Split into ones along the axis, each part Squeezed (a view)."""
        x = op.inputs[0]
        rank = self.tensors[x].rank
        axis = op.opts(tflite.UnpackOptions).Axis() % rank
        count = self.tensors[x].shape[axis]
        if count < 0 or count != len(op.outputs):
            raise _Declined(f"the unpacked axis must have a static size equal to the {len(op.outputs)} outputs")
        parts = [self.fresh(f"{self.names[t]}/part") for t in op.outputs]
        self.nodes.append(helper.make_node(
            "Split", [self.value(x), self.constant(f"{self.names[x]}/ones", np.ones(count, np.int64))], parts,
            name=self.fresh(f"{self.node_name}/Split"), axis=axis))
        axes = self.axes(self.names[x], [axis])
        for t, part in zip(op.outputs, parts, strict=True):
            self.define(t, self.node("Squeeze", [part, axes], self.names[t]), False)

    def l2_normalization(self, op: _Op) -> None:
        """x / max(||x||, 1e-6) over the last axis, TFLite's kernel's epsilon on the norm."""
        x, out = op.inputs[0], op.outputs[0]
        hint = self.names[out]
        source = self.value(x)
        norm = self.node("ReduceL2", [source], f"{hint}/norm", axes=[self.tensors[x].rank - 1], keepdims=1)
        clamped = self.node("Max", [norm, self.constant(f"{hint}/epsilon", np.array(1e-6, np.float32))],
                            f"{hint}/clamped")
        y = self.node("Div", [source, clamped], f"{hint}/raw")
        act = op.opts(tflite.L2NormOptions).FusedActivationFunction() if op.options is not None else _A.NONE
        self.define(out, self.activate(y, act, hint), False)

    def local_response_normalization(self, op: _Op) -> None:
        """TFLite: x / (bias + alpha * sum of squares over channels c - r .. c + r) ** beta. ONNX's LRN divides
        alpha by its window size 2r + 1, so alpha is multiplied back."""
        x, out = op.inputs[0], op.outputs[0]
        if self.tensors[x].rank != 4:
            raise _Declined("the input must be rank 4 (NHWC)")
        opts = op.opts(tflite.LocalResponseNormalizationOptions)
        size = 2 * opts.Radius() + 1
        y = self.node("LRN", [self.channels_first(x)], self.out_hint(out, True), size=size,
                      alpha=float(opts.Alpha()) * size, beta=float(opts.Beta()), bias=float(opts.Bias()))
        self.define(out, y, True)

    def compare(self, op: _Op) -> None:
        """Comparisons and LOGICAL_* (bool results), in whichever layout the inputs have."""
        out = op.outputs[0]
        cf = self.layout_for(op.inputs, self.tensors[out].rank)
        operands = [self.operand(t, cf) for t in op.inputs]
        hint = self.out_hint(out, cf)
        if op.kind in LOGICAL:
            y = self.node(LOGICAL[op.kind], operands, hint)
        elif op.kind == "NOT_EQUAL":
            y = self.node("Not", [self.node("Equal", operands, f"{hint}/equal")], hint)
        else:
            y = self.node(COMPARISONS[op.kind], operands, hint)
        self.define(out, y, cf)

    def select(self, op: _Op) -> None:
        """SELECT / SELECT_V2 as Where. SELECT's rank-1 condition picks whole rows of higher-rank
        values: it is reshaped to [n, 1, ...] so that numpy broadcasting means the same."""
        cond, a, b = op.inputs[:3]
        out = op.outputs[0]
        rank = self.tensors[out].rank
        if op.kind == "SELECT" and self.tensors[cond].rank == 1 and rank > 1:
            rows = self.node("Reshape", [self.value(cond), self.constant(
                f"{self.names[cond]}/rows", np.array([-1] + [1] * (rank - 1), np.int64))], f"{self.names[cond]}/rows")
            self.define(out, self.node("Where", [rows, self.value(a), self.value(b)], self.names[out]), False)
            return
        cf = self.layout_for(op.inputs, rank)
        y = self.node("Where", [self.operand(t, cf) for t in op.inputs], self.out_hint(out, cf))
        self.define(out, y, cf)

    def floor_div_mod(self, op: _Op) -> None:
        """FLOOR_MOD as ONNX's Mod with fmod=0 (the remainder takes b's sign); FLOOR_DIV as the whole number
        (a - a mod b) / b, rounded: floor(a / b) in float32 would round 2.1 / 0.7 up to 3 where TFLite's
        double division gives 2.9999999 and so 2."""
        out = op.outputs[0]
        cf = self.layout_for(op.inputs, self.tensors[out].rank)
        operands = [self.operand(t, cf) for t in op.inputs[:2]]
        hint = self.out_hint(out, cf)
        if op.kind == "FLOOR_DIV":  # TFLite divides in double; the remainder (Mod works in f64) keeps that exact
            remainder = self.node("Mod", operands, f"{hint}/remainder", fmod=0)
            multiple = self.node("Sub", [operands[0], remainder], f"{hint}/multiple")
            y = self.node("Round", [self.node("Div", [multiple, operands[1]], f"{hint}/quotient")], hint)
        else:
            y = self.node("Mod", operands, hint, fmod=0)
        self.define(out, y, cf)

    def add_n(self, op: _Op) -> None:
        out = op.outputs[0]
        cf = self.layout_for(op.inputs, self.tensors[out].rank)
        self.define(out, self.node("Sum", [self.operand(t, cf) for t in op.inputs], self.out_hint(out, cf)), cf)

    def arg(self, op: _Op) -> None:
        """ARG_MAX / ARG_MIN (first index of the extreme, as both kernels), cast to the output's int32."""
        x, out = op.inputs[0], op.outputs[0]
        axis = self.ints(op.inputs[1], "axis")[0] % self.tensors[x].rank
        hint = self.names[out]
        y = self.node("ArgMax" if op.kind == "ARG_MAX" else "ArgMin", [self.value(x)], f"{hint}/int64", axis=axis,
                      keepdims=0)
        if self.tensors[out].type == _T.INT32:
            y = self.node("Cast", [y], hint, to=onnx.TensorProto.INT32)
        elif self.tensors[out].type != _T.INT64:
            raise _Declined(f"output type {TYPE_NAMES.get(self.tensors[out].type)} (int32 and int64 are supported)")
        self.define(out, y, False)

    def cast(self, op: _Op) -> None:
        x, out = op.inputs[0], op.outputs[0]
        target = self.tensors[out].type
        if target not in RUNTIME_TYPES:
            raise _Declined(f"casting to {TYPE_NAMES.get(target)} (float32, bool, int32 and int64 are supported)")
        to = helper.np_dtype_to_tensor_dtype(DTYPES[target])
        self.define(out, self.node("Cast", [self.value(x)], self.names[out], to=to), False)

    def densify_op(self, op: _Op) -> None:
        """DENSIFY of a sparse constant: the constant was made dense when the file was read."""
        x, out = op.inputs[0], op.outputs[0]
        if x not in self.consts:
            raise _Declined("the input must be a constant")
        self.consts[out] = self.consts[x]

    def zeros(self, op: _Op) -> None:
        """ZEROS_LIKE: a constant of the output's (static) shape."""
        out = op.outputs[0]
        shape = self.tensors[out].shape
        if any(d < 0 for d in shape):
            raise _Declined("the shape must be static")
        self.consts[out] = np.zeros(shape, DTYPES.get(self.tensors[out].type, np.dtype(np.float32)))

    def tile(self, op: _Op) -> None:
        x, out = op.inputs[0], op.outputs[0]
        if op.kind == "TILE":
            repeats = self.constant(f"{self.names[out]}/repeats", np.array(self.ints(op.inputs[1], "multiples"),
                                                                          np.int64))
            self.define(out, self.node("Tile", [self.value(x), repeats], self.names[out]), False)
        else:  # BROADCAST_TO
            shape = self.constant(f"{self.names[out]}/shape", np.array(self.ints(op.inputs[1], "shape"), np.int64))
            self.define(out, self.node("Expand", [self.value(x), shape], self.names[out]), False)

    def reverse(self, op: _Op) -> None:
        """REVERSE_V2 as a Slice with step -1 on each reversed axis."""
        x, out = op.inputs[0], op.outputs[0]
        rank = self.tensors[x].rank
        axes = sorted({a % rank for a in self.ints(op.inputs[1], "axes")})
        hint = self.names[out]
        count = len(axes)
        inputs = [self.value(x), self.constant(f"{hint}/starts", np.full(count, -1, np.int64)),
                  self.constant(f"{hint}/ends", np.full(count, -INT_MAX, np.int64)), self.axes(hint, axes),
                  self.constant(f"{hint}/steps", np.full(count, -1, np.int64))]
        self.define(out, self.node("Slice", inputs, hint), False)

    def gather_nd(self, op: _Op) -> None:
        """GATHER_ND with constant indices: the first k dims of the params flattened into one (a
        view), and a Gather of the flat indices along it."""
        params, indices, out = op.inputs[0], op.inputs[1], op.outputs[0]
        if indices not in self.consts:
            raise _Declined("the indices must be a constant")
        index = self.consts[indices].astype(np.int64)
        shape = self.tensors[params].shape
        depth = index.shape[-1] if index.ndim else 0
        if not 1 <= depth <= len(shape) or any(d < 0 for d in shape):
            raise _Declined("the params' shape must be static and the indices' last dim between 1 and its rank")
        dims = np.array(shape[:depth], np.int64)
        if (index < 0).any() or (index >= dims).any():
            raise _Declined("an index is out of range")
        flat = (index * np.cumprod(np.r_[1, dims[1:][::-1]])[::-1]).sum(axis=-1)
        hint = self.names[out]
        rows = self.node("Reshape", [self.value(params), self.constant(
            f"{hint}/rows", np.array([int(dims.prod()), *shape[depth:]], np.int64))], f"{hint}/rows")
        self.define(out, self.node("Gather", [rows, self.constant(f"{hint}/flat", flat)], hint, axis=0), False)

    def l2_pool(self, op: _Op) -> None:
        """L2_POOL_2D: sqrt(mean of squares over the window's taps inside the input) = Sqrt(AveragePool(x * x)),
        AveragePool counting only those taps, as TFLite."""
        x, out = op.inputs[0], op.outputs[0]
        opts = op.opts(tflite.Pool2DOptions)
        attrs: dict[str, Any] = {"kernel_shape": [opts.FilterHeight(), opts.FilterWidth()],
                                 "strides": [opts.StrideH(), opts.StrideW()]}
        if opts.Padding() == tflite.Padding.SAME:
            attrs.update(self.same_pads(x, attrs["kernel_shape"], attrs["strides"], [1, 1]))
        hint = self.out_hint(out, True)
        source = self.channels_first(x)
        squares = self.node("Mul", [source, source], f"{hint}/squares")
        mean = self.node("AveragePool", [squares], f"{hint}/mean", **attrs)
        y = self.node("Sqrt", [mean], f"{hint}/root")
        self.define(out, self.activate(y, opts.FusedActivationFunction(), hint), True)

    def cumsum(self, op: _Op) -> None:
        x, out = op.inputs[0], op.outputs[0]
        opts = op.opts(tflite.CumsumOptions)
        axis = self.ints(op.inputs[1], "axis")[0] % self.tensors[x].rank
        y = self.node("CumSum", [self.value(x), self.constant(f"{self.names[out]}/axis", np.array(axis, np.int64))],
                      self.names[out], exclusive=int(opts.Exclusive()), reverse=int(opts.Reverse()))
        self.define(out, y, False)

    def top_k(self, op: _Op) -> None:
        """TOPK_V2 along the last axis, largest first; the indices cast to the output's int32."""
        x = op.inputs[0]
        k = self.ints(op.inputs[1], "k")
        values = self.fresh(self.names[op.outputs[0]])
        indices = self.fresh(f"{self.names[op.outputs[1]]}/int64") if len(op.outputs) > 1 else ""
        self.nodes.append(helper.make_node(
            "TopK", [self.value(x), self.constant(f"{values}/k", np.array(k[:1], np.int64))],
            [values, indices or self.fresh(f"{values}/indices")], name=self.fresh(f"{self.node_name}/TopK"),
            axis=-1, largest=1, sorted=1))
        self.define(op.outputs[0], values, False)
        if indices:
            target = self.tensors[op.outputs[1]].type
            if target == _T.INT32:
                indices = self.node("Cast", [indices], self.names[op.outputs[1]], to=onnx.TensorProto.INT32)
            self.define(op.outputs[1], indices, False)

    def lstm(self, op: _Op) -> None:
        """UNIDIRECTIONAL_SEQUENCE_LSTM as ONNX's LSTM: the four gates' weights stacked in ONNX's i, o, f, c
        order, the gate biases as W's bias (R's is zero), the peepholes as P; batch-major input runs
        with layout 1. Each run starts from zero states, as a fresh LiteRT interpreter does (LiteRT
        carries its variable state tensors over to the next invocation until they are reset).

        Declined: CIFG (no input gate: TFLite derives it from the forget gate, ONNX's input_forget the
        other way round), projection, layer normalisation, cell or projection clipping (ONNX's clip
        bounds the gates' pre-activations, not the cell state), an activation other than TANH."""
        x, out = op.inputs[0], op.outputs[0]
        opts = op.opts(tflite.UnidirectionalSequenceLSTMOptions)
        inputs = op.inputs + [-1] * (24 - len(op.inputs))
        present = [i for i in (*LSTM_PROJECTION, *LSTM_LAYER_NORM) if inputs[i] >= 0]
        if inputs[1] < 0:
            raise _Declined("CIFG (coupled input and forget gates) is not supported")
        if present:
            raise _Declined(f"projection and layer normalisation are not supported (inputs {present})")
        if opts.CellClip() or opts.ProjClip():
            raise _Declined("cell_clip and proj_clip are not supported")
        if opts.FusedActivationFunction() != _A.TANH:
            raise _Declined(f"fused activation {opts.FusedActivationFunction()} (only TANH is supported)")
        for t in LSTM_STATES:
            state = self.const_of(inputs[t]) if inputs[t] >= 0 else None
            if state is not None and np.any(state):
                raise _Declined("the initial state must be zero")

        def stacked(indices: tuple[int, ...], what: str) -> np.ndarray:
            arrays = [self.const_of(inputs[i]) for i in indices]
            if any(a is None for a in arrays):
                raise _Declined(f"the {what} must be constants")
            return np.stack([np.asarray(a, np.float32) for a in arrays if a is not None])

        w = stacked(LSTM_INPUT_WEIGHTS, "input weights")
        hidden = w.shape[1]
        r = stacked(LSTM_RECURRENT_WEIGHTS, "recurrent weights")
        bias = stacked(LSTM_BIASES, "gate biases").reshape(-1)
        hint = self.names[out]
        operands = [self.value(x), self.constant(f"{hint}/W", w.reshape(1, 4 * hidden, -1)),
                    self.constant(f"{hint}/R", r.reshape(1, 4 * hidden, -1)),
                    self.constant(f"{hint}/B", np.concatenate([bias, np.zeros_like(bias)]).reshape(1, -1))]
        if any(inputs[i] >= 0 for i in LSTM_PEEPHOLES):
            peepholes = [self.const_of(inputs[i]) if inputs[i] >= 0 else np.zeros(hidden, np.float32)
                         for i in LSTM_PEEPHOLES]
            if any(p is None for p in peepholes):
                raise _Declined("the peephole weights must be constants")
            operands += ["", "", "", self.constant(f"{hint}/P", np.concatenate(
                [np.asarray(p, np.float32) for p in peepholes if p is not None]).reshape(1, -1))]
        layout = 0 if opts.TimeMajor() else 1
        y = self.node("LSTM", operands, f"{hint}/lstm", hidden_size=int(hidden), layout=layout)
        self.define(out, self.node("Squeeze", [y, self.axes(hint, [1 if layout == 0 else 2])], hint), False)

    # -- MediaPipe's custom ops: their parameters are the kernel's C struct, as the converter writes it -----------

    def _params(self, op: _Op, fields: int, struct_name: str) -> tuple[int, ...]:
        if len(op.custom_options) < 4 * fields:
            raise _Declined(f"custom options of {len(op.custom_options)} bytes; {struct_name} needs {4 * fields}")
        values: tuple[int, ...] = struct.unpack_from(f"<{fields}i", op.custom_options)
        if values[0] not in (PADDING_SAME, PADDING_VALID):
            raise _Declined(f"padding {values[0]} (SAME is 1, VALID 2)")
        return values

    def _pool_params(self, op: _Op) -> tuple[int, int, int, int, int, int]:
        """TfLitePoolParams: padding, stride_width, stride_height, filter_width, filter_height, activation."""
        padding, sw, sh, fw, fh, act = self._params(op, 6, "TfLitePoolParams")
        if act not in (_A.NONE, _A.RELU, _A.RELU_N1_TO_1, _A.RELU6):
            raise _Declined(f"activation {act} (the kernel clamps only for RELU, RELU_N1_TO_1 and RELU6)")
        if min(sw, sh, fw, fh) < 1:
            raise _Declined("strides and filter sizes must be positive")
        if fw * fh > MAX_WINDOW_TAPS:
            raise _Declined(f"a {fh}x{fw} window: at most {MAX_WINDOW_TAPS} taps are unrolled")
        return padding, sw, sh, fw, fh, act

    def _static_hwc(self, x: int) -> tuple[int, int, int]:
        shape = self.tensors[x].shape
        if len(shape) != 4 or any(d < 0 for d in shape[1:]):
            raise _Declined("the input must be rank 4 (NHWC) with static height, width and channels")
        return shape[1], shape[2], shape[3]

    def transpose_conv_bias(self, op: _Op) -> None:
        """Convolution2DTransposeBias (x, OHWI filter, bias; TfLiteTransposeConvParams) as ConvTranspose.
        SAME trims max(0, k - (in - 1) % stride - 1) rows, the smaller half at the top, as the kernel does."""
        x, w, bias, out = op.inputs[0], op.inputs[1], op.inputs[2], op.outputs[0]
        padding, sw, sh = self._params(op, 3, "TfLiteTransposeConvParams")
        if min(sw, sh) < 1:
            raise _Declined("strides must be positive")
        filt = self.const_of(w)
        if filt is None or filt.ndim != 4:
            raise _Declined("the filter must be a rank-4 constant")
        height, width, channels = self._static_hwc(x)
        if channels != filt.shape[3]:
            raise _Declined(f"filter shape {list(filt.shape)} does not fit {channels} input channels")
        begin, end = [], []
        for size, k, stride in zip((height, width), filt.shape[1:3], (sh, sw), strict=True):
            total = max(0, k - (size - 1) % stride - 1) if padding == PADDING_SAME else 0
            begin.append(total // 2)
            end.append(total - total // 2)
        inputs = [self.channels_first(x),
                  self.constant(f"{self.names[w]}/iohw", np.ascontiguousarray(filt.transpose(3, 0, 1, 2))),
                  self.value(bias)]
        y = self.node("ConvTranspose", inputs, self.out_hint(out, True), kernel_shape=list(filt.shape[1:3]),
                      strides=[sh, sw], pads=begin + end)
        self.define(out, y, True)

    def pool_argmax(self, op: _Op) -> None:
        """MaxPoolingWithArgmax2D: the max of each window and, as a float, the index of its first maximum
        within the window (row * filter_width + column, plus the kernel's 0.1 against truncation).

        The input, padded with -inf, is sliced once per window offset; the slices stacked on a new last
        axis give the values (ReduceMax) and the indices (ArgMax, first maximum as the kernel's `>`)."""
        x, out = op.inputs[0], op.outputs[0]
        padding, sw, sh, fw, fh, act = self._pool_params(op)
        height, width, _ = self._static_hwc(x)
        sizes, pads = [], []
        for size, k, stride in zip((height, width), (fh, fw), (sh, sw), strict=True):
            count = -(-size // stride) if padding == PADDING_SAME else (size - k + stride) // stride
            if count < 1:
                raise _Declined(f"a {k}-wide window does not fit the input's {size}")
            top = max(((count - 1) * stride + k - size) // 2, 0) if padding == PADDING_SAME else 0
            sizes.append(count)
            pads.append((top, max(0, (count - 1) * stride + k - size - top)))
        hint = self.names[out]
        source = self.value(x)
        if any(p for pair in pads for p in pair):
            amounts = np.array([0, pads[0][0], pads[1][0], 0, 0, pads[0][1], pads[1][1], 0], np.int64)
            lowest = self.constant(f"{hint}/lowest", np.array(-np.inf, np.float32))
            source = self.node("Pad", [source, self.constant(f"{hint}/pads", amounts), lowest], f"{hint}/padded")
        last = self.axes(hint, [4])
        taps = []
        for dy in range(fh):
            for dx in range(fw):
                ends = [dy + (sizes[0] - 1) * sh + 1, dx + (sizes[1] - 1) * sw + 1]
                tap = self.node("Slice", [source, self.constant(f"{hint}/starts", np.array([dy, dx], np.int64)),
                                          self.constant(f"{hint}/ends", np.array(ends, np.int64)),
                                          self.axes(hint, [1, 2]),
                                          self.constant(f"{hint}/steps", np.array([sh, sw], np.int64))], f"{hint}/tap")
                taps.append(self.node("Unsqueeze", [tap, last], f"{hint}/tap"))
        stacked = self.node("Concat", taps, f"{hint}/windows", axis=4) if len(taps) > 1 else taps[0]
        values = self.node("ReduceMax", [stacked], f"{hint}/max", axes=[4], keepdims=0)
        self.define(out, self.activate(values, act, hint), False)
        if len(op.outputs) > 1:
            index = self.node("ArgMax", [stacked], f"{self.names[op.outputs[1]]}/int64", axis=4, keepdims=0)
            as_float = self.node("Cast", [index], f"{self.names[op.outputs[1]]}/float", to=onnx.TensorProto.FLOAT)
            self.define(op.outputs[1], self.node("Add", [as_float, self.constant(
                f"{self.names[op.outputs[1]]}/tenth", np.array(0.1, np.float32))], self.names[op.outputs[1]]), False)

    def unpool(self, op: _Op) -> None:
        """MaxUnpooling2D (values, float indices from MaxPoolingWithArgmax2D; TfLitePoolParams): each value
        goes to the cell its index names in its window, the other cells are 0; the output is the input
        times the filter size. For non-overlapping windows (stride = filter, as MediaPipe's models use):
        a [N, H, W, fh * fw, C] stack of Where(index == k, value, 0), interleaved by Transpose and Reshape.
        An index outside its window writes nothing."""
        x, indices, out = op.inputs[0], op.inputs[1], op.outputs[0]
        _, sw, sh, fw, fh, act = self._pool_params(op)
        if (sh, sw) != (fh, fw):
            raise _Declined(f"strides {sh}x{sw} differ from the filter {fh}x{fw} (overlapping windows)")
        if act != _A.NONE:
            raise _Declined("the kernel ignores its activation; only NONE is accepted")
        height, width, channels = self._static_hwc(x)
        hint = self.names[out]
        depth = self.axes(hint, [3])
        whole = self.node("Cast", [self.value(indices)], f"{hint}/index", to=onnx.TensorProto.INT32)
        index = self.node("Unsqueeze", [whole, depth], f"{hint}/index")
        offsets = self.constant(f"{hint}/offsets", np.arange(fh * fw, dtype=np.int32).reshape(-1, 1))
        mask = self.node("Equal", [index, offsets], f"{hint}/mask")
        values = self.node("Unsqueeze", [self.value(x), depth], f"{hint}/values")
        spread = self.node("Where", [mask, values, self.constant(f"{hint}/zero", np.array(0, np.float32))],
                           f"{hint}/spread")
        windows = self.node("Reshape", [spread, self.constant(
            f"{hint}/windows", np.array([-1, height, width, fh, fw, channels], np.int64))], f"{hint}/windows")
        rows = self.node("Transpose", [windows], f"{hint}/rows", perm=[0, 1, 3, 2, 4, 5])
        self.define(out, self.node("Reshape", [rows, self.constant(
            f"{hint}/shape", np.array([-1, height * fh, width * fw, channels], np.int64))], hint), False)

    def dequantize(self, op: _Op) -> None:
        """DEQUANTIZE and QUANTIZE: the input's float value (int8/uint8 ones are read through DequantizeLinear);
        a QUANTIZE's output is then rounded to its type by `requantize`. DEQUANTIZE of float16 constants (the
        converter's float16 option) is evaluated here."""
        x, out = op.inputs[0], op.outputs[0]
        source = self.tensors[x]
        if op.kind == "DEQUANTIZE" and source.type == _T.FLOAT16 and source.data is not None:
            self.consts[out] = source.data.astype(np.float32)
            return
        if op.kind == "DEQUANTIZE" and (source.type not in INTEGER_TYPES or self.tensors[out].type != _T.FLOAT32):
            raise _Declined(f"dequantizing {TYPE_NAMES.get(source.type)} to {TYPE_NAMES.get(self.tensors[out].type)}"
                            " (int8/uint8 to float32, or float16 constants, are supported)")
        if op.kind == "QUANTIZE" and (self.tensors[out].type not in INTEGER_TYPES
                                      or source.type not in {_T.FLOAT32, *INTEGER_TYPES}):
            raise _Declined(f"quantizing {TYPE_NAMES.get(source.type)} to {TYPE_NAMES.get(self.tensors[out].type)}"
                            " (float32, int8 or uint8 to int8 or uint8 are supported)")
        self.define(out, self.value(x), False)


def _live_ops(tensors: list[_Tensor], ops: list[_Op], outputs: list[int]) -> list[_Op]:
    """The ops the outputs depend on. A reshape whose target is its output's shape does not depend
    on its shape operand, so a dynamic-batch Flatten's SHAPE → STRIDED_SLICE → PACK chain is dead."""
    needed = set(outputs)
    live: list[_Op] = []
    for op in reversed(ops):
        if not any(t in needed for t in op.outputs):
            continue
        live.append(op)
        inputs = op.inputs
        if op.kind in RESHAPES and sum(d < 0 for d in tensors[op.outputs[0]].shape) <= 1:
            inputs = inputs[:1]
        needed.update(t for t in inputs if t >= 0)
    return live[::-1]


def _type_problem(op: _Op, tensors: list[_Tensor]) -> str | None:
    """Tensors the op mappings do not handle: 16-bit (or 4-bit) quantized ones, int8/uint8 ones without a
    scale or around an op without an integer mapping, float32 run-time inputs of an op with int8 weights
    (LiteRT's dynamic-range kernels quantize them at run time), and other non-float run-time tensors."""
    unsupported, integer, floats, other = [], [], [], []
    for t in dict.fromkeys(t for t in op.inputs + op.outputs if t >= 0):
        tensor = tensors[t]
        if tensor.sparse:
            return f"tensor {tensor.name!r} is stored sparse, which is not supported"
        if op.kind == "DEQUANTIZE" and t == op.inputs[0] and tensor.type == _T.FLOAT16:
            continue
        label = f"{tensor.name!r} ({TYPE_NAMES.get(tensor.type, tensor.type)})"
        if tensor.type in INTEGER_TYPES:
            if tensor.quant is None:
                return f"tensor {label} has no quantization scale"
            if tensor.data is None and tensor.quant.per_axis:
                return f"tensor {label} is quantized per channel at run time; only weights may be"
            integer.append(label)
        elif tensor.quantized and not (tensor.type == _T.INT32 and tensor.data is not None):  # int32: a bias
            unsupported.append(label)
        elif tensor.data is None and tensor.type != _T.FLOAT32 and not (
                op.kind in ANY_TYPE and tensor.type in RUNTIME_TYPES):
            other.append(label)
        elif tensor.data is None and tensor.type == _T.FLOAT32 and t in op.inputs:
            floats.append(label)
    if unsupported:
        return (f"quantized tensors {', '.join(unsupported)}: only int8/uint8 quantization is supported (16-bit "
                "activations, 16x8 quantization, are not)")
    if integer and op.kind not in QUANTIZED_OPS:
        return (f"quantized tensors {', '.join(integer)}: {op.kind} has no integer mapping (int8/uint8 models "
                f"convert with {', '.join(sorted(QUANTIZED_OPS))})")
    if integer and floats and op.kind not in ("QUANTIZE", "DEQUANTIZE"):
        return (f"float32 inputs {', '.join(floats)} and quantized tensors {', '.join(integer)}: a dynamic-range "
                "(hybrid) op, whose float inputs LiteRT quantizes at run time, is not supported")
    if other:
        return (f"tensors {', '.join(other)}: only float32 run-time tensors are supported (bool and int32/int64 "
                "ones only by comparisons, logical ops, SELECT, ARG_MAX/ARG_MIN and CAST)")
    return None


def _unique_names(tensors: list[_Tensor], preferred: dict[int, str]) -> dict[int, str]:
    names: dict[int, str] = dict(preferred)
    taken = set(preferred.values())
    for tensor in tensors:
        if tensor.index in names:
            continue
        name, n = tensor.name, 1
        while name in taken:
            n += 1
            name = f"{tensor.name}_{n}"
        names[tensor.index] = name
        taken.add(name)
    return names


def _value_info(name: str, tensor: _Tensor, dims: bool) -> onnx.ValueInfoProto:
    elem = helper.np_dtype_to_tensor_dtype(DTYPES[tensor.type])
    if not dims:
        return helper.make_tensor_value_info(name, elem, None)
    shape: list[int | str] = [d if d >= 0 else ("N" if axis == 0 else f"{name}_{axis}")
                              for axis, d in enumerate(tensor.shape)]
    return helper.make_tensor_value_info(name, elem, shape)


def tflite_to_onnx(raw: bytes, label: str = "model") -> onnx.ModelProto:
    """The `.tflite` flatbuffer as an ONNX model of the ops the compiler knows.

    Raises FrontendError for a file that is not a TFLite model, UnsupportedModel listing every
    operator that cannot be mapped.
    """
    if len(raw) < 8 or raw[4:8] != MAGIC:
        raise FrontendError(f"{label} is not a TensorFlow Lite model (no {MAGIC.decode()} identifier at byte 4)")
    try:
        model = tflite.Model.GetRootAsModel(raw, 0)
        if model.SubgraphsLength() < 1:
            raise FrontendError(f"{label} has no subgraph")
        graph = model.Subgraphs(0)
        tensors = [_read_tensor(model, raw, graph, i) for i in range(graph.TensorsLength())]
        ops = _read_ops(model, graph)
        inputs = [int(i) for i in graph.InputsAsNumpy()] if graph.InputsLength() else []
        outputs = [int(i) for i in graph.OutputsAsNumpy()] if graph.OutputsLength() else []
        signature = _signature_names(model, graph)
        names = _unique_names(tensors, signature)
        if signature:  # in the signature's order, as LiteRT lists them
            inputs.sort(key=list(signature).index)
            outputs.sort(key=list(signature).index)
    except FrontendError:
        raise
    except Exception as exc:  # a damaged flatbuffer fails anywhere, with any of several types
        raise FrontendError(f"{label} is not a valid TensorFlow Lite model: {type(exc).__name__}: {exc}") from exc
    if not outputs or any(not 0 <= t < len(tensors) for t in inputs + outputs + [
            t for op in ops for t in op.inputs + op.outputs if t != -1]):
        raise FrontendError(f"{label} is not a valid TensorFlow Lite model: tensor indices out of range")

    converter = _Converter(tensors, ops, outputs, names)
    problems: list[str] = []
    for t in inputs:
        tensor = tensors[t]
        converter.used_names.add(names[t])
        quantized_input = tensor.type in INTEGER_TYPES and tensor.quant is not None and not tensor.quant.per_axis
        if quantized_input:
            converter.tl[t] = converter.dequantize_input(t)
            continue
        if tensor.type != _T.FLOAT32 or tensor.quantized:
            problems.append(f"input {names[t]!r} has type {TYPE_NAMES.get(tensor.type)}; only float32 inputs and "
                            "int8/uint8 ones quantized per tensor are supported")
        converter.tl[t] = names[t]
    for op in _live_ops(tensors, ops, outputs):
        label_op = f"operator {op.index} ({op.kind}, output {tensors[op.outputs[0]].name!r})" if op.outputs \
            else f"operator {op.index} ({op.kind})"
        type_problem = _type_problem(op, tensors) if op.kind in SUPPORTED else "op not supported" + (
            "; quantized models are not supported" if op.kind == "QUANTIZE" else "")
        if type_problem:
            problems.append(f"{label_op}: {type_problem}")
            continue
        try:
            converter.convert(op)
        except _Declined as exc:
            problems.append(f"{label_op}: {exc}")
        except KeyError as exc:  # reads the output of an operator declined above, or of none at all
            if not problems:
                problems.append(f"{label_op}: reads tensor {tensors[exc.args[0]].name!r}, which no operator writes")
        except (ValueError, IndexError, ZeroDivisionError, struct.error) as exc:  # a damaged file's options
            problems.append(f"{label_op}: its inputs or options are malformed ({type(exc).__name__}: {exc})")
    if problems:
        raise UnsupportedModel(problems)

    sources: dict[int, str] = {}
    for t in outputs:
        try:
            sources[t] = converter.stored(t) if tensors[t].type in INTEGER_TYPES else converter.value(t)
        except KeyError:
            raise UnsupportedModel([f"output {names[t]!r}: no operator writes it"]) from None
    _drop_unread(converter.nodes, set(converter.integer), set(sources.values()))
    for t, source in sources.items():
        if source != names[t]:
            _rename_output(converter, source, names[t])
    merge_transposes(converter.nodes, {names[t] for t in outputs})
    return helper.make_model(
        helper.make_graph(
            converter.nodes, label,
            [_value_info(names[t], tensors[t], True) for t in inputs],
            [_value_info(names[t], tensors[t], False) for t in outputs],
            [numpy_helper.from_array(v.copy(order="C"), name) for name, v in converter.inits.items()]),
        opset_imports=[helper.make_opsetid("", OPSET)], producer_name="wasinfer-tflite")


def merge_transposes(nodes: list[onnx.NodeProto], outputs: set[str]) -> int:
    """Compose a Transpose that only feeds another Transpose into it (an Identity when they cancel),
    e.g. a model's own TRANSPOSE followed by the relayout for a conv; returns how many merged."""
    merged = 0
    for second in list(nodes):
        if second.op_type != "Transpose":
            continue
        first = next((n for n in nodes if n.op_type == "Transpose" and second.input[0] in n.output), None)
        if first is None or first.output[0] in outputs or sum(first.output[0] in n.input for n in nodes) != 1:
            continue
        outer = list(helper.get_attribute_value(second.attribute[0]))
        inner = list(helper.get_attribute_value(first.attribute[0]))
        perm = [inner[p] for p in outer]
        composed = helper.make_node("Identity", [first.input[0]], list(second.output), name=second.name) \
            if perm == sorted(perm) else \
            helper.make_node("Transpose", [first.input[0]], list(second.output), name=second.name, perm=perm)
        nodes[nodes.index(second)] = composed
        nodes.remove(first)
        merged += 1
    return merged


def _drop_unread(nodes: list[onnx.NodeProto], candidates: set[str], outputs: set[str]) -> None:
    """Remove the DequantizeLinear of a quantized output that only the output's stored integers needed."""
    read = {name for n in nodes for name in n.input} | outputs
    nodes[:] = [n for n in nodes if not (n.op_type == "DequantizeLinear" and n.output[0] in candidates
                                         and n.output[0] not in read)]


def _rename_output(converter: _Converter, source: str, name: str) -> None:
    """Give the graph output its public name (reserved for it from the start): rename the producing
    node's output if nothing else reads it, else add an Identity."""
    readers = [n for n in converter.nodes if source in n.input]
    producer = next((n for n in converter.nodes if source in n.output), None)
    if producer is not None and not readers:
        producer.output[list(producer.output).index(source)] = name
    else:
        converter.nodes.append(helper.make_node("Identity", [source], [name], name=f"output/{name}"))


def load_tflite(source: str | Path, input_shapes: dict[str, tuple[int, ...]] | None = None,
                batch: bool = True, input_ranges: dict[str, dict[int, tuple[int, ...]]] | None = None) -> Loaded:
    """A `.tflite` model as IR; `input_shapes` and the run-time batch work as in `load_onnx`."""
    try:
        raw = Path(source).read_bytes()
    except OSError as exc:
        raise FrontendError(f"cannot read {source}: {exc}") from exc
    proto = tflite_to_onnx(raw, str(source))
    loaded = load_onnx(proto, input_shapes, batch=batch, input_ranges=input_ranges)
    loaded.graph.name = Path(source).stem
    return Loaded(loaded.graph, loaded.batch_axes, hashlib.sha256(raw).hexdigest())

