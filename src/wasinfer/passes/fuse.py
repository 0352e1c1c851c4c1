"""Graph rewrites that remove work: BatchNormalization, and Mul/Add by per-channel constants,
folded into an adjacent Conv's weights; SiLU and hard-swish written as several elementwise ops
made one Swish or HardSwish; and activations fused into the kernel that produces their input."""

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


def _channel_constant(graph: Graph, name: str, channels: int, rank: int) -> np.ndarray | None:
    """A float32 constant that varies at most along axis 1 of a rank-`rank` value with `channels` channels
    (a scalar, [C], [C, 1, 1], [1, C, 1, 1], ...), as one value per channel; None for anything else."""
    value = graph.constants.get(name)
    if value is None or value.dtype != np.float32 or value.ndim > rank:
        return None
    shape = (1,) * (rank - value.ndim) + value.shape
    if any(d != 1 for axis, d in enumerate(shape) if axis != 1) or shape[1] not in (1, channels):
        return None
    return np.broadcast_to(value.astype(np.float64).reshape(-1), (channels,))


def _foldable_conv(graph: Graph, node: Node | None) -> bool:
    """A Conv whose weights and bias are constants, with nothing fused into it yet."""
    return (node is not None and node.op_type == "Conv" and not node.domain and node.activation is None
            and len(node.inputs) > 1 and node.inputs[1] in graph.constants
            and (len(node.inputs) < 3 or not node.inputs[2] or node.inputs[2] in graph.constants))


def _affine_operand(graph: Graph, node: Node, rank: int, channels: int) -> tuple[str, np.ndarray] | None:
    """(the variable input, the per-channel constant) of a Mul or Add by such a constant, else None."""
    if node.op_type not in ("Mul", "Add") or node.domain or node.activation is not None or len(node.inputs) != 2:
        return None
    for variable, constant in (node.inputs, node.inputs[::-1]):
        if variable not in graph.constants:
            values = _channel_constant(graph, constant, channels, rank)
            if values is not None and graph.info(node.outputs[0]).shape == graph.info(variable).shape:
                return variable, values
    return None


def _replace_conv_parameters(graph: Graph, conv: Node, weight: np.ndarray, bias: np.ndarray) -> None:
    """New constants (the old ones may be shared with another node) as the Conv's weights and bias."""
    names = []
    for label, value in (("weight", weight), ("bias", bias)):
        name, index = f"{conv.name}/affine_{label}", 0
        while name in graph.constants or name in graph.tensors:
            index += 1
            name = f"{conv.name}/affine_{label}{index}"
        graph.add_constant(name, value.astype(np.float32))
        names.append(name)
    conv.inputs = [conv.inputs[0], *names]


def _conv_weight_bias(graph: Graph, conv: Node) -> tuple[np.ndarray, np.ndarray]:
    weight = graph.constants[conv.inputs[1]].astype(np.float64)
    has_bias = len(conv.inputs) > 2 and conv.inputs[2]
    return weight, graph.constants[conv.inputs[2]].astype(np.float64) if has_bias else np.zeros(weight.shape[0])


class _Uses:
    """Which node produces and which nodes read each value, kept current as folds rewire the graph.
    Graph.producer and Graph.consumers scan every node, which over every Mul and Add of a graph of
    unrolled loops (up to 20,000 nodes) would be quadratic: minutes instead of milliseconds."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.dropped: set[int] = set()  # ids of the nodes that left
        self.producer = {o: n for n in graph.nodes for o in n.outputs if o}
        self.readers: dict[str, list[Node]] = {}
        for node in graph.nodes:
            for name in node.inputs:
                if name:
                    self.readers.setdefault(name, []).append(node)

    def sole_reader(self, name: str) -> Node | None:
        readers = self.readers.get(name, [])
        return readers[0] if len(readers) == 1 and name not in self.graph.outputs else None

    def drop(self, node: Node) -> None:
        """`node` leaves the graph."""
        for name in node.inputs:
            if name:
                self.readers[name].remove(node)
        for name in node.outputs:
            if self.producer.get(name) is node:
                del self.producer[name]
        self.graph.nodes.remove(node)
        self.dropped.add(id(node))

    def rewire(self, node: Node, inputs: list[str], outputs: list[str]) -> None:
        """`node`'s inputs and outputs were `inputs` and `outputs` and are what it holds now."""
        for name in inputs:
            if name:
                self.readers[name].remove(node)
        for name in node.inputs:
            if name:
                self.readers.setdefault(name, []).append(node)
        for name in outputs:
            if self.producer.get(name) is node:
                del self.producer[name]
        self.producer.update((name, node) for name in node.outputs if name)


