"""Transformer ops rewritten into standard ops: ONNX Runtime's `com.microsoft` contrib ops, and ONNX's own
composite ops of opset 23 and later.

ONNX Runtime's transformer optimiser (`onnxruntime.transformers.optimizer`) and its exporters fuse a
transformer's subgraphs into contrib ops (Attention, SkipLayerNormalization, BiasGelu, ...), and opset 23/24
names the same building blocks (Attention, RotaryEmbedding, RMSNormalization; SwiGLU at 28). None needs a
kernel of its own: each is what a few existing kernels compute, so each is rewritten into them here, as
ONNX's function bodies define its own composite ops (and passes/quantized.py the quantized operators):

- ONNX's ops are expanded into their function body, as `onnx.defs` gives it for the node's attributes and
  input types, so they mean exactly what the standard says (the body's shape arithmetic folds at compile time);
- each contrib op into the ops its ONNX Runtime kernel computes (`_REWRITES`), the constant weights folded
  into the form the kernels want at compile time (Attention's packed QKV weights split per projection with the
  scale folded into Q's). MatMulNBits' 4-bit weights run packed on its own kernel (lowering/nbits.py); other
  widths are dequantized to float32 while compiling.

A rewrite needs its inputs' types (ranks, sizes), which ONNX's shape inference cannot give past a contrib op,
so the rewrites run in rounds: those whose inputs are typed, then inference over the rewritten graph, until
none is left. An attribute or input a rewrite does not support leaves the node in place with the reason
(`Node.declined`), which the compiler's support check reports with the node's name: never a wrong result.
This runs first, beside passes/quantized.py, so that the batch analysis and every later pass see what the
ops compute.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import onnx
from onnx import defs, helper

from wasinfer.frontends.onnx import attr_value
from wasinfer.ir import Graph, Node, TensorInfo
from wasinfer.ops.contrib import MS, int4_problems
from wasinfer.passes.control import infer_types
from wasinfer.passes.quantized import Rewrite, arg
from wasinfer.passes.subgraph import refusal

FUNCTION_OPS = frozenset({"Attention", "RotaryEmbedding", "RMSNormalization", "SwiGLU"})
ROUNDS = 64  # each round rewrites at least one node, and a transformer has a few per layer
FLOAT = 1  # TensorProto.FLOAT, a Cast's target


class ContribError(ValueError):
    """An attribute or input of a contrib op that the rewrite does not support (kept as the node's reason)."""


class _Untyped(ContribError):
    """An input whose type the rewrite needs is not known yet: the node waits for the next round."""


def _info(graph: Graph, name: str) -> TensorInfo:
    if name not in graph.tensors:
        raise _Untyped(f"the type of its input {name!r} could not be inferred")
    return graph.info(name)


def _shape(graph: Graph, name: str) -> tuple[int, ...]:
    return _info(graph, name).shape


def _like(graph: Graph, name: str, source: str) -> str:
    """Give `name` the type of `source` (an element-wise result), for the ops ONNX's inference cannot type at the
    model's opset (Gelu before 20, LayerNormalization before 17, Swish before 24)."""
    info = _info(graph, source)
    graph.tensors[name] = TensorInfo(name, info.dtype, info.shape)
    return name


def _unused(graph: Graph, node: Node, *indices: int) -> None:
    """Refuse outputs the rewrite does not compute (training statistics) when something reads them."""
    for index in indices:
        name = node.outputs[index] if len(node.outputs) > index else ""
        if name and (name in graph.outputs or graph.consumers(name)):
            raise ContribError(f"output {index} ({name!r}) is not supported")


def _const(r: Rewrite, value: float | int | list[int] | np.ndarray, dtype: type = np.float32) -> str:
    return r.constant(np.asarray(value, dtype))


def _reshape(r: Rewrite, x: str, shape: list[int], output: str | None = None) -> str:
    return r.op("Reshape", [x, _const(r, shape, np.int64)], output=output)


def _unsqueeze(r: Rewrite, x: str, axes: list[int]) -> str:
    """Unsqueeze; its axes an input from opset 13, an attribute before."""
    if r.graph.opset >= 13:
        return r.op("Unsqueeze", [x, _const(r, axes, np.int64)])
    return r.op("Unsqueeze", [x], {"axes": axes})


def _count(r: Rewrite, x: str, axis: int, dtype: type = np.int64) -> str:
    """0, 1, ..., x.shape[axis] - 1, computed from x's shape: it folds while compiling, and a dim given as a range
    (--input-shape) goes through it as through the Range(0, Shape(x)[axis]) exporters write."""
    if r.graph.opset < 11:
        raise ContribError(f"opset {r.graph.opset} is below 11 (Range) and is not supported")
    size = r.op("Gather", [r.op("Shape", [x]), _const(r, axis, np.int64)], {"axis": 0})
    steps = r.op("Range", [_const(r, 0, np.int64), size, _const(r, 1, np.int64)])
    if np.dtype(dtype) == np.int64:
        return steps
    return r.op("Cast", [steps], {"to": helper.np_dtype_to_tensor_dtype(np.dtype(dtype))})


def _gelu(r: Rewrite, x: str, approximate: str, output: str) -> str:
    return _like(r.graph, r.op("Gelu", [x], {"approximate": approximate}, output), r.node.inputs[0])


def _layer_norm(r: Rewrite, x: str, scale: str, bias: str, epsilon: float, outputs: list[str]) -> None:
    """LayerNormalization over the last axis, typed by hand (ONNX's inference knows it from opset 17 only)."""
    out = outputs[0] or r.value()
    r.nodes.append(Node("LayerNormalization", f"{out}/LayerNormalization", [x, scale] + ([bias] if bias else []),
                        [out, *outputs[1:]], {"axis": -1, "epsilon": epsilon}, guards=r.node.guards))
    _like(r.graph, out, r.node.inputs[0])


def _reduce_mean(r: Rewrite, x: str, axes: list[int]) -> str:
    """ReduceMean keeping dims; its axes an input from opset 18, an attribute before."""
    if r.graph.opset >= 18:
        return r.op("ReduceMean", [x, _const(r, axes, np.int64)], {"keepdims": 1})
    return r.op("ReduceMean", [x], {"axes": axes, "keepdims": 1})


def _rms_norm(r: Rewrite, x: str, scale: str, axis: int, epsilon: float, output: str) -> None:
    """y = x / sqrt(mean(x^2 over the axes from `axis`) + epsilon) * scale, as ONNX Runtime computes it in float."""
    rank = len(_shape(r.graph, x))
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank:
        raise ContribError(f"axis={axis} is outside the input's rank {rank}")
    mean = _reduce_mean(r, r.op("Mul", [x, x]), list(range(axis, rank)))
    rms = r.op("Sqrt", [r.op("Add", [mean, _const(r, epsilon)])])
    r.op("Mul", [r.op("Div", [x, rms]), scale], output=output)


def _skip_sum(r: Rewrite, node: Node, bias: str, sum_output: int) -> str:
    """input + skip (+ bias): the sum the skip norms normalise, which is their output `sum_output` when read."""
    total = r.op("Add", [arg(node, 0), arg(node, 1)])
    if bias:
        total = r.op("Add", [total, bias])
    wanted = node.outputs[sum_output] if len(node.outputs) > sum_output else ""
    return r.op("Identity", [total], output=wanted) if wanted else total


def _not_float32(graph: Graph, node: Node) -> None:
    info = _info(graph, node.inputs[0])
    if info.dtype != np.float32:
        raise ContribError(f"input {node.inputs[0]!r} is {info.dtype}; only float32 is supported")


# ---------------------------------------------------------------------------------------- activations, sums


def _contrib_gelu(r: Rewrite, node: Node) -> None:
    _gelu(r, arg(node, 0), "none", node.outputs[0])


def _fast_gelu(r: Rewrite, node: Node) -> None:
    x = r.op("Add", [arg(node, 0), arg(node, 1)]) if arg(node, 1) else arg(node, 0)
    _gelu(r, _like(r.graph, x, arg(node, 0)), "tanh", node.outputs[0])


def _bias_gelu(r: Rewrite, node: Node) -> None:
    _gelu(r, _like(r.graph, r.op("Add", [arg(node, 0), arg(node, 1)]), arg(node, 0)), "none", node.outputs[0])


def _quick_gelu(r: Rewrite, node: Node) -> None:
    alpha = float(node.attr("alpha", 1.702))
    _like(r.graph, r.op("Swish", [arg(node, 0)], {"alpha": alpha}, node.outputs[0]), arg(node, 0))


def _bias_add(r: Rewrite, node: Node) -> None:
    r.op("Add", [r.op("Add", [arg(node, 0), arg(node, 1)]), arg(node, 2)], output=node.outputs[0])


def _bias_softmax(r: Rewrite, node: Node) -> None:
    """Softmax(data + bias) over the axes from `axis` on (ONNX Runtime fuses Add + Softmax into it, its kernels
    on GPUs only): the bias broadcasts as the Add did, numpy's way, either form of is_inner_broadcast (ones on
    the axes before the softmax's, or leading ones); an inner softmax axis is a Flatten, Softmax, Reshape."""
    shape = _shape(r.graph, arg(node, 0))
    axis = int(node.attr("axis", 1))
    axis = axis + len(shape) if axis < 0 else axis
    if not 0 <= axis < len(shape):
        raise ContribError(f"axis={node.attr('axis', 1)} is outside the input's rank {len(shape)}")
    total = _like(r.graph, r.op("Add", [arg(node, 0), arg(node, 1)]), arg(node, 0))
    if axis == len(shape) - 1:
        r.op("Softmax", [total], {"axis": -1}, node.outputs[0])
        return
    rows = r.op("Softmax", [r.op("Flatten", [total], {"axis": axis})], {"axis": -1})
    r.op("Reshape", [rows, r.op("Shape", [total])], output=node.outputs[0])


# ---------------------------------------------------------------------------------------- products


def _last_two_swapped(r: Rewrite, x: str, name: str) -> str:
    rank = len(_shape(r.graph, x))
    if rank < 2:
        raise ContribError(f"{name}=1 with a rank-{rank} operand")
    return r.op("Transpose", [x], {"perm": [*range(rank - 2), rank - 1, rank - 2]})


def _fused_matmul(r: Rewrite, node: Node) -> None:
    for name in ("transBatchA", "transBatchB"):
        if int(node.attr(name, 0)):
            raise ContribError(f"{name}={node.attr(name)} (a transposed batch) is not supported")
    a, b = arg(node, 0), arg(node, 1)
    if int(node.attr("transA", 0)):
        a = _last_two_swapped(r, a, "transA")
    if int(node.attr("transB", 0)):
        b = _last_two_swapped(r, b, "transB")
    alpha = float(node.attr("alpha", 1.0))
    if alpha == 1.0:
        r.op("MatMul", [a, b], output=node.outputs[0])
    else:
        r.op("Mul", [r.op("MatMul", [a, b]), _const(r, alpha)], output=node.outputs[0])


CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


def _activation(r: Rewrite, y: str, activation: str, params: list[float], out: str) -> None:
    """The activation a fused Conv or Gemm applies to its result (ONNX Runtime's names and parameter order)."""
    if not activation:
        r.op("Identity", [y], output=out)
    elif activation in ("Relu", "Tanh", "Sigmoid"):
        r.op(activation, [y], output=out)
    elif activation == "LeakyRelu":
        r.op("LeakyRelu", [y], {"alpha": params[0] if params else 0.01}, out)
    elif activation == "HardSigmoid":
        alpha, beta = (params + [0.2, 0.5][len(params):])[:2]
        r.op("HardSigmoid", [y], {"alpha": alpha, "beta": beta}, out)
    elif activation == "Clip" and len(params) == 2:
        if r.graph.opset >= 11:
            r.op("Clip", [y, _const(r, params[0]), _const(r, params[1])], output=out)
        else:
            r.op("Clip", [y], {"min": params[0], "max": params[1]}, out)
    else:
        raise ContribError(f"activation={activation!r} (with parameters {params}) is not supported")


def _fused_conv(r: Rewrite, node: Node) -> None:
    """Conv, plus Z (the sum input), then the activation: what ONNX Runtime's FusedConv computes."""
    y = r.op("Conv", [arg(node, 0), arg(node, 1)] + ([arg(node, 2)] if arg(node, 2) else []),
             {k: v for k, v in node.attrs.items() if k in CONV_ATTRS})
    if arg(node, 3):
        y = r.op("Add", [y, arg(node, 3)])
    params = [float(p) for p in node.attr("activation_params", []) or []]
    _activation(r, y, str(node.attr("activation", "") or ""), params, node.outputs[0])


def _fused_gemm(r: Rewrite, node: Node) -> None:
    """Gemm, then the activation (its parameters activation_alpha, activation_beta)."""
    y = r.op("Gemm", [name for name in node.inputs[:3]],
             {k: v for k, v in node.attrs.items() if k in ("alpha", "beta", "transA", "transB")})
    params = [float(node.attrs[k]) for k in ("activation_alpha", "activation_beta") if k in node.attrs]
    _activation(r, y, str(node.attr("activation", "") or ""), params, node.outputs[0])


# ---------------------------------------------------------------------------------------- normalisations


def _skip_layer_norm(r: Rewrite, node: Node) -> None:
    _not_float32(r.graph, node)
    _unused(r.graph, node, 1, 2)
    total = _skip_sum(r, node, arg(node, 4), 3)
    _layer_norm(r, total, arg(node, 2), arg(node, 3), float(node.attr("epsilon", 1e-12)), [node.outputs[0]])


def _simplified_layer_norm(r: Rewrite, node: Node) -> None:
    _not_float32(r.graph, node)
    _unused(r.graph, node, 1)
    _rms_norm(r, arg(node, 0), arg(node, 1), int(node.attr("axis", -1)), float(node.attr("epsilon", 1e-5)),
              node.outputs[0])


def _skip_simplified_layer_norm(r: Rewrite, node: Node) -> None:
    _not_float32(r.graph, node)
    _unused(r.graph, node, 1, 2)
    total = _skip_sum(r, node, arg(node, 3), 3)
    _like(r.graph, total, arg(node, 0))
    _rms_norm(r, total, arg(node, 2), -1, float(node.attr("epsilon", 1e-12)), node.outputs[0])


def _embed_layer_norm(r: Rewrite, node: Node) -> None:
    """word[input_ids] + position[position_ids or 0..S-1] (+ segment[segment_ids]), then LayerNormalization;
    mask_index (when read) is each row's count of ones in the mask."""
    ids, segments, word, position, segment, gamma, beta, mask, positions = (arg(node, i) for i in range(9))
    batch, length = _shape(r.graph, ids)
    total = r.op("Gather", [word, ids], {"axis": 0})
    if positions:
        placed = r.op("Gather", [position, positions], {"axis": 0})
    else:
        placed = r.op("Gather", [position, _count(r, ids, 1)], {"axis": 0})
    total = r.op("Add", [total, placed])
    if segments and segment:
        total = r.op("Add", [total, r.op("Gather", [segment, segments], {"axis": 0})])
    wanted = node.outputs[2] if len(node.outputs) > 2 else ""
    if wanted:
        total = r.op("Identity", [total], output=wanted)
    hidden = _shape(r.graph, word)[1]
    r.graph.tensors[total] = TensorInfo(total, np.dtype(np.float32), (batch, length, hidden))
    _layer_norm(r, total, gamma, beta, float(node.attr("epsilon", 1e-12)), [node.outputs[0]])
    r.graph.tensors[node.outputs[0]] = TensorInfo(node.outputs[0], np.dtype(np.float32), (batch, length, hidden))
    index = node.outputs[1] if len(node.outputs) > 1 else ""
    if index and (index in r.graph.outputs or r.graph.consumers(index)):
        if not mask:
            raise ContribError("output mask_index without a mask input is not supported")
        counted = r.op("ReduceSum", [r.op("Cast", [mask], {"to": FLOAT})] +
                       ([_const(r, [1], np.int64)] if r.graph.opset >= 13 else []),
                       {"keepdims": 0} | ({} if r.graph.opset >= 13 else {"axes": [1]}))
        r.op("Cast", [counted], {"to": onnx.TensorProto.INT32}, index)


# ---------------------------------------------------------------------------------------- attention


def _heads(r: Rewrite, x: str, heads: int, perm: list[int]) -> str:
    """[B, S, heads * D] → [B, S, heads, D], transposed by `perm` (BNSD for queries and values, BNDS for keys)."""
    return r.op("Transpose", [_reshape(r, x, [0, 0, heads, -1])], {"perm": perm})


def _padding_bias(r: Rewrite, mask: str, scores: str, sizes: tuple[int, int, int], filter_value: float) -> str:
    """An additive [B, 1, S or 1, T] bias for `scores` [B, N, S, T] (`sizes` B, S, T) from a mask in one of ONNX
    Runtime's forms: lengths [B] (right padding), ends then starts [2B] (left padding), a raw 0/1 mask [B, T] or
    [B, S, T]; others are refused by name."""
    shape = _shape(r.graph, mask)
    batch, length, total = sizes
    zero, blocked = _const(r, 0.0), _const(r, filter_value)
    if len(shape) == 1 and shape[0] in (batch, 2 * batch):
        keys = _count(r, scores, 3, _info(r.graph, mask).dtype.type)
        # [B, 1], or ends and starts [2, B, 1]
        bounds = _unsqueeze(r, mask, [1]) if shape[0] == batch else _reshape(r, mask, [2, -1, 1])
        end = r.op("Gather", [bounds, _const(r, 0, np.int64)], {"axis": 0}) if shape[0] != batch else bounds
        valid = r.op("Less", [keys, end])
        if shape[0] == 2 * batch:
            start = r.op("Gather", [bounds, _const(r, 1, np.int64)], {"axis": 0})
            valid = r.op("And", [valid, r.op("Not", [r.op("Less", [keys, start])])])
        return _unsqueeze(r, r.op("Where", [valid, zero, blocked]), [1, 2])
    if len(shape) in (2, 3) and shape[0] == batch and shape[-1] == total and (len(shape) == 2 or shape[1] == length):
        cleared = r.op("Equal", [mask, r.constant(np.zeros((), _info(r.graph, mask).dtype))])
        return _unsqueeze(r, r.op("Where", [cleared, blocked, zero]), [1, 2] if len(shape) == 2 else [1])
    raise ContribError(f"a mask of shape {list(shape)} is not supported (lengths [B], ends and starts [2B], or a 0/1 "
                       "mask [B, T] or [B, S, T])")


def _attend(r: Rewrite, node: Node, q: str, k: str, v: str, heads: int, lengths: tuple[int, int, int, int],
            past: tuple[str, str] | None, mask: str, bias: str, filter_value: float) -> tuple[str, str]:
    """softmax(q k^T + masks) v per head, q already scaled, q [B, S, heads * D], k and v [B, L, heads * D]
    (`lengths` B, S, L and the past's P); the output
    [B, S, heads * Dv] is node output 0. Returns the keys and values (BNSD, past and present) for a cache."""
    q4 = _heads(r, q, heads, [0, 2, 1, 3])
    k4 = _heads(r, k, heads, [0, 2, 1, 3])
    v4 = _heads(r, v, heads, [0, 2, 1, 3])
    batch, length, kv_length, past_length = lengths
    if past is not None:
        k4 = r.op("Concat", [past[0], k4], {"axis": 2})
        v4 = r.op("Concat", [past[1], v4], {"axis": 2})
    total = past_length + kv_length
    scores = r.op("MatMul", [q4, r.op("Transpose", [k4], {"perm": [0, 1, 3, 2]})])
    if int(node.attr("unidirectional", 0)):  # query i (at P + i) sees keys 0 .. P + i
        rows = _unsqueeze(r, _count(r, scores, 2), [1])
        if past_length:
            rows = r.op("Add", [rows, _const(r, past_length, np.int64)])
        later = r.op("Greater", [_count(r, scores, 3), rows])
        causal = r.op("Where", [later, _const(r, float(np.finfo(np.float32).min)), _const(r, 0.0)])
        scores = r.op("Add", [scores, causal])
    if mask:
        scores = r.op("Add", [scores, _padding_bias(r, mask, scores, (batch, length, total), filter_value)])
    if bias:
        scores = r.op("Add", [scores, bias])
    context = r.op("MatMul", [r.op("Softmax", [scores], {"axis": -1}), v4])
    _reshape(r, r.op("Transpose", [context], {"perm": [0, 2, 1, 3]}), [0, 0, -1], node.outputs[0])
    return k4, v4


def _attention(r: Rewrite, node: Node) -> None:
    """ONNX Runtime's Attention: one projection of the input by the packed QKV weights (split per projection at
    compile time, Q's with the scale folded in), then _attend; `past` [2, B, N, P, D] and `present`."""
    _not_float32(r.graph, node)
    for name in ("do_rotary", "past_present_share_buffer"):
        if int(node.attr(name, 0)):
            raise ContribError(f"{name}={node.attr(name)} is not supported")
    if arg(node, 6):
        raise ContribError("input past_sequence_length (a shared past/present buffer) is not supported")
    weights = r.graph.constants.get(arg(node, 1))
    packed = r.graph.constants.get(arg(node, 2)) if arg(node, 2) else None
    if weights is None or (arg(node, 2) and packed is None):
        raise ContribError("weights and bias computed at run time are not supported (they must be constants)")
    heads = int(node.attr("num_heads", 0))
    sizes = [int(s) for s in node.attr("qkv_hidden_sizes", []) or []] or [weights.shape[1] // 3] * 3
    if heads < 1 or sum(sizes) != weights.shape[1] or any(s % heads for s in sizes):
        raise ContribError(f"num_heads={heads} and qkv_hidden_sizes={sizes} do not split weights of shape "
                           f"{list(weights.shape)}")
    batch, length, _ = _shape(r.graph, arg(node, 0))
    scale = float(node.attr("scale", 0.0) or 1.0 / np.sqrt(sizes[0] // heads))
    edges = np.cumsum([0, *sizes])
    projected = []
    for index in range(3):
        w = weights[:, edges[index]:edges[index + 1]].astype(np.float32)
        b = packed.reshape(-1)[edges[index]:edges[index + 1]].astype(np.float32) if packed is not None else None
        if index == 0:
            w, b = w * np.float32(scale), (b * np.float32(scale) if b is not None else None)
        y = r.op("MatMul", [arg(node, 0), r.constant(w)])
        projected.append(r.op("Add", [y, r.constant(b)]) if b is not None else y)
    past = None
    if arg(node, 4):
        if len(set(sizes)) != 1:
            raise ContribError("a past state with Q, K and V of different hidden sizes is not supported")
        past = (r.op("Gather", [arg(node, 4), _const(r, 0, np.int64)], {"axis": 0}),
                r.op("Gather", [arg(node, 4), _const(r, 1, np.int64)], {"axis": 0}))
    lengths = (batch, length, length, _shape(r.graph, arg(node, 4))[3] if past is not None else 0)
    q, k, v = projected
    k4, v4 = _attend(r, node, q, k, v, heads, lengths, past, arg(node, 3), arg(node, 5),
                     float(node.attr("mask_filter_value", -10000.0)))
    present = node.outputs[1] if len(node.outputs) > 1 else ""
    if present:
        stacked = [_unsqueeze(r, x, [0]) for x in (k4, v4)]
        r.op("Concat", stacked, {"axis": 0}, present)


def _multi_head_attention(r: Rewrite, node: Node) -> None:
    """ONNX Runtime's MultiHeadAttention with separate Q, K, V [B, S, H] (the packed and the BNSH key forms are
    refused), the projections' bias, a key padding mask, an attention bias and a past key/value cache."""
    _not_float32(r.graph, node)
    q, k, v = arg(node, 0), arg(node, 1), arg(node, 2)
    if not k or not v or len(_shape(r.graph, q)) != 3 or len(_shape(r.graph, k)) != 3 or \
            len(_shape(r.graph, v)) != 3:
        raise ContribError("only separate query, key and value of shape [B, S, H] are supported (not the packed "
                           "QKV/KV forms, nor keys and values given per head)")
    for index, name in ((8, "past_sequence_length"), (9, "cache_indirection")):
        if arg(node, index):
            raise ContribError(f"input {name} is not supported")
    heads = int(node.attr("num_heads", 0))
    hidden = _shape(r.graph, q)[2]
    if heads < 1 or hidden % heads:
        raise ContribError(f"num_heads={heads} does not divide the hidden size {hidden}")
    batch, length, _ = _shape(r.graph, q)
    past = (arg(node, 6), arg(node, 7)) if arg(node, 6) and arg(node, 7) else None
    lengths = (batch, length, _shape(r.graph, k)[1], _shape(r.graph, past[0])[2] if past is not None else 0)
    sizes = [hidden, _shape(r.graph, k)[2], _shape(r.graph, v)[2]]
    if arg(node, 3):  # the projections' bias [Hq + Hk + Hv], split into three
        edges = np.cumsum([0, *sizes])
        parts = [r.op("Gather", [arg(node, 3), _const(r, np.arange(edges[i], edges[i + 1]), np.int64)], {"axis": 0})
                 for i in range(3)]
        q, k, v = (r.op("Add", [x, b]) for x, b in zip((q, k, v), parts, strict=True))
    scale = float(node.attr("scale", 0.0) or 1.0 / np.sqrt(hidden // heads))
    q = r.op("Mul", [q, _const(r, scale)])
    k4, v4 = _attend(r, node, q, k, v, heads, lengths, past, arg(node, 4), arg(node, 5),
                     float(node.attr("mask_filter_value", -10000.0)))
    _unused(r.graph, node, 3)
    for index, value in ((1, k4), (2, v4)):
        wanted = node.outputs[index] if len(node.outputs) > index else ""
        if wanted:
            r.op("Identity", [value], output=wanted)


MS_ONLY_INPUTS = ((9, "position_ids"), (10, "attention_bias"), (11, "head_sink"))


def _gqa_split(r: Rewrite, node: Node, heads: int, kv_heads: int) -> tuple[str, str, str, int]:
    """Query, key and value [B, S, heads * D] / [B, S, kv_heads * D] and the head size D, from separate inputs or
    one packed QKV (key and value left out: [B, S, (heads + 2 kv_heads) * D], sliced while compiling)."""
    query, key, value = arg(node, 0), arg(node, 1), arg(node, 2)
    shape = _shape(r.graph, query)
    if len(shape) != 3:
        raise ContribError(f"a query of rank {len(shape)} is not supported ([B, S, hidden])")
    width = shape[2]
    if key or value:
        if not (key and value):
            raise ContribError("key and value must both be given, or both left out (packed QKV)")
        size = width // heads
        if width % heads or _shape(r.graph, key)[2] != kv_heads * size or _shape(r.graph, value)[2] != kv_heads * size:
            raise ContribError(f"num_heads={heads}, kv_num_heads={kv_heads} do not split a query of {width} and "
                               f"keys and values of {_shape(r.graph, key)[2]}, {_shape(r.graph, value)[2]}")
        return query, key, value, size
    size = width // (heads + 2 * kv_heads)
    if width % (heads + 2 * kv_heads):
        raise ContribError(f"a packed QKV of {width} is not (num_heads + 2 kv_num_heads) = "
                           f"{heads + 2 * kv_heads} heads of one size")
    edges = [0, heads * size, (heads + kv_heads) * size, width]
    parts = [r.op("Slice", [query, _const(r, [edges[i]], np.int64), _const(r, [edges[i + 1]], np.int64),
                            _const(r, [2], np.int64)]) for i in range(3)]
    return parts[0], parts[1], parts[2], size


def _gqa_cache(r: Rewrite, past: str, new: str, positions: str | None) -> str:
    """present [B, N_kv, P + S, D]: the past then the new steps (BNSH). With one new step per row and `positions`
    [B, 1, 1, 1] (where each row's step goes: seqlens_k, for rows padded to a shorter past), a row keeps its past
    before its position, its new step there and zeros after, as ONNX Runtime writes it."""
    if not past:
        return new
    joined = r.op("Concat", [past, new], {"axis": 2})
    if positions is None:
        return joined
    column = _unsqueeze(r, _count(r, joined, 2), [1])  # [P + 1, 1] beside [B, 1, 1, 1]
    at = r.op("Where", [r.op("Equal", [column, positions]), new, _const(r, 0.0)])
    return r.op("Where", [r.op("Less", [column, positions]), joined, at])


def _group_query_attention(r: Rewrite, node: Node) -> None:
    """ONNX Runtime's GroupQueryAttention (Llama/Phi/Qwen-style decoders): num_heads query heads share
    kv_num_heads key/value heads, keys and values appended to a past cache (BNSH), attention causal over the
    past and new steps (and within local_window_size), rotary embedding of Q and K from cos/sin caches.

    The run-time parts are followed where they set no shape: seqlens_k (each row's total length - 1) places a
    decoding step of a row whose past is shorter (a padded batch) and sets its positions and mask. Where they
    would set a shape, the compiled one is kept and a run that asks for another is refused: present's length is
    the past's plus the new steps' (ONNX Runtime's max(total_sequence_length, P) with no shared buffer), so a
    total_sequence_length of another value (a shared past/present buffer) stops the run with an error naming the
    node (at compile time where it is a constant); several new steps after a past are one row's next prompt
    (ONNX Runtime's batch of 1), appended where its past ends."""
    _not_float32(r.graph, node)
    for index, name in MS_ONLY_INPUTS:
        if arg(node, index):
            raise ContribError(f"input {name} is not supported")
    if int(node.attr("qk_output", 0)):
        raise ContribError(f"qk_output={node.attr('qk_output')} is not supported")
    _unused(r.graph, node, 3)
    heads, kv_heads = int(node.attr("num_heads", 0)), int(node.attr("kv_num_heads", 0))
    if heads < 1 or kv_heads < 1 or heads % kv_heads:
        raise ContribError(f"num_heads={heads} is not a multiple of kv_num_heads={kv_heads}")
    group = heads // kv_heads
    q, k, v, size = _gqa_split(r, node, heads, kv_heads)
    batch, length, _ = _shape(r.graph, arg(node, 0))
    past_key, past_value, seqlens, total = arg(node, 3), arg(node, 4), arg(node, 5), arg(node, 6)
    if bool(past_key) != bool(past_value):
        raise ContribError("past_key and past_value must both be given, or both left out")
    if not seqlens or not total:
        raise ContribError("inputs seqlens_k and total_sequence_length are required")
    past_length = 0
    if past_key:
        shape = _shape(r.graph, past_key)
        if len(shape) != 4 or shape[1] != kv_heads or shape[3] != size or _shape(r.graph, past_value) != shape:
            raise ContribError(f"past_key {list(shape)} and past_value {list(_shape(r.graph, past_value))} are not "
                               f"[B, kv_num_heads={kv_heads}, P, {size}] (BNSH)")
        past_length = shape[2]
        if length > 1 and batch != 1:
            raise ContribError(f"{length} new steps after a past need a batch of 1 (ONNX Runtime's rule), not {batch}")
    expected = past_length + length
    known = r.graph.constants.get(total)
    if known is not None and (known.size != 1 or int(known.reshape(-1)[0]) != expected):
        raise ContribError(f"total_sequence_length={known.reshape(-1).tolist()} is not the past's {past_length} + "
                           f"the {length} new steps (a shared past/present buffer is not supported)")

    # each row's past length, ONNX Runtime's seqlens_k + 1 - S (read from the data, not the past's shape, so a past
    # length given as a range is followed): a decoding step goes there (rows padded to a shorter past); a next
    # prompt must start where the past ends (checked below); positions and the mask count from it
    per_row = None
    if past_key:
        ends = r.op("Add", [r.op("Cast", [seqlens], {"to": onnx.TensorProto.INT64}), _const(r, 1 - length, np.int64)])
        per_row = r.op("Max", [ends, _const(r, 0, np.int64)])
        positions = _unsqueeze(r, per_row, [1])  # [B, 1]: no Range, which ONNX's inference cannot size
        if length > 1:
            positions = r.op("Add", [_count(r, q, 1), positions])  # [B, S]
    else:
        positions = _unsqueeze(r, _count(r, q, 1), [0])  # [1, S]
    if length > 1:  # typed by hand, as ONNX's inference cannot size the Range: the rotated Q and K follow it
        r.graph.tensors[positions] = TensorInfo(positions, np.dtype(np.int64), (batch if past_key else 1, length))

    if int(node.attr("do_rotary", 0)):
        cos, sin = arg(node, 7), arg(node, 8)
        if not cos or not sin:
            raise ContribError("do_rotary=1 without cos_cache and sin_cache")
        rotated = 2 * _shape(r.graph, cos)[1]
        if rotated > size or _shape(r.graph, sin) != _shape(r.graph, cos):
            raise ContribError(f"cos_cache {list(_shape(r.graph, cos))} and sin_cache {list(_shape(r.graph, sin))} "
                               f"do not rotate heads of {size}")
        q, k = (_reshape(r, _rotate(r, _reshape(r, x, [0, 0, count, size]), positions, (cos, sin), rotated, size,
                                    int(node.attr("rotary_interleaved", 0)), 2), [0, 0, count * size])
                for x, count in ((q, heads), (k, kv_heads)))

    scale = float(node.attr("scale", 0.0) or 1.0 / np.sqrt(size))
    q = r.op("Mul", [q, _const(r, scale)])
    q5 = r.op("Transpose", [_reshape(r, q, [0, 0, kv_heads, group, size])], {"perm": [0, 2, 3, 1, 4]})
    k4, v4 = (_heads(r, x, kv_heads, [0, 2, 1, 3]) for x in (k, v))  # [B, N_kv, S, D]
    cache_at = _unsqueeze(r, per_row, [1, 2, 3]) if per_row is not None and length == 1 else None
    present_k, present_v = (_gqa_cache(r, past, new, cache_at) for past, new in ((past_key, k4), (past_value, v4)))
    keys = _count(r, present_k, 2)  # [T]

    query_at = _unsqueeze(r, positions, [1, 2, 4])  # [1 or B, 1, 1, S, 1]
    blocked = r.op("Greater", [keys, query_at])
    window = int(node.attr("local_window_size", -1))
    if window > 0:  # each step sees `window` keys, itself and the window - 1 before it, as ONNX Runtime counts them
        first = r.op("Sub", [query_at, _const(r, window - 1, np.int64)])
        blocked = r.op("Or", [blocked, r.op("Less", [keys, first])])
    scores = r.op("MatMul", [q5, _unsqueeze(r, r.op("Transpose", [present_k], {"perm": [0, 1, 3, 2]}), [2])])
    softcap = float(node.attr("softcap", 0.0))
    if softcap > 0:
        scores = r.op("Mul", [r.op("Tanh", [r.op("Div", [scores, _const(r, softcap)])]), _const(r, softcap)])
    scores = r.op("Add", [scores, r.op("Where", [blocked, _const(r, float(np.finfo(np.float32).min)),
                                                 _const(r, 0.0)])])
    if int(node.attr("smooth_softmax", 0)):  # one more logit of 0 in every row's softmax, dropped after
        zero = r.op("Mul", [r.op("Slice", [scores, _const(r, [0], np.int64), _const(r, [1], np.int64),
                                           _const(r, [-1], np.int64)]), _const(r, 0.0)])
        weights = r.op("Softmax", [r.op("Concat", [zero, scores], {"axis": -1})], {"axis": -1})
        weights = r.op("Slice", [weights, _const(r, [1], np.int64), _const(r, [np.iinfo(np.int64).max], np.int64),
                                 _const(r, [-1], np.int64)])
    else:
        weights = r.op("Softmax", [scores], {"axis": -1})
    context = r.op("MatMul", [weights, _unsqueeze(r, present_v, [2])])  # [B, N_kv, group, S, D]
    _reshape(r, r.op("Transpose", [context], {"perm": [0, 3, 1, 2, 4]}), [0, 0, heads * size], node.outputs[0])
    for index, value in ((1, present_k), (2, present_v)):
        wanted = node.outputs[index] if len(node.outputs) > index else ""
        if wanted:
            r.op("Identity", [value], output=wanted)
    if known is None:  # checked at run time: a Refuse guarded by the check stops a run that asks for another present
        present_length = r.op("Gather", [r.op("Shape", [present_k]), _const(r, 2, np.int64)], {"axis": 0})
        asked = _reshape(r, r.op("Cast", [total], {"to": onnx.TensorProto.INT64}), [1])
        wrong = r.op("Not", [r.op("Equal", [asked, present_length])])
        if length > 1 and past_key:  # a next prompt must start where the past ends
            ends = r.op("Add", [r.op("Cast", [seqlens], {"to": onnx.TensorProto.INT64}), _const(r, 1, np.int64)])
            wrong = r.op("Or", [wrong, r.op("Not", [r.op("Equal", [ends, present_length])])])
        r.nodes.append(refusal(
            r.graph, f"{node.name}/refuse",
            f"node {node.name!r} (GroupQueryAttention) was compiled for a present as long as the past and the "
            f"{length} new step(s) together; this run's total_sequence_length (or seqlens_k) asks for another (a "
            "shared past/present buffer, or a next prompt that does not start where the past ends)",
            (*r.node.guards, (wrong, True))))


def _rotate(r: Rewrite, x4: str, positions: str, caches: tuple[str, str], rotated: int, size: int,
            interleaved: int, heads_axis: int) -> str:
    """x4 [B, S, N, D] (heads_axis 2) or [B, N, S, D] (heads_axis 1) with the first `rotated` of each head's D
    rotated by the cos/sin caches [max, rotated / 2] at `positions` [B or 1, S], as halves or interleaved pairs."""
    half = rotated // 2
    # the caches as [B or 1, S, 1, R/2] beside [B, S, N, D], or [B or 1, 1, S, R/2] beside [B, N, S, D]
    cos, sin = (_unsqueeze(r, r.op("Gather", [c, positions], {"axis": 0}), [heads_axis]) for c in caches)
    last = 3
    if interleaved:
        first, second = np.arange(0, rotated, 2), np.arange(1, rotated, 2)
    else:
        first, second = np.arange(half), np.arange(half, rotated)
    x1 = r.op("Gather", [x4, _const(r, first, np.int64)], {"axis": last})
    x2 = r.op("Gather", [x4, _const(r, second, np.int64)], {"axis": last})
    real = r.op("Sub", [r.op("Mul", [x1, cos]), r.op("Mul", [x2, sin])])
    imaginary = r.op("Add", [r.op("Mul", [x2, cos]), r.op("Mul", [x1, sin])])
    if interleaved:
        pairs = [_reshape(r, part, [0, 0, 0, half, 1]) for part in (real, imaginary)]
        parts = [_reshape(r, r.op("Concat", pairs, {"axis": 4}), [0, 0, 0, rotated])]
    else:
        parts = [real, imaginary]
    if rotated < size:
        parts.append(r.op("Gather", [x4, _const(r, np.arange(rotated, size), np.int64)], {"axis": last}))
    return r.op("Concat", parts, {"axis": last})


def _rotary(r: Rewrite, node: Node) -> None:
    """ONNX Runtime's RotaryEmbedding: x [B, S, N*D] or [B, N, S, D]; cos/sin caches [max, R/2] gathered at
    position_ids [B, S] (or from one offset [1]); the first R of each head's D rotated, as halves or interleaved."""
    _not_float32(r.graph, node)
    if int(node.attr("is_packed_batching", 0)):
        raise ContribError("is_packed_batching=1 (ragged batches) is not supported")
    if float(node.attr("scale", 1.0)) != 1.0:
        raise ContribError(f"scale={node.attr('scale')} is not supported")
    x, positions, cos_cache, sin_cache = (arg(node, i) for i in range(4))
    shape = _shape(r.graph, x)
    half = _shape(r.graph, cos_cache)[1]
    rotated = int(node.attr("rotary_embedding_dim", 0)) or 2 * half
    heads = int(node.attr("num_heads", 0))
    if len(shape) == 3:
        heads = heads or shape[2] // (2 * half)
        if heads < 1 or shape[2] % heads:
            raise ContribError(f"num_heads={heads} does not divide the hidden size {shape[2]}")
        size = shape[2] // heads
        x4 = _reshape(r, x, [0, 0, heads, size])  # 0 copies a dim: a per-sample batch goes through
    elif len(shape) == 4:
        _, heads, _, size = shape
        x4 = x
    else:
        raise ContribError(f"an input of rank {len(shape)} is not supported (3 or 4)")
    if rotated != 2 * half or rotated > size:
        raise ContribError(f"rotary_embedding_dim={rotated} does not match the caches' {half} columns and the head "
                           f"size {size}")
    pos_shape = _shape(r.graph, positions)
    if len(pos_shape) == 1 and pos_shape[0] == 1:  # one offset: positions offset .. offset + S - 1 for every row
        steps = _count(r, x, 1 if len(shape) == 3 else 2, _info(r.graph, positions).dtype.type)
        positions = _unsqueeze(r, r.op("Add", [steps, positions]), [0])
    elif len(pos_shape) != 2:
        raise ContribError(f"position_ids of shape {list(pos_shape)} are not supported ([B, S] or [1])")
    joined = _rotate(r, x4, positions, (cos_cache, sin_cache), rotated, size, int(node.attr("interleaved", 0)),
                     2 if len(shape) == 3 else 1)
    if len(shape) == 3:
        _reshape(r, joined, [0, 0, shape[2]], node.outputs[0])
    else:
        r.op("Identity", [joined], output=node.outputs[0])


# ---------------------------------------------------------------------------------------- N-bit weights


def _unpack(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """The first `count` values of each row of bit-packed bytes, lowest bits first (MatMulNBits' layout)."""
    per_byte = 8 // bits
    shifts = (np.arange(per_byte) * bits).astype(np.uint8)
    values = (packed[..., None] >> shifts) & np.uint8((1 << bits) - 1)
    return values.reshape(*packed.shape[:-1], -1)[..., :count]


def dequantize_nbits(packed: np.ndarray, scales: np.ndarray, zero_points: np.ndarray | None, k: int, n: int,
                     bits: int, block_size: int) -> np.ndarray:
    """MatMulNBits' weights as float32 [K, N]: packed [N, blocks, block_size * bits / 8] uint8, scales [N * blocks],
    zero points packed like the weights ([N, ceil(blocks * bits / 8)] uint8), as floats [N, blocks], or absent
    (2^(bits - 1)); w = (q - zero point) * scale per block along K."""
    blocks = -(-k // block_size)
    q = _unpack(packed.reshape(n, blocks, -1), bits, block_size).astype(np.float32)  # [N, blocks, block_size]
    scale = scales.reshape(n, blocks, 1).astype(np.float32)
    zero: np.ndarray
    if zero_points is None:
        zero = np.full((n, blocks, 1), 1 << (bits - 1), np.float32)
    elif zero_points.dtype == np.uint8:
        zero = _unpack(zero_points.reshape(n, -1), bits, blocks).astype(np.float32).reshape(n, blocks, 1)
    else:
        zero = zero_points.reshape(n, blocks, 1).astype(np.float32)
    weights = ((q - zero) * scale).reshape(n, blocks * block_size)[:, :k]
    return np.ascontiguousarray(weights.T)


def _matmul_nbits(r: Rewrite, node: Node) -> None:
    """What its 4-bit kernel does not run (ops/contrib.py `int4_problems`: 2 or 8 bits, float zero points, symbolic
    dims): the weights dequantized to float32 while compiling (the module carries K x N floats), then MatMul."""
    bits, block_size = int(node.attr("bits", 4)), int(node.attr("block_size", 0))
    k, n = int(node.attr("K", 0)), int(node.attr("N", 0))
    if bits not in (2, 4, 8):
        raise ContribError(f"bits={bits} is not supported (2, 4 or 8)")
    if int(node.attr("weight_prepacked", 0)):
        raise ContribError(f"weight_prepacked={node.attr('weight_prepacked')} is not supported")
    if arg(node, 4):
        raise ContribError("input g_idx (act-order groups) is not supported")
    constants = [r.graph.constants.get(arg(node, i)) if arg(node, i) else None for i in (1, 2, 3)]
    if constants[0] is None or constants[1] is None or (arg(node, 3) and constants[2] is None):
        raise ContribError("weights, scales and zero points computed at run time are not supported")
    if block_size < 16 or block_size & (block_size - 1) or k < 1 or n < 1:
        raise ContribError(f"block_size={block_size}, K={k}, N={n} do not describe packed weights")
    packed, scales, zero_points = constants
    assert packed is not None and scales is not None
    if packed.size != n * -(-k // block_size) * block_size * bits // 8:
        raise ContribError(f"weights of shape {list(packed.shape)} do not hold K={k} x N={n} in {bits} bits")
    weights = dequantize_nbits(packed, scales, zero_points, k, n, bits, block_size)
    y = r.op("MatMul", [arg(node, 0), r.constant(weights)])
    if arg(node, 5):
        r.op("Add", [y, arg(node, 5)], output=node.outputs[0])
    else:
        r.op("Identity", [y], output=node.outputs[0])


# ---------------------------------------------------------------------------------------- ONNX function bodies


def _function_body(graph: Graph, node: Node) -> onnx.FunctionProto:
    schema = defs.get_schema(node.op_type, graph.opset)
    if schema.has_context_dependent_function:  # type: ignore[attr-defined]  # not in onnx's stubs
        proto = helper.make_node(node.op_type, node.inputs, node.outputs,
                                 **{k: v for k, v in node.attrs.items()})
        types = [helper.make_tensor_type_proto(helper.np_dtype_to_tensor_dtype(_info(graph, name).dtype),
                                               list(_info(graph, name).shape)).SerializeToString()
                 if name else onnx.TypeProto().SerializeToString() for name in node.inputs]
        body = onnx.FunctionProto()
        body.ParseFromString(schema.get_context_dependent_function(  # type: ignore[attr-defined]
            proto.SerializeToString(), types))
        return body
    if schema.has_function:  # type: ignore[attr-defined]
        return schema.function_body
    raise ContribError(f"ONNX defines no function body for {node.op_type} at opset {graph.opset}")


def expand_function(graph: Graph, node: Node) -> list[Node]:
    """The nodes of the op's ONNX function body for this node: its formal inputs and outputs renamed to the node's,
    its own values prefixed with the node's name, attributes that refer to the node's taken from it (or from the
    schema's defaults)."""
    body = _function_body(graph, node)
    schema = defs.get_schema(node.op_type, graph.opset)
    defaults = {name: a.default_value for name, a in schema.attributes.items() if a.default_value.type}
    names = dict(zip(body.input, node.inputs + [""] * (len(body.input) - len(node.inputs)), strict=True))
    names |= dict(zip(body.output, node.outputs + [""] * (len(body.output) - len(node.outputs)), strict=True))

    def renamed(name: str) -> str:
        return name if not name else names.setdefault(name, f"{node.name}/{name}")

    nodes = []
    for index, inner in enumerate(body.node):
        attrs = {}
        for a in inner.attribute:
            if a.ref_attr_name:
                if a.ref_attr_name in node.attrs:
                    attrs[a.name] = node.attrs[a.ref_attr_name]
                elif a.ref_attr_name in defaults:
                    attrs[a.name] = attr_value(defaults[a.ref_attr_name])
            else:
                attrs[a.name] = attr_value(a)
        nodes.append(Node(inner.op_type, f"{node.name}/{inner.op_type}_{index}", [renamed(i) for i in inner.input],
                          [renamed(o) for o in inner.output], attrs, inner.domain if inner.domain != "ai.onnx" else "",
                          guards=node.guards))
    return nodes


# ---------------------------------------------------------------------------------------- the pass


_REWRITES: dict[str, Callable[[Rewrite, Node], None]] = {
    "Gelu": _contrib_gelu,
    "FastGelu": _fast_gelu,
    "BiasGelu": _bias_gelu,
    "QuickGelu": _quick_gelu,
    "BiasAdd": _bias_add,
    "BiasSoftmax": _bias_softmax,
    "FusedMatMul": _fused_matmul,
    "FusedConv": _fused_conv,
    "FusedGemm": _fused_gemm,
    "SkipLayerNormalization": _skip_layer_norm,
    "SimplifiedLayerNormalization": _simplified_layer_norm,
    "SkipSimplifiedLayerNormalization": _skip_simplified_layer_norm,
    "Attention": _attention,
    "MultiHeadAttention": _multi_head_attention,
    "RotaryEmbedding": _rotary,
    "GroupQueryAttention": _group_query_attention,
    "EmbedLayerNormalization": _embed_layer_norm,
    "MatMulNBits": _matmul_nbits,
}


def _unique(graph: Graph, node: Node) -> Node:
    """The node under a name no value of the graph starts with: the values a rewrite adds are named under its
    node's, and two nodes of one name (a model may give it twice) must not share them."""
    name, count = node.name, 0
    while any(value.startswith(f"{name}/") for value in graph.tensors):
        count += 1
        name = f"{node.name}~{count}"
    return node if name == node.name else dataclasses.replace(node, name=name)


def _rewrite(graph: Graph, node: Node) -> list[Node] | None:
    """The nodes that replace `node`, or None where it is none of these ops."""
    default = node.domain in ("", "ai.onnx")
    if default and node.op_type in FUNCTION_OPS:
        return expand_function(graph, _unique(graph, node))
    # ONNX Runtime registers SimplifiedLayerNormalization in the default domain
    contrib = node.domain == MS or (default and node.op_type == "SimplifiedLayerNormalization")
    rewrite = _REWRITES.get(node.op_type) if contrib else None
    if rewrite is None:
        return None
    if node.op_type == "MatMulNBits" and not int4_problems(node, graph):  # its kernel runs the packed weights
        if node.outputs[0] in graph.tensors:
            return None
        a = _info(graph, node.inputs[0])
        graph.tensors[node.outputs[0]] = TensorInfo(node.outputs[0], a.dtype, (*a.shape[:-1], int(node.attr("N"))))
        return [node]  # typed now (ONNX's inference does not know it): what follows it can be
    node = _unique(graph, node)
    r = Rewrite(graph, node)
    rewrite(r, node)
    return r.nodes


def decompose_contrib(graph: Graph) -> int:
    """Rewrite every contrib op and ONNX composite op into standard ops (module docstring); returns how many. One
    that cannot be rewritten stays, with its reason in `Node.declined`."""
    rewritten = 0
    waiting: dict[str, str] = {}  # node name → the type it waits for
    for _ in range(ROUNDS):
        kept: list[Node] = []
        done = 0
        waiting.clear()
        for node in graph.nodes:
            if node.declined:
                kept.append(node)
                continue
            constants = set(graph.constants)
            try:
                nodes = _rewrite(graph, node)
            except (ContribError, defs.SchemaError) as exc:
                for name in set(graph.constants) - constants:  # what the abandoned rewrite added
                    del graph.constants[name]
                    graph.tensors.pop(name, None)
                if isinstance(exc, _Untyped):
                    waiting[node.name] = str(exc)
                else:
                    node.declined = str(exc)
                nodes = None
            if nodes is None:
                kept.append(node)
            else:
                kept.extend(nodes)
                done += 1
        graph.nodes = kept
        if not done:
            break
        rewritten += done
        infer_types(graph)
    for node in graph.nodes:  # still waiting once nothing changes: the reason is the unknown type
        if node.name in waiting and not node.declined:
            node.declined = waiting[node.name]
    return rewritten
