"""Quantized operators as ONNX Runtime's quantizer writes them (QOperator and dynamic formats), and
its `com.microsoft` contrib ops: each is rewritten into DequantizeLinear, the float op and
QuantizeLinear (passes/quantized.py) before any other pass, so their batch rules are those of
the ops they become. QGemmInt8 and QConvInt8 (domain `wasinfer`) are the compiler's own: the int8
GEMM and convolution that passes/int8.py fuses DequantizeLinear → MatMul/Gemm/Conv → QuantizeLinear
into, and the element-wise kernels passes/int8_islands.py fuses the float "islands" between a
DequantizeLinear and a QuantizeLinear into (a table lookup, Add/Mul, a global average pool)."""

from __future__ import annotations

from wasinfer.ir.symbolic import Expr
from wasinfer.ops import extent as ex
from wasinfer.ops.batch import elementwise, spatial
from wasinfer.ops.definition import BatchFlow, BatchView, ExtentFlow, ExtentView, Role, define

for op in ("QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear"):
    define(op, role=Role.LOWERED, summary="rewritten into DequantizeLinear, the float op, QuantizeLinear")
for op in ("QLinearAdd", "QLinearMul", "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearSigmoid",
           "QLinearLeakyRelu", "QLinearConcat", "QGemm", "QLinearSoftmax", "DynamicQuantizeMatMul",
           "MatMulIntegerToFloat"):
    define(op, domain="com.microsoft", role=Role.LOWERED,
           summary="rewritten into DequantizeLinear, the float op, QuantizeLinear")


def _rows(view: BatchView) -> BatchFlow:
    """Any axis of A but the contracted (last) one: the weights are a constant."""
    if view.first is None or view.in_rank is None:
        return view.none()
    if view.first == view.in_rank - 1:
        return view.mixes("it contracts over the batch axis")
    return view.same(view.first + (view.out_rank() or 0) - view.in_rank)


# The integer kernels passes/int8.py fuses DequantizeLinear → MatMul/Gemm/Conv → QuantizeLinear into.
INT8_DOMAIN = "wasinfer"
QCONV_MAX_TAPS = 64  # kernel taps QConvInt8's column buffer copy unrolls; larger kernels keep the float path
MAX_SUMMED_ROWS = 128  # kernel rows QAveragePoolInt8 sums in i16 lanes (128 x 255 < 2^15); taller ones stay float
QCONV_MAX_K = 65000  # QConvInt8's reduction length whose i32 sums stay exact (2 x 255 x 128 per i16 pair)
define("QGemmInt8", domain=INT8_DOMAIN, batch=_rows,
       summary="y = saturate(round(float(sum_k (a - a_zero) * w + bias) * scale) + y_zero): (u)int8 A, "
               "int8 constant W [K, N], int32 accumulation; inputs a, w, bias (int32 [N]), scale (float32 [N]), "
               "a_zero, y_zero (passes/int8.py)")
define("QConvInt8", domain=INT8_DOMAIN, batch=spatial,
       summary="y = saturate(round(float(conv(x - x_zero, w) + bias) * scale) + y_zero): (u)int8 X "
               "[N, C, *spatial] (1-D or 2-D), int8 constant W [M, C/group, *kernel], int32 accumulation; inputs x, w, "
               "bias (int32 [M]), scale (float32 [M]), x_zero, y_zero, optionally y_lo, y_hi (a fused Relu/Clip's "
               "range); Conv's attributes (strides, pads, dilations, group, auto_pad); its output shape is Conv's "
               "(passes/int8.py)")


def _global_pool(view: ExtentView) -> ExtentFlow:
    """A symbolic batch; channel and spatial axes static.

    A symbolic spatial axis is refused: the sum past the run's dims would need the zero point as
    its fill, and the divisor the run's count."""
    extent = view.extent(0)
    if any(isinstance(d, Expr) for d in extent[1:]):
        return view.refuse("its channel or spatial axes are symbolic")
    return view.out((extent[0], extent[1]) + (1,) * (len(extent) - 2))


# The element-wise kernels passes/int8_islands.py fuses DequantizeLinear → float ops → QuantizeLinear into.
define("QLookupInt8", domain=INT8_DOMAIN, batch=elementwise, extent=ex.same,
       summary="y = table[x]: (u)int8 X, a constant table of 256 entries of Y's dtype indexed by X's byte "
               "(x & 255); any chain of element-wise float ops of one quantized tensor, evaluated at compile time "
               "on its 256 values (passes/int8_islands.py)")
define("QAddInt8", domain=INT8_DOMAIN, batch=elementwise, extent=ex.broadcast,
       summary="y = saturate(round((a_scale * (a - a_zero) + b_scale * (b - b_zero)) / y_scale) + y_zero) with "
               "numpy broadcasting; inputs a, a_scale, a_zero, b, b_scale, b_zero, y_scale, y_zero (constants but "
               "a and b), QLinearAdd's order, then optionally y_lo, y_hi (a fused Relu/Clip's range); a Sub is "
               "an Add of b_scale negated (passes/int8_islands.py)")
define("QMulInt8", domain=INT8_DOMAIN, batch=elementwise, extent=ex.broadcast,
       summary="y = saturate(round(a_scale * (a - a_zero) * b_scale * (b - b_zero) / y_scale) + y_zero) with "
               "numpy broadcasting; QAddInt8's inputs, y_lo and y_hi too (passes/int8_islands.py)")
define("QGlobalAveragePoolInt8", domain=INT8_DOMAIN, batch=spatial, extent=_global_pool,
       summary="y[n, c] = saturate(round(float(sum(x[n, c]) - count * x_zero) * x_scale / (count * y_scale)) "
               "+ y_zero), the sum in int32; inputs x, x_scale, x_zero, y_scale, y_zero (constants but x) "
               "(passes/int8_islands.py)")
define("QMaxPoolInt8", domain=INT8_DOMAIN, batch=spatial,
       summary="MaxPool of (u)int8 X [N, C, H, W] (2-D; no Indices): max commutes with quantisation, so the "
               "integers are pooled as they are; MaxPool's attributes (passes/int8_islands.py)")
define("QAveragePoolInt8", domain=INT8_DOMAIN, batch=spatial,
       summary="AveragePool of (u)int8 X [N, C, H, W] (2-D): the taps summed in integers, then y = saturate(round("
               "float(sum - taps * x_zero) * x_scale / y_scale / divisor) + y_zero), the divisor AveragePool's; "
               "inputs x, x_scale, x_zero, y_scale, y_zero (constants but x); AveragePool's attributes "
               "(passes/int8_islands.py)")
