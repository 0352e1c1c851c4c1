"""ai.onnx.ml SVMClassifier and SVMRegressor: what scikit-learn's SVC, NuSVC, SVR, NuSVR and
OneClassSVM become through skl2onnx.

Both ops first compute one kernel value per support vector for each row (POLY and SIGMOID as
one GEMM against the support vectors, RBF as squared distances), then combine the kernel values
with the dual coefficients. A LINEAR kernel's sum of coefficient * (x . vector) is x . (the sum of
coefficient * vector), so its vectors are folded while compiling into one weight vector per output
and each row takes a few dot products (ml.py's `linear_products`), not one per vector. The
classifier's one-vs-one decision values are otherwise a second GEMM: the coefficient of each
support vector for each pair of classes is a constant [vectors, pairs] matrix (zero where the
vector belongs to neither class), so the pairwise sums libsvm loops over become one product.
Each row's pairs then vote for a class, and with Platt's prob_a/prob_b the pairwise probabilities
are coupled into class probabilities by libsvm's iterative method (Wu, Lin and Weng 2004), in
float32 and in ONNX Runtime's order of operations.

ONNX Runtime's CPU kernels are the parity reference, so their layouts are kept: without
probabilities a binary classifier writes [-d, d] under NONE, [logistic(-d), logistic(d)] under
LOGISTIC and [1 - d, d] under the softmaxes, a multiclass one its pairwise decision values; the
label is always the class with the most votes (the first one on a tie), as libsvm's predict.
"""

from __future__ import annotations

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel
from wasinfer.backends.wasm.emitters.gemm import Operand, emit_gemm
from wasinfer.backends.wasm.emitters.ml import (
    check_input,
    check_output,
    check_transform,
    float_input,
    linear_products,
    logistic,
    transform_row,
)
from wasinfer.backends.wasm.emitters.unary import map_f32
from wasinfer.backends.wasm.mathfn import tanh_v128
from wasinfer.backends.wasm.writer import F32, I32, V128
from wasinfer.ir import Graph, Node
from wasinfer.lowering.ml import feature_rows, float_scratch, svm_scratch, svm_vectors

ML = "ai.onnx.ml"
KERNELS = ("LINEAR", "POLY", "RBF", "SIGMOID")
MAX_DEGREE = 16  # a POLY degree is unrolled into multiplies; libsvm's default is 3
PROBABILITY_ITERATIONS = 100  # libsvm's (and ONNX Runtime's) cap on the coupling iterations


# ---------------------------------------------------------------- kernel values

def _kernel_params(node: Node) -> tuple[float, float, float]:
    """(gamma, coef0, degree); ONNX Runtime reads them as zeros when kernel_params is absent."""
    params = [float(v) for v in node.attr("kernel_params", [])] or [0.0, 0.0, 0.0]
    return params[0], params[1], params[2]


def _check_kernel(node: Node, graph: Graph, vectors: int) -> list[str]:
    """The kernel and the support vectors' shape (against the input's features)."""
    kind = node.attr("kernel_type", "LINEAR")
    if kind not in KERNELS:
        return [f"kernel_type {kind!r} is not one of {', '.join(KERNELS)}"]
    if len(node.attr("kernel_params", []) or [0.0] * 3) != 3:
        return ["kernel_params must be [gamma, coef0, degree]"]
    _, features = feature_rows(graph, node.inputs[0])
    problems = []
    support = node.attr("support_vectors", []) or []
    if vectors and len(support) != vectors * features:
        problems.append(f"support_vectors has {len(support)} values, expected {vectors} vectors x {features} "
                        "features")
    degree = _kernel_params(node)[2]
    if vectors and kind == "POLY" and (degree != int(degree) or not 0 <= degree <= MAX_DEGREE):
        problems.append(f"a POLY degree of {degree:g} is not supported (whole degrees 0 to {MAX_DEGREE})")
    return problems


