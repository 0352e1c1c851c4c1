"""Loop and Scan whose trip counts are known at compile time, or bounded, unrolled into the graph.

Shapes are static, so a Scan's iteration count (the length of its scan axis) is known, and so
is a Loop's once its trip count M folds to a constant (exporters compute it from shapes). Each
iteration is one inlined copy of the body (passes/subgraph.py) that reads the previous
iteration's loop-carried values; scan outputs are stacked with Unsqueeze and Concat.

A Loop whose condition is computed at run time stops early only at run time: each iteration
after that condition is first computed runs guarded by the running condition (as a branch of a
run-time If does), and each loop-carried value is chosen by a Where between the iteration's
result and the value before it. A trip count that is a symbolic dim (a sequence's length, from
--input-shape's ranges: passes/symbolic.py) is unrolled to its largest, each iteration guarded by
`i < M` with M written by each run (a Dims node), and so is a Scan along a symbolic axis (its
backward inputs read at indices counted from the run's end). Their scan outputs are stacked at the
largest length and cut to the run's by a Slice whose end is that symbolic dim.

A trip count the data decides (computed from inputs, as ONNX's Range body computes
`ceil((limit - start) / delta)`) is unrolled to its largest value, found by interval arithmetic over the
nodes that compute it (passes/bounds.py: constants, symbolic dims, bools, inputs declared with
--input-values), each iteration guarded by `i < M` read from M itself; with no largest value the Loop is
declined naming the inputs to declare. An iteration up to that value that would change a loop-carried value's
shape (a body that indexes past what it holds) is not unrolled: a run that reaches it stops with an error naming the
Loop (`_keeps_shapes`, a Refuse node: passes/subgraph.py). The scan outputs of a Loop that stops when the run
says so (its condition, or such an M) are stacked at the most iterations and cut to the count the run did (the steps
whose guard held, always the first ones) by a Slice whose end is that count: a dim the run decides
(passes/dynamic.py), returned at the run's dims. Declined: a Loop without a trip count, a Scan output
written in reverse along a symbolic axis, a scan output of a Loop that can do no iteration.
`UNROLL_LIMIT` bounds the nodes one loop may add.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from wasinfer.frontends.onnx import tensor_dims
from wasinfer.ir import Graph, Node, TensorInfo
from wasinfer.ir.symbolic import Dim, Expr
from wasinfer.ops.control import CHOOSE
from wasinfer.passes.bounds import inputs_it_reads, value_range
from wasinfer.passes.fold import constant_value, evaluate, node_proto, opset_ids
from wasinfer.passes.subgraph import choose, inline_subgraph, refusal
from wasinfer.passes.symbolic import DIMS

UNROLL_LIMIT = 20_000  # nodes an unrolled loop may add


class _Declined(Exception):
    """Why a loop stays in the graph (the compiler then names it with this reason)."""


class _NoBound(_Declined):
    """A trip count with no largest value found yet: with a declared Graph.max_iterations the loop waits for
    `unroll_loops(graph, at_most_declared=True)`, settle's last resort once nothing else folds (a SequenceLength
    folds to its list's count only after the sequences do, and then the loop unrolls exactly)."""


def unroll_loops(graph: Graph, at_most_declared: bool = False) -> int:
    """Unroll every Loop and Scan that can be (one pass); returns how many. A Loop whose trip count has no bound
    unrolls to the declared Graph.max_iterations only `at_most_declared` (_NoBound)."""
    kept: list[Node] = []
    unrolled = 0
    for node in graph.nodes:
        if node.domain or node.op_type not in ("Loop", "Scan") or node.declined is not None:
            kept.append(node)
            continue
        try:
            nodes = _scan(graph, node) if node.op_type == "Scan" else _loop(graph, node, at_most_declared)
        except _NoBound as why:
            if graph.max_iterations is None:
                node.declined = str(why)
            kept.append(node)
            continue
        except _Declined as why:
            node.declined = str(why)
            kept.append(node)
            continue
        kept.extend(nodes)
        unrolled += 1
    graph.nodes = kept
    return unrolled


def _constant(graph: Graph, name: str, value: Any, dtype: type) -> str:
    if name not in graph.constants:
        graph.add_constant(name, np.asarray(value, dtype))
    return name


def _check_size(node: Node, body: onnx.GraphProto, iterations: int) -> None:
    if iterations * max(len(body.node), 1) > UNROLL_LIMIT:
        raise _Declined(f"{iterations} iterations of a {len(body.node)}-node body is more than the "
                        f"{UNROLL_LIMIT} nodes a loop may unroll to")


