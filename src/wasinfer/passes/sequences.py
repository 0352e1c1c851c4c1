"""Sequences and optionals whose contents are known while compiling, folded away before lowering.

A module's values are tensors of static types, so a sequence is a list of tensors that compiling keeps track of
(by name), not a value of its own: SequenceConstruct, SequenceEmpty, SequenceInsert and SequenceErase build the
list, SequenceAt reads one of its tensors (an Identity), SequenceLength is a constant, SplitToSequence is one
Slice per piece (a Squeeze after each without keepdims), ConcatFromSequence a Concat (an Unsqueeze of each first
with new_axis), and SequenceMap one inlined copy of its body per element (passes/subgraph.py), whose outputs are
lists again. An Optional is a tensor or nothing, known while compiling: OptionalHasElement is a constant and
OptionalGetElement an Identity (ONNX's own tensor input to them, from opset 18, is a present optional).

Each of those needs what it decides to be a constant once shapes are static: the positions, the split sizes
(SplitToSequence's count is its split input's length or the axis's size; sizes read at run time are fine while no
element is read). What a list cannot be is refused with the reason: a position computed at run time, a sequence
read by another op (a Loop carrying it, an If returning it), an empty optional read. Either every sequence op of the
graph folds, or none does.

Sequence and optional graph inputs (frontends/lists.py) are lists of the tensors that carry them. Two things about
them are known only at run time, and each is a tensor the lists keep beside the elements: a sequence's count where
--sequence gives it a range (SequenceLength is that tensor; SequenceAt at a constant position reads its slot, a run
whose count does not reach it refused by a Refuse node; SequenceInsert at the end writes the slot the count names;
returning it returns the slots and the count; the ops that would move elements by it are refused, naming it), and
an optional input's "present" flag (OptionalHasElement is that flag; OptionalGetElement its element, a run where it
is absent refused, as ONNX fails it). A sequence or optional the graph returns becomes tensor outputs, `NAME.0`...,
`NAME.count`, `NAME.present`, `NAME.value`, recorded as the graph's `list_outputs` (ListValue), which the metadata
lists and the runtime reassembles into lists and None.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import onnx

from wasinfer.ir import Graph, ListValue, Node, TensorInfo
from wasinfer.ops.control import CHOOSE, REFUSE
from wasinfer.passes.subgraph import inline_subgraph

SEQUENCE_OPS = frozenset({"SequenceConstruct", "SequenceEmpty", "SequenceInsert", "SequenceErase", "SequenceAt",
                          "SequenceLength", "SplitToSequence", "ConcatFromSequence", "SequenceMap"})
OPTIONAL_OPS = frozenset({"Optional", "OptionalHasElement", "OptionalGetElement"})


class _Refused(Exception):
    """Why the graph's sequences stay (the compiler then names the node with this reason)."""


@dataclass
class _Lists:
    """The sequences and optionals found so far, and the nodes folding them gives."""

    graph: Graph
    sequences: dict[str, list[str]] = field(default_factory=dict)  # a sequence → its tensors, in order
    optionals: dict[str, str | None] = field(default_factory=dict)  # an optional → its tensor, or None (empty)
    makers: dict[str, list[Node] | str] = field(default_factory=dict)  # a piece → its nodes (or why it has none)
    nodes: list[Node] = field(default_factory=list)
    # a sequence whose count each run decides → the int64 scalar tensor holding it, and its (smallest, largest)
    counts: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    # an optional whose presence each run decides → the bool scalar tensor holding it
    present: dict[str, str] = field(default_factory=dict)

    def sequence(self, name: str, node: Node, moves: bool = True) -> list[str]:
        """The tensors of sequence `name`; `moves`: the node's result depends on which of them the run holds,
        which a count decided at run time cannot say while compiling."""
        if name not in self.sequences:
            raise _Refused(f"its input {name!r} is not a sequence (a sequence input needs its count declared: "
                           "--sequence)")
        if moves and name in self.counts:
            tensor, low, high = self.counts[name]
            raise _Refused(f"{name!r} holds {low}..{high} tensors, a count each run decides ({tensor!r}): "
                           "SequenceLength, SequenceAt at a constant position, SequenceInsert at the end and "
                           "returning it take such a sequence; declare a fixed count (--sequence NAME=N..N) for "
                           f"{node.op_type}")
        return self.sequences[name]

    def refuse_unless(self, flag: str, node: Node, message: str, holds: bool = False) -> None:
        """A Refuse node that stops the run where bool scalar `flag` is false (true with `holds`): the run's
        status is then 2 + i, and the metadata's run_errors[i] the message."""
        self.graph.run_errors.append(message)
        code = len(self.graph.run_errors) + 1  # status 0 is success, 1 a batch out of range
        self.nodes.append(Node(REFUSE[1], f"{node.name}/refuse", [], [], {"code": code}, domain=REFUSE[0],
                               guards=(*node.guards, (flag, holds))))

    def read(self, name: str) -> str:
        """A tensor of a sequence, read: the nodes that make it (a SplitToSequence's piece) go in first."""
        made = self.makers.pop(name, None)
        if isinstance(made, str):
            raise _Refused(made)
        if made is not None:
            self.nodes += made
            for piece in [p for p, m in self.makers.items() if m is made]:  # one Split makes them all
                del self.makers[piece]
        return name

    def constant(self, name: str, value: np.ndarray) -> str:
        if name not in self.graph.constants:
            self.graph.add_constant(name, value)
        return name


