"""ONNX Runtime's `com.microsoft` contrib ops, as its transformer optimiser and exporters write them, and ONNX's
own composite ops of opset 23 and later (Attention, RotaryEmbedding, RMSNormalization, SwiGLU), which ONNX
defines by a function body. None has a kernel of its own: each is rewritten into standard ops the compiler runs
(passes/contrib.py) before any other pass, so their batch rules are those of the ops they become."""

from __future__ import annotations

from wasinfer.ops.definition import Role, define

MS = "com.microsoft"
# (op, what it is rewritten into), com.microsoft first, then ONNX's composite ops
REWRITTEN = {
    "Gelu": "Gelu (erf)",
    "FastGelu": "Add of its bias, then Gelu (tanh)",
    "BiasGelu": "Add, then Gelu (erf)",
    "QuickGelu": "Swish (x * sigmoid(alpha * x))",
    "BiasAdd": "two Adds",
    "FusedMatMul": "Transpose of the last two axes (transA/transB), MatMul, Mul by alpha",
    "FusedConv": "Conv, Add of Z, its activation (Relu, Tanh, Sigmoid, LeakyRelu, Clip, HardSigmoid)",
    "FusedGemm": "Gemm, its activation (as FusedConv's)",
    "SkipLayerNormalization": "Adds (skip, bias), then LayerNormalization",
    "SimplifiedLayerNormalization": "RMS norm: ReduceMean of squares, Add, Sqrt, Div, Mul (also in the default "
                                    "domain, where ONNX Runtime registers it)",
    "SkipSimplifiedLayerNormalization": "Adds (skip, bias), then the RMS norm",
    "Attention": "MatMul of the packed QKV weights, per-head MatMul, mask as an additive bias, Softmax, MatMul",
    "MultiHeadAttention": "bias Add, per-head MatMul, mask as an additive bias, Softmax, MatMul",
    "RotaryEmbedding": "Gather of the cos/sin caches by position, Mul and Add of the two halves",
    "EmbedLayerNormalization": "Gathers of the word, position and segment embeddings, Adds, LayerNormalization; "
                               "mask_index as a ReduceSum of the mask",
    "MatMulNBits": "the weights dequantized from their packed bits (folded at compile time), then MatMul",
}
for op, into in REWRITTEN.items():
    define(op, domain=MS, role=Role.LOWERED, summary=f"com.microsoft: rewritten into {into} (passes/contrib.py)")
for op in ("Attention", "RotaryEmbedding", "RMSNormalization", "SwiGLU"):
    define(op, role=Role.LOWERED, summary="ONNX (opset 23+): expanded into its function body (passes/contrib.py)")
