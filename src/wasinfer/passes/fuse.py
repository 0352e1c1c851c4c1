"""Graph rewrites that remove work: BatchNormalization folded into the producing Conv or
Gemm, SiLU written as Sigmoid + Mul made one Swish, and activations fused into the kernel that
produces their input."""

from __future__ import annotations

import numpy as np

from wasinfer.ir import Activation, Graph, Node
from wasinfer.ops import Fusion, activation_params, with_fusion

# The ops' fusion roles (ops/): activations a producing kernel can apply in its epilogue, and those producers.
FUSABLE_ACTIVATIONS = with_fusion(Fusion.ACTIVATION)
FUSING_PRODUCERS = with_fusion(Fusion.PRODUCER)


def _sole_consumer(graph: Graph, name: str) -> Node | None:
    if name in graph.outputs:
        return None
    consumers = graph.consumers(name)
    return consumers[0] if len(consumers) == 1 else None


def _bn_scale_shift(graph: Graph, bn: Node) -> tuple[np.ndarray, np.ndarray] | None:
    if len(bn.outputs) > 1 and any(bn.outputs[1:]):
        return None  # training-mode outputs requested
    params = bn.inputs[1:5]
    if not all(p in graph.constants for p in params):
        return None
    scale, bias, mean, var = (graph.constants[p].astype(np.float64) for p in params)
    eps = float(bn.attr("epsilon", 1e-5))
    s = scale / np.sqrt(var + eps)
    return s, bias - mean * s


def fold_batchnorm(graph: Graph) -> int:
    folded = 0
    for bn in [n for n in graph.nodes if n.op_type == "BatchNormalization"]:
        producer = graph.producer(bn.inputs[0])
        if producer is None or producer.op_type != "Conv" or _sole_consumer(graph, bn.inputs[0]) is not bn:
            continue
        affine = _bn_scale_shift(graph, bn)
        weight_name = producer.inputs[1]
        if affine is None or weight_name not in graph.constants:
            continue
        if len(producer.inputs) > 2 and producer.inputs[2] and producer.inputs[2] not in graph.constants:
            continue
        s, t = affine
        weight = graph.constants[weight_name].astype(np.float64)
        out_channels = weight.shape[0]
        bias = (graph.constants[producer.inputs[2]].astype(np.float64)
                if len(producer.inputs) > 2 and producer.inputs[2] else np.zeros(out_channels))
        new_w = (weight * s.reshape((-1,) + (1,) * (weight.ndim - 1))).astype(np.float32)
        new_b = (bias * s + t).astype(np.float32)
        w_name, b_name = f"{producer.name}/bn_weight", f"{producer.name}/bn_bias"
        graph.add_constant(w_name, new_w)
        graph.add_constant(b_name, new_b)
        producer.inputs = [producer.inputs[0], w_name, b_name]
        producer.outputs = [bn.outputs[0]]
        graph.nodes.remove(bn)
        folded += 1
    return folded


def fuse_silu(graph: Graph) -> int:
    """Sigmoid(x) whose only consumer is Mul(x, sigmoid) (either order) → one Swish(x) (alpha 1).

    Exporters write SiLU (YOLO's and EfficientNet's activation) this way; as two kernels it is two
    passes over memory and a buffer for the sigmoid, as one it is a single elementwise pass. The
    Swish takes the Mul's place and name, so its output keeps its consumers."""
    fused = 0
    for sigmoid in [n for n in graph.nodes if n.op_type == "Sigmoid" and not n.domain]:
        x, s = sigmoid.inputs[0], sigmoid.outputs[0]
        mul = _sole_consumer(graph, s)
        if mul is None or mul.op_type != "Mul" or mul.domain or sorted(mul.inputs) != sorted([x, s]):
            continue
        if mul.guards != sigmoid.guards or activation_params(sigmoid, graph) is None:
            continue
        index = graph.nodes.index(mul)
        graph.nodes[index] = Node("Swish", mul.name, [x], list(mul.outputs), {"alpha": 1.0}, guards=mul.guards)
        graph.nodes.remove(sigmoid)
        fused += 1
    return fused


def fuse_activations(graph: Graph) -> int:
    """SiLU first (`fuse_silu`), then each activation into its producer's epilogue where it is the
    producer's only consumer; returns how many nodes went."""
    fused = fuse_silu(graph)
    for act in [n for n in graph.nodes if n.op_type in FUSABLE_ACTIVATIONS]:
        producer = graph.producer(act.inputs[0])
        if producer is None or producer.op_type not in FUSING_PRODUCERS or producer.activation is not None:
            continue
        if _sole_consumer(graph, act.inputs[0]) is not act or len(producer.outputs) != 1:
            continue
        params = activation_params(act, graph)
        if params is None:
            continue
        producer.activation = Activation(act.op_type, params)
        producer.outputs = [act.outputs[0]]
        graph.nodes.remove(act)
        fused += 1
    return fused