def _position(graph: Graph, node: Node, index: int, length: int, default: int, inserting: bool = False) -> int:
    """Input `index` (a position in a sequence of `length`, negative from the end) as a constant, or `default`."""
    name = node.inputs[index] if len(node.inputs) > index else ""
    if not name:
        return default
    if name not in graph.constants:
        raise _Refused(f"its position {name!r} is computed at run time; a sequence is a list of tensors known while "
                       "compiling, so its positions must be constants")
    position = int(np.asarray(graph.constants[name]).reshape(-1)[0])
    top = length if inserting else length - 1
    if not -length <= position <= top:
        raise _Refused(f"position {position} is outside a sequence of {length}")
    return position + length if position < 0 else position


def fold_sequences(graph: Graph) -> int:
    """Fold every sequence and optional op away (all of them, or none, the first that cannot carrying the reason);
    returns how many nodes were folded."""
    if not any(not n.domain and n.op_type in SEQUENCE_OPS | OPTIONAL_OPS for n in graph.nodes):
        return 0
    present = _fold_presence(graph)
    if present:
        return present
    before = (set(graph.constants), len(graph.run_errors))  # what folding adds is dropped again where it is refused
    lists = _Lists(graph)
    for listed in graph.list_inputs:  # what each run decides about an input: the tensors that hold it
        if listed.count is not None and listed.counts is not None:
            lists.counts[listed.sequence_name] = (listed.count, *listed.counts)
            _check_count(lists, listed.name, listed.count, *listed.counts)
        if isinstance(listed.present, str):
            lists.present[listed.name] = listed.present
    pending = deque(graph.nodes)
    folded = 0
    while pending:
        node = pending.popleft()
        if node.domain or node.op_type not in SEQUENCE_OPS | OPTIONAL_OPS:
            read = [n for n in node.inputs if n in lists.sequences or n in lists.optionals]
            if read and node.op_type == "Identity":
                _alias(lists, node)
                folded += 1
                continue
            if read and (node.domain, node.op_type) == CHOOSE:
                try:
                    _choose(lists, node, node.inputs[0], node.inputs[1], node.inputs[2], node.outputs[0])
                except _Refused as why:
                    return _refuse(graph, node, str(why), before)
                folded += 1
                continue
            if read:
                return _refuse(graph, node, f"it reads {read[0]!r}, a sequence or optional, which compiling keeps as "
                               "a list of tensors: only the sequence and optional ops can read it", before)
            try:
                for name in node.inputs:
                    if name:
                        lists.read(name)
            except _Refused as why:
                return _refuse(graph, node, str(why), before)
            lists.nodes.append(node)
            continue
        try:
            inlined = _fold(lists, node)
        except _Refused as why:
            return _refuse(graph, node, str(why), before)
        pending.extendleft(reversed(inlined))
        folded += 1
    outputs: list[str] = []
    for name in graph.outputs:
        if name in lists.sequences or name in lists.optionals:
            try:
                listed = _returned(lists, name)
            except _Refused as why:
                return _refuse(graph, graph.producer(name) or graph.nodes[-1], str(why), before)
            graph.list_outputs.append(listed)
            outputs += [t for t in (listed.present, *listed.elements, listed.count) if isinstance(t, str)]
        else:
            outputs.append(name)
    graph.outputs = outputs
    graph.nodes = lists.nodes
    return folded


