"""NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss (opset 12/13) lowered to ops that already run.

Exported training graphs and evaluation models carry these losses: the negative log-probability each sample's
label picks, weighted by its class weight, then summed, averaged or left per sample. Over input [N, C, d...]
and labels [N, d...]:

    safe   = Where(labels == ignore_index, 0, labels)            (only with an ignore_index)
    picked = GatherElements(input, Reshape(safe, [N, 1, d...]), axis=1) → Reshape [N, d...]
    weight = Gather(weights, safe) (or 1), 0 where the label is ignored
    loss   = -picked * weight;  none: loss;  sum: ReduceSum;  mean: ReduceSum(loss) / ReduceSum(weight)

(mean without weights or ignore_index is a ReduceMean). SoftmaxCrossEntropyLoss is that over a LogSoftmax along
the classes (its optional second output); before opset 13 LogSoftmax flattens the axes from its axis on, so
there the classes move last around it. A label outside the classes traps, as its GatherElements does.
"""

from __future__ import annotations

import numpy as np

from wasinfer.ir import Graph, Node, TensorInfo
from wasinfer.passes.subgraph import lower_each


class LossError(ValueError):
    """Why a loss stays in the graph (the compiler names it with this reason)."""


class _Builder:
    """The nodes of one lowering, named after the node they replace, each output typed as it is added."""

    def __init__(self, graph: Graph, node: Node):
        self.graph, self.node, self.nodes = graph, node, list[Node]()

    def add(self, op: str, inputs: list[str], dtype: np.dtype, shape: tuple[int, ...], output: str = "",
            **attrs: object) -> str:
        name = output or f"{self.node.name}/{op.lower()}_{len(self.nodes)}"
        self.graph.tensors[name] = TensorInfo(name, np.dtype(dtype), shape)
        self.nodes.append(Node(op, f"{self.node.name}/{op}_{len(self.nodes)}", inputs, [name], dict(attrs),
                               guards=self.node.guards))
        return name

    def constant(self, value: np.ndarray) -> str:
        name = f"{self.node.name}/constant_{len(self.graph.constants)}"
        self.graph.add_constant(name, value)
        return name

    def reshape(self, name: str, shape: tuple[int, ...]) -> str:
        info = self.graph.info(name)
        return self.add("Reshape", [name, self.constant(np.array(shape, np.int64))], info.dtype, shape)


def _nll(b: _Builder, log_prob: str, labels: str, weights: str, reduction: str, ignore: int | None,
         output: str) -> None:
    """The loss of `log_prob` [N, C, d...] at `labels` [N, d...] into `output`."""
    graph = b.graph
    scores, label_info = graph.info(log_prob), graph.info(labels)
    dtype, shape = scores.dtype, label_info.shape
    if reduction not in ("none", "sum", "mean"):
        raise LossError(f"reduction {reduction!r} is not one of none, sum, mean")
    if len(scores.shape) < 2 or shape != (scores.shape[0], *scores.shape[2:]):
        raise LossError(f"labels of shape {list(shape)} do not match scores of shape {list(scores.shape)}")
    safe, ignored = labels, None
    if ignore is not None:
        ignored = b.add("Equal", [labels, b.constant(np.array(ignore, label_info.dtype))], np.dtype(np.bool_), shape)
        safe = b.add("Where", [ignored, b.constant(np.array(0, label_info.dtype)), labels], label_info.dtype, shape)
    index = b.reshape(safe, (shape[0], 1, *shape[1:]))
    picked = b.add("GatherElements", [log_prob, index], dtype, (shape[0], 1, *shape[1:]), axis=1)
    loss = b.add("Neg", [b.reshape(picked, shape)], dtype, shape)
    weight = None
    if weights:
        weight = b.add("Gather", [weights, safe], dtype, shape, axis=0)
    if ignored is not None:
        kept = weight if weight is not None else b.constant(np.array(1, dtype))
        weight = b.add("Where", [ignored, b.constant(np.array(0, dtype)), kept], dtype, shape)
    if weight is not None:
        loss = b.add("Mul", [loss, weight], dtype, shape, output=output if reduction == "none" else "")
    if reduction == "none":
        if loss != output:
            b.add("Identity", [loss], dtype, shape, output=output)
    elif reduction == "sum" or weight is None:
        b.add("ReduceSum" if reduction == "sum" else "ReduceMean", [loss], dtype, (), output=output, keepdims=0)
    else:
        total = b.add("ReduceSum", [loss], dtype, (), keepdims=0)
        b.add("Div", [total, b.add("ReduceSum", [weight], dtype, (), keepdims=0)], dtype, (), output=output)


def _attributes(graph: Graph, node: Node) -> tuple[str, int | None, str]:
    """reduction, ignore_index (None when absent) and the weights input ('' when absent)."""
    if any(graph.info(n).dtype != np.float32 for n in (node.inputs[0], node.outputs[0])):
        raise LossError(f"scores have dtype {graph.info(node.inputs[0]).dtype}; only float32 is supported")
    ignore = node.attrs.get("ignore_index")
    weights = node.inputs[2] if len(node.inputs) > 2 else ""
    return str(node.attrs.get("reduction", "mean")), None if ignore is None else int(ignore), weights


def lower_nll_loss(graph: Graph, node: Node) -> list[Node]:
    reduction, ignore, weights = _attributes(graph, node)
    b = _Builder(graph, node)
    _nll(b, node.inputs[0], node.inputs[1], weights, reduction, ignore, node.outputs[0])
    return b.nodes


def lower_softmax_cross_entropy(graph: Graph, node: Node) -> list[Node]:
    reduction, ignore, weights = _attributes(graph, node)
    b = _Builder(graph, node)
    scores = graph.info(node.inputs[0])
    rank = len(scores.shape)
    log_prob = node.outputs[1] if len(node.outputs) > 1 and node.outputs[1] else ""
    if graph.opset >= 13 or rank <= 2:
        log_prob = b.add("LogSoftmax", [node.inputs[0]], scores.dtype, scores.shape, output=log_prob, axis=1)
    else:  # opset 12's LogSoftmax coerces axes 1.. into one: the classes go last around it
        last = [0, *range(2, rank), 1]
        moved = tuple(scores.shape[p] for p in last)
        transposed = b.add("Transpose", [node.inputs[0]], scores.dtype, moved, perm=last)
        normalised = b.add("LogSoftmax", [transposed], scores.dtype, moved, axis=rank - 1)
        back = [0, rank - 1, *range(1, rank - 1)]
        log_prob = b.add("Transpose", [normalised], scores.dtype, scores.shape, output=log_prob, perm=back)
    _nll(b, log_prob, node.inputs[1], weights, reduction, ignore, node.outputs[0])
    return b.nodes


def lower_losses(graph: Graph) -> int:
    """Replace every NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss by its lowering; one left in place
    carries the reason (`Node.declined`)."""
    return lower_each(graph, {"NegativeLogLikelihoodLoss": lower_nll_loss,
                              "SoftmaxCrossEntropyLoss": lower_softmax_cross_entropy}, LossError)


__all__ = ["lower_losses"]
