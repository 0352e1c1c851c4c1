"""Quantized operators as ONNX Runtime's quantizer writes them (QOperator and dynamic formats), and
its `com.microsoft` contrib ops: each is rewritten into DequantizeLinear, the float op and
QuantizeLinear (passes/quantized.py) before any other pass, so their batch rules are those of
the ops they become."""

from __future__ import annotations

from wasinfer.ops.definition import Role, define

for op in ("QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear"):
    define(op, role=Role.LOWERED, summary="rewritten into DequantizeLinear, the float op, QuantizeLinear")
for op in ("QLinearAdd", "QLinearMul", "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearSigmoid",
           "QLinearLeakyRelu", "QLinearConcat", "QGemm"):
    define(op, domain="com.microsoft", role=Role.LOWERED,
           summary="rewritten into DequantizeLinear, the float op, QuantizeLinear")
