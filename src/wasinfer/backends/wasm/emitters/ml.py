"""ai.onnx.ml kernels: what scikit-learn models become through skl2onnx.

ONNX Runtime's CPU kernels are the parity reference, so their corner cases are kept on
purpose: one binary score s becomes [1 - p, p] with p = logistic(s) only under LOGISTIC;
a score counts (and gets its base value) only when some leaf reached scored it; a single
regression target ignores every transform but PROBIT, and a leaf without weights gives
its own node value. Where ONNX Runtime leaves part of an output unwritten (PROBIT on
binary classifiers, one base value with an unscored class 1) the checks refuse the model.
LinearClassifier's multi_class attribute has no effect in ONNX Runtime, nor here.

Tree ensembles are data, not code: every node is one 16-byte record in a data segment
and one Wasm loop walks all trees, so a forest of thousands of trees compiles to the same
few hundred bytes of code. A walk is a chain of dependent loads (the node, its feature, the
next node), so the loop walks WALKS trees at once, each step advancing all of them without a
branch: a leaf's children are itself, so a walk that has arrived stays put while the others go
on, and the loop ends at the first step where every walk stood on a leaf. The core overlaps the
independent chains where a single walk would wait on each load in turn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from wasinfer.backends.wasm.context import UNSUPPORTED_HINTS, Ctx, kernel
from wasinfer.backends.wasm.emitters.binary import emit_broadcast
from wasinfer.backends.wasm.emitters.gemm import Operand, emit_gemm
from wasinfer.backends.wasm.emitters.unary import map_f32
from wasinfer.backends.wasm.writer import F32, I32, I64, V128, Func
from wasinfer.ir import Graph, Node
from wasinfer.lowering.ml import (
    feature_rows,
    float_scratch,
    linear_classifier_scratch,
    tree_ensemble_as_regressor,
    tree_ensemble_scratch,
    tree_scratch,
)

ML = "ai.onnx.ml"
UNSUPPORTED_HINTS[(ML, "ZipMap")] = (
    "its output is a sequence of maps, which a module cannot return: export the probabilities as a tensor "
    "with options={'zipmap': False} (skl2onnx's convert_sklearn; onnxmltools' convert_lightgbm takes "
    "zipmap=False)")

TRANSFORMS = ("NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO", "PROBIT")
F32_LOWEST = float(np.finfo(np.float32).min)
# ONNX Runtime's ErfInv constants, rounded the way its float arithmetic rounds them.
ERFINV_A = float(np.float32(2) / (np.float32(np.pi) * np.float32(0.147)))
ERFINV_B = float(np.float32(1) / np.float32(0.147))
SQRT2 = float(np.float32(np.sqrt(2)))

LOADS: dict[np.dtype, tuple[str, str | None]] = {
    np.dtype(np.float32): ("f32.load", None), np.dtype(np.float64): ("f64.load", "f32.demote_f64"),
    np.dtype(np.int32): ("i32.load", "f32.convert_i32_s"), np.dtype(np.int64): ("i64.load", "f32.convert_i64_s")}


# ---------------------------------------------------------------- shared pieces

def _dtype(graph: Graph, name: str) -> np.dtype:
    return np.dtype(graph.info(name).dtype)


def check_input(node: Node, graph: Graph, dtypes: tuple[type, ...], max_rank: int = 2) -> list[str]:
    info = graph.info(node.inputs[0])
    problems = []
    if np.dtype(info.dtype) not in [np.dtype(d) for d in dtypes]:
        problems.append(f"input dtype {info.dtype} is not supported (expected one of "
                        f"{', '.join(np.dtype(d).name for d in dtypes)})")
    if not 1 <= len(info.shape) <= max_rank:
        problems.append(f"input rank {len(info.shape)} is not supported (1 to {max_rank})")
    return problems


def check_transform(node: Node) -> list[str]:
    kind = node.attr("post_transform", "NONE")
    return [] if kind in TRANSFORMS else [f"post_transform {kind!r} is not one of {', '.join(TRANSFORMS)}"]


def check_output(graph: Graph, name: str, size: int, dtype: type) -> list[str]:
    if not name:
        return []
    info = graph.info(name)
    problems = []
    if info.size != size:
        problems.append(f"output {name!r} has shape {info.shape}, expected {size} elements")
    if np.dtype(info.dtype) != np.dtype(dtype):
        problems.append(f"output {name!r} has dtype {info.dtype}, expected {np.dtype(dtype).name}")
    return problems


def float_input(ctx: Ctx, node: Node) -> int:
    """Address of input 0 as float32: in place, or converted into the start of the scratch."""
    name = node.inputs[0]
    dtype = _dtype(ctx.graph, name)
    if dtype == np.float32:
        return ctx.addr(name)
    f = ctx.f
    i = f.local(I32)
    load, convert = LOADS[dtype]
    with f.for_range(i, 0, ctx.info(name).size):
        f.addr(ctx.scratch_addr, i, 4).addr(ctx.addr(name), i, dtype.itemsize).mem(load)
        if convert:
            f.op(convert)
        f.mem("f32.store")
    return ctx.scratch_addr


def _exp(ctx: Ctx) -> None:
    """f32 on the stack → exp of it, through the f32x4 helper on lane 0."""
    ctx.f.op("f32x4.splat").call(ctx.helper("exp4")).lane("f32x4.extract_lane", 0)


def _log(ctx: Ctx) -> None:
    ctx.f.op("f32x4.splat").call(ctx.helper("log4")).lane("f32x4.extract_lane", 0)


def logistic(ctx: Ctx) -> None:
    """f32 → 1 / (1 + exp(-|x|)), mirrored for x < 0 (ONNX Runtime's ComputeLogistic)."""
    f = ctx.f
    x, v = f.local(F32), f.local(F32)
    f.set(x)
    f.f32(1.0).f32(1.0).get(x).op("f32.abs").op("f32.neg")
    _exp(ctx)
    f.op("f32.add").op("f32.div").set(v)
    f.f32(1.0).get(v).op("f32.sub").get(v).get(x).f32(0.0).op("f32.lt").op("select")


def _probit(ctx: Ctx) -> None:
    """f32 → sqrt(2) * erfinv(2x - 1), with ONNX Runtime's closed-form erfinv approximation."""
    f = ctx.f
    y, lg, v = f.local(F32), f.local(F32), f.local(F32)
    f.f32(2.0).op("f32.mul").f32(1.0).op("f32.sub").set(y)
    f.f32(1.0).get(y).op("f32.sub").f32(1.0).get(y).op("f32.add").op("f32.mul")
    _log(ctx)
    f.set(lg)
    f.f32(ERFINV_A).f32(0.5).get(lg).op("f32.mul").op("f32.add").set(v)
    # sgn * sqrt(-v + sqrt(v*v - b*lg)) * sqrt2
    f.get(v).op("f32.neg").get(v).get(v).op("f32.mul").f32(ERFINV_B).get(lg).op("f32.mul").op("f32.sub")
    f.op("f32.sqrt").op("f32.add").op("f32.sqrt")
    f.f32(-1.0).f32(1.0).get(y).f32(0.0).op("f32.lt").op("select").op("f32.mul")
    f.f32(SQRT2).op("f32.mul")


def _for_each(f: Func, row: int, count: int, body: Callable[[int], None]) -> None:
    """body(ptr) for the address of each f32 of the row whose address is in local `row`."""
    i, ptr = f.local(I32), f.local(I32)
    with f.for_range(i, 0, count):
        f.get(row).get(i).i32(4).op("i32.mul").op("i32.add").set(ptr)
        body(ptr)


def _map_row(ctx: Ctx, row: int, count: int, scalar: Callable[[Ctx], None]) -> None:
    f = ctx.f

    def body(ptr: int) -> None:
        f.get(ptr).get(ptr).mem("f32.load")
        scalar(ctx)
        f.mem("f32.store")

    _for_each(f, row, count, body)


def _softmax_row(ctx: Ctx, row: int, count: int, skip_zeros: bool) -> None:
    """ONNX Runtime's ComputeSoftmax / ComputeSoftmaxZero (which leaves |x| <= 1e-7 near zero)."""
    f = ctx.f
    top, total, scale = f.local(F32), f.local(F32), f.local(F32)
    f.f32(F32_LOWEST).set(top)

    def find_max(ptr: int) -> None:
        f.get(ptr).mem("f32.load").get(top).op("f32.gt")
        with f.if_():
            f.get(ptr).mem("f32.load").set(top)

    def exponentiate(ptr: int) -> None:
        value = f.local(F32)
        f.get(ptr).mem("f32.load").set(value)
        if not skip_zeros:
            f.i32(1)
        else:
            f.get(value).f32(1e-7).op("f32.gt").get(value).f32(-1e-7).op("f32.lt").op("i32.or")
        with f.if_():
            f.get(ptr).get(value).get(top).op("f32.sub")
            _exp(ctx)
            f.mem("f32.store")
            f.get(total).get(ptr).mem("f32.load").op("f32.add").set(total)
            if skip_zeros:
                f.else_()
                f.get(ptr).get(value).get(scale).op("f32.mul").mem("f32.store")

    def divide(ptr: int) -> None:
        f.get(ptr).get(ptr).mem("f32.load").get(total).op("f32.div").mem("f32.store")

    _for_each(f, row, count, find_max)
    f.f32(0.0).set(total)
    if skip_zeros:
        f.get(top).op("f32.neg")
        _exp(ctx)
        f.set(scale)
    _for_each(f, row, count, exponentiate)
    _for_each(f, row, count, divide)


def transform_row(ctx: Ctx, kind: str, row: int, count: int) -> None:
    """Apply a post_transform in place to `count` scores at the address in local `row`."""
    if kind == "LOGISTIC":
        _map_row(ctx, row, count, logistic)
    elif kind == "PROBIT":
        _map_row(ctx, row, count, _probit)
    elif kind in ("SOFTMAX", "SOFTMAX_ZERO"):
        _softmax_row(ctx, row, count, kind == "SOFTMAX_ZERO")


def _row_pointer(f: Func, base: int, row: int, row_bytes: int) -> int:
    ptr = f.local(I32)
    f.get(row).i32(row_bytes).op("i32.mul").i32(base).op("i32.add").set(ptr)
    return ptr


def _argmax_label(ctx: Ctx, scores: int, count: int, labels: int, has: int | None = None) -> None:
    """Push the i64 label of the first strictly largest score (only scored ones when `has`)."""
    f = ctx.f
    best, k = f.local(I32), f.local(I32)
    top = f.local(F32)
    f.i32(-1).set(best).f32(0.0).set(top)
    with f.for_range(k, 0, count):
        f.get(best).i32(0).op("i32.lt_s").get(k).i32(4).op("i32.mul").get(scores).op("i32.add")
        f.mem("f32.load").get(top).op("f32.gt").op("i32.or")
        if has is not None:
            f.get(k).i32(4).op("i32.mul").get(has).op("i32.add").mem("i32.load").op("i32.and")
        with f.if_():
            f.get(k).set(best)
            f.get(k).i32(4).op("i32.mul").get(scores).op("i32.add").mem("f32.load").set(top)
    # no class scored at all: ONNX Runtime reads out of bounds; the first label is as good as any
    f.get(best).i32(0).get(best).i32(0).op("i32.ge_s").op("select").i32(8).op("i32.mul")
    f.mem("i64.load", offset=labels)


# ---------------------------------------------------------------- linear models

ROW_DOT_OUTPUTS = 16  # up to this many classes (targets), a linear model's scores are dot products per row


def _hsum(f: Func, acc: int) -> None:
    """Push the f32 sum of a v128's four lanes, as (l0 + l1) + (l2 + l3)."""
    f.get(acc).lane("f32x4.extract_lane", 0).get(acc).lane("f32x4.extract_lane", 1).op("f32.add")
    f.get(acc).lane("f32x4.extract_lane", 2).get(acc).lane("f32x4.extract_lane", 3).op("f32.add").op("f32.add")


def _row_dots(ctx: Ctx, x: int, n: int, features: int, weights: np.ndarray, bias: np.ndarray | None,
                  out: int) -> None:
    """out[row, c] = x[row] . weights[c] (+ bias[c]) for a few outputs c: each row's features four at a time,
    every output's f32x4 accumulator beside the others, so one load of x serves them all. A GEMM tiles along
    the outputs, which one to three classes leave mostly empty (2.5x ONNX Runtime's time on 1000 rows of a
    binary LinearSVC); here a row costs features / 4 loads and multiply-adds per output. The last
    features % 4 are added one at a time (a vector there would read the next row, or past the input)."""
    f = ctx.f
    outputs = weights.shape[0]
    chunks = features // 4
    table = ctx.data(np.ascontiguousarray(  # [chunk][output][4]: one chunk's weights for every output together
        weights[:, :chunks * 4].reshape(outputs, chunks, 4).transpose(1, 0, 2).astype(np.float32)))
    row, xp, wp, dst, j = (f.local(I32) for _ in range(5))
    acc = [f.local(V128) for _ in range(outputs)]
    xv = f.local(V128)
    with f.for_range(row, 0, n):
        f.get(row).i32(features * 4).op("i32.mul").i32(x).op("i32.add").set(xp)
        f.get(row).i32(outputs * 4).op("i32.mul").i32(out).op("i32.add").set(dst)
        for a in acc:
            f.f32x4_const(0.0).set(a)
        if chunks:
            f.i32(table).set(wp)
            with f.for_range(j, 0, chunks):
                f.get(xp).mem("v128.load").set(xv)
                for c, a in enumerate(acc):
                    f.get(a).get(xv).get(wp).mem("v128.load", offset=16 * c).op("f32x4.mul").op("f32x4.add").set(a)
                f.inc(xp, 16)
                f.inc(wp, 16 * outputs)
        for c, a in enumerate(acc):  # xp is at the row's first leftover feature
            f.get(dst)
            _hsum(f, a)
            for t in range(features - chunks * 4):
                f.get(xp).mem("f32.load", offset=4 * t).f32(float(weights[c, chunks * 4 + t])).op("f32.mul")
                f.op("f32.add")
            if bias is not None:
                f.f32(float(bias[c])).op("f32.add")
            f.mem("f32.store", offset=4 * c)


def linear_products(ctx: Ctx, n: int, features: int, x: int, weights: np.ndarray, bias: np.ndarray | None,
                     out: int) -> None:
    """out [n, outputs] = x [n, features] weights^T + bias: per-row dot products for a few outputs, the GEMM for
    more."""
    if weights.shape[0] <= ROW_DOT_OUTPUTS:
        _row_dots(ctx, x, n, features, weights, bias, out)
        return
    emit_gemm(ctx, n, weights.shape[0], features, Operand(x, features, 1), np.ascontiguousarray(weights.T),
              Operand(out, weights.shape[0], 1), Operand(ctx.data(bias), 0, 1) if bias is not None else None)


def _logistic4(ctx: Ctx) -> None:
    """v128 → logistic of each lane, as `logistic` computes one (bit for bit: the same exp4, lane by lane)."""
    f = ctx.f
    x, v = f.local(V128), f.local(V128)
    f.set(x)
    f.f32x4_const(1.0).f32x4_const(1.0).get(x).op("f32x4.abs").op("f32x4.neg").call(ctx.helper("exp4"))
    f.op("f32x4.add").op("f32x4.div").set(v)
    f.f32x4_const(1.0).get(v).op("f32x4.sub").get(v).get(x).f32x4_const(0.0).op("f32x4.lt").op("v128.bitselect")


def _softmax_rows(ctx: Ctx, scores: int, n: int, count: int) -> None:
    """ONNX Runtime's ComputeSoftmax on each of n rows of `count` scores in place: each row less its maximum,
    the exponentials of all rows at once (four lanes at a time), then each row divided by its sum."""
    f = ctx.f
    row, ptr = f.local(I32), f.local(I32)
    top, total = f.local(F32), f.local(F32)
    with f.for_range(row, 0, n):
        f.get(row).i32(count * 4).op("i32.mul").i32(scores).op("i32.add").set(ptr)
        f.get(ptr).mem("f32.load").set(top)
        for k in range(1, count):
            f.get(ptr).mem("f32.load", offset=4 * k).get(top).op("f32.max").set(top)
        for k in range(count):
            f.get(ptr).get(ptr).mem("f32.load", offset=4 * k).get(top).op("f32.sub").mem("f32.store", offset=4 * k)
    map_f32(ctx, scores, scores, n * count, lambda: f.call(ctx.helper("exp4")))
    with f.for_range(row, 0, n):
        f.get(row).i32(count * 4).op("i32.mul").i32(scores).op("i32.add").set(ptr)
        f.get(ptr).mem("f32.load").set(total)
        for k in range(1, count):
            f.get(total).get(ptr).mem("f32.load", offset=4 * k).op("f32.add").set(total)
        for k in range(count):
            f.get(ptr).get(ptr).mem("f32.load", offset=4 * k).get(total).op("f32.div").mem("f32.store", offset=4 * k)



def _check_linear_classifier(node: Node, graph: Graph) -> list[str]:
    problems = check_input(node, graph, (np.float32, np.float64, np.int32, np.int64)) + check_transform(node)
    if problems:
        return problems
    n, features = feature_rows(graph, node.inputs[0])
    classes = len(node.attr("intercepts", []))
    coefficients = node.attr("coefficients", [])
    labels = node.attr("classlabels_ints", [])
    if node.attr("classlabels_strings"):
        problems.append("string class labels (classlabels_strings) cannot be a numeric output; "
                        "train with integer labels")
    if classes == 0 or len(coefficients) != classes * features:
        problems.append(f"expected one intercept per class and {features} coefficients per class, got "
                        f"{classes} intercepts and {len(coefficients)} coefficients")
        return problems
    if classes > 1 and len(labels) != classes:
        problems.append(f"classlabels_ints has {len(labels)} labels for {classes} classes")
    second = classes == 1 and len(labels) == 2
    if second and node.attr("post_transform", "NONE") == "PROBIT":
        problems.append("PROBIT on a one-row binary classifier is not supported (ONNX Runtime leaves half "
                        "of the scores unwritten)")
    problems += check_output(graph, node.outputs[0], n, np.int64)
    if len(node.outputs) > 1:
        problems += check_output(graph, node.outputs[1], n * (2 if second else classes), np.float32)
    return problems


@kernel("LinearClassifier", domain=ML, check=_check_linear_classifier, scratch=linear_classifier_scratch)
def emit_linear_classifier(ctx: Ctx, node: Node) -> None:
    """scores = X W^T + b; the label is the best score's class (or the sign of a single score)."""
    f = ctx.f
    n, features = feature_rows(ctx.graph, node.inputs[0])
    intercepts = np.asarray(node.attr("intercepts"), dtype=np.float32)
    classes = intercepts.size
    weights = np.asarray(node.attr("coefficients"), dtype=np.float32).reshape(classes, features)
    labels = [int(v) for v in node.attr("classlabels_ints", [])]
    kind = node.attr("post_transform", "NONE")
    x = float_input(ctx, node)
    scores = ctx.scratch_addr + float_scratch(node, ctx.graph)
    linear_products(ctx, n, features, x, weights, intercepts, scores)
    label_out = node.outputs[0]
    z_out = node.outputs[1] if len(node.outputs) > 1 else ""
    second = classes == 1 and len(labels) == 2
    label_table = ctx.data(np.asarray(labels or [0], dtype=np.int64))
    # the scores of all rows transformed at once, four lanes at a time, where ONNX Runtime's layout is theirs
    whole = bool(z_out) and not second and ((kind in ("LOGISTIC", "SOFTMAX") and classes > 1) or kind == "NONE")
    row = f.local(I32)
    with f.for_range(row, 0, n):
        src = _row_pointer(f, scores, row, classes * 4)
        if label_out:
            f.get(row).i32(8).op("i32.mul").i32(ctx.addr(label_out)).op("i32.add")
            if classes == 1:
                positive, negative = (labels[1], labels[0]) if second else (1, 0)
                f.i64(positive).i64(negative).get(src).mem("f32.load").f32(0.0).op("f32.gt").op("select")
            else:
                _argmax_label(ctx, src, classes, label_table)
            f.mem("i64.store")
        if z_out and not whole:
            dst = _row_pointer(f, ctx.addr(z_out), row, classes * 4 * (2 if second else 1))
            _linear_scores(ctx, src, dst, classes, second, kind)
    if whole:
        if kind == "LOGISTIC":
            map_f32(ctx, scores, ctx.addr(z_out), n * classes, lambda: _logistic4(ctx))
            return
        if kind == "SOFTMAX":
            _softmax_rows(ctx, scores, n, classes)
        f.i32(ctx.addr(z_out)).i32(scores).i32(n * classes * 4).memory_copy()


def _complement_pair(ctx: Ctx, dst: int, score: int, kind: str) -> None:
    """One score s becomes [1 - p, p], p = logistic(s) under LOGISTIC and s itself otherwise
    (ONNX Runtime's add_second_class layout)."""
    f = ctx.f
    p = f.local(F32)
    f.get(score)
    if kind == "LOGISTIC":
        logistic(ctx)
    f.set(p)
    f.get(dst).f32(1.0).get(p).op("f32.sub").mem("f32.store").get(dst).get(p).mem("f32.store", offset=4)


def _linear_scores(ctx: Ctx, src: int, dst: int, classes: int, second: bool, kind: str) -> None:
    """One row of LinearClassifier scores, laid out and transformed as ONNX Runtime does."""
    f = ctx.f
    if second:
        score = f.local(F32)
        f.get(src).mem("f32.load").set(score)
        _complement_pair(ctx, dst, score, kind)
        return
    f.get(dst).get(src).i32(classes * 4).memory_copy()
    if classes > 1 or kind == "PROBIT":
        transform_row(ctx, kind, dst, classes)


def _check_linear_regressor(node: Node, graph: Graph) -> list[str]:
    problems = check_input(node, graph, (np.float32,)) + check_transform(node)
    if problems:
        return problems
    n, features = feature_rows(graph, node.inputs[0])
    targets = int(node.attr("targets", 1))
    if len(node.attr("coefficients", [])) != targets * features:
        problems.append(f"expected {targets * features} coefficients ({targets} targets x {features} features), "
                        f"got {len(node.attr('coefficients', []))}")
    return problems + check_output(graph, node.outputs[0], n * targets, np.float32)


@kernel("LinearRegressor", domain=ML, check=_check_linear_regressor)
def emit_linear_regressor(ctx: Ctx, node: Node) -> None:
    """Y = X W^T + b (b only when there is one intercept per target), then the transform."""
    f = ctx.f
    n, features = feature_rows(ctx.graph, node.inputs[0])
    targets = int(node.attr("targets", 1))
    weights = np.asarray(node.attr("coefficients"), dtype=np.float32).reshape(targets, features)
    intercepts = np.asarray(node.attr("intercepts", []), dtype=np.float32)
    out = ctx.addr(node.outputs[0])
    linear_products(ctx, n, features, ctx.addr(node.inputs[0]), weights,
                     intercepts if intercepts.size == targets else None, out)
    kind = node.attr("post_transform", "NONE")
    if targets == 1 and kind != "PROBIT":
        return  # a single target keeps its raw value (ONNX Runtime's binary-case rule)
    row = f.local(I32)
    with f.for_range(row, 0, n):
        transform_row(ctx, kind, _row_pointer(f, out, row, targets * 4), targets)


# ---------------------------------------------------------------- feature transforms

def _check_normalizer(node: Node, graph: Graph) -> list[str]:
    problems = check_input(node, graph, (np.float32, np.float64, np.int32, np.int64))
    if node.attr("norm", "MAX") not in ("MAX", "L1", "L2"):
        problems.append(f"norm {node.attr('norm')!r} is not one of MAX, L1, L2")
    info = graph.info(node.inputs[0])
    return problems + (check_output(graph, node.outputs[0], info.size, np.float32) if not problems else [])


@kernel("Normalizer", domain=ML, check=_check_normalizer, scratch=float_scratch)
def emit_normalizer(ctx: Ctx, node: Node) -> None:
    """Each row divided by its max, L1 or L2 norm; a row whose norm is 0 is copied."""
    f = ctx.f
    n, features = feature_rows(ctx.graph, node.inputs[0])
    norm = node.attr("norm", "MAX")
    x = float_input(ctx, node)
    out = ctx.addr(node.outputs[0])
    row, total = f.local(I32), f.local(F32)
    with f.for_range(row, 0, n):
        src, dst = _row_pointer(f, x, row, features * 4), _row_pointer(f, out, row, features * 4)
        f.f32(F32_LOWEST if norm == "MAX" else 0.0).set(total)

        def accumulate(ptr: int) -> None:
            f.get(ptr).mem("f32.load")
            if norm == "MAX":  # std::max(total, x): keeps total when x is NaN
                value = f.local(F32)
                f.set(value).get(value).get(total).get(total).get(value).op("f32.lt").op("select").set(total)
                return
            if norm == "L1":
                f.op("f32.abs")
            else:
                f.get(ptr).mem("f32.load").op("f32.mul")
            f.get(total).op("f32.add").set(total)

        _for_each(f, src, features, accumulate)
        i, value, root = f.local(I32), f.local(F32), f.local(F32)
        with f.for_range(i, 0, features * 4, 4):
            f.get(dst).get(i).op("i32.add")
            f.get(src).get(i).op("i32.add").mem("f32.load").set(value)
            if norm == "L2":  # sqrt(x^2 / sum) with the sign of x, as ONNX Runtime computes it
                f.get(value).get(value).op("f32.mul").get(total).op("f32.div").op("f32.sqrt").set(root)
                f.get(root).op("f32.neg").get(root).get(value).f32(0.0).op("f32.lt").op("select")
            else:
                f.get(value).get(total).op("f32.div")
            f.get(value).get(total).f32(0.0).op("f32.ne").op("select").mem("f32.store")


def _feature_table(values: list[float], shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """Per-element values for ONNX Runtime's `i % stride` indexing (stride = dim 1, or dim 0)."""
    size = int(np.prod(shape, dtype=np.int64))
    stride = shape[0] if len(shape) == 1 else shape[1]
    array: np.ndarray = np.asarray(values, dtype=dtype)
    index = np.arange(size) % stride if array.size == stride else np.zeros(size, dtype=np.int64)
    return array[index].reshape(shape)


def _check_scaler(node: Node, graph: Graph) -> list[str]:
    problems = check_input(node, graph, (np.float32, np.float64, np.int32, np.int64), max_rank=8)
    if problems:
        return problems
    shape = graph.info(node.inputs[0]).shape
    stride = shape[0] if len(shape) == 1 else shape[1]
    scale, offset = node.attr("scale", []), node.attr("offset", [])
    if not scale or len(scale) != len(offset) or len(scale) not in (1, stride):
        problems.append(f"scale and offset must both have 1 or {stride} values, got {len(scale)} and {len(offset)}")
    return problems + check_output(graph, node.outputs[0], graph.info(node.inputs[0]).size, np.float32)


@kernel("Scaler", domain=ML, check=_check_scaler, scratch=float_scratch)
def emit_scaler(ctx: Ctx, node: Node) -> None:
    """Y = (X - offset) * scale, per feature or with one value for all."""
    shape = ctx.info(node.inputs[0]).shape
    x, out = float_input(ctx, node), ctx.addr(node.outputs[0])
    offset = ctx.data(_feature_table(node.attr("offset"), shape, np.float32))
    scale = ctx.data(_feature_table(node.attr("scale"), shape, np.float32))
    emit_broadcast(ctx, out, shape, x, shape, offset, shape, lambda: _op(ctx, "f32x4.sub"), None)
    emit_broadcast(ctx, out, shape, out, shape, scale, shape, lambda: _op(ctx, "f32x4.mul"), None)


def _op(ctx: Ctx, name: str) -> None:
    ctx.f.op(name)


def _check_binarizer(node: Node, graph: Graph) -> list[str]:
    return check_input(node, graph, (np.float32,), max_rank=8)


@kernel("Binarizer", domain=ML, check=_check_binarizer)
def emit_binarizer(ctx: Ctx, node: Node) -> None:
    """1 where x > threshold, else 0 (NaN gives 0; ONNX Runtime raises on NaN instead)."""
    threshold = float(node.attr("threshold", 0.0))
    map_f32(ctx, ctx.addr(node.inputs[0]), ctx.addr(node.outputs[0]), ctx.info(node.inputs[0]).size,
            lambda: ctx.f.f32x4_const(threshold).op("f32x4.gt").f32x4_const(1.0).op("v128.and"))


def _check_imputer(node: Node, graph: Graph) -> list[str]:
    problems = check_input(node, graph, (np.float32, np.int64), max_rank=8)
    if problems:
        return problems
    floats, ints = node.attr("imputed_value_floats", []), node.attr("imputed_value_int64s", [])
    if bool(floats) == bool(ints):
        problems.append("exactly one of imputed_value_floats and imputed_value_int64s must be given")
    elif bool(floats) != (_dtype(graph, node.inputs[0]) == np.float32):
        problems.append(f"the imputed values do not match the input dtype {_dtype(graph, node.inputs[0]).name}")
    return problems


@kernel("Imputer", domain=ML, check=_check_imputer)
def emit_imputer(ctx: Ctx, node: Node) -> None:
    """Replace every x equal to the replaced value (NaN matches NaN) with the imputed value."""
    f = ctx.f
    name, out = node.inputs[0], ctx.addr(node.outputs[0])
    shape = ctx.info(name).shape
    if _dtype(ctx.graph, name) == np.float32:
        replaced = float(node.attr("replaced_value_float", 0.0))
        table = ctx.data(_feature_table(node.attr("imputed_value_floats"), shape, np.float32))
        x, imputed = f.local(V128), f.local(V128)

        def choose() -> None:
            f.set(imputed).set(x)
            f.get(imputed).get(x).get(x)
            if np.isnan(replaced):
                f.get(x).op("f32x4.ne")
            else:
                f.f32x4_const(replaced).op("f32x4.eq")
            f.op("v128.bitselect")

        emit_broadcast(ctx, out, shape, ctx.addr(name), shape, table, shape, choose, None)
        return
    replaced_int = int(node.attr("replaced_value_int64", 0))
    table = ctx.data(_feature_table(node.attr("imputed_value_int64s"), shape, np.int64))
    i = f.local(I32)
    with f.for_range(i, 0, ctx.info(name).size * 8, 8):
        f.get(i).get(i).mem("i64.load", offset=table).get(i).mem("i64.load", offset=ctx.addr(name))
        f.get(i).mem("i64.load", offset=ctx.addr(name)).i64(replaced_int).op("i64.eq").op("select")
        f.mem("i64.store", offset=out)


def _check_array_feature_extractor(node: Node, graph: Graph) -> list[str]:
    data, indices = graph.info(node.inputs[0]), graph.info(node.inputs[1])
    problems = []
    if np.dtype(data.dtype) == object:
        problems.append("string data is not supported (string class labels cannot be a numeric output; "
                        "train with integer labels)")
    elif np.dtype(data.dtype).itemsize not in (4, 8) or np.dtype(data.dtype).kind not in "fiu":
        problems.append(f"data dtype {data.dtype} is not supported")
    if np.dtype(indices.dtype) != np.int64:
        problems.append(f"indices must be int64, got {indices.dtype}")
    if not data.shape:
        problems.append("data must have at least one dimension")
    if indices.size == 0:
        problems.append("indices must not be empty")
    value = graph.constants.get(node.inputs[1])
    if data.shape and value is not None and (np.any(value < 0) or np.any(value >= data.shape[-1])):
        problems.append(f"constant indices {value.tolist()} are out of range for a last axis of {data.shape[-1]}")
    if not problems:
        outer = int(np.prod(data.shape[:-1], dtype=np.int64))
        problems += check_output(graph, node.outputs[0], outer * indices.size, data.dtype.type)
    return problems


@kernel("ArrayFeatureExtractor", domain=ML, check=_check_array_feature_extractor)
def emit_array_feature_extractor(ctx: Ctx, node: Node) -> None:
    """Z[..., j] = X[..., Y[j]]; an index out of range traps, as ONNX Runtime fails."""
    f = ctx.f
    data, indices = ctx.info(node.inputs[0]), ctx.info(node.inputs[1])
    width = np.dtype(data.dtype).itemsize
    load, store = ("i32.load", "i32.store") if width == 4 else ("i64.load", "i64.store")
    stride = data.shape[-1]
    outer = data.size // stride
    x, y, z = ctx.addr(node.inputs[0]), ctx.addr(node.inputs[1]), ctx.addr(node.outputs[0])
    row, j, dst = f.local(I32), f.local(I32), f.local(I32)
    index = f.local(I64)
    f.i32(z).set(dst)
    with f.for_range(row, 0, outer), f.for_range(j, 0, indices.size):
        f.get(j).i32(8).op("i32.mul").mem("i64.load", offset=y).set(index)
        f.get(index).i64(0).op("i64.lt_s").get(index).i64(stride).op("i64.ge_s").op("i32.or")
        with f.if_():
            f.op("unreachable")
        f.get(dst)
        f.get(row).i32(stride).op("i32.mul").get(index).op("i32.wrap_i64").op("i32.add").i32(width).op("i32.mul")
        f.mem(load, offset=x).mem(store)
        f.inc(dst, width)


# ---------------------------------------------------------------- tree ensembles

# A branch's comparison as a 4-bit mask over where x falls: bit 0 x < t, 1 x == t, 2 x > t,
# 3 unordered (x is NaN). "Missing value tracks true" sets bit 3.
BRANCH_MASKS = {"BRANCH_LEQ": 0b0011, "BRANCH_LT": 0b0001, "BRANCH_GTE": 0b0110, "BRANCH_GT": 0b0100,
                "BRANCH_EQ": 0b0010, "BRANCH_NEQ": 0b1101}
BRANCH_OPS = {"BRANCH_LEQ": "f32.le", "BRANCH_LT": "f32.lt", "BRANCH_GTE": "f32.ge", "BRANCH_GT": "f32.gt",
              "BRANCH_EQ": "f32.eq", "BRANCH_NEQ": "f32.ne"}
# where every branch has one mode and sends NaN to its true child (LightGBM's forests): the
# comparison that is false for NaN, picking the false child, so one instruction decides
TRACKED_OPS = {"BRANCH_LEQ": ("f32.gt", True), "BRANCH_LT": ("f32.ge", True), "BRANCH_GTE": ("f32.lt", True),
               "BRANCH_GT": ("f32.le", True), "BRANCH_NEQ": ("f32.ne", False)}
NODE_BYTES = 16
AGGREGATES = ("SUM", "AVERAGE", "MIN", "MAX")
DOUBLE_ATTRS = ("nodes_values_as_tensor", "nodes_hitrates_as_tensor", "base_values_as_tensor",
                "class_weights_as_tensor", "target_weights_as_tensor")


WALKS = 8  # trees walked side by side; the roots are padded to a multiple with an empty tree


@dataclass
class Forest:
    """The node records, tree roots and leaf weights of an ensemble, ready for data segments.

    nodes: int32 [n, 4]; a branch is (mask | feature << 4, threshold bits, true, false) with
    children as byte offsets into the records; a leaf is (0, byte offset of its weight block,
    itself, itself), so that walking on from a leaf stays there. The last record is an empty
    leaf, the root of the trees that pad `roots` to a multiple of WALKS. weights: int32, per
    leaf a block [count, (output byte offset, value bits) x count].
    """

    nodes: np.ndarray
    roots: np.ndarray
    weights: np.ndarray
    compare: str | None  # the one comparison every branch uses, when there is one
    trees: int  # without the padding
    swap: bool = False  # compare picks the false child (every branch sends NaN to its true child)


def _ints(node: Node, name: str) -> np.ndarray:
    return np.asarray(node.attr(name, []), dtype=np.int64).reshape(-1)


def _positions(index: dict[tuple[int, int], int], trees: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Position of each (tree, node id) in the nodes_* lists, -1 where there is none."""
    return np.asarray([index.get(key, -1) for key in zip(trees.tolist(), ids.tolist(), strict=True)], dtype=np.int64)


def build_forest(node: Node, features: int, outputs: int, prefix: str, first_weight_only: bool) -> Forest:
    """Lay out the trees as ONNX Runtime reads them; ValueError says what is malformed.

    With `first_weight_only` (a single regression target) a leaf contributes one value: its
    first weight, or its nodes_values entry when it has none, as ONNX Runtime's
    value_or_unique_weight does. Weights attached to branch nodes are ignored, as there."""
    trees, ids, feature = _ints(node, "nodes_treeids"), _ints(node, "nodes_nodeids"), _ints(node, "nodes_featureids")
    true_ids, false_ids = _ints(node, "nodes_truenodeids"), _ints(node, "nodes_falsenodeids")
    values = np.asarray(node.attr("nodes_values", []), dtype=np.float32).reshape(-1)
    modes = [str(m) for m in node.attr("nodes_modes", [])]
    count = trees.size
    if not count or any(len(c) != count for c in (ids, feature, true_ids, false_ids, values, modes)):
        raise ValueError("the nodes_* attributes must be non-empty and of equal length")
    unknown = sorted(set(modes) - set(BRANCH_MASKS) - {"LEAF"})
    if unknown:
        raise ValueError(f"node modes {unknown} are not supported")
    index = {key: i for i, key in enumerate(zip(trees.tolist(), ids.tolist(), strict=True))}
    if len(index) != count:
        raise ValueError("a (tree id, node id) pair is defined twice")
    leaf = np.asarray([m == "LEAF" for m in modes])
    branch = ~leaf
    tracks = np.zeros(count, dtype=bool)
    missing = _ints(node, "nodes_missing_value_tracks_true")[:count]
    tracks[:missing.size] = missing == 1
    tracks &= branch
    if np.any(branch & ((feature < 0) | (feature >= features))):
        raise ValueError(f"a feature id is out of range for {features} features")
    here = np.arange(count)
    true_at, false_at = _positions(index, trees, true_ids), _positions(index, trees, false_ids)
    if np.any(branch & ((true_at < 0) | (false_at < 0) | (true_at == here) | (false_at == here))):
        raise ValueError("a branch names a child that does not exist in its tree, or itself")
    records = np.zeros((count, 4), dtype=np.int32)
    masks = np.asarray([BRANCH_MASKS.get(m, 0) for m in modes], dtype=np.int64)
    records[branch, 0] = masks[branch] | tracks[branch] << 3 | feature[branch] << 4
    records[branch, 1] = values[branch].view(np.int32)
    records[branch, 2] = true_at[branch] * NODE_BYTES
    records[branch, 3] = false_at[branch] * NODE_BYTES
    roots = np.flatnonzero(np.r_[True, trees[1:] != trees[:-1]])
    _check_acyclic(records, leaf.tolist(), roots.tolist())
    table = _leaf_weights(node, index, leaf, values, records, outputs, prefix, first_weight_only)
    # the empty leaf (its block is the table's last entry: a count of 0) roots the padding trees
    records = np.r_[records, np.asarray([[0, (table.size - 1) * 4, 0, 0]], dtype=np.int32)]
    leaves = np.r_[np.flatnonzero(leaf), count]
    records[leaves, 2] = records[leaves, 3] = leaves * NODE_BYTES
    padded = np.r_[roots, np.full(-roots.size % WALKS, count)]
    used = {m for m, b in zip(modes, branch, strict=True) if b}
    compare, swap = None, False
    if not branch.any():
        compare = "f32.le"  # only leaves: never compared
    elif len(used) == 1 and not tracks.any():
        compare = BRANCH_OPS[next(iter(used))]
    elif len(used) == 1 and tracks[branch].all() and next(iter(used)) in TRACKED_OPS:
        compare, swap = TRACKED_OPS[next(iter(used))]
    return Forest(records, (padded * NODE_BYTES).astype(np.int32), table, compare, roots.size, swap)


def _leaf_weights(node: Node, index: dict[tuple[int, int], int], leaf: np.ndarray, values: np.ndarray,
                  records: np.ndarray, outputs: int, prefix: str, first_weight_only: bool) -> np.ndarray:
    """The weight blocks, one per leaf: its count, then (output byte offset, value bits) per
    weight in attribute order; fills each leaf record's block offset."""
    trees, ids, out = (_ints(node, f"{prefix}_{key}") for key in ("treeids", "nodeids", "ids"))
    weights = np.asarray(node.attr(f"{prefix}_weights", []), dtype=np.float32).reshape(-1)
    if not trees.size == ids.size == out.size == weights.size:
        raise ValueError(f"the {prefix}_* attributes must be of equal length")
    owner = _positions(index, trees, ids)
    if np.any(owner < 0):
        raise ValueError(f"a {prefix} weight names a node that does not exist")
    on_leaf = leaf[owner]
    owner, out, weights = owner[on_leaf], out[on_leaf], weights[on_leaf]
    if np.any((out < 0) | (out >= outputs)):
        raise ValueError(f"a {prefix} id is out of range for {outputs} outputs")
    order = np.argsort(owner, kind="stable")
    owner, out, weights = owner[order], out[order], weights[order]
    if first_weight_only:
        first = np.unique(owner, return_index=True)[1]
        lonely = np.flatnonzero(leaf & ~np.isin(np.arange(leaf.size), owner))
        owner = np.r_[owner[first], lonely]
        out = np.r_[out[first], np.zeros(lonely.size, dtype=np.int64)]
        weights = np.r_[weights[first], values[lonely]].astype(np.float32)
        order = np.argsort(owner, kind="stable")
        owner, out, weights = owner[order], out[order], weights[order]
    counts = np.bincount(owner, minlength=leaf.size)
    sizes = np.where(leaf, 1 + 2 * counts, 0)
    starts = np.cumsum(sizes) - sizes
    records[leaf, 1] = starts[leaf] * 4
    table = np.zeros(int(sizes.sum()) + 1, dtype=np.int32)  # + the empty leaf's block
    table[starts[leaf]] = counts[leaf]
    rank = np.arange(owner.size) - np.searchsorted(owner, owner)  # position among its leaf's weights
    at = starts[owner] + 1 + 2 * rank
    table[at] = (out * 4).astype(np.int32)
    table[at + 1] = weights.astype(np.float32).view(np.int32)
    return table


def _check_acyclic(records: np.ndarray, leaf: list[bool], roots: list[int]) -> None:
    """A cycle would make the walk loop forever (ONNX Runtime's too), so refuse it: a
    depth-first search that meets a node still on its path has found one."""
    state = [0] * len(records)  # 0 unseen, 1 on the current path, 2 done
    for root in roots:
        if state[root]:
            continue
        state[root] = 1
        stack = [(root, 0)]
        while stack:
            at, branch = stack[-1]
            if leaf[at] or branch == 2:
                state[at] = 2
                stack.pop()
                continue
            stack[-1] = (at, branch + 1)
            child = int(records[at, 2 + branch]) // NODE_BYTES
            if state[child] == 1:
                raise ValueError("a tree has a cycle")
            if state[child] == 0:
                state[child] = 1
                stack.append((child, 0))


def _walk_forest(ctx: Ctx, forest: Forest, x: int, scores: int, update: Callable[[int, int], None]) -> None:
    """Walk every tree from the row of features at the address in local `x`, WALKS trees at a
    time; for each weight of each leaf reached, in tree order, call update(score address local,
    value local)."""
    f = ctx.f
    nodes, roots, weights = ctx.data(forest.nodes), ctx.data(forest.roots), ctx.data(forest.weights)
    group, busy, head, k, end, target = (f.local(I32) for _ in range(6))
    value, feature, threshold = f.local(F32), f.local(F32), f.local(F32)
    walks = [f.local(I32) for _ in range(WALKS)]
    with f.for_range(group, 0, forest.roots.size * 4, WALKS * 4):
        for g, p in enumerate(walks):
            f.get(group).mem("i32.load", offset=roots + 4 * g).i32(nodes).op("i32.add").set(p)
        with f.block(b"\x03"):  # one step of every walk; again while some walk stood on a branch
            f.i32(0).set(busy)
            for p in walks:
                f.get(p).mem("i32.load").tee(head).get(busy).op("i32.or").set(busy)
                f.get(head).i32(2).op("i32.shr_u").i32(-4).op("i32.and").get(x).op("i32.add").mem("f32.load")
                f.set(feature).get(p).mem("f32.load", offset=4).set(threshold)
                true, false = (12, 8) if forest.swap else (8, 12)
                f.get(p).mem("i32.load", offset=true).get(p).mem("i32.load", offset=false)
                if forest.compare is not None:
                    f.get(feature).get(threshold).op(forest.compare)
                else:  # (mask >> where) & 1 with where = [x == t] + 2 [x > t] + 3 [x is NaN]
                    f.get(head)
                    f.get(feature).get(threshold).op("f32.eq")
                    f.get(feature).get(threshold).op("f32.gt").i32(1).op("i32.shl").op("i32.add")
                    f.get(feature).get(feature).op("f32.ne").i32(3).op("i32.mul").op("i32.add")
                    f.op("i32.shr_u").i32(1).op("i32.and")
                f.op("select").i32(nodes).op("i32.add").set(p)
            f.get(busy).br_if(0)
        for p in walks:  # each p is a leaf: its block is [count, (output offset, value) x count]
            f.get(p).mem("i32.load", offset=4).i32(weights).op("i32.add").tee(k).mem("i32.load")
            f.i32(8).op("i32.mul").get(k).op("i32.add").i32(4).op("i32.add").set(end)
            f.inc(k, 4)
            with f.block(), f.block(b"\x03"):
                f.get(k).get(end).op("i32.ge_u").br_if(1)
                f.get(k).mem("i32.load").i32(scores).op("i32.add").set(target)
                f.get(k).mem("f32.load", offset=4).set(value)
                update(target, value)
                f.inc(k, 8).br(0)


def _update(ctx: Ctx, aggregate: str, has_offset: int) -> Callable[[int, int], None]:
    """Fold one leaf weight into its score; `has` (an i32 flag per score) records it was scored."""
    f = ctx.f

    def fold(target: int, value: int) -> None:
        if aggregate in ("SUM", "AVERAGE"):
            f.get(target).get(target).mem("f32.load").get(value).op("f32.add").mem("f32.store")
        else:
            f.get(target).mem("i32.load", offset=has_offset).op("i32.eqz")
            f.get(value).get(target).mem("f32.load").op("f32.lt" if aggregate == "MIN" else "f32.gt").op("i32.or")
            with f.if_():
                f.get(target).get(value).mem("f32.store")
        f.get(target).i32(1).mem("i32.store", offset=has_offset)

    return fold


def _check_tree_common(node: Node, graph: Graph, prefix: str, outputs: int,
                       inputs: tuple[type, ...] = (np.float32, np.int32, np.int64)) -> list[str]:
    problems = check_input(node, graph, inputs) + check_transform(node)
    problems += [f"{name} (double-precision attributes) is not supported" for name in DOUBLE_ATTRS
                 if node.attr(name) is not None]
    if problems:
        return problems
    _, features = feature_rows(graph, node.inputs[0])
    try:
        build_forest(node, features, max(outputs, 1), prefix, False)
    except ValueError as exc:
        problems.append(str(exc))
    return problems


def _check_tree_regressor(node: Node, graph: Graph, dtype: type = np.float32,
                          inputs: tuple[type, ...] = (np.float32, np.int32, np.int64)) -> list[str]:
    """`dtype` is the output's (TreeEnsemble's float64 form writes float64)."""
    targets = int(node.attr("n_targets", 1))
    problems = _check_tree_common(node, graph, "target", targets, inputs)
    if node.attr("aggregate_function", "SUM") not in AGGREGATES:
        problems.append(f"aggregate_function {node.attr('aggregate_function')!r} is not one of {AGGREGATES}")
    if targets < 1:
        problems.append("n_targets must be at least 1")
    if len(node.attr("base_values", [])) not in (0, targets):
        problems.append(f"base_values must have 0 or {targets} values (one per target)")
    if problems:
        return problems
    n, _ = feature_rows(graph, node.inputs[0])
    return check_output(graph, node.outputs[0], n * targets, dtype)


@kernel("TreeEnsembleRegressor", domain=ML, check=_check_tree_regressor, scratch=tree_scratch)
def emit_tree_regressor(ctx: Ctx, node: Node) -> None:
    _emit_regressor(ctx, node, ctx.addr(node.outputs[0]))


def _emit_regressor(ctx: Ctx, node: Node, out: int) -> None:
    """Each row's float32 scores into `out`."""
    f = ctx.f
    n, features = feature_rows(ctx.graph, node.inputs[0])
    targets = int(node.attr("n_targets", 1))
    aggregate = node.attr("aggregate_function", "SUM")
    kind = node.attr("post_transform", "NONE")
    base = [float(v) for v in node.attr("base_values", [])]
    forest = build_forest(node, features, targets, "target", first_weight_only=targets == 1)
    x = float_input(ctx, node)
    scores = ctx.scratch_addr + float_scratch(node, ctx.graph)
    row = f.local(I32)
    with f.for_range(row, 0, n):
        f.i32(scores).i32(0).i32(targets * 8).memory_fill()
        _walk_forest(ctx, forest, _row_pointer(f, x, row, features * 4), scores,
                     _update(ctx, aggregate, targets * 4))
        dst = _row_pointer(f, out, row, targets * 4)
        if targets == 1:
            _finish_one_target(ctx, scores, dst, aggregate, base[0] if len(base) == 1 else 0.0,
                               forest.trees, kind)
        else:
            _finish_targets(ctx, scores, dst, targets, aggregate, base if len(base) == targets else [],
                            forest.trees)
            transform_row(ctx, kind, dst, targets)


def _check_tree_ensemble(node: Node, graph: Graph) -> list[str]:
    """TreeEnsemble (opset 5): its float32 or float64 input, then the TreeEnsembleRegressor it
    unrolls to, writing the input's dtype."""
    problems = check_input(node, graph, (np.float32, np.float64))
    for name in ("aggregate_function", "post_transform"):
        choices = AGGREGATES if name == "aggregate_function" else TRANSFORMS
        if not 0 <= int(node.attr(name, 0)) < len(choices):
            problems.append(f"{name} {node.attr(name)} is not 0 to {len(choices) - 1}")
    if problems:
        return problems
    try:
        dtype = _dtype(graph, node.inputs[0]).type
        return _check_tree_regressor(tree_ensemble_as_regressor(node), graph, dtype, (dtype,))
    except ValueError as exc:
        return [str(exc)]


@kernel("TreeEnsemble", domain=ML, check=_check_tree_ensemble, scratch=tree_ensemble_scratch)
def emit_tree_ensemble(ctx: Ctx, node: Node) -> None:
    """Opset 5's single tree op is a regressor over n_targets (classifiers add an ArgMax after it):
    the same kernel, once its sets are unrolled into BRANCH_EQ chains. A float64 model runs in
    float32 (its input, splits and weights rounded to float32, as the tree kernel reads them),
    then widens the scores into its float64 output."""
    regressor = tree_ensemble_as_regressor(node)
    if _dtype(ctx.graph, node.outputs[0]) != np.float64:
        _emit_regressor(ctx, regressor, ctx.addr(node.outputs[0]))
        return
    narrow = ctx.scratch_addr + tree_scratch(node, ctx.graph)
    _emit_regressor(ctx, regressor, narrow)
    f, i = ctx.f, ctx.f.local(I32)
    with f.for_range(i, 0, ctx.info(node.outputs[0]).size):
        f.get(i).i32(8).op("i32.mul").get(i).i32(4).op("i32.mul").mem("f32.load", offset=narrow)
        f.op("f64.promote_f32").mem("f64.store", offset=ctx.addr(node.outputs[0]))


def _finish_one_target(ctx: Ctx, scores: int, dst: int, aggregate: str, origin: float, trees: int,
                       kind: str) -> None:
    """ONNX Runtime's FinalizeScores1: the score plus base value; only PROBIT transforms it."""
    f = ctx.f
    f.get(dst).i32(scores).mem("f32.load")
    if aggregate == "AVERAGE":
        f.f32(float(trees)).op("f32.div")
    f.f32(origin).op("f32.add")
    if aggregate in ("MIN", "MAX"):  # never scored: the base value alone
        f.f32(origin).i32(scores).mem("i32.load", offset=4).op("select")
    if kind == "PROBIT":
        _probit(ctx)
    f.mem("f32.store")


def _finish_targets(ctx: Ctx, scores: int, dst: int, count: int, aggregate: str, base: list[float],
                    trees: int) -> None:
    """Each output is its aggregate plus base value, or 0 when no leaf scored it."""
    f = ctx.f
    base_table = ctx.data(np.asarray(base or [0.0] * count, dtype=np.float32))
    k = f.local(I32)
    with f.for_range(k, 0, count * 4, 4):
        f.get(dst).get(k).op("i32.add")
        f.get(k).mem("f32.load", offset=scores)
        if aggregate == "AVERAGE":
            f.f32(float(trees)).op("f32.div")
        f.get(k).mem("f32.load", offset=base_table).op("f32.add")
        f.f32(0.0).get(k).mem("i32.load", offset=scores + count * 4).op("select").mem("f32.store")


def _classifier_facts(node: Node) -> tuple[list[int], bool, bool]:
    """(labels, binary case, all weights positive) as ONNX Runtime derives them."""
    labels = [int(v) for v in node.attr("classlabels_int64s", [])]
    ids = {int(v) for v in node.attr("class_ids", [])}
    positive = all(float(w) >= 0 for w in node.attr("class_weights", []))
    return labels, len(labels) == 2 and len(ids) == 1, positive


def _unscored_leaf(node: Node, class_id: int) -> bool:
    """Whether some leaf has no weight for `class_id`."""
    leaves = {(int(t), int(n)) for t, n, m in zip(node.attr("nodes_treeids"), node.attr("nodes_nodeids"),
                                                   node.attr("nodes_modes"), strict=True) if m == "LEAF"}
    scored = {(int(t), int(n)) for t, n, c in zip(node.attr("class_treeids", []), node.attr("class_nodeids", []),
                                                   node.attr("class_ids", []), strict=True) if int(c) == class_id}
    return bool(leaves - scored)


def _check_tree_classifier(node: Node, graph: Graph) -> list[str]:
    if node.attr("classlabels_strings"):
        return ["string class labels (classlabels_strings) cannot be a numeric output; train with integer labels"]
    labels, binary, _ = _classifier_facts(node)
    problems = _check_tree_common(node, graph, "class", len(labels))
    if len(labels) < 2:
        problems.append("a classifier needs at least two classes (classlabels_int64s)")
    allowed = (0, len(labels), 1) if len(labels) == 2 else (0, len(labels))
    if len(node.attr("base_values", [])) not in allowed:
        problems.append(f"base_values must have {' or '.join(map(str, sorted(set(allowed))))} values")
    if len(labels) == 2 and node.attr("post_transform", "NONE") == "PROBIT":
        problems.append("PROBIT on a binary classifier is not supported (ONNX Runtime leaves half of the "
                        "scores unwritten)")
    if len(labels) == 2 and not binary and len(node.attr("base_values", [])) == 1 and _unscored_leaf(node, 1):
        problems.append("a binary classifier with one base value and weights for both classes, where some leaf "
                        "has no class-1 weight, is not supported (ONNX Runtime leaves the second score unwritten)")
    if problems:
        return problems
    n, _ = feature_rows(graph, node.inputs[0])
    problems += check_output(graph, node.outputs[0], n, np.int64)
    if len(node.outputs) > 1:
        problems += check_output(graph, node.outputs[1], n * len(labels), np.float32)
    return problems


@kernel("TreeEnsembleClassifier", domain=ML, check=_check_tree_classifier, scratch=tree_scratch)
def emit_tree_classifier(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    n, features = feature_rows(ctx.graph, node.inputs[0])
    labels, _, _ = _classifier_facts(node)
    classes = len(labels)
    forest = build_forest(node, features, classes, "class", first_weight_only=False)
    x = float_input(ctx, node)
    scores = ctx.scratch_addr + float_scratch(node, ctx.graph)
    label_out = node.outputs[0]
    z_out = node.outputs[1] if len(node.outputs) > 1 else ""
    z_row = f.local(I32)
    if not z_out:  # the scores still need a row to be finished in
        f.i32(scores).set(z_row)
    row = f.local(I32)
    with f.for_range(row, 0, n):
        f.i32(scores).i32(0).i32(classes * 8).memory_fill()
        _walk_forest(ctx, forest, _row_pointer(f, x, row, features * 4), scores, _update(ctx, "SUM", classes * 4))
        if z_out:
            f.get(row).i32(classes * 4).op("i32.mul").i32(ctx.addr(z_out)).op("i32.add").set(z_row)
        label = f.local(I64)
        if classes > 2:
            _finish_classes(ctx, node, scores, z_row, label)
        else:
            _finish_binary(ctx, node, scores, z_row, label)
        if label_out:
            f.get(row).i32(8).op("i32.mul").get(label).mem("i64.store", offset=ctx.addr(label_out))


def _finish_classes(ctx: Ctx, node: Node, scores: int, z_row: int, label: int) -> None:
    """Three or more classes: add base values, label the best scored class, transform."""
    f = ctx.f
    labels, _, _ = _classifier_facts(node)
    classes = len(labels)
    base = [float(v) for v in node.attr("base_values", [])]
    for k, value in enumerate(base):  # a base value makes its class scored
        f.i32(scores + 4 * k).i32(scores + 4 * k).mem("f32.load").f32(value).op("f32.add").mem("f32.store")
        f.i32(scores + 4 * (classes + k)).i32(1).mem("i32.store")
    pointer = f.local(I32)
    f.i32(scores).set(pointer)
    has = f.local(I32)
    f.i32(scores + 4 * classes).set(has)
    _argmax_label(ctx, pointer, classes, ctx.data(np.asarray(labels, dtype=np.int64)), has)
    f.set(label)
    _finish_targets(ctx, scores, z_row, classes, "SUM", [], 0)
    transform_row(ctx, node.attr("post_transform", "NONE"), z_row, classes)


def _finish_binary(ctx: Ctx, node: Node, scores: int, z_row: int, label: int) -> None:
    """Two classes, following ONNX Runtime's TreeAggregatorClassifier binary branch."""
    f = ctx.f
    labels, binary, positive = _classifier_facts(node)
    kind = node.attr("post_transform", "NONE")
    base = [float(v) for v in node.attr("base_values", [])]
    s0, s1, e0, e1, pos = (f.local(F32) for _ in range(5))
    h0, h1, both = (f.local(I32) for _ in range(3))
    f.i32(scores).mem("f32.load").set(s0).i32(scores).mem("f32.load", offset=4).set(s1)
    f.i32(scores).mem("i32.load", offset=8).set(h0).i32(scores).mem("i32.load", offset=12).set(h1)
    if len(base) == 2:
        f.get(h1)
        with f.if_():  # s1 = base1 + s0; s0 = -s1 (class 0 keeps its own scored flag)
            f.f32(base[1]).get(s0).op("f32.add").set(s1).get(s1).op("f32.neg").set(s0)
            f.else_()
            f.get(s1).f32(base[1]).op("f32.add").set(s1).get(s0).f32(base[0]).op("f32.add").set(s0)
        f.i32(1).set(both)
    elif len(base) == 1:
        f.get(s0).f32(base[0]).op("f32.add").set(s0).get(h1).set(both)
    else:
        f.get(h1).set(both)
    # a score counts only when scored
    f.get(s0).f32(0.0).get(h0).op("select").set(e0).get(s1).f32(0.0).get(h1).op("select").set(e1)
    f.get(e1).get(e0).get(h1).op("select").set(pos)
    threshold = 0.5 if binary and positive else 0.0
    high, low = (labels[1], labels[0]) if binary else (1, 0)
    f.i64(high).i64(low).get(pos).f32(threshold).op("f32.gt").op("select").set(label)
    # [e0, e1] through the transform when both scores exist, else the one-score layouts
    f.get(both)
    with f.if_():
        f.get(z_row).get(e0).mem("f32.store").get(z_row).get(e1).mem("f32.store", offset=4)
        transform_row(ctx, kind, z_row, 2)
        f.else_()
        _one_binary_score(ctx, z_row, e0, binary, positive, bool(base), kind)


def _one_binary_score(ctx: Ctx, z_row: int, e0: int, binary: bool, positive: bool, has_base: bool,
                      kind: str) -> None:
    """Only class 0 has a score: ONNX Runtime's write_scores layouts for one score."""
    f = ctx.f
    if binary and positive:
        _complement_pair(ctx, z_row, e0, kind)
    elif binary or not has_base:  # "mixed weights": [-s, s], through the logistic when asked
        f.get(z_row).get(e0).op("f32.neg")
        if kind == "LOGISTIC":
            logistic(ctx)
        f.mem("f32.store")
        f.get(z_row).get(e0)
        if kind == "LOGISTIC":
            logistic(ctx)
        f.mem("f32.store", offset=4)
    else:  # ONNX Runtime writes only the first score (the check refuses models that get here)
        f.get(z_row).get(e0).mem("f32.store").get(z_row).f32(0.0).mem("f32.store", offset=4)


__all__ = ["WALKS", "Forest", "build_forest", "check_input", "check_output", "check_transform", "float_input",
           "logistic", "transform_row"]
