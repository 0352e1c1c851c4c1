"""Ops that work element by element (numpy broadcasting): math, activations, comparisons, logic,
casts and per-element quantisation. The batch keeps its axis through all of them."""

from __future__ import annotations

import numpy as np

from wasinfer.ir import Graph, Node
from wasinfer.ops import extent as ex
from wasinfer.ops.batch import elementwise
from wasinfer.ops.definition import ActivationParams, Fusion, define


def _alpha(default: float) -> ActivationParams:
    def params(node: Node, graph: Graph) -> dict[str, float]:
        return {"alpha": float(node.attr("alpha", default))}
    return params


def _hard_sigmoid(node: Node, graph: Graph) -> dict[str, float]:
    return {"alpha": float(node.attr("alpha", 0.2)), "beta": float(node.attr("beta", 0.5))}


def _hard_swish(node: Node, graph: Graph) -> dict[str, float]:
    return {"alpha": 1.0 / 6.0, "beta": 0.5}  # HardSigmoid with alpha 1/6, beta 0.5


def _selu(node: Node, graph: Graph) -> dict[str, float]:
    return {"alpha": float(node.attr("alpha", 1.67326319217681884765625)),
            "gamma": float(node.attr("gamma", 1.05070102214813232421875))}


def _gelu(node: Node, graph: Graph) -> dict[str, float] | None:
    approximate = node.attr("approximate", "none")  # an unknown one is left for the kernel's check to refuse
    return {"tanh": float(approximate == "tanh")} if approximate in ("none", "tanh") else None


def _clip(node: Node, graph: Graph) -> dict[str, float] | None:
    """min/max from attributes (before opset 11) or constant inputs; None when computed at run time."""
    lo, hi = node.attr("min", -np.inf), node.attr("max", np.inf)
    for index, key in ((1, "lo"), (2, "hi")):
        if len(node.inputs) > index and node.inputs[index]:
            if node.inputs[index] not in graph.constants:
                return None
            value = float(graph.constants[node.inputs[index]])
            lo, hi = (value, hi) if key == "lo" else (lo, value)
    return {"min": float(lo), "max": float(hi)}


# activations a producing kernel may apply in its epilogue
for op in ("Relu", "Sigmoid", "Tanh", "Erf"):
    define(op, fusion=Fusion.ACTIVATION, batch=elementwise, extent=ex.same)
define("LeakyRelu", fusion=Fusion.ACTIVATION, activation=_alpha(0.01), batch=elementwise, extent=ex.same)
define("Clip", fusion=Fusion.ACTIVATION, activation=_clip, batch=elementwise, extent=ex.broadcast)
define("Gelu", fusion=Fusion.ACTIVATION, activation=_gelu, batch=elementwise, extent=ex.same)

# other activations and unary math
define("HardSigmoid", activation=_hard_sigmoid, batch=elementwise, extent=ex.same)
define("HardSwish", activation=_hard_swish, batch=elementwise, extent=ex.same)
define("Elu", activation=_alpha(1.0), batch=elementwise, extent=ex.same)
# x * sigmoid(alpha * x) (opset 24); passes/fuse.py also makes one of each Sigmoid whose only consumer
# multiplies its input by it (SiLU, as YOLO-style models write it), so SiLU is one pass over memory
define("Swish", activation=_alpha(1.0), batch=elementwise, extent=ex.same,
       summary="x * sigmoid(alpha * x); also a Sigmoid and the Mul of its input by it (SiLU, passes/fuse.py)")
define("Selu", activation=_selu, batch=elementwise, extent=ex.same)
for op in ("Abs", "Neg", "Sqrt", "Floor", "Ceil", "Reciprocal", "Exp", "Log", "Round", "Softsign", "Softplus",
           "Sign", "IsNaN", "IsInf", "Sin", "Cos", "Tan", "Atan", "Asin", "Acos", "Sinh", "Cosh", "Asinh", "Acosh",
           "Atanh", "Mish", "ThresholdedRelu", "Celu"):
    define(op, batch=elementwise, extent=ex.same)

# arithmetic with broadcasting; Add and Sum may apply a fused activation
for op in ("Add", "Sum"):
    define(op, fusion=Fusion.PRODUCER, batch=elementwise, extent=ex.broadcast)
for op in ("Sub", "Mul", "Div", "Pow", "Mod", "Max", "Min", "Mean", "PRelu", "BitShift"):
    define(op, batch=elementwise, extent=ex.broadcast)

# comparisons, logic, selection
for op in ("Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "And", "Or", "Xor", "Not", "Where",
           "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot"):
    define(op, batch=elementwise, extent=ex.broadcast)

# types, per-element quantisation, and Expand (broadcasting to a larger shape)
define("Cast", batch=elementwise, extent=ex.identity)
for op in ("CastLike", "QuantizeLinear", "DequantizeLinear"):
    define(op, batch=elementwise, extent=ex.same)
define("Expand", batch=elementwise, extent=ex.from_values)
