"""Graph rewrites that remove work: BatchNormalization folded into the producing Conv or
Gemm, and activations fused into the kernel that produces their input."""

from __future__ import annotations

import numpy as np

from wasinfer.ir import Activation, Graph, Node

# Activations a producing kernel can apply in its epilogue, with their parameters.
FUSABLE_ACTIVATIONS = {"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "Gelu", "Erf"}
FUSING_PRODUCERS = {"Conv", "Gemm", "MatMul", "BatchNormalization", "Add", "Sum"}


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


def fuse_activations(graph: Graph) -> int:
    fused = 0
    for act in [n for n in graph.nodes if n.op_type in FUSABLE_ACTIVATIONS]:
        producer = graph.producer(act.inputs[0])
        if producer is None or producer.op_type not in FUSING_PRODUCERS or producer.activation is not None:
            continue
        if _sole_consumer(graph, act.inputs[0]) is not act or len(producer.outputs) != 1:
            continue
        params = activation_params(graph, act)
        if params is None:
            continue
        producer.activation = Activation(act.op_type, params)
        producer.outputs = [act.outputs[0]]
        graph.nodes.remove(act)
        fused += 1
    return fused


def activation_params(graph: Graph, node: Node) -> dict[str, float] | None:
    """The scalar parameters of an activation, or None when they are not compile-time constants
    or the input is not float32 (integer Clip runs as its own kernel, never fused)."""
    info = graph.tensors.get(node.inputs[0])
    if info is not None and info.dtype != np.float32:
        return None
    if node.op_type == "LeakyRelu":
        return {"alpha": float(node.attr("alpha", 0.01))}
    if node.op_type == "HardSigmoid":
        return {"alpha": float(node.attr("alpha", 0.2)), "beta": float(node.attr("beta", 0.5))}
    if node.op_type == "HardSwish":  # HardSigmoid with alpha 1/6, beta 0.5
        return {"alpha": 1.0 / 6.0, "beta": 0.5}
    if node.op_type == "Elu":
        return {"alpha": float(node.attr("alpha", 1.0))}
    if node.op_type == "Selu":
        return {"alpha": float(node.attr("alpha", 1.67326319217681884765625)),
                "gamma": float(node.attr("gamma", 1.05070102214813232421875))}
    if node.op_type == "Gelu":  # an unknown approximation is left for the kernel's check to refuse
        approximate = node.attr("approximate", "none")
        return {"tanh": float(approximate == "tanh")} if approximate in ("none", "tanh") else None
    if node.op_type == "Clip":
        lo, hi = node.attr("min", -np.inf), node.attr("max", np.inf)
        for index, key in ((1, "lo"), (2, "hi")):
            if len(node.inputs) > index and node.inputs[index]:
                if node.inputs[index] not in graph.constants:
                    return None
                value = float(graph.constants[node.inputs[index]])
                lo, hi = (value, hi) if key == "lo" else (lo, value)
        return {"min": float(lo), "max": float(hi)}
    return {}
