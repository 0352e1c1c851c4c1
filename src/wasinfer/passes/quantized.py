"""Quantized operators, as ONNX Runtime's quantizer writes them, rewritten into standard ops.

ONNX Runtime's `quantize_static` in QOperator format emits QLinearConv and QLinearMatMul (and,
from the `com.microsoft` domain, QLinearAdd, QLinearMul, QLinearGlobalAveragePool,
QLinearAveragePool, QLinearSigmoid, QLinearLeakyRelu, QLinearConcat, QGemm, QLinearSoftmax);
`quantize_dynamic` emits DynamicQuantizeLinear with MatMulInteger or ConvInteger, which ONNX Runtime's
session optimiser fuses into DynamicQuantizeMatMul and MatMulIntegerToFloat (`com.microsoft`). Each is
rewritten here into what it means: DequantizeLinear of its quantized inputs, the float op, QuantizeLinear of
the result (or, for the *Integer ops, the product of the zero-point-shifted integers, exact in float32 up to 2^24
and cast back to int32). Constant weights dequantize once, at compile time (passes/fold.py).

The results match ONNX Runtime within one quantization step of each output: it accumulates in
int32 and requantizes with one float multiplier, the rewritten graph accumulates the same
products in float32. This is the compatibility path: the model runs in float between its
quantize and dequantize steps, so it is no faster than its float32 original. The matrix
products and convolutions among them then leave it: passes/int8.py fuses DequantizeLinear →
MatMul/Gemm/Conv → QuantizeLinear (QLinearMatMul, QGemm, QLinearConv and static QDQ products
alike) into int8 kernels.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np

from wasinfer.ir import Graph, Node

MS = "com.microsoft"
# The ops rewritten here, by domain.
QUANTIZED_OPS = {("", "QLinearConv"), ("", "QLinearMatMul"), ("", "MatMulInteger"), ("", "ConvInteger"),
                 ("", "DynamicQuantizeLinear"), *((MS, op) for op in (
                     "QLinearAdd", "QLinearMul", "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearSigmoid",
                     "QLinearLeakyRelu", "QLinearConcat", "QGemm", "QLinearSoftmax", "DynamicQuantizeMatMul",
                     "MatMulIntegerToFloat"))}
CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")
POOL_ATTRS = ("auto_pad", "ceil_mode", "count_include_pad", "kernel_shape", "pads", "strides")
FLOAT, INT32 = {"to": 1}, {"to": 6}  # Cast targets (TensorProto.FLOAT, TensorProto.INT32)


class Rewrite:
    """The nodes that replace one quantized node, named under it."""

    def __init__(self, graph: Graph, node: Node):
        self.graph, self.node = graph, node
        self.nodes: list[Node] = []
        self._names = itertools.count()

    def value(self) -> str:
        return f"{self.node.name}/q{next(self._names)}"

    def op(self, op_type: str, inputs: list[str], attrs: Mapping[str, object] | None = None,
           output: str | None = None) -> str:
        output = output or self.value()
        self.nodes.append(Node(op_type, f"{output}/{op_type}", inputs, [output], dict(attrs or {}),
                               guards=self.node.guards))
        return output

    def constant(self, value: np.ndarray) -> str:
        name = self.value()
        self.graph.add_constant(name, value)
        return name

    def dequantize(self, x: str, scale: str, zero: str, axis: int | None = None) -> str:
        """DequantizeLinear; a per-channel scale (more than one element) needs `axis`."""
        per_channel = self.graph.tensors.get(scale) is not None and self.graph.info(scale).size > 1
        attrs = {"axis": axis} if per_channel and axis is not None else {}
        return self.op("DequantizeLinear", [x, scale, zero] if zero else [x, scale], attrs)

    def quantize(self, x: str, scale: str, zero: str, output: str) -> str:
        return self.op("QuantizeLinear", [x, scale, zero] if zero else [x, scale], output=output)

    def shifted(self, x: str, zero: str, shape_of_zero: tuple[int, ...] | None = None) -> str:
        """float(x) - float(zero), the zero point reshaped to `shape_of_zero` (per channel)."""
        value = self.op("Cast", [x], FLOAT)
        if not zero:
            return value
        shift = self.op("Cast", [zero], FLOAT)
        if shape_of_zero is not None:
            shift = self.op("Reshape", [shift, self.constant(np.array(shape_of_zero, np.int64))])
        return self.op("Sub", [value, shift])


def arg(node: Node, index: int) -> str:
    return node.inputs[index] if len(node.inputs) > index else ""


def _attrs(node: Node, keys: tuple[str, ...]) -> dict[str, object]:
    return {k: v for k, v in node.attrs.items() if k in keys}


def _rewrite(graph: Graph, node: Node) -> list[Node] | None:
    key = ("" if node.domain in ("", "ai.onnx") else node.domain, node.op_type)
    if key not in QUANTIZED_OPS:
        return None
    r = Rewrite(graph, node)
    op, out = node.op_type, node.outputs[0]
    if op == "QLinearConv":
        x = r.dequantize(arg(node, 0), arg(node, 1), arg(node, 2))
        w = r.dequantize(arg(node, 3), arg(node, 4), arg(node, 5), axis=0)
        inputs = [x, w]
        scales = [graph.constants.get(arg(node, i)) for i in (1, 4)]
        if arg(node, 8) and scales[0] is not None and scales[1] is not None:
            # constant scales: the int32 bias as the DequantizeLinear QDQ models carry, which
            # passes/int8.py adds exactly (as QGemm's below)
            unit = (scales[0].astype(np.float32) * scales[1].astype(np.float32)).reshape(-1)
            inputs.append(r.dequantize(arg(node, 8), r.constant(unit.astype(np.float32)), "", axis=0))
        elif arg(node, 8):  # int32 bias, scaled by x_scale * w_scale, zero point 0
            bias = r.op("Cast", [arg(node, 8)], FLOAT)
            inputs.append(r.op("Mul", [bias, r.op("Mul", [arg(node, 1), arg(node, 4)])]))
        y = r.op("Conv", inputs, _attrs(node, CONV_ATTRS))
        r.quantize(y, arg(node, 6), arg(node, 7), out)
    elif op == "QLinearMatMul":
        a = r.dequantize(arg(node, 0), arg(node, 1), arg(node, 2), axis=-2)
        b = r.dequantize(arg(node, 3), arg(node, 4), arg(node, 5), axis=-1)
        r.quantize(r.op("MatMul", [a, b]), arg(node, 6), arg(node, 7), out)
    elif op == "MatMulInteger":
        b_zero = arg(node, 3)
        product = r.op("MatMul", [r.shifted(arg(node, 0), arg(node, 2)), r.shifted(arg(node, 1), b_zero)])
        r.op("Cast", [product], INT32, out)
    elif op == "ConvInteger":
        w_zero = arg(node, 3)
        rank = len(graph.info(arg(node, 1)).shape) if arg(node, 1) in graph.tensors else 4
        per_channel = w_zero in graph.tensors and graph.info(w_zero).size > 1
        w = r.shifted(arg(node, 1), w_zero, (-1, *[1] * (rank - 1)) if per_channel else None)
        product = r.op("Conv", [r.shifted(arg(node, 0), arg(node, 2)), w], _attrs(node, CONV_ATTRS))
        r.op("Cast", [product], INT32, out)
    elif op == "DynamicQuantizeLinear":
        _dynamic_quantize(r, arg(node, 0), out, node.outputs[1], node.outputs[2])
    elif op in ("DynamicQuantizeMatMul", "MatMulIntegerToFloat"):
        # ONNX Runtime's optimiser fuses DynamicQuantizeLinear → MatMulInteger → Cast → Mul (→ Add) into these:
        # (A, B, b_scale, b_zero, bias) with A quantized as DynamicQuantizeLinear does, or (A, B, a_scale, b_scale,
        # a_zero, b_zero, bias) with A quantized already; float32 Y = dequantized A x dequantized B (+ bias)
        if op == "DynamicQuantizeMatMul":
            a = r.dequantize(*_dynamic_quantize(r, arg(node, 0), r.value(), r.value(), r.value()))
            b_scale, b_zero, bias = arg(node, 2), arg(node, 3), arg(node, 4)
        else:
            a = r.dequantize(arg(node, 0), arg(node, 2), arg(node, 4))
            b_scale, b_zero, bias = arg(node, 3), arg(node, 5), arg(node, 6)
        product = r.op("MatMul", [a, r.dequantize(arg(node, 1), b_scale, b_zero, axis=-1)])
        if bias:
            r.op("Add", [product, bias], output=out)
        else:
            r.op("Identity", [product], output=out)
    elif op in ("QLinearAdd", "QLinearMul"):
        a = r.dequantize(arg(node, 0), arg(node, 1), arg(node, 2))
        b = r.dequantize(arg(node, 3), arg(node, 4), arg(node, 5))
        r.quantize(r.op(op[len("QLinear"):], [a, b]), arg(node, 6), arg(node, 7), out)
    elif op in ("QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearSigmoid", "QLinearLeakyRelu"):
        if int(node.attrs.get("channels_last", 0)):
            node.declined = "channels_last=1 (NHWC) is not supported"
            return None
        x = r.dequantize(arg(node, 0), arg(node, 1), arg(node, 2))
        float_op = op[len("QLinear"):]
        attrs = {"alpha": node.attrs.get("alpha", 0.01)} if float_op == "LeakyRelu" else (
            _attrs(node, POOL_ATTRS) if float_op == "AveragePool" else {})
        r.quantize(r.op(float_op, [x], attrs), arg(node, 3), arg(node, 4), out)
    elif op == "QLinearSoftmax":  # (x, x_scale, x_zero, y_scale, y_zero); `opset` says which Softmax it is
        axis = int(node.attrs.get("axis", -1))
        rank = len(graph.info(arg(node, 0)).shape) if arg(node, 0) in graph.tensors else 0
        if axis not in (-1, rank - 1):  # over the last axis every Softmax version computes the same
            node.declined = f"axis={axis} (only the last axis is supported)"
            return None
        x = r.dequantize(arg(node, 0), arg(node, 1), arg(node, 2))
        r.quantize(r.op("Softmax", [x], {"axis": -1}), arg(node, 3), arg(node, 4), out)
    elif op == "QGemm":  # C: int32 with scale alpha * a_scale * b_scale; no y_scale: a float output
        alpha, trans_b = float(node.attrs.get("alpha", 1.0)), int(node.attrs.get("transB", 0))
        a = r.dequantize(arg(node, 0), arg(node, 1), arg(node, 2))
        b = r.dequantize(arg(node, 3), arg(node, 4), arg(node, 5), axis=0 if trans_b else 1)
        inputs = [a, b]
        scales = [graph.constants.get(arg(node, i)) for i in (1, 4)]
        if arg(node, 6) and scales[0] is not None and scales[1] is not None:
            # constant scales: the bias as the DequantizeLinear of int32 that QDQ models carry (and
            # passes/int8.py adds exactly), its scale the same float32 products as below
            unit = (scales[0].astype(np.float32) * scales[1].astype(np.float32)).reshape(-1) * np.float32(alpha)
            inputs.append(r.dequantize(arg(node, 6), r.constant(unit.astype(np.float32)), "", axis=0))
        elif arg(node, 6):
            scale = r.op("Mul", [r.op("Mul", [arg(node, 1), arg(node, 4)]),
                                 r.constant(np.array(alpha, np.float32))])
            inputs.append(r.op("Mul", [r.op("Cast", [arg(node, 6)], FLOAT), scale]))
        attrs = {"alpha": alpha, "transA": int(node.attrs.get("transA", 0)), "transB": trans_b}
        if arg(node, 7):
            r.quantize(r.op("Gemm", inputs, attrs), arg(node, 7), arg(node, 8), out)
        else:
            r.op("Gemm", inputs, attrs, out)
    elif op == "QLinearConcat":  # (y_scale, y_zero, then (x, x_scale, x_zero) per input)
        parts = [r.dequantize(node.inputs[i], node.inputs[i + 1], arg(node, i + 2))
                 for i in range(2, len(node.inputs), 3)]
        r.quantize(r.op("Concat", parts, {"axis": node.attrs["axis"]}), arg(node, 0), arg(node, 1), out)
    return r.nodes


def _dynamic_quantize(r: Rewrite, x: str, y: str, y_scale: str, y_zero: str) -> tuple[str, str, str]:
    """DynamicQuantizeLinear: scale = (max(x, 0) - min(x, 0)) / 255, zero = saturate(round(-min / scale)),
    y = Q(x) as uint8; returns (y, y_scale, y_zero)."""
    zero_f = r.constant(np.array(0.0, np.float32))
    low = r.op("Min", [r.op("ReduceMin", [x], {"keepdims": 0}), zero_f])
    high = r.op("Max", [r.op("ReduceMax", [x], {"keepdims": 0}), zero_f])
    scale = r.op("Div", [r.op("Sub", [high, low]), r.constant(np.array(255.0, np.float32))], output=y_scale)
    zero = r.op("Clip", [r.op("Round", [r.op("Div", [r.op("Neg", [low]), scale])]), zero_f,
                         r.constant(np.array(255.0, np.float32))])
    zero = r.op("Cast", [zero], {"to": 2}, y_zero)  # uint8
    return r.quantize(x, scale, zero, y), scale, zero


def decompose_quantized(graph: Graph) -> int:
    """Rewrite every quantized operator (QUANTIZED_OPS) into standard ops; returns how many."""
    kept: list[Node] = []
    rewritten = 0
    for node in graph.nodes:
        nodes = _rewrite(graph, node)
        if nodes is None:
            kept.append(node)
        else:
            kept.extend(nodes)
            rewritten += 1
    graph.nodes = kept
    return rewritten