def _choose(lists: _Lists, node: Node, condition: str, then: str, other: str, out: str) -> None:
    """An output of an If decided at run time whose branches give lists: each element an IfChoose of the two
    branches' (passes/control.py makes it a Where once typed: the two must agree in type and shape); where one
    branch's list is longer, its extra elements as they are, and the count an IfChoose of the two counts (so a run
    reads only the taken branch's). An optional: the same for its element, its presence chosen alike."""
    def pick(first: str, second: str, target: str) -> str:
        lists.nodes.append(Node(CHOOSE[1], f"{target}/choose", [condition, lists.read(first), lists.read(second)],
                                [target], domain=CHOOSE[0], guards=node.guards))
        return target

    def known(value: str | bool | int, target: str) -> str:
        if isinstance(value, str):
            return value
        return lists.constant(target, np.array(value, np.int64 if not isinstance(value, bool) else np.bool_))

    if then in lists.optionals or other in lists.optionals:
        if not (then in lists.optionals and other in lists.optionals):
            raise _Refused(f"its branches give {out!r} an optional and a value of another type")
        first, second = lists.optionals[then], lists.optionals[other]
        flags = [lists.present.get(then, first is not None), lists.present.get(other, second is not None)]
        if not (flags[0] == flags[1] and isinstance(flags[0], bool)):  # else known: present (or absent) either way
            lists.present[out] = pick(known(flags[0], f"{out}/then/present"), known(flags[1], f"{out}/else/present"),
                                      f"{out}/present")
        if first is None or second is None:
            lists.optionals[out] = first or second
        elif first in lists.sequences and second in lists.sequences:
            _choose(lists, node, condition, first, second, f"{out}/element")
            lists.optionals[out] = f"{out}/element"
        else:
            lists.optionals[out] = pick(first, second, f"{out}/element")
        return
    if not (then in lists.sequences and other in lists.sequences):
        raise _Refused(f"its branches give {out!r} a sequence and a value of another type")
    items = lists.sequences[then], lists.sequences[other]
    elements = [pick(a, b, f"{out}/{i}") for i, (a, b) in enumerate(zip(*items, strict=False))]
    longer = max(items, key=len)
    elements += longer[len(elements):]  # read only by runs that take that branch, whose count reaches them
    lists.sequences[out] = elements
    counts = [lists.counts.get(then), lists.counts.get(other)]
    if counts == [None, None] and len(items[0]) == len(items[1]):
        return
    ranges = [(c[1], c[2]) if c else (len(side), len(side)) for c, side in zip(counts, items, strict=True)]
    tensors = [c[0] if c else len(side) for c, side in zip(counts, items, strict=True)]
    count = pick(known(tensors[0], f"{out}/then/count"), known(tensors[1], f"{out}/else/count"), f"{out}/count")
    lists.counts[out] = (count, min(r[0] for r in ranges), max(r[1] for r in ranges))


def _returned(lists: _Lists, name: str) -> ListValue:
    """A sequence or optional the graph returns, as the tensors that carry it (Identity nodes naming them after it:
    `NAME.0`..., `NAME.count` where each run decides the count, `NAME.present` where it decides the presence,
    `NAME.value` for an optional's tensor)."""
    def carry(source: str, target: str) -> str:
        lists.nodes.append(Node("Identity", f"{target}/output", [lists.read(source)], [target]))
        if source in lists.graph.tensors:
            info = lists.graph.info(source)
            lists.graph.tensors[target] = TensorInfo(target, info.dtype, info.shape)
        return target

    def sequence(source: str, kind: str, present: str | bool | None) -> ListValue:
        elements = tuple(carry(item, f"{name}.{i}") for i, item in enumerate(lists.sequences[source]))
        counted = lists.counts.get(source)
        count = None if counted is None else carry(counted[0], f"{name}.count")
        return ListValue(name, kind, elements, count, present)

    if name in lists.sequences:
        return sequence(name, "sequence", None)
    element = lists.optionals[name]
    flag = lists.present.get(name)
    present: str | bool = element is not None if flag is None else carry(flag, f"{name}.present")
    if element is None:
        return ListValue(name, "optional", (), present=False)
    if element in lists.sequences:
        return sequence(element, "optional_sequence", present)
    return ListValue(name, "optional", (carry(element, f"{name}.value"),), present=present)