def _stack(graph: Graph, node: Node, parts: list[str], axis: int, output: str, tag: str) -> list[Node]:
    """`output` = the per-iteration values `parts` stacked along a new `axis`."""
    if not parts:
        raise _Declined("a scan output of zero iterations (an empty tensor) is not supported")
    nodes: list[Node] = []
    pieces = []
    for index, part in enumerate(parts):
        piece = f"{node.name}/{tag}/{index}"
        if graph.opset >= 13:
            axes = _constant(graph, f"{node.name}/{tag}/axes", [axis], np.int64)
            nodes.append(Node("Unsqueeze", f"{piece}/unsqueeze", [part, axes], [piece], guards=node.guards))
        else:
            nodes.append(Node("Unsqueeze", f"{piece}/unsqueeze", [part], [piece], {"axes": [axis]},
                              guards=node.guards))
        pieces.append(piece)
    nodes.append(Node("Concat", f"{node.name}/{tag}/concat", pieces, [output], {"axis": axis}, guards=node.guards))
    return nodes


def _narrow(graph: Graph, node: Node, stacked: str, axis: int, length: int, run_length: Dim, output: str,
            tag: str) -> list[Node]:
    """`output` = `stacked` (its `length` iterations, the largest) cut to the run's `run_length` along `axis`: a
    Slice whose end is that symbolic dim (ops/extent.py), so what follows reads the run's iterations only."""
    ends = f"{node.name}/{tag}/run_length"
    graph.add_constant(ends, np.array([length], np.int64))  # the largest, where the layout is planned
    graph.shape_values[ends] = (run_length,)
    starts = _constant(graph, f"{node.name}/{tag}/start", [0], np.int64)
    axes = _constant(graph, f"{node.name}/{tag}/axis", [axis], np.int64)
    return [Node("Slice", f"{node.name}/{tag}/narrow", [stacked, starts, ends, axes], [output], guards=node.guards)]


def _run_trip(graph: Graph, node: Node, run_length: Dim) -> tuple[str, Node]:
    """A tensor each run writes with the run's trip count (a Dims node), for the guards `i < M`."""
    trip = f"{node.name}/trip"
    graph.tensors[trip] = TensorInfo(trip, np.dtype(np.int64), ())
    return trip, Node(DIMS[1], f"{node.name}/trip_dims", [], [trip], {"dims": (run_length,)}, domain=DIMS[0],
                      guards=node.guards)


def _below(graph: Graph, node: Node, step: int, trip: str, running: bool | str) -> tuple[str, list[Node]]:
    """The condition `running and step < trip`, and the nodes that compute it."""
    below = f"{node.name}/{step}/below_trip"
    shape = graph.info(trip).shape if trip in graph.tensors else ()  # a trip count of shape [1] gives a [1]
    graph.tensors[below] = TensorInfo(below, np.dtype(np.bool_), shape)
    nodes = [Node("Less", f"{below}/less", [_constant(graph, f"{node.name}/iteration{step}", step, np.int64), trip],
                  [below], guards=node.guards)]
    if running is True:
        return below, nodes
    both = f"{node.name}/{step}/running_below"
    nodes.append(Node("And", f"{both}/and", [str(running), below], [both], guards=node.guards))
    return both, nodes


def _ints(node: Node, key: str, count: int) -> list[int]:
    return [int(v) for v in node.attrs.get(key, [0] * count)]


