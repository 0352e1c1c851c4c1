"""Activation math on one v128 of float32: the unary ops' kernels and the fused-activation epilogue.

`apply_v128` transforms the v128 on top of the stack in place. Conv, Gemm, MatMul, Add and the
normalisations call `epilogue` on each result vector, so an activation that passes/fuse.py folded
into its producer (`Node.activation`) costs no separate pass over memory; the recurrent kernels
apply their gate functions with it. In the relaxed code variant (`Ctx.relaxed_simd`) the rational
sigmoid and tanh take one FMA per Horner step (mathfn.py `odd_rational`). It lives apart from
unary.py and binary.py so that every kernel can use it without importing another kernel module.
"""

from __future__ import annotations

import math
from typing import Any

from wasinfer.backends.wasm.context import Ctx
from wasinfer.backends.wasm.mathfn import (
    acos_v128,
    acosh_v128,
    asin_v128,
    asinh_v128,
    atan_v128,
    atanh_v128,
    exp_v128,
    sigmoid_v128,
    sin_cos_v128,
    sinh_cosh_v128,
    tan_v128,
    tanh_v128,
)
from wasinfer.backends.wasm.writer import V128
from wasinfer.ir import Node


def apply_v128(ctx: Ctx, op: str, params: dict[str, Any]) -> None:
    f = ctx.f
    v = f.local(V128)
    f.set(v)
    if op == "Relu":
        f.get(v).f32x4_const(0.0).op("f32x4.pmax")
    elif op == "LeakyRelu":
        f.get(v).get(v).f32x4_const(params["alpha"]).op("f32x4.mul")
        f.get(v).f32x4_const(0.0).op("f32x4.gt").op("v128.bitselect")
    elif op == "Sigmoid":
        sigmoid_v128(f, v, ctx.relaxed_simd)
    elif op == "Swish":  # x * sigmoid(alpha * x): the sigmoid works on a copy, x stays for the product
        t = f.local(V128)
        f.get(v).get(v)
        if params["alpha"] != 1.0:
            f.f32x4_const(params["alpha"]).op("f32x4.mul")
        f.set(t)
        sigmoid_v128(f, t, ctx.relaxed_simd, at_most_one=False)  # 1 + 1 ulp at most: x's product stays in 2 ulp
        f.op("f32x4.mul")
    elif op == "Tanh":
        tanh_v128(f, v, ctx.relaxed_simd)
    elif op == "Erf":
        f.get(v).call(ctx.helper("erf4"))
    elif op == "Gelu":  # x/2 * (1 + erf(x/sqrt 2)), or with tanh(sqrt(2/pi) * (x + 0.044715 x^3))
        f.get(v).f32x4_const(0.5).op("f32x4.mul").f32x4_const(1.0)
        if params["tanh"]:
            t = f.local(V128)
            f.get(v).get(v).op("f32x4.mul").get(v).op("f32x4.mul").f32x4_const(0.044715).op("f32x4.mul")
            f.get(v).op("f32x4.add").f32x4_const(math.sqrt(2.0 / math.pi)).op("f32x4.mul").set(t)
            tanh_v128(f, t, ctx.relaxed_simd)
        else:
            f.get(v).f32x4_const(math.sqrt(0.5)).op("f32x4.mul").call(ctx.helper("erf4"))
        f.op("f32x4.add").op("f32x4.mul")
    elif op == "Clip":
        f.get(v).f32x4_const(params["min"]).op("f32x4.pmax").f32x4_const(params["max"]).op("f32x4.pmin")
    elif op == "Abs":
        f.get(v).op("f32x4.abs")
    elif op == "Neg":
        f.get(v).op("f32x4.neg")
    elif op == "Sqrt":
        f.get(v).op("f32x4.sqrt")
    elif op == "Floor":
        f.get(v).op("f32x4.floor")
    elif op == "Ceil":
        f.get(v).op("f32x4.ceil")
    elif op == "Reciprocal":
        f.f32x4_const(1.0).get(v).op("f32x4.div")
    elif op == "Exp":
        exp_v128(f, v)
    elif op == "Log":
        f.get(v).call(ctx.helper("log4"))
    elif op == "Round":  # ONNX rounds half to even, as f32x4.nearest does
        f.get(v).op("f32x4.nearest")
    elif op == "Softsign":  # x / (1 + |x|)
        f.get(v).f32x4_const(1.0).get(v).op("f32x4.abs").op("f32x4.add").op("f32x4.div")
    elif op in ("HardSigmoid", "HardSwish"):  # clamp(alpha * x + beta, 0, 1), times x for HardSwish
        if op == "HardSwish":
            f.get(v)
        f.get(v).f32x4_const(params["alpha"]).op("f32x4.mul").f32x4_const(params["beta"]).op("f32x4.add")
        f.f32x4_const(0.0).op("f32x4.pmax").f32x4_const(1.0).op("f32x4.pmin")
        if op == "HardSwish":
            f.op("f32x4.mul")
    elif op in ("Elu", "Selu"):  # x > 0 ? x : alpha * (exp(x) - 1), times gamma for Selu
        f.get(v).get(v).call(ctx.helper("exp4")).f32x4_const(1.0).op("f32x4.sub").f32x4_const(params["alpha"])
        f.op("f32x4.mul").get(v).f32x4_const(0.0).op("f32x4.gt").op("v128.bitselect")
        if op == "Selu":
            f.f32x4_const(params["gamma"]).op("f32x4.mul")
    elif op == "Softplus":  # log(1 + exp(x)) = max(x, 0) + log(1 + exp(-|x|)): no overflow for large x
        f.get(v).f32x4_const(0.0).op("f32x4.pmax")
        f.f32x4_const(1.0).get(v).op("f32x4.abs").op("f32x4.neg").call(ctx.helper("exp4")).op("f32x4.add")
        f.call(ctx.helper("log4")).op("f32x4.add")
    elif op in ("Sin", "Cos"):
        sin_cos_v128(f, v, cos=op == "Cos")
    elif op == "Tan":
        tan_v128(f, v)
    elif op == "Atan":
        atan_v128(f, v)
    elif op == "Asin":
        asin_v128(f, v)
    elif op == "Acos":
        acos_v128(f, v)
    elif op in ("Sinh", "Cosh"):
        sinh_cosh_v128(f, v, ctx.helper("exp4"), cosh=op == "Cosh")
    elif op == "Asinh":
        asinh_v128(f, v, ctx.helper("log4"))
    elif op == "Acosh":
        acosh_v128(f, v, ctx.helper("log4"))
    elif op == "Atanh":
        atanh_v128(f, v, ctx.helper("log4"))
    elif op == "Sign":  # 1 or -1, 0 for ±0 and NaN for NaN (as ONNX Runtime): three masks or-ed together
        f.get(v).f32x4_const(0.0).op("f32x4.gt").f32x4_const(1.0).op("v128.and")
        f.get(v).f32x4_const(0.0).op("f32x4.lt").f32x4_const(-1.0).op("v128.and").op("v128.or")
        f.get(v).get(v).op("f32x4.ne").f32x4_const(float("nan")).op("v128.and").op("v128.or")
    else:  # pragma: no cover - guarded by the registry
        raise KeyError(op)


def epilogue(ctx: Ctx, node: Node) -> None:
    """Apply the node's fused activation (if any) to the v128 on the stack."""
    if node.activation is not None:
        apply_v128(ctx, node.activation.op_type, node.activation.params)


def epilogue_scalar(ctx: Ctx, node: Node) -> None:
    """Same as `epilogue` for one f32 on the stack."""
    if node.activation is not None:
        ctx.f.op("f32x4.splat")
        epilogue(ctx, node)
        ctx.f.lane("f32x4.extract_lane", 0)


__all__ = ["apply_v128", "epilogue", "epilogue_scalar"]