def _refuse(graph: Graph, node: Node, why: str, before: tuple[set[str], int]) -> int:
    """Leave the graph as it was, each sequence and optional op carrying why (the compiler's support check
    reports it at whichever it names first), except what folding learned for good: a SequenceLength or
    OptionalHasElement that became a constant is one whatever follows (a Loop's trip count, folded so, lets
    passes/loops.py unroll the Loop that carried the refusing sequence, and a later round fold it). Returns how
    many of those it kept."""
    constants, errors = before
    facts = {n.outputs[0]: n for n in graph.nodes if not n.domain and n.op_type in ("SequenceLength",
                                                                                    "OptionalHasElement")
             and n.outputs[0] in graph.constants and n.outputs[0] not in constants}
    for name in set(graph.constants) - constants - set(facts):
        del graph.constants[name]
        graph.tensors.pop(name, None)
    del graph.run_errors[errors:]  # the Refuse nodes that said them are not in the graph
    graph.nodes = [n for n in graph.nodes if not any(n is fact for fact in facts.values())]
    for loop in graph.nodes:  # declined by passes/loops.py while its trip count was a sequence's length: look again
        if loop.op_type == "Loop" and not loop.domain and loop.inputs[0] in facts:
            loop.declined = None
    reason = (f"sequences and optionals are folded while compiling, and node {node.name!r} ({node.op_type}) "
              f"cannot be: {why}")
    for each in graph.nodes:
        if not each.domain and each.op_type in SEQUENCE_OPS | OPTIONAL_OPS:
            each.declined = reason
    if node.domain or node.op_type not in ("Loop", "Scan", "If"):  # control flow may still be unrolled or inlined
        node.declined = reason
    return len(facts)


def _alias(lists: _Lists, node: Node) -> None:
    source, target = node.inputs[0], node.outputs[0]
    if source in lists.sequences:
        lists.sequences[target] = list(lists.sequences[source])
        if source in lists.counts:
            lists.counts[target] = lists.counts[source]
    else:
        lists.optionals[target] = lists.optionals[source]
        if source in lists.present:
            lists.present[target] = lists.present[source]


def _fold(lists: _Lists, node: Node) -> list[Node]:
    """Record what the node makes of the lists; returns the nodes of a SequenceMap's inlined bodies, to fold next."""
    graph, op, out = lists.graph, node.op_type, node.outputs[0]
    if op == "Optional":
        lists.optionals[out] = node.inputs[0] if node.inputs and node.inputs[0] else None
    elif op in ("OptionalHasElement", "OptionalGetElement"):
        given = node.inputs[0] if node.inputs else ""
        element = lists.optionals.get(given, given or None)  # a tensor (or a sequence) itself: a present one
        flag = lists.present.get(given)
        if op == "OptionalHasElement" and flag is not None:  # an input's: each run says
            lists.nodes.append(Node("Identity", node.name, [flag], [out], guards=node.guards))
        elif op == "OptionalHasElement":
            lists.constant(out, np.array(element is not None))
        elif element is None:
            raise _Refused("it reads an empty optional (ONNX fails such a run)")
        else:
            if flag is not None:
                lists.refuse_unless(flag, node, f"node {node.name!r} (OptionalGetElement) reads {given!r}, which "
                                    "this run gives absent (ONNX fails such a run)")
            if element in lists.sequences:
                _alias(lists, Node("Identity", node.name, [element], [out]))
            else:
                lists.nodes.append(Node("Identity", node.name, [lists.read(element)], [out], guards=node.guards))
    elif op == "SequenceEmpty":
        lists.sequences[out] = []
    elif op == "SequenceConstruct":
        lists.sequences[out] = list(node.inputs)
    elif op == "SequenceInsert" and node.inputs[0] in lists.counts and not (len(node.inputs) > 2 and node.inputs[2]):
        _append(lists, node)
    elif op == "SequenceInsert":
        items = list(lists.sequence(node.inputs[0], node))
        items.insert(_position(graph, node, 2, len(items), len(items), inserting=True), node.inputs[1])
        lists.sequences[out] = items
    elif op == "SequenceErase":
        items = list(lists.sequence(node.inputs[0], node))
        if not items:
            raise _Refused("it erases from an empty sequence")
        del items[_position(graph, node, 1, len(items), len(items) - 1)]
        lists.sequences[out] = items
    elif op == "SequenceAt":
        items = lists.sequence(node.inputs[0], node, moves=False)
        if not items:
            raise _Refused("it reads from an empty sequence")
        position = _position(graph, node, 1, len(items), 0)
        if node.inputs[0] in lists.counts:
            _reaches(lists, node, position)
        element = items[position]
        lists.nodes.append(Node("Identity", node.name, [lists.read(element)], [out], guards=node.guards))
    elif op == "SequenceLength":
        counted = lists.counts.get(node.inputs[0])
        if counted is not None:  # an input's count, given by each run
            lists.nodes.append(Node("Identity", node.name, [counted[0]], [out], guards=node.guards))
        else:
            lists.constant(out, np.array(len(lists.sequence(node.inputs[0], node)), np.int64))
    elif op == "SplitToSequence":
        _split(lists, node)
    elif op == "ConcatFromSequence":
        _concat(lists, node)
    else:
        return _map(lists, node)
    return []