def _scan(graph: Graph, node: Node) -> list[Node]:
    body: onnx.GraphProto = node.attrs["body"]
    scans = int(node.attrs["num_scan_inputs"])
    states = len(node.inputs) - scans
    outputs = len(body.output) - states
    in_axes, in_directions = _ints(node, "scan_input_axes", scans), _ints(node, "scan_input_directions", scans)
    out_axes, out_directions = _ints(node, "scan_output_axes", outputs), _ints(node, "scan_output_directions", outputs)
    lengths, run_lengths = set(), set()
    for name, axis in zip(node.inputs[states:], in_axes, strict=True):
        if name not in graph.tensors:
            raise _Declined(f"the shape of scan input {name!r} is not known")
        shape = graph.info(name).shape
        extent = graph.extents.get(name)
        run_lengths.add(extent[axis % len(shape)] if extent is not None else shape[axis % len(shape)])
        lengths.add(shape[axis % len(shape)])
    if len(lengths) != 1 or len(run_lengths) != 1:
        raise _Declined(f"its scan inputs differ in length ({sorted(map(str, run_lengths))})")
    length, run_length = lengths.pop(), run_lengths.pop()
    _check_size(node, body, length)
    nodes: list[Node] = []
    trip = ""
    if isinstance(run_length, Expr):  # a symbolic length: unrolled to the largest, each step guarded by i < L
        if any(out_directions):
            raise _Declined(f"it scans along a symbolic dim ({run_length}) and writes a scan output in reverse, "
                            "whose positions would then depend on each run's length")
        trip, dims = _run_trip(graph, node, run_length)
        nodes.append(dims)
    formals = [v.name for v in body.input]
    state = list(node.inputs[:states])
    produced: list[list[str]] = [[] for _ in range(outputs)]
    for step in range(length):
        prefix = f"{node.name}/{step}/"
        running: bool | str = True
        if trip:
            running, below = _below(graph, node, step, trip, True)
            nodes += below
        guard = () if running is True else ((str(running), True),)
        mapping = dict(zip(formals[:states], state, strict=True))
        for j, (name, axis, backwards) in enumerate(zip(node.inputs[states:], in_axes, in_directions, strict=True)):
            # backwards along a symbolic axis: index -(step + 1) counts from the run's end (ops/extent.py gather)
            at = (-(step + 1) if trip else length - 1 - step) if backwards else step
            index = _constant(graph, f"{node.name}/index{at}", at, np.int64)
            sliced = f"{prefix}in{j}"
            nodes.append(Node("Gather", f"{prefix}slice{j}", [name, index], [sliced],
                              {"axis": axis % len(graph.info(name).shape)}, guards=(*node.guards, *guard)))
            mapping[formals[states + j]] = sliced
        targets = [f"{prefix}state{i}" for i in range(states)] + [f"{prefix}out{k}" for k in range(outputs)]
        for inner in inline_subgraph(node, graph, body, prefix, targets, mapping):
            inner.guards = (*node.guards, *guard, *inner.guards)
            nodes.append(inner)
        if guard:  # a step past the run's length keeps the states from before
            chosen = [f"{prefix}kept{i}" for i in range(states)]
            for i, (new, old) in enumerate(zip(targets[:states], state, strict=True)):
                nodes += choose(graph, str(running), new, old, chosen[i], f"{prefix}keep{i}", node.guards)
                if old in graph.tensors:
                    graph.tensors[chosen[i]] = replace(graph.info(old), name=chosen[i])
            state = chosen
        else:
            state = targets[:states]
        for k in range(outputs):
            produced[k].append(targets[states + k])
    for i, name in enumerate(node.outputs[:states]):
        if name:
            nodes.append(Node("Identity", f"{node.name}/final{i}", [state[i]], [name], guards=node.guards))
    for k, name in enumerate(node.outputs[states:]):
        if name:
            parts = produced[k][::-1] if out_directions[k] else produced[k]
            rank = len(graph.info(name).shape) if name in graph.tensors else None
            axis = out_axes[k] % rank if rank else out_axes[k]
            if isinstance(run_length, Expr):
                stacked = f"{name}/stacked"
                nodes += _stack(graph, node, parts, axis, stacked, f"scan{k}")
                nodes += _narrow(graph, node, stacked, axis, length, run_length, name, f"scan{k}")
            else:
                nodes += _stack(graph, node, parts, axis, name, f"scan{k}")
    return nodes


def _source(nodes: list[Node], name: str) -> str:
    """What `name` is an Identity of, through Identity nodes among `nodes` (itself where it is none)."""
    producers = {o: n for n in nodes for o in n.outputs}
    while (producer := producers.get(name)) is not None and producer.op_type == "Identity":
        name = producer.inputs[0]
    return name


def _resolve(nodes: list[Node], graph: Graph, name: str) -> np.ndarray | None:
    """`name`'s value when it is a constant, directly or through Identity nodes among `nodes`."""
    return graph.constants.get(_source(nodes, name))