def fold_conv_affine(graph: Graph) -> int:
    """Mul/Add by per-channel constants next to a Conv folded into its weights and bias.

    After the Conv, `Conv(x) * s + b` is a Conv with weights W*s and bias bias*s + b, as
    BatchNormalization folds. Before a Conv without padding, `Conv(x * s + b)` is a Conv with
    weights scaled per input channel and bias + sum(W * b): padding would pad x * s + b with zeros,
    which no choice of weights gives, so padded Convs keep theirs. PP-OCRv4's blocks put such a
    learnable affine (scalar scale and shift) on each side of every activation: 4 passes over
    memory per block that run as none. Passes repeat until nothing folds (a Mul, then an Add,
    before a Conv fold in two). Returns how many nodes went."""
    uses = _Uses(graph)
    folded, changed = 0, True
    while changed:
        changed = False
        for node in [n for n in graph.nodes if n.op_type in ("Mul", "Add") and not n.domain and len(n.inputs) == 2
                     and any(i in graph.constants for i in n.inputs)]:
            if id(node) not in uses.dropped and (
                    _fold_after_conv(graph, node, uses) or _fold_before_conv(graph, node, uses)):
                folded += 1
                changed = True
    return folded


def _fold_after_conv(graph: Graph, node: Node, uses: _Uses) -> bool:
    for name in node.inputs:
        conv = uses.producer.get(name)
        if conv is None or not _foldable_conv(graph, conv) or uses.sole_reader(name) is not node:
            continue
        if conv.guards != node.guards:
            return False
        shape = graph.info(name).shape
        operand = _affine_operand(graph, node, len(shape), shape[1]) if len(shape) > 2 else None
        if operand is None or operand[0] != name:
            return False
        weight, bias = _conv_weight_bias(graph, conv)
        values = operand[1]
        if node.op_type == "Mul":
            weight = weight * values.reshape((-1,) + (1,) * (weight.ndim - 1))
            bias = bias * values
        else:
            bias = bias + values
        inputs, outputs = list(conv.inputs), list(conv.outputs)
        _replace_conv_parameters(graph, conv, weight, bias)
        conv.outputs = [node.outputs[0]]
        uses.drop(node)
        uses.rewire(conv, inputs, outputs)
        return True
    return False


