"""Smaller modules: weights stored as int8 (per-channel symmetric) or float16, expanded at start-up.

This changes storage, not compute. The module's data segment holds the compressed bytes; its
start function expands them once per instantiation into float32 in linear memory, where the
kernels read them as before, at full float32 speed. The expansion adds to cold start
(benchmarks/size_bench.py measures it) and the compressed bytes stay in linear memory after it
(a staging area after the constants: +25% of the weights' float32 bytes for int8, +50% for fp16).

Graph side, `quantize_weights`: each eligible weight is replaced by its dequantised float32
values. Eligible: a float32 constant of at least MIN_ELEMENTS elements whose every use is a
weight input: Conv/ConvTranspose W, Gemm/MatMul B, LSTM/GRU/RNN W and R, or Gather's table.
- int8: one scale per output channel c, s_c = max|w_c| / 127 (float32; 1 for an all-zero
  channel), q = round-half-to-even(w / s_c) in [-127, 127], w' = float32(q) * s_c (a float32
  product, as the expansion computes it). The channel is the slice the op's output channels
  run along: Conv W [Cout, ...] axis 0; ConvTranspose W [Cin, Cout/g, ...] axis 1; Gemm B
  [K, N] the N axis (axis 0 with transB); MatMul B [..., K, N] every (batch, n); LSTM/GRU/RNN
  W and R [dirs, gates*H, I] every row; Gather's table every slice along its axis.
- fp16: w' = float32(float16(w)); a weight with values beyond float16's range (or not finite)
  stays float32.
Everything downstream (constant folding, kernels that pack weights at compile time) then sees
values the compressed form represents exactly.

Module side (storage and the start-up expansion): backends/wasm/weights.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wasinfer.ir import Graph, Node

KINDS = ("float32", "int8", "fp16")
MIN_ELEMENTS = 256  # below this a tensor saves too little to pay for its expansion call and scales
FP16_MAX = 65504.0


# ---------------------------------------------------------------- graph side

@dataclass(frozen=True)
class ChannelScales:
    """One int8 weight: the channel number of each element (in the constant's own layout) and the scales."""

    channels: np.ndarray  # int64, the constant's shape
    scales: np.ndarray  # float32 [C]


@dataclass
class WeightEncoding:
    kind: str = "float32"
    int8: dict[str, ChannelScales] = field(default_factory=dict)
    tensors: list[str] = field(default_factory=list)  # every weight stored compressed, in graph order
    skipped: dict[str, str] = field(default_factory=dict)  # weight → why it stays float32


def _reduce_axes(node: Node, index: int, ndim: int) -> tuple[int, ...] | None:
    """Axes max|w| is taken over for a weight input (the rest index its channels); None: not a weight."""
    op = node.op_type
    if op == "Conv" and index == 1 and ndim >= 2:
        return tuple(range(1, ndim))
    if op == "ConvTranspose" and index == 1 and ndim >= 2:
        return (0, *range(2, ndim))
    if op == "Gemm" and index == 1 and ndim == 2:
        return (1,) if node.attr("transB", 0) else (0,)
    if op == "MatMul" and index == 1:
        return (0,) if ndim == 1 else (ndim - 2,)
    if op in ("LSTM", "GRU", "RNN") and index in (1, 2) and ndim == 3:
        return (2,)
    if op == "Gather" and index == 0 and ndim >= 1:
        axis = int(node.attr("axis", 0)) % ndim
        return tuple(a for a in range(ndim) if a != axis)
    return None


def quantize_int8(weights: np.ndarray, reduce_axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(int8 codes, float32 scales with the reduced axes kept as 1): symmetric, per channel."""
    peak = np.max(np.abs(weights.astype(np.float64)), axis=reduce_axes, keepdims=True)
    scales = (peak / 127.0).astype(np.float32)
    scales[scales == 0] = 1.0  # an all-zero channel: any scale gives codes of 0
    codes = np.clip(np.rint(weights.astype(np.float64) / scales.astype(np.float64)), -127, 127)
    return codes.astype(np.int8), scales


def dequantize_int8(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """float32(q) * s in float32 arithmetic, exactly what the start function computes."""
    return codes.astype(np.float32) * scales.astype(np.float32)


def quantize_weights(graph: Graph, kind: str) -> WeightEncoding:
    """Replace each eligible weight by its dequantised values; say how the module should store it."""
    if kind not in KINDS:
        raise ValueError(f"weight encoding {kind!r} is not one of {', '.join(KINDS)}")
    encoding = WeightEncoding(kind)
    if kind == "float32":
        return encoding
    uses: dict[str, list[tuple[int, ...] | None]] = {}
    for node in graph.nodes:
        for index, name in enumerate(node.inputs):
            if name in graph.constants:
                uses.setdefault(name, []).append(_reduce_axes(node, index, graph.constants[name].ndim))
    for name, axes_list in uses.items():
        value = graph.constants[name]
        axes = axes_list[0]
        if axes is None or any(a != axes for a in axes_list) or name in graph.outputs:
            continue  # not (only) a weight
        if value.dtype != np.float32 or value.size < MIN_ELEMENTS:
            continue
        if not np.all(np.isfinite(value)):
            encoding.skipped[name] = "not finite"
            continue
        if value.min() == value.max():
            encoding.skipped[name] = "uniform: the start function writes it, nothing is stored"
            continue
        if kind == "fp16":
            if np.max(np.abs(value)) > FP16_MAX:
                encoding.skipped[name] = "values beyond float16's range"
                continue
            graph.constants[name] = value.astype(np.float16).astype(np.float32)
        else:
            codes, scales = quantize_int8(value, axes)
            graph.constants[name] = dequantize_int8(codes, scales)
            channel_shape = scales.shape
            channels = np.broadcast_to(np.arange(scales.size).reshape(channel_shape), value.shape)
            encoding.int8[name] = ChannelScales(np.ascontiguousarray(channels), scales.reshape(-1))
        encoding.tensors.append(name)
    return encoding