def _trip_bound(graph: Graph, node: Node, trip: str, at_most_declared: bool) -> tuple[int, bool]:
    """The most iterations a trip count computed at run time allows: the largest value it can hold
    (passes/bounds.py), or else the declared `Graph.max_iterations`, which each run must then check (the second
    value: True). Declined, naming the inputs to declare a range for, where it has neither."""
    found = value_range(graph, trip)
    if found is not None and not math.isinf(found[1]):
        return max(0, math.floor(found[1])), False
    if graph.max_iterations is not None and at_most_declared:
        return graph.max_iterations, True
    inputs = inputs_it_reads(graph, trip)
    declare = (f"declare the range of {', '.join(repr(n) for n in inputs)} with --input-values NAME=MIN..MAX (an "
               "integer input's smallest and largest value)" if inputs else "compute it from values whose range is "
               "known (constants, dims, inputs declared with --input-values NAME=MIN..MAX)")
    raise _NoBound(f"its trip count {trip!r} is computed at run time and has no largest value the compiler can "
                    f"find, which the loop would be unrolled to: {declare}, or give the most iterations a run may do "
                    "with --max-iterations N")


def _iterations(graph: Graph, node: Node, ran: list[bool | str]) -> tuple[str, list[Node]]:
    """An int64 [1] tensor holding how many iterations the run did: the steps whose guard held (`ran`, each True
    or the name of its running condition), which are always the first ones (a loop never resumes)."""
    nodes: list[Node] = []
    flags = []
    one = _constant(graph, f"{node.name}/one", [1], np.int64)
    for step, running in enumerate(ran):
        if running is True:
            flags.append(_constant(graph, f"{node.name}/always", [True], np.bool_))
            continue
        flag = f"{node.name}/{step}/ran"
        graph.tensors[flag] = TensorInfo(flag, np.dtype(np.bool_), (1,))
        nodes.append(Node("Reshape", f"{flag}/view", [str(running), one], [flag], guards=node.guards))
        flags.append(flag)
    names = [f"{node.name}/ran", f"{node.name}/ran_count", f"{node.name}/iterations"]
    for name, (dtype, shape) in zip(names, [(np.bool_, (len(ran),)), (np.int64, (len(ran),)), (np.int64, (1,))],
                                    strict=True):
        graph.tensors[name] = TensorInfo(name, np.dtype(dtype), shape)
    nodes += [Node("Concat", f"{names[0]}/concat", flags, [names[0]], {"axis": 0}, guards=node.guards),
              Node("Cast", f"{names[1]}/cast", [names[0]], [names[1]], {"to": onnx.TensorProto.INT64},
                   guards=node.guards),
              Node("ReduceSum", f"{names[2]}/sum", [names[1]], [names[2]], {"keepdims": 1}, guards=node.guards)]
    return names[2], nodes


def _cut(graph: Graph, node: Node, stacked: str, iterations: str, output: str, tag: str) -> list[Node]:
    """`output` = `stacked` (one entry per unrolled iteration) cut to the run's `iterations` along axis 0: a Slice
    whose end is a run-time value, so its length is a dim the run decides (passes/dynamic.py), up to the bound."""
    if graph.opset < 10:
        raise _Declined("the run decides how many iterations it does, and a scan output cut to their count needs a "
                        "Slice with run-time ends (opset 10 and later)")
    starts = _constant(graph, f"{node.name}/{tag}/start", [0], np.int64)
    axes = _constant(graph, f"{node.name}/{tag}/axis", [0], np.int64)
    return [Node("Slice", f"{node.name}/{tag}/cut", [stacked, starts, iterations, axes], [output],
                 guards=node.guards)]


SMALL = 4096  # elements: the constants an iteration's shape check folds or feeds by value (indices, not weights)


def _refuse_above(graph: Graph, node: Node, trip: str, count: int) -> list[Node]:
    """The nodes that stop a run whose trip count is above `count` (--max-iterations), naming the Loop."""
    limit, above = f"{node.name}/max_iterations", f"{node.name}/above_max_iterations"
    graph.add_constant(limit, np.array(count, graph.info(trip).dtype))
    graph.tensors[above] = TensorInfo(above, np.dtype(np.bool_), graph.info(trip).shape)
    return [Node("Greater", f"{above}/greater", [trip, limit], [above], guards=node.guards),
            refusal(graph, f"{node.name}/refuse_above", f"node {node.name!r} (Loop): this run's trip count is above "
                    f"the {count} iterations it was compiled for (--max-iterations {count})",
                    (*node.guards, (above, True)))]