# ops whose output may be an optional: what they give is known only once the lists are folded
MAY_BE_OPTIONAL = frozenset({"Optional", "Identity", "If", "Loop", "Scan", "SequenceAt", "SequenceMap"})


def _fold_presence(graph: Graph) -> int:
    """OptionalHasElement of a value that cannot be an optional (a sequence an op builds, a tensor an op computes,
    a constant) is true, whatever else the fold finds: folded first, on its own, so that the If it decides is
    inlined as a constant one (a Loop body's `If(Not(OptionalHasElement(carried)))`, whose later iterations carry
    a built sequence, and only the first an optional input whose presence each run gives). Returns how many."""
    made = {o: n for n in graph.nodes for o in n.outputs if o}
    folded = []
    for node in graph.nodes:
        if node.domain or node.op_type != "OptionalHasElement" or not node.inputs or not node.inputs[0]:
            continue
        producer = made.get(node.inputs[0])
        if node.inputs[0] in graph.constants or (producer is not None and not producer.domain
                                                  and producer.op_type not in MAY_BE_OPTIONAL):
            graph.add_constant(node.outputs[0], np.array(True))
            folded.append(node)
    graph.nodes = [n for n in graph.nodes if not any(n is f for f in folded)]
    return len(folded)


def _append(lists: _Lists, node: Node) -> None:
    """SequenceInsert at the end of a sequence whose count each run decides (a list appended to): slot k of the
    result is the new tensor where the run's count is k, else what it was (a Where, so the new tensor must have the
    slots' type and shape), one more slot at the end, and the count plus one."""
    source, new, out = node.inputs[0], node.inputs[1], node.outputs[0]
    items = lists.sequences[source]
    count, low, high = lists.counts[source]
    kinds = {(lists.graph.info(t).dtype, lists.graph.info(t).shape) for t in (new, *items[low:])
             if t in lists.graph.tensors}
    if len(kinds) > 1:
        raise _Refused(f"it appends to {source!r}, whose count each run decides, so each slot from {low} on is chosen "
                       "by the count and must have the new tensor's type and shape; they differ "
                       f"({sorted(str(k) for k in kinds)})")
    elements = list(items[:low])  # present on every run
    for k in range(low, high):
        at = lists.constant(f"{out}/slot{k}", np.array(k, np.int64))
        here = f"{out}/at{k}"
        lists.nodes.append(Node("Equal", f"{here}/node", [count, at], [here], guards=node.guards))
        lists.graph.tensors[here] = TensorInfo(here, np.dtype(bool), ())
        lists.nodes.append(Node(CHOOSE[1], f"{out}/{k}/choose", [here, lists.read(new), lists.read(items[k])],
                                [f"{out}/{k}"], domain=CHOOSE[0], guards=node.guards))
        elements.append(f"{out}/{k}")
    elements.append(lists.read(new))  # the last slot: the run's when its count was the most
    one = lists.constant(f"{out}/one", np.array(1, np.int64))
    total = f"{out}/count"
    lists.nodes.append(Node("Add", f"{total}/node", [count, one], [total], guards=node.guards))
    lists.graph.tensors[total] = TensorInfo(total, np.dtype(np.int64), ())
    lists.sequences[out] = elements
    lists.counts[out] = (total, low + 1, high + 1)


