"""ONNX Runtime's `com.microsoft` contrib ops, as its transformer optimiser and exporters write them, and ONNX's
own composite ops of opset 23 and later (Attention, RotaryEmbedding, RMSNormalization, SwiGLU), which ONNX
defines by a function body. Each is rewritten into standard ops the compiler runs (passes/contrib.py) before any
other pass, so their batch rules are those of the ops they become; but MatMulNBits, whose 4-bit weights a kernel
runs packed (`int4_problems` says which it runs; the others are dequantized while compiling)."""

from __future__ import annotations

from typing import Any

import numpy as np

from wasinfer.ir import Graph, Node
from wasinfer.ops.definition import BatchFlow, BatchView, Role, define

MS = "com.microsoft"
# (op, what it is rewritten into), com.microsoft first, then ONNX's composite ops
REWRITTEN = {
    "Gelu": "Gelu (erf)",
    "FastGelu": "Add of its bias, then Gelu (tanh)",
    "BiasGelu": "Add, then Gelu (erf)",
    "QuickGelu": "Swish (x * sigmoid(alpha * x))",
    "BiasAdd": "two Adds",
    "BiasSoftmax": "Add (numpy broadcasting, either is_inner_broadcast form), Softmax over the axes from axis on",
    "FusedMatMul": "Transpose of the last two axes (transA/transB), MatMul, Mul by alpha",
    "FusedConv": "Conv, Add of Z, its activation (Relu, Tanh, Sigmoid, LeakyRelu, Clip, HardSigmoid)",
    "FusedGemm": "Gemm, its activation (as FusedConv's)",
    "SkipLayerNormalization": "Adds (skip, bias), then LayerNormalization",
    "SimplifiedLayerNormalization": "RMS norm: ReduceMean of squares, Add, Sqrt, Div, Mul (also in the default "
                                    "domain, where ONNX Runtime registers it)",
    "SkipSimplifiedLayerNormalization": "Adds (skip, bias), then the RMS norm",
    "Attention": "MatMul of the packed QKV weights, per-head MatMul, mask as an additive bias, Softmax, MatMul",
    "MultiHeadAttention": "bias Add, per-head MatMul, mask as an additive bias, Softmax, MatMul",
    "GroupQueryAttention": "grouped heads' MatMuls over the past + new steps, causal mask, Softmax, MatMul",
    "RotaryEmbedding": "Gather of the cos/sin caches by position, Mul and Add of the two halves",
    "EmbedLayerNormalization": "Gathers of the word, position and segment embeddings, Adds, LayerNormalization; "
                               "mask_index as a ReduceSum of the mask",
}
for op, into in REWRITTEN.items():
    define(op, domain=MS, role=Role.LOWERED, summary=f"com.microsoft: rewritten into {into} (passes/contrib.py)")
for op in ("Attention", "RotaryEmbedding", "RMSNormalization", "SwiGLU"):
    define(op, role=Role.LOWERED, summary="ONNX (opset 23+): expanded into its function body (passes/contrib.py)")


def _rows(view: BatchView) -> BatchFlow:
    """Any axis of A but the contracted (last) one: the weights are constants."""
    if view.first is None or view.in_rank is None:
        return view.none()
    if view.first == view.in_rank - 1:
        return view.mixes("it contracts over the batch axis")
    return view.same(view.first)


def int4_problems(node: Node, graph: Graph) -> list[str]:
    """Why MatMulNBits' kernel (4-bit weights run packed: lowering/nbits.py) cannot run this node; empty when it
    can. passes/contrib.py dequantizes the weights of any other to float32 while compiling."""
    def constant(index: int) -> Any:
        name = node.inputs[index] if len(node.inputs) > index else ""
        return graph.constants.get(name) if name else None

    problems = []
    k, n, block = (int(node.attr(name, 0)) for name in ("K", "N", "block_size"))
    if int(node.attr("bits", 4)) != 4:
        problems.append(f"bits={node.attr('bits')} (the kernel runs 4-bit weights)")
    if int(node.attr("weight_prepacked", 0)):
        problems.append(f"weight_prepacked={node.attr('weight_prepacked')} is not supported")
    if len(node.inputs) > 4 and node.inputs[4]:
        problems.append("input g_idx (act-order groups) is not supported")
    if block < 16 or block & (block - 1) or k < 1 or n < 1:
        problems.append(f"block_size={block}, K={k}, N={n} do not describe packed weights")
    packed, scales, zero_points = constant(1), constant(2), constant(3)
    if packed is None or scales is None or packed.dtype != np.uint8 or \
            packed.size != n * -(-k // max(block, 1)) * max(block, 1) // 2 or scales.size != packed.size * 2 // block:
        problems.append("the weights and scales must be constants of MatMulNBits' 4-bit layout")
    if len(node.inputs) > 3 and node.inputs[3] and (zero_points is None or zero_points.dtype != np.uint8):
        problems.append("zero points must be packed uint8 constants (float zero points are dequantized instead)")
    if len(node.inputs) > 5 and node.inputs[5] and constant(5) is None:
        problems.append("the bias must be a constant")
    if graph.symbols:
        problems.append("symbolic dims (the MatMul of its dequantized weights follows them)")
    return problems


define("MatMulNBits", domain=MS, batch=_rows,
       summary="com.microsoft: 4-bit weights run packed (lowering/nbits.py); other widths and float zero points "
               "dequantized to float32 while compiling, then MatMul (passes/contrib.py)")