def _keeps_shapes(graph: Graph, inner: list[Node], before: list[str], after: list[str]) -> bool:
    """Whether one inlined iteration gives each loop-carried value the shape it came in with. Unrolled to a run-time
    trip count's largest, a body may index past what it holds (ONNX's test_loop11 adds the iteration's element of
    five: a sixth iteration's Slice is empty, and so is its sum); such an iteration is not a valid computation at the
    compiled shapes, as in ONNX Runtime, where it fails the run. Its small constant nodes are folded first (the
    iteration's number reaching a Slice's bounds), then ONNX's inference types the rest. Unknown types count as
    kept."""
    known: dict[str, np.ndarray] = {}
    rest: list[Node] = []
    for node in inner:
        values = [known.get(n, graph.constants.get(n)) if n else None for n in node.inputs]
        small = all(v is not None and v.size <= SMALL and v.dtype != object
                    for n, v in zip(node.inputs, values, strict=True) if n)
        nested = any(isinstance(v, onnx.GraphProto) for v in node.attrs.values())
        if not node.domain and (node.op_type == "Constant" or (small and not nested)):
            try:
                results = ([constant_value(node)] if node.op_type == "Constant" else
                           evaluate(node, values, graph.opset))
            except Exception:  # what the reference cannot evaluate here is typed by inference below
                rest.append(node)
                continue
            known.update((n, np.asarray(v)) for n, v in zip(node.outputs, results, strict=False) if n)
            continue
        rest.append(node)
    produced = {o for n in rest for o in n.outputs if o}
    inputs: list[onnx.ValueInfoProto] = []
    initializers: list[onnx.TensorProto] = []
    seen: set[str] = set()
    for name in (i for n in rest for i in n.inputs if i and i not in produced):
        if name in seen:
            continue
        seen.add(name)
        value = known.get(name, graph.constants.get(name))
        if value is not None and value.size <= SMALL:
            initializers.append(numpy_helper.from_array(np.asarray(value), name))
        elif name in graph.tensors:
            info = graph.tensors[name]
            inputs.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(info.dtype), info.shape))
    outputs = [helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in after if n in produced]
    model = helper.make_model(helper.make_graph([node_proto(n) for n in rest], "iteration", inputs, outputs,
                                                initializers),
                              opset_imports=opset_ids(graph.opset, {n.domain for n in rest}))
    try:
        inferred = shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # what inference cannot type, the compiler names later
        return True
    shapes: dict[str, tuple[object, ...]] = {v.name: tuple(typed) for v in inferred.graph.output
                                             if (typed := tensor_dims(v.type)) is not None}
    shapes.update((n, tuple(v.shape)) for n, v in known.items())
    for old, new in zip(before, after, strict=True):
        found = shapes.get(new)
        if old in graph.tensors and found is not None and all(isinstance(d, int) for d in found) \
                and found != tuple(graph.tensors[old].shape):
            return False
    return True