def _check_count(lists: _Lists, name: str, count: str, low: int, high: int) -> None:
    """A run whose count for sequence input `name` is outside its declared range stops before anything reads the
    slots (a host that is not wasinfer's runtime may write any count)."""
    least = lists.constant(f"{name}.count/min", np.array(low, np.int64))
    most = lists.constant(f"{name}.count/max", np.array(high, np.int64))
    for side, operands in (("fewer", [count, least]), ("more", [most, count])):
        flag = f"{name}.count/{side}"
        check = Node("Less", flag, operands, [flag])
        lists.nodes.append(check)
        lists.graph.tensors[flag] = TensorInfo(flag, np.dtype(bool), ())
        lists.refuse_unless(flag, check, f"input {name!r}: a sequence of {low}..{high} tensors (compiled "
                            f"--sequence {name}={low}..{high}); this run's count ({count!r}) gives {side}", holds=True)


def _reaches(lists: _Lists, node: Node, position: int) -> None:
    """SequenceAt at a constant position of a sequence whose count each run decides: the slot is read, and a
    run whose count does not reach it is refused (ONNX fails it); from the end (a negative position) the slot
    depends on the count, which is refused while compiling."""
    sequence = node.inputs[0]
    count, low, _ = lists.counts[sequence]
    given = np.asarray(lists.graph.constants[node.inputs[1]]).reshape(-1)[0] if len(node.inputs) > 1 and \
        node.inputs[1] else 0
    if given < 0:
        raise _Refused(f"its position {int(given)} counts from the end of {sequence!r}, whose count each run decides "
                       f"({count!r}); read it from the front, or declare a fixed count (--sequence NAME=N..N)")
    if position < low:
        return  # every run holds it
    at = lists.constant(f"{node.name}/position", np.array(position, np.int64))
    reaches = f"{node.name}/reaches"
    lists.nodes.append(Node("Less", f"{reaches}/node", [at, count], [reaches], guards=node.guards))
    lists.graph.tensors[reaches] = TensorInfo(reaches, np.dtype(bool), ())
    lists.refuse_unless(reaches, node, f"node {node.name!r} (SequenceAt) reads position {position} of {sequence!r}, "
                        "which this run gives fewer tensors (ONNX fails such a run)")


def _split(lists: _Lists, node: Node) -> None:
    """One Slice per piece, made only once a piece is read (the pieces of run-time sizes cannot be)."""
    graph, source = lists.graph, node.inputs[0]
    if source not in graph.tensors:
        raise _Refused(f"the shape of {source!r} is not known")
    shape = graph.info(source).shape
    axis = int(node.attr("axis", 0)) % len(shape)
    split = node.inputs[1] if len(node.inputs) > 1 else ""
    if split and split not in graph.constants:
        if split not in graph.tensors or len(graph.info(split).shape) != 1:
            raise _Refused(f"its split {split!r} is computed at run time and not a vector of a known length, so "
                           "the sequence's length is not known while compiling")
        # one Split of run-time sizes makes every piece, each at the shape its run gives (passes/dynamic.py)
        pieces = [f"{node.name}/piece{i}" for i in range(graph.info(split).shape[0])]
        lists.sequences[node.outputs[0]] = pieces
        split_node = [Node("Split", f"{node.name}/split", [source, split], pieces, {"axis": axis}, guards=node.guards)]
        lists.makers.update({piece: split_node for piece in pieces})
        return
    if not split:
        sizes = [1] * shape[axis]
    else:
        value = np.asarray(graph.constants[split]).astype(np.int64)
        if value.ndim == 0:
            chunk = max(int(value), 1)
            sizes = [min(chunk, shape[axis] - start) for start in range(0, shape[axis], chunk)]
        else:
            sizes = [int(s) for s in value]
    if sum(sizes) != shape[axis] or any(s < 0 for s in sizes):
        raise _Refused(f"its split sizes {sizes} do not add up to the axis's {shape[axis]}")
    squeeze = not split and not int(node.attr("keepdims", 1))
    made: list[Node] = []
    pieces = []
    start = 0
    for i, size in enumerate(sizes):
        piece = f"{node.name}/piece{i}"
        sliced = f"{piece}/slice" if squeeze else piece
        made.append(_slice(lists, node, source, sliced, axis, start, start + size))
        if squeeze:
            made.append(_axes_node(lists, node, "Squeeze", sliced, piece, axis))
        pieces.append(piece)
        start += size
    lists.sequences[node.outputs[0]] = pieces
    lists.makers.update({piece: made for piece in pieces})