def _emit_kernel_values(ctx: Ctx, node: Node, x: int, out: int) -> None:
    """out[N, vectors] = K(x_row, support vector), as ONNX Runtime's batched_kernel_dot computes it."""
    n, features = feature_rows(ctx.graph, node.inputs[0])
    vectors = svm_vectors(node)
    support = np.asarray(node.attr("support_vectors"), dtype=np.float32).reshape(vectors, features)
    kind = node.attr("kernel_type", "LINEAR")
    gamma, coef0, degree = _kernel_params(node)
    f = ctx.f
    if kind == "RBF":
        _emit_squared_distances(ctx, x, n, features, support, out)
        scale = -np.float32(gamma)
        map_f32(ctx, out, out, n * vectors,
                lambda: f.f32x4_const(float(scale)).op("f32x4.mul").call(ctx.helper("exp4")))
        return
    linear = kind == "LINEAR"
    bias = None if linear or coef0 == 0 else Operand(ctx.data(np.full(vectors, coef0, np.float32)), 0, 1)
    emit_gemm(ctx, n, vectors, features, Operand(x, features, 1), np.ascontiguousarray(support.T),
              Operand(out, vectors, 1), bias, alpha=1.0 if linear else gamma)
    if kind == "POLY":
        value = f.local(V128)

        def power() -> None:
            f.set(value).f32x4_const(1.0)
            for _ in range(int(degree)):
                f.get(value).op("f32x4.mul")

        map_f32(ctx, out, out, n * vectors, power)
    elif kind == "SIGMOID":
        value = f.local(V128)

        def tanh() -> None:
            f.set(value)
            tanh_v128(f, value)

        map_f32(ctx, out, out, n * vectors, tanh)