def _loop(graph: Graph, node: Node, at_most_declared: bool = False) -> list[Node]:
    body: onnx.GraphProto = node.attrs["body"]
    trip = node.inputs[0] if node.inputs else ""
    first = node.inputs[1] if len(node.inputs) > 1 else ""
    carried = list(node.inputs[2:])
    scans = len(body.output) - 1 - len(carried)
    if not trip:
        raise _Declined("a Loop without a trip count runs until a run-time condition: give it a trip count (the most "
                        "iterations it may run), which it is unrolled to")
    nodes: list[Node] = []
    trip_at_run_time = ""  # the tensor holding each run's trip count, for the guards i < M
    run_length = graph.shape_values[trip][0] if trip in graph.shape_values else None
    if trip not in graph.constants:  # computed from the data: unrolled to its largest value
        count, checked = _trip_bound(graph, node, trip, at_most_declared)
        trip_at_run_time = trip
        if checked:  # a declared maximum, not a bound: a run whose trip count is above it stops
            nodes += _refuse_above(graph, node, trip, count)
    else:
        count = int(np.asarray(graph.constants[trip]).reshape(-1)[0])  # a symbolic dim's largest
        if run_length is not None:  # M is a symbolic dim: read each run's, every iteration guarded by i < M
            trip_at_run_time, dims = _run_trip(graph, node, run_length)
            nodes.append(dims)
    _check_size(node, body, count)
    # the condition entering the next iteration: a known bool, or the name of a run-time one; and whether the data
    # decides it (else only the trip count does, and scan outputs have as many entries as the run's trip count)
    running: bool | str = True
    if first:
        running = bool(np.asarray(graph.constants[first]).reshape(-1)[0]) if first in graph.constants else first
    data_decides = isinstance(running, str)
    formals = [v.name for v in body.input]
    produced: list[list[str]] = [[] for _ in range(scans)]
    ran: list[bool | str] = []  # each unrolled iteration's guard: True, or the name of its running condition
    for step in range(count):
        if running is False:
            break
        if trip_at_run_time:  # running = running and step < M (step < M alone where only M decides)
            running, below = _below(graph, node, step, trip_at_run_time, running if data_decides else True)
            nodes += below
        ran.append(running)
        prefix = f"{node.name}/{step}/"
        condition_in = _constant(graph, f"{node.name}/true", True, np.bool_) if running is True else str(running)
        mapping = dict(zip(formals, [_constant(graph, f"{node.name}/iteration{step}", step, np.int64),
                                     condition_in, *carried], strict=True))
        targets = [f"{prefix}condition", *(f"{prefix}carried{j}" for j in range(len(carried))),
                   *(f"{prefix}scan{k}" for k in range(scans))]
        guard = () if isinstance(running, bool) else ((running, True),)
        inner = inline_subgraph(node, graph, body, prefix, targets, mapping)
        if trip_at_run_time and not _keeps_shapes(graph, inner, carried, targets[1:1 + len(carried)]):
            # this iteration cannot run at the compiled shapes: a run that reaches it stops with an error
            nodes.append(refusal(graph, f"{prefix}refuse", f"node {node.name!r} (Loop): iteration {step} cannot run "
                                 "at the compiled shapes (its body changes a loop-carried value's shape there), so a "
                                 f"run may do at most {step} iterations", (*node.guards, (str(running), True))))
            ran.pop()
            break
        for each in inner:
            each.guards = (*node.guards, *guard, *each.guards)
        nodes += inner
        if guard:  # skipped iterations keep the values from before
            chosen = [f"{prefix}kept{j}" for j in range(len(carried))]
            for j, (new, old) in enumerate(zip(targets[1:1 + len(carried)], carried, strict=True)):
                if not any(name in graph.tensors for name in (new, old)):
                    # not a typed tensor (a sequence, or typed only once its body folds): an IfChoose, a Where once
                    # typed (passes/control.py) or a choice between two lists (passes/sequences.py)
                    nodes.append(Node(CHOOSE[1], f"{prefix}keep{j}", [str(running), new, old], [chosen[j]],
                                      domain=CHOOSE[0], guards=node.guards))
                    continue
                nodes += choose(graph, str(running), new, old, chosen[j], f"{prefix}keep{j}", node.guards)
                if old in graph.tensors:  # a carried value keeps its type from one iteration to the next
                    graph.tensors[chosen[j]] = replace(graph.info(old), name=chosen[j])
            carried = chosen
        else:
            carried = targets[1:1 + len(carried)]
        for k in range(scans):
            produced[k].append(targets[1 + len(carried) + k])
        known = _resolve(inner, graph, targets[0])
        if _source(inner, targets[0]) == condition_in:
            continue  # the body passes its condition on: it stays what it was
        if known is not None:  # a constant condition: stop after this iteration, or stay as it was
            running = running if bool(np.asarray(known).reshape(-1)[0]) else False
            continue
        data_decides = True
        if isinstance(running, bool):
            running = targets[0]
        else:  # still running only if it was and the body says so
            both = f"{prefix}running"
            nodes.append(Node("And", f"{prefix}and", [str(running), targets[0]], [both], guards=node.guards))
            running = both
    for j, name in enumerate(node.outputs[:len(carried)]):
        if name:
            nodes.append(Node("Identity", f"{node.name}/final{j}", [carried[j]], [name], guards=node.guards))
    iterations = ""
    for k, name in enumerate(node.outputs[len(carried):]):
        if not name:
            continue
        if run_length is not None and not data_decides:  # as many iterations as the run's M: cut to it
            nodes += _stack(graph, node, produced[k], 0, f"{name}/stacked", f"scan{k}")
            nodes += _narrow(graph, node, f"{name}/stacked", 0, count, run_length, name, f"scan{k}")
        elif any(r is not True for r in ran):  # the run decides how many: cut to the count it did
            if not iterations:
                iterations, counted = _iterations(graph, node, ran)
                nodes += counted
            nodes += _stack(graph, node, produced[k], 0, f"{name}/stacked", f"scan{k}")
            nodes += _cut(graph, node, f"{name}/stacked", iterations, name, f"scan{k}")
        else:
            nodes += _stack(graph, node, produced[k], 0, name, f"scan{k}")
    return nodes