def _slice(lists: _Lists, node: Node, source: str, output: str, axis: int, start: int, end: int) -> Node:
    if lists.graph.opset < 10:
        return Node("Slice", f"{output}/node", [source], [output], {"starts": [start], "ends": [end], "axes": [axis]},
                    guards=node.guards)
    inputs = [source, *(lists.constant(f"{node.name}/{what}{value}", np.array([value], np.int64))
                        for what, value in (("at", start), ("at", end), ("axis", axis)))]
    return Node("Slice", f"{output}/node", inputs, [output], guards=node.guards)


def _axes_node(lists: _Lists, node: Node, op: str, source: str, output: str, axis: int) -> Node:
    """A Squeeze or Unsqueeze of one axis, its axes an attribute or (opset 13 on) an input."""
    if lists.graph.opset < 13:
        return Node(op, f"{output}/{op.lower()}", [source], [output], {"axes": [axis]}, guards=node.guards)
    axes = lists.constant(f"{node.name}/axis{axis}", np.array([axis], np.int64))
    return Node(op, f"{output}/{op.lower()}", [source, axes], [output], guards=node.guards)


def _concat(lists: _Lists, node: Node) -> None:
    items = [lists.read(n) for n in lists.sequence(node.inputs[0], node)]
    if not items:
        raise _Refused("it concatenates an empty sequence (ONNX fails such a run)")
    axis = int(node.attr("axis"))  # with new_axis a negative one counts in the output's rank, as Unsqueeze's does
    if node.attr("new_axis", 0):
        expanded = []
        for i, item in enumerate(items):
            name = f"{node.name}/item{i}"
            lists.nodes.append(_axes_node(lists, node, "Unsqueeze", item, name, axis))
            expanded.append(name)
        items = expanded
    lists.nodes.append(Node("Concat", node.name, items, [node.outputs[0]], {"axis": axis}, guards=node.guards))


def _map(lists: _Lists, node: Node) -> list[Node]:
    """SequenceMap: its body once per element of its first input (a sequence), reading element i of each sequence
    input and each tensor input whole; each output is the sequence of the copies' outputs."""
    body: onnx.GraphProto = node.attrs["body"]
    first = lists.sequence(node.inputs[0], node)
    others = [lists.sequences.get(n) for n in node.inputs[1:]]
    if any(items is not None and len(items) != len(first) for items in others):
        raise _Refused("its sequences differ in length")
    formals = [v.name for v in body.input]
    nodes: list[Node] = []
    outputs: list[list[str]] = [[] for _ in node.outputs]
    for i, element in enumerate(first):
        actuals = [element, *(items[i] if items is not None else name
                              for items, name in zip(others, node.inputs[1:], strict=True))]
        prefix = f"{node.name}/{i}/"
        targets = [f"{prefix}out{k}" for k in range(len(node.outputs))]
        for inner in inline_subgraph(node, lists.graph, body, prefix, targets,
                                     dict(zip(formals, actuals, strict=True))):
            inner.guards = (*node.guards, *inner.guards)
            nodes.append(inner)
        for k, target in enumerate(targets):
            outputs[k].append(target)
    for name, items in zip(node.outputs, outputs, strict=True):
        if name:
            lists.sequences[name] = items
    return nodes


__all__ = ["OPTIONAL_OPS", "SEQUENCE_OPS", "fold_sequences"]
