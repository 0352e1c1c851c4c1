"""NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss lowered to existing ops (passes/losses.py) against
ONNX Runtime: every reduction, with and without class weights and ignore_index (inside the classes, negative,
past them), labels of rank 1 to 4, opsets 12 and 13 (LogSoftmax's coercion differs), the log_prob output,
int32 labels; a label outside the classes traps; a float64 loss is refused by name."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tests.parity import assert_matches_ort, single_op_model, wasm_run
from wasinfer.backends.wasm.compiler import UnsupportedModel
from wasinfer.runtime import ModelFault

rng = np.random.default_rng(12)
SHAPES = [(5, 4), (3, 5, 7), (2, 3, 4, 5)]


def _case(shape: tuple[int, ...], ignore: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels, a few labels set to the ignored index when there is one."""
    scores = rng.standard_normal(shape).astype(np.float32)
    labels = rng.integers(0, shape[1], (shape[0], *shape[2:])).astype(np.int64)
    if ignore is not None:
        labels.reshape(-1)[::3] = ignore
    return scores, labels


@pytest.mark.parametrize(("shape", "reduction", "weighted", "ignore"),
                         list(itertools.product(SHAPES, ["none", "sum", "mean"], [False, True], [None, 1, -3, 40])))
@pytest.mark.parametrize("op", ["NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"])
def test_losses_match_ort(op: str, shape: tuple[int, ...], reduction: str, weighted: bool, ignore: int | None) -> None:
    scores, labels = _case(shape, ignore)
    if op == "NegativeLogLikelihoodLoss":
        scores = np.log(np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)).astype(np.float32)
    feeds = {"scores": scores, "labels": labels}
    if weighted:
        feeds["weights"] = rng.uniform(0.2, 2.0, shape[1]).astype(np.float32)
    attrs: dict[str, object] = {"reduction": reduction, **({"ignore_index": ignore} if ignore is not None else {})}
    model = single_op_model(op, feeds, opset=13, **attrs)
    assert_matches_ort(model, feeds, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("opset", [12, 13])
@pytest.mark.parametrize("shape", SHAPES)
def test_cross_entropy_log_prob_output_at_both_opsets(opset: int, shape: tuple[int, ...]) -> None:
    """Opset 12's LogSoftmax flattens the axes after the classes into them: the classes go last around it."""
    scores, labels = _case(shape, 2)
    feeds = {"scores": scores, "labels": labels}
    model = single_op_model("SoftmaxCrossEntropyLoss", feeds, output_count=2, opset=opset, ignore_index=2)
    assert_matches_ort(model, feeds, rtol=1e-5, atol=1e-6)


def test_int32_labels_give_the_int64_loss() -> None:
    scores, labels = _case((3, 5, 7), -1)
    feeds = {"scores": scores, "labels": labels}
    narrow = {"scores": scores, "labels": labels.astype(np.int32)}
    model = single_op_model("SoftmaxCrossEntropyLoss", feeds, opset=13, ignore_index=-1)
    model32 = single_op_model("SoftmaxCrossEntropyLoss", narrow, opset=13, ignore_index=-1)
    np.testing.assert_array_equal(wasm_run(model32, narrow)[0], wasm_run(model, feeds)[0])


def test_a_label_outside_the_classes_traps() -> None:
    scores, labels = _case((4, 3), None)
    labels[2] = 3
    model = single_op_model("SoftmaxCrossEntropyLoss", {"scores": scores, "labels": labels}, opset=13)
    with pytest.raises(ModelFault):
        wasm_run(model, {"scores": scores, "labels": labels})


def test_a_float64_loss_is_refused_by_name() -> None:
    scores, labels = _case((4, 3), None)
    feeds = {"scores": scores.astype(np.float64), "labels": labels}
    model = single_op_model("SoftmaxCrossEntropyLoss", feeds, opset=13)
    with pytest.raises(UnsupportedModel, match=r"SoftmaxCrossEntropyLoss.*only float32 is supported"):
        wasm_run(model, feeds)