def _fold_before_conv(graph: Graph, node: Node, uses: _Uses) -> bool:
    conv = uses.sole_reader(node.outputs[0])
    if conv is None or not _foldable_conv(graph, conv) or conv.inputs[0] != node.outputs[0]:
        return False
    if conv.guards != node.guards or conv.inputs.count(node.outputs[0]) != 1:
        return False
    if conv.attr("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or any(conv.attr("pads", [0])):
        return False
    shape = graph.info(node.outputs[0]).shape
    operand = _affine_operand(graph, node, len(shape), shape[1]) if len(shape) > 2 else None
    if operand is None:
        return False
    variable, values = operand
    weight, bias = _conv_weight_bias(graph, conv)
    out_channels, group_channels = weight.shape[:2]
    per_group = out_channels // int(conv.attr("group", 1))
    # the input channel each (output channel, weight channel) pair reads
    channel = (np.arange(out_channels) // per_group)[:, None] * group_channels + np.arange(group_channels)[None, :]
    spread = values[channel].reshape(out_channels, group_channels, *(1,) * (weight.ndim - 2))
    if node.op_type == "Mul":
        weight = weight * spread
    else:
        bias = bias + (weight * spread).reshape(out_channels, -1).sum(axis=1)
    inputs, outputs = list(conv.inputs), list(conv.outputs)
    _replace_conv_parameters(graph, conv, weight, bias)
    conv.inputs[0] = variable
    uses.drop(node)
    uses.rewire(conv, inputs, outputs)
    return True


def _scalar(graph: Graph, name: str) -> float | None:
    value = graph.constants.get(name)
    return float(value.reshape(-1)[0]) if value is not None and value.size == 1 and value.dtype == np.float32 else None


def fuse_hard_swish(graph: Graph) -> int:
    """x * Clip(x + 3, 0, 6) / 6 (or * 1/6) → one HardSwish(x): hard-swish as Paddle exports it.

    Four kernels, three passes over memory once the Clip joins the Add, become one elementwise
    pass. The Add 3 is looked for first: the consumer lookups scan the graph."""
    fused = 0
    for add in [n for n in graph.nodes if n.op_type == "Add" and not n.domain and n.activation is None]:
        x = next((i for i, c in (add.inputs, add.inputs[::-1]) if _scalar(graph, c) == 3.0 and i not in
                  graph.constants), None) if len(add.inputs) == 2 else None
        if x is None:
            continue
        clip = _sole_consumer(graph, add.outputs[0])
        if clip is None or clip.op_type != "Clip" or clip.domain:
            continue
        if activation_params(clip, graph) != {"min": 0.0, "max": 6.0}:
            continue
        mul = _sole_consumer(graph, clip.outputs[0])
        if mul is None or mul.op_type != "Mul" or mul.domain or sorted(mul.inputs) != sorted([x, clip.outputs[0]]):
            continue
        scale = _sole_consumer(graph, mul.outputs[0])
        if scale is None or scale.domain or scale.op_type not in ("Div", "Mul") or scale.inputs[0] != mul.outputs[0]:
            continue
        factor = _scalar(graph, scale.inputs[1])
        if factor is None or (scale.op_type == "Div" and factor != 6.0) or (
                scale.op_type == "Mul" and not np.isclose(factor, 1 / 6, rtol=1e-6)):
            continue
        chain = [add, clip, mul, scale]
        if any(n.guards != add.guards for n in chain) or graph.info(scale.outputs[0]).shape != graph.info(x).shape:
            continue
        graph.nodes[graph.nodes.index(scale)] = Node("HardSwish", scale.name, [x], list(scale.outputs),
                                                     guards=scale.guards)
        for node in chain[:3]:
            graph.nodes.remove(node)
        fused += 3
    return fused


def _gated_op(gate: Node, graph: Graph) -> tuple[str, dict[str, float]] | None:
    """The one op that x * gate(x) is: SiLU (Sigmoid) is Swish with alpha 1, HardSigmoid with alpha
    1/6 and beta 1/2 is HardSwish (PyTorch's export of hardswish before opset 14)."""
    params = activation_params(gate, graph)
    if params is None or gate.domain:
        return None
    if gate.op_type == "Sigmoid":
        return "Swish", {"alpha": 1.0}
    if gate.op_type == "HardSigmoid" and np.isclose(params["alpha"], 1 / 6, rtol=1e-6) and params["beta"] == 0.5:
        return "HardSwish", {}
    return None


def fuse_self_gates(graph: Graph) -> int:
    """x * Sigmoid(x) → Swish(x) (alpha 1), x * HardSigmoid(x) (alpha 1/6, beta 1/2) → HardSwish(x),
    where the gate's only consumer is that Mul (either order).

    Exporters write SiLU (YOLO's and EfficientNet's activation) and older hard-swish this way; as two
    kernels it is two passes over memory and a buffer for the gate, as one a single elementwise
    pass. The fused op takes the Mul's place and name, so its output keeps its consumers."""
    fused = 0
    for gate in [n for n in graph.nodes if n.op_type in ("Sigmoid", "HardSigmoid")]:
        x, s = gate.inputs[0], gate.outputs[0]
        mul = _sole_consumer(graph, s)
        if mul is None or mul.op_type != "Mul" or mul.domain or sorted(mul.inputs) != sorted([x, s]):
            continue
        replacement = _gated_op(gate, graph)
        if mul.guards != gate.guards or replacement is None:
            continue
        op, attrs = replacement
        graph.nodes[graph.nodes.index(mul)] = Node(op, mul.name, [x], list(mul.outputs), attrs, guards=mul.guards)
        graph.nodes.remove(gate)
        fused += 1
    return fused


def fuse_activations(graph: Graph) -> int:
    """x times its own gate and Paddle's hard-swish first (`fuse_self_gates`, `fuse_hard_swish`), then
    each activation into its producer's epilogue where it is the producer's only consumer; returns how
    many nodes went."""
    fused = fuse_self_gates(graph) + fuse_hard_swish(graph)
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