def _emit_squared_distances(ctx: Ctx, x: int, n: int, features: int, support: np.ndarray, out: int) -> None:
    """out[row, v] = sum over features of (x - sv)^2 (the expansion |x|^2 - 2 x.sv + |sv|^2 would be
    one GEMM, but cancels badly near a vector). Four support vectors at a time, one per lane: the
    vectors are laid out [groups][features][4], so each lane sums its vector's squares in feature
    order, bit for bit ONNX Runtime's scalar loop, and a row's feature is one splat for four."""
    f = ctx.f
    vectors = support.shape[0]
    groups = -(-vectors // 4)
    padded = np.zeros((groups * 4, features), dtype=np.float32)
    padded[:vectors] = support
    table = ctx.data(np.ascontiguousarray(padded.reshape(groups, 4, features).transpose(0, 2, 1)))
    row, g, k, xp, sp, dst = (f.local(I32) for _ in range(6))
    total, diff = f.local(V128), f.local(V128)
    full = vectors // 4
    with f.for_range(row, 0, n):
        f.get(row).i32(features * 4).op("i32.mul").i32(x).op("i32.add").set(xp)
        f.get(row).i32(vectors * 4).op("i32.mul").i32(out).op("i32.add").set(dst)
        f.i32(table).set(sp)
        with f.for_range(g, 0, groups):
            f.f32x4_const(0.0).set(total)
            with f.for_range(k, 0, features * 4, 4):
                f.get(xp).get(k).op("i32.add").mem("f32.load").op("f32x4.splat")
                f.get(sp).mem("v128.load").op("f32x4.sub").set(diff)
                f.get(total).get(diff).get(diff).op("f32x4.mul").op("f32x4.add").set(total)
                f.inc(sp, 16)
            f.get(g).i32(full).op("i32.lt_s")
            with f.if_():
                f.get(dst).get(total).mem("v128.store")
                if vectors % 4:
                    f.else_()
                    for lane in range(vectors % 4):  # the last, partial group: its real vectors only
                        f.get(dst).get(total).lane("f32x4.extract_lane", lane).mem("f32.store", offset=4 * lane)
            f.inc(dst, 16)


# ---------------------------------------------------------------- SVMClassifier

def _classes(node: Node) -> int:
    return len(node.attr("classlabels_ints", []) or node.attr("classlabels_strings", []) or [])


def _pairs(classes: int) -> list[tuple[int, int]]:
    """The one-vs-one classifiers in libsvm's order: (0, 1), (0, 2), ..., (1, 2), ..."""
    return [(i, j) for i in range(classes) for j in range(i + 1, classes)]


def _score_count(node: Node) -> int:
    """Scores per row in output Z: one per class with probabilities, else one per pair (two when binary)."""
    classes = _classes(node)
    if node.attr("prob_a"):
        return classes
    return len(_pairs(classes)) if classes > 2 else 2


def _check_svm_classifier(node: Node, graph: Graph) -> list[str]:
    problems = check_input(node, graph, (np.float32, np.float64, np.int32, np.int64)) + check_transform(node)
    if node.attr("classlabels_strings"):
        problems.append("string class labels (classlabels_strings) cannot be a numeric output; "
                        "train with integer labels")
    if problems:
        return problems
    classes, vectors = _classes(node), svm_vectors(node)
    pairs = len(_pairs(classes))
    if classes < 2:
        return ["a classifier needs at least two classes (classlabels_ints)"]
    if not vectors:
        return ["the liblinear form (no vectors_per_class: coefficients against the features) is not supported; "
                "scikit-learn's LinearSVC exports as LinearClassifier, which is"]
    if len(node.attr("vectors_per_class", [])) != classes:
        problems.append(f"vectors_per_class has {len(node.attr('vectors_per_class', []))} entries for "
                        f"{classes} classes")
    if len(node.attr("coefficients", []) or []) != (classes - 1) * vectors:
        problems.append(f"coefficients must have (classes - 1) x vectors = {(classes - 1) * vectors} values")
    if len(node.attr("rho", []) or []) < pairs:
        problems.append(f"rho must have one value per pair of classes ({pairs})")
    prob_a, prob_b = node.attr("prob_a", []) or [], node.attr("prob_b", []) or []
    if len(prob_a) != len(prob_b) or (prob_a and len(prob_a) < pairs):
        problems.append(f"prob_a and prob_b must both be empty or both have one value per pair ({pairs})")
    if classes == 2 and not prob_a and node.attr("post_transform", "NONE") == "PROBIT":
        problems.append("PROBIT on a binary classifier without probabilities is not supported (ONNX Runtime "
                        "leaves half of the scores unwritten)")
    problems += _check_kernel(node, graph, vectors)
    if len(node.outputs) < 2 or not all(node.outputs):
        problems.append("both outputs (label and scores) are required")
    if problems:
        return problems
    n, _ = feature_rows(graph, node.inputs[0])
    return (check_output(graph, node.outputs[0], n, np.int64)
            + check_output(graph, node.outputs[1], n * _score_count(node), np.float32))


def _pair_coefficients(node: Node) -> np.ndarray:
    """[vectors, pairs]: support vector v's dual coefficient in the classifier of pair (i, j) when
    v belongs to class i or j (libsvm keeps them in rows j - 1 and i of coefficients), else 0."""
    classes, vectors = _classes(node), svm_vectors(node)
    counts = [int(c) for c in node.attr("vectors_per_class")]
    starts = np.cumsum([0, *counts])
    coefficients = np.asarray(node.attr("coefficients"), dtype=np.float32).reshape(classes - 1, vectors)
    pairs = _pairs(classes)
    table = np.zeros((vectors, len(pairs)), dtype=np.float32)
    for p, (i, j) in enumerate(pairs):
        table[starts[i]:starts[i + 1], p] = coefficients[j - 1, starts[i]:starts[i + 1]]
        table[starts[j]:starts[j + 1], p] = coefficients[i, starts[j]:starts[j + 1]]
    return table


def _folded(node: Node, coefficients: np.ndarray) -> np.ndarray:
    """[outputs, features]: a LINEAR kernel's sum over support vectors of coefficient * (x . vector) is x . (the
    sum of coefficient * vector), so the vectors fold into one weight vector per output while compiling (in
    float64, then rounded once): one dot product per row and output instead of one per vector (a linear SVC
    fitted on breast_cancer keeps dozens). `coefficients` is [vectors, outputs]."""
    support = np.asarray(node.attr("support_vectors"), dtype=np.float64).reshape(svm_vectors(node), -1)
    return np.ascontiguousarray((coefficients.astype(np.float64).T @ support).astype(np.float32))


@kernel("SVMClassifier", domain=ML, check=_check_svm_classifier, scratch=svm_scratch)
def emit_svm_classifier(ctx: Ctx, node: Node) -> None:
    """Kernel values, pairwise decision values (a GEMM), then per row the votes, the label and the scores."""
    f = ctx.f
    n, _ = feature_rows(ctx.graph, node.inputs[0])
    classes, vectors = _classes(node), svm_vectors(node)
    pairs = _pairs(classes)
    x = float_input(ctx, node)
    kernels = ctx.scratch_addr + float_scratch(node, ctx.graph)
    decisions = kernels + n * vectors * 4
    votes = decisions + n * len(pairs) * 4
    rho = np.asarray(node.attr("rho")[:len(pairs)], dtype=np.float32)
    coefficients = _pair_coefficients(node)  # [vectors, pairs]
    if node.attr("kernel_type", "LINEAR") == "LINEAR":  # each pair's vectors folded into one weight vector
        linear_products(ctx, n, feature_rows(ctx.graph, node.inputs[0])[1], x, _folded(node, coefficients), rho,
                        decisions)
    else:
        _emit_kernel_values(ctx, node, x, kernels)  # the GEMM sums the vectors in order, as ONNX Runtime does
        emit_gemm(ctx, n, len(pairs), vectors, Operand(kernels, vectors, 1), coefficients,
                  Operand(decisions, len(pairs), 1), Operand(ctx.data(rho), 0, 1))
    # (i, j) of each pair as byte offsets into the votes, then into the C x C probability matrix
    pair_table = ctx.data(np.asarray([(4 * i, 4 * j, 4 * (i * classes + j), 4 * (j * classes + i))
                                      for i, j in pairs], dtype=np.int32))
    labels = ctx.data(np.asarray([int(v) for v in node.attr("classlabels_ints")], dtype=np.int64))
    probabilities = bool(node.attr("prob_a"))
    kind = node.attr("post_transform", "NONE")
    label_out, z_out = ctx.addr(node.outputs[0]), ctx.addr(node.outputs[1])
    scores = _score_count(node)
    row, d_row, z_row, p, best = (f.local(I32) for _ in range(5))
    with f.for_range(row, 0, n):
        f.get(row).i32(len(pairs) * 4).op("i32.mul").i32(decisions).op("i32.add").set(d_row)
        f.get(row).i32(scores * 4).op("i32.mul").i32(z_out).op("i32.add").set(z_row)
        f.i32(votes).i32(0).i32(classes * 4).memory_fill()
        with f.for_range(p, 0, len(pairs)):  # ++votes[d > 0 ? i : j]
            f.get(p).i32(16).op("i32.mul").tee(best)
            f.mem("i32.load", offset=pair_table).get(best).mem("i32.load", offset=pair_table + 4)
            f.get(d_row).get(p).i32(4).op("i32.mul").op("i32.add").mem("f32.load").f32(0.0).op("f32.gt")
            f.op("select").i32(votes).op("i32.add").tee(best)
            f.get(best).mem("i32.load").i32(1).op("i32.add").mem("i32.store")
        _most_votes(ctx, votes, classes, best)
        f.get(row).i32(8).op("i32.mul").get(best).i32(8).op("i32.mul").mem("i64.load", offset=labels)
        f.mem("i64.store", offset=label_out)
        if probabilities:
            matrix = votes + classes * 4
            _pairwise_probabilities(ctx, node, d_row, pair_table, matrix)
            _couple(ctx, classes, matrix, z_row)
            transform_row(ctx, kind, z_row, classes)
        elif classes > 2:
            f.get(z_row).get(d_row).i32(len(pairs) * 4).memory_copy()
            transform_row(ctx, kind, z_row, len(pairs))
        else:
            _binary_scores(ctx, d_row, z_row, kind)


def _most_votes(ctx: Ctx, votes: int, classes: int, best: int) -> None:
    """best = the first class with the most votes (std::max_element)."""
    f = ctx.f
    c, top = f.local(I32), f.local(I32)
    f.i32(0).set(best).i32(votes).mem("i32.load").set(top)
    with f.for_range(c, 4, classes * 4, 4):
        f.get(c).mem("i32.load", offset=votes).get(top).op("i32.gt_s")
        with f.if_():
            f.get(c).i32(2).op("i32.shr_u").set(best).get(c).mem("i32.load", offset=votes).set(top)


def _binary_scores(ctx: Ctx, d_row: int, z_row: int, kind: str) -> None:
    """One decision value d becomes [-d, d] under NONE, [logistic(-d), logistic(d)] under LOGISTIC
    and [1 - d, d] under the softmaxes (what ONNX Runtime writes; PROBIT is refused)."""
    f = ctx.f
    d = f.local(F32)
    f.get(d_row).mem("f32.load").set(d)
    f.get(z_row)
    if kind == "SOFTMAX" or kind == "SOFTMAX_ZERO":
        f.f32(1.0).get(d).op("f32.sub")
    else:
        f.get(d).op("f32.neg")
        if kind == "LOGISTIC":
            logistic(ctx)
    f.mem("f32.store").get(z_row).get(d)
    if kind == "LOGISTIC":
        logistic(ctx)
    f.mem("f32.store", offset=4)


def _pairwise_probabilities(ctx: Ctx, node: Node, d_row: int, pair_table: int, matrix: int) -> None:
    """r[i, j] = clamp(1 - logistic(d A + B), 1e-7, 1 - 1e-7) and r[j, i] = 1 - r[i, j] for each pair
    (Platt scaling with the pair's prob_a and prob_b); the diagonal stays 0."""
    f = ctx.f
    classes = _classes(node)
    pairs = len(_pairs(classes))
    a = ctx.data(np.asarray(node.attr("prob_a")[:pairs], dtype=np.float32))
    b = ctx.data(np.asarray(node.attr("prob_b")[:pairs], dtype=np.float32))
    low, high = float(np.float32(1e-7)), float(np.float32(1) - np.float32(1e-7))
    p, at = f.local(I32), f.local(I32)
    value = f.local(F32)
    f.i32(matrix).i32(0).i32(classes * classes * 4).memory_fill()
    with f.for_range(p, 0, pairs * 4, 4):
        f.f32(1.0).get(p).get(d_row).op("i32.add").mem("f32.load").get(p).mem("f32.load", offset=a).op("f32.mul")
        f.get(p).mem("f32.load", offset=b).op("f32.add")
        logistic(ctx)
        f.op("f32.sub").set(value)
        # std::min(std::max(v, low), high): a NaN stays NaN through max (it is the first argument)
        f.f32(low).get(value).get(value).f32(low).op("f32.lt").op("select").set(value)
        f.f32(high).get(value).get(value).f32(high).op("f32.gt").op("select").set(value)
        f.get(p).i32(4).op("i32.mul").tee(at).mem("i32.load", offset=pair_table + 8).i32(matrix).op("i32.add")
        f.get(value).mem("f32.store")
        f.get(at).mem("i32.load", offset=pair_table + 12).i32(matrix).op("i32.add")
        f.f32(1.0).get(value).op("f32.sub").mem("f32.store")


def _couple(ctx: Ctx, classes: int, r: int, p: int) -> None:
    """libsvm's multiclass_probability as ONNX Runtime computes it: class probabilities p (at the
    address in local `p`) from the pairwise ones r, by at most 100 rounds of its fixed-point method."""
    f = ctx.f
    q, qp = r + classes * classes * 4, r + 2 * classes * classes * 4
    size = classes * classes * 4
    i, j, it, done = (f.local(I32) for _ in range(4))
    pqp, total, error, top, diff, qii, scale = (f.local(F32) for _ in range(7))
    eps = float(np.float32(0.005) / np.float32(classes))
    uniform = float(np.float32(1) / np.float32(classes))

    def at(base: int, row: int, col: int) -> None:
        """Push the address of base[row, col] (row and col are locals holding class indices)."""
        f.get(row).i32(classes).op("i32.mul").get(col).op("i32.add").i32(4).op("i32.mul").i32(base).op("i32.add")

    def vec(base: int, index: int) -> None:
        f.get(index).i32(4).op("i32.mul").i32(base).op("i32.add")

    def p_at(index: int) -> None:
        f.get(index).i32(4).op("i32.mul").get(p).op("i32.add")

    f.i32(q).i32(0).i32(size).memory_fill()
    with f.for_range(i, 0, classes):
        p_at(i)
        f.f32(uniform).mem("f32.store")
        with f.for_range(j, 0, classes):
            f.get(j).get(i).op("i32.ne")
            with f.if_():
                at(q, i, i)
                at(q, i, i)
                f.mem("f32.load")
                at(r, j, i)
                f.mem("f32.load")
                at(r, j, i)
                f.mem("f32.load").op("f32.mul").op("f32.add").mem("f32.store")
                at(q, i, j)
                f.get(j).get(i).op("i32.lt_s")
                with f.if_(F32):
                    at(q, j, i)
                    f.mem("f32.load")
                    f.else_()
                    at(r, j, i)
                    f.mem("f32.load").op("f32.neg")
                    at(r, i, j)
                    f.mem("f32.load").op("f32.mul")
                f.mem("f32.store")
    f.i32(0).set(done)
    with f.for_range(it, 0, PROBABILITY_ITERATIONS):
        f.get(done).op("i32.eqz")
        with f.if_():
            f.f32(0.0).set(pqp)
            with f.for_range(i, 0, classes):
                f.f32(0.0).set(total)
                with f.for_range(j, 0, classes):
                    f.get(total)
                    at(q, i, j)
                    f.mem("f32.load")
                    p_at(j)
                    f.mem("f32.load").op("f32.mul").op("f32.add").set(total)
                vec(qp, i)
                f.get(total).mem("f32.store")
                p_at(i)
                f.mem("f32.load").get(total).op("f32.mul").get(pqp).op("f32.add").set(pqp)
            f.f32(0.0).set(top)
            with f.for_range(i, 0, classes):
                vec(qp, i)
                f.mem("f32.load").get(pqp).op("f32.sub").op("f32.abs").tee(error).get(top).op("f32.gt")
                with f.if_():
                    f.get(error).set(top)
            f.get(top).f32(eps).op("f32.lt").set(done)
            f.get(done).op("i32.eqz")
            with f.if_(), f.for_range(i, 0, classes):
                at(q, i, i)
                f.mem("f32.load").set(qii)
                vec(qp, i)
                f.mem("f32.load").op("f32.neg").get(pqp).op("f32.add").get(qii).op("f32.div").set(diff)
                p_at(i)
                p_at(i)
                f.mem("f32.load").get(diff).op("f32.add").mem("f32.store")
                f.f32(1.0).get(diff).op("f32.add").set(scale)
                f.get(pqp).get(diff).get(diff).get(qii).op("f32.mul").f32(2.0)
                vec(qp, i)
                f.mem("f32.load").op("f32.mul").op("f32.add").op("f32.mul").op("f32.add")
                f.get(scale).op("f32.div").get(scale).op("f32.div").set(pqp)
                with f.for_range(j, 0, classes):
                    vec(qp, j)
                    vec(qp, j)
                    f.mem("f32.load").get(diff)
                    at(q, i, j)
                    f.mem("f32.load").op("f32.mul").op("f32.add").get(scale).op("f32.div").mem("f32.store")
                    p_at(j)
                    p_at(j)
                    f.mem("f32.load").get(scale).op("f32.div").mem("f32.store")


# ---------------------------------------------------------------- SVMRegressor

def _check_svm_regressor(node: Node, graph: Graph) -> list[str]:
    problems = check_input(node, graph, (np.float32,))
    if problems:
        return problems
    n, features = feature_rows(graph, node.inputs[0])
    vectors = svm_vectors(node)
    coefficients = node.attr("coefficients", []) or []
    if len(coefficients) != (vectors or features):
        problems.append(f"coefficients must have one value per {'support vector' if vectors else 'feature'} "
                        f"({vectors or features}), got {len(coefficients)}")
    if not node.attr("rho"):
        problems.append("rho must have a value")
    problems += _check_kernel(node, graph, vectors)
    return problems + check_output(graph, node.outputs[0], n, np.float32)


@kernel("SVMRegressor", domain=ML, check=_check_svm_regressor, scratch=svm_scratch)
def emit_svm_regressor(ctx: Ctx, node: Node) -> None:
    """y = K(x, support vectors) . coefficients + rho (or x . coefficients + rho without support
    vectors); one_class gives the sign, 1 or -1. post_transform is ignored, as in ONNX Runtime."""
    f = ctx.f
    n, features = feature_rows(ctx.graph, node.inputs[0])
    vectors = svm_vectors(node)
    coefficients = np.asarray(node.attr("coefficients"), dtype=np.float32).reshape(-1, 1)
    rho = float(node.attr("rho")[0])
    bias = np.asarray([rho], np.float32) if rho != 0 else None
    out = ctx.addr(node.outputs[0])
    x = float_input(ctx, node)
    if vectors and node.attr("kernel_type", "LINEAR") == "LINEAR":
        linear_products(ctx, n, features, x, _folded(node, coefficients), bias, out)
    elif vectors:  # the kernel values' sum cancels (an SVR's terms are far larger than its result): the GEMM
        # sums them in order, as ONNX Runtime does, where dot products four lanes apart would round differently
        kernels = ctx.scratch_addr + float_scratch(node, ctx.graph)
        _emit_kernel_values(ctx, node, x, kernels)
        emit_gemm(ctx, n, 1, vectors, Operand(kernels, vectors, 1), coefficients, Operand(out, 1, 1),
                  Operand(ctx.data(bias), 0, 1) if bias is not None else None)
    else:
        linear_products(ctx, n, features, x, coefficients.T, bias, out)
    if int(node.attr("one_class", 0)):
        map_f32(ctx, out, out, n, lambda: f.f32x4_const(0.0).op("f32x4.gt").f32x4_const(2.0).op("v128.and")
                .f32x4_const(-1.0).op("f32x4.add"))


__all__ = ["emit_svm_classifier", "emit_svm_regressor"]
