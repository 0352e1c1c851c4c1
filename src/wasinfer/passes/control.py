"""What the graph's structure decides at compile time: which branch an `If` takes, and whether
a dynamic leading dim can be run sample by sample.

`If` whose condition is known at compile time: the taken branch replaces the node.
`If` decided at run time: both branches replace it, each node guarded by the condition (it runs
only when the condition has its branch's value), and each output is chosen by a `Where` on
the condition (the untaken branch's buffers hold stale values that Where does not pick).
Both branches must give each output the same static type; ONNX's inference types the If's
outputs only then.

Exporters emit `If` mostly on shape facts (`Equal(Shape(x)[0], 1)` and the like), which
fold to constants once shapes are static (passes/shapes.py, passes/fold.py). The taken
branch's nodes then move into the outer graph: its own values and initializers get the If's
name as a prefix (so the two branches, or two inlined copies, never clash), the values it
reads from outer scopes keep their names, and its outputs take the If's output names.
Nested subgraphs that read a renamed value are renamed too. The new values' types come from
ONNX shape inference over the whole graph, then folding runs again, since the inlined
branch may be foldable and may hold further Ifs. Ifs decided at run time are inlined the same
way, twice (prefixes `NAME/then/` and `NAME/else/`), once no constant If is left.

`batch_mixing` tells the frontend when a dynamic leading dim is not a per-sample batch: a
node reduces, slides, contracts or recurs along it (followed through transposes, reshapes,
...), or an If tests the batch size. Such a dim is then an ordinary one, given with
--input-shape.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import numpy as np
import onnx
from onnx import defs, helper, numpy_helper, shape_inference

from wasinfer.frontends.onnx import tensor_dims
from wasinfer.ir import Graph, Node, TensorInfo, UnsupportedModel
from wasinfer.ops import BatchFlow, BatchView, batch_flow
from wasinfer.ops.control import CHOOSE as CHOOSE  # where other passes and the backend read them
from wasinfer.ops.control import REFUSE as REFUSE
from wasinfer.passes.fold import constant_value, fold_constants, node_proto, opset_ids
from wasinfer.passes.loops import unroll_loops
from wasinfer.passes.sequences import fold_sequences
from wasinfer.passes.shapes import fold_static_values
from wasinfer.passes.subgraph import choose, inline_subgraph, refusal

# What the compiler says about an If it cannot compile (kept in the node, as passes/einsum.py does).
UNTYPED_BRANCHES = (
    "condition computed at run time, and its branches' outputs are not tensors of one static type and "
    "shape (both branches are compiled and chosen at run time only then)")
NOT_A_CONDITION = "its condition must be one bool"

# Constants up to this many elements go to shape inference by value (shape arithmetic needs
# them); larger ones (weights) by type only.
INFER_BY_VALUE = 4096


def infer_types(graph: Graph) -> int:
    """Give every value without a static type one from ONNX shape inference over the graph;
    returns how many were added. Types already known are kept, but for an output's guessed from its declaration
    (`Graph.guessed`), which the graph's own inference replaces. The outputs whose size the data decides
    (passes/dynamic.py) are fed at their largest shape, which ONNX's inference cannot know, as are the typed
    outputs of the compiler's own nodes (domain wasinfer), which it does not know, and those of ops it does not know
    at the model's opset (a Gelu that passes/contrib.py wrote into an opset-17 model)."""
    nodes = [n for n in graph.nodes if not any(o in graph.decided for o in n.outputs)
             and not ((n.domain == "wasinfer" or not _known_at(n, graph.opset))
                      and all(o in graph.tensors for o in n.outputs if o))]
    produced = {o for n in nodes for o in n.outputs if o}
    read = [i for n in nodes for i in n.inputs if i] + graph.inputs
    inputs, initializers, seen = [], [], set()
    for name in read:
        if name in seen or name in produced:
            continue
        seen.add(name)
        value = graph.constants.get(name)
        if value is not None and value.size <= INFER_BY_VALUE and value.dtype != object:
            initializers.append(numpy_helper.from_array(np.asarray(value), name))
        elif name in graph.tensors:
            info = graph.tensors[name]
            inputs.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(info.dtype), info.shape))
    protos = [node_proto(n) for n in nodes]
    outputs = [helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED, None) for name in graph.outputs
               if name not in graph.decided or name in seen]
    opsets = opset_ids(graph.opset, {n.domain for n in nodes})
    model = helper.make_model(helper.make_graph(protos, graph.name, inputs, outputs, initializers),
                              opset_imports=opsets)
    try:
        inferred = shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # the compiler then names the values whose type stays unknown
        return 0
    added = 0
    for value in list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = tensor_dims(value.type)
        elem = value.type.tensor_type.elem_type
        known = value.name in graph.tensors and value.name not in graph.guessed
        if known or dims is None or not elem or not all(isinstance(d, int) for d in dims):
            continue
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(elem))
        graph.tensors[value.name] = TensorInfo(value.name, dtype, tuple(int(d) for d in dims))  # type: ignore[arg-type]
        graph.guessed.discard(value.name)
        added += 1
    return added


def _known_at(node: Node, opset: int) -> bool:
    """Whether ONNX's inference knows the node's op: at the default domain's `opset`, or in another domain at all
    (ai.onnx.ml is read at its own version: opset_ids); not ONNX Runtime's com.microsoft ops."""
    try:
        if node.domain:
            defs.get_schema(node.op_type, domain=node.domain)
        else:
            defs.get_schema(node.op_type, opset)
    except defs.SchemaError:
        return False
    return True


def inline_constant_ifs(graph: Graph) -> int:
    """Inline every If whose condition is a constant (one pass); returns how many."""
    kept: list[Node] = []
    inlined = 0
    for node in graph.nodes:
        condition = graph.constants.get(node.inputs[0]) if node.op_type == "If" and not node.domain else None
        if condition is None:
            kept.append(node)
            continue
        taken = "then_branch" if bool(np.asarray(condition).reshape(-1)[0]) else "else_branch"
        kept.extend(inline_subgraph(node, graph, node.attrs[taken]))
        inlined += 1
    graph.nodes = kept
    return inlined




def inline_runtime_ifs(graph: Graph) -> int:
    """Inline both branches of every If decided at run time (one pass), guarded by its condition;
    returns how many. Each output is first an IfChoose of (condition, then's value, else's value):
    ONNX's inference types an If's outputs only from its branches' declared types, so they may be
    known only once the inlined branches have been typed and folded (`resolve_choices`)."""
    kept: list[Node] = []
    inlined = 0
    for node in graph.nodes:
        if node.op_type != "If" or node.domain or node.inputs[0] in graph.constants:
            kept.append(node)
            continue
        condition = graph.tensors.get(node.inputs[0])
        if condition is None or condition.dtype != np.bool_ or condition.size != 1:
            node.declined = NOT_A_CONDITION
        elif any(value.type.WhichOneof("value") not in (None, "tensor_type", "sequence_type", "optional_type")
                 for key in ("then_branch", "else_branch") for value in node.attrs[key].output):
            node.declined = UNTYPED_BRANCHES  # maps: not tensors (passes/sequences.py chooses between lists)
        if node.declined is not None:
            kept.append(node)
            continue
        for taken, branch in ((True, "then_branch"), (False, "else_branch")):
            side = "then" if taken else "else"
            targets = [f"{node.name}/{side}:{name}" if name else "" for name in node.outputs]
            for inner in inline_subgraph(node, graph, node.attrs[branch], f"{node.name}/{side}/", targets):
                inner.guards = (*node.guards, (node.inputs[0], taken), *inner.guards)
                kept.append(inner)
        for index, name in enumerate(node.outputs):
            if name:
                kept.append(Node(CHOOSE[1], f"{node.name}/output{index}",
                                 [node.inputs[0], f"{node.name}/then:{name}", f"{node.name}/else:{name}"], [name],
                                 domain=CHOOSE[0], guards=node.guards))
        inlined += 1
    graph.nodes = kept
    return inlined


def resolve_choices(graph: Graph, final: bool = False) -> int:
    """Each IfChoose whose two values have types becomes a Where on the condition (subgraph.choose),
    the output taking their type; returns how many. Two values of different types or shapes, or
    (with `final`, when nothing more will be typed) values still untyped, leave it declined."""
    kept: list[Node] = []
    resolved = 0
    for node in graph.nodes:
        if (node.domain, node.op_type) != CHOOSE or node.declined is not None:
            kept.append(node)
            continue
        condition, then, other = node.inputs
        first, second = graph.tensors.get(then), graph.tensors.get(other)
        output = node.outputs[0]
        if first is None or second is None:
            if final:
                node.declined = UNTYPED_BRANCHES
            kept.append(node)
            continue
        declared = graph.tensors.get(output)
        if (first.dtype, first.shape) != (second.dtype, second.shape) or (
                declared is not None and (declared.dtype, declared.shape) != (first.dtype, first.shape)):
            node.declined = (f"{UNTYPED_BRANCHES}: its branches give {output!r} {first.dtype} {list(first.shape)} and "
                             f"{second.dtype} {list(second.shape)}")
            kept.append(node)
            continue
        graph.tensors[output] = replace(first, name=output)
        kept += choose(graph, condition, then, other, output, node.name, node.guards)
        resolved += 1
    graph.nodes = kept
    return resolved


def refuse_untypable_branches(graph: Graph) -> int:
    """A run-time If one of whose branches cannot be typed at the compiled shapes keeps the other branch
    only; taking the first stops the run with an error (a Refuse node, guarded by that side of the
    condition). Returns how many branches were refused.

    Why: an exporter's `If` may hold a branch written for other input sizes (Silero VAD's 8 kHz
    branch expects 256 samples, its 16 kHz one 512): at the compiled size that branch is not a valid
    computation, and ONNX Runtime fails a run that takes it ("Input X must have 3 dimensions"). The
    module does the same, with a message naming the If and the side, instead of refusing to compile
    the whole model. Every output of that If must be typed on the other side; if not, nothing changes.
    """
    chooses: dict[str, list[Node]] = {}
    for node in graph.nodes:
        if (node.domain, node.op_type) == CHOOSE:
            chooses.setdefault(node.name.rsplit("/output", 1)[0], []).append(node)
    refused = 0
    for if_name, outputs in chooses.items():
        typed = [(graph.tensors.get(n.inputs[1]), graph.tensors.get(n.inputs[2])) for n in outputs]
        failing = {taken for then, other in typed for taken, info in ((True, then), (False, other)) if info is None}
        if len(failing) != 1:
            continue  # both sides typed (a real type mismatch), or neither: left declined
        if not any(node is outputs[0] for node in graph.nodes):
            continue  # inside a branch an outer If's refusal removed
        taken = failing.pop()
        keep = 2 if taken else 1  # the IfChoose input of the side that runs
        side = "then" if taken else "else"
        condition = outputs[0].inputs[0]
        message = (f"node {if_name!r} (If) takes its {side} branch, which cannot run at the compiled input shapes "
                   f"(ONNX Runtime fails such a run too); compile with the input shapes that branch expects")
        prefix = f"{if_name}/{side}/"
        kept: list[Node] = []
        for node in graph.nodes:
            if node.name.startswith(prefix):
                continue  # the branch's own nodes: never run
            if any(node is output for output in outputs):
                if node is outputs[0]:
                    kept.append(refusal(graph, f"{if_name}/refuse", message, (*node.guards, (condition, taken))))
                value = node.inputs[keep]
                graph.tensors[node.outputs[0]] = replace(graph.tensors[value], name=node.outputs[0])
                kept.append(Node("Identity", node.name, [value], node.outputs, guards=node.guards))
                continue
            kept.append(node)
        graph.nodes = kept
        refused += 1
    return refused


def settle(graph: Graph, rounds: int = 16) -> int:
    """After the first folding: inline constant Ifs (then those decided at run time, guarded),
    type the values the frontend's inference left unknown (a reshape target that only folding
    made constant, an inlined branch), and fold again, until nothing changes. Returns how many
    nodes were inlined or folded."""
    changed = 0
    for _ in range(rounds):
        inlined = (inline_constant_ifs(graph) or unroll_loops(graph) or fold_sequences(graph)
                   or inline_runtime_ifs(graph))
        untyped = bool(graph.guessed) or any(o not in graph.tensors for n in graph.nodes for o in n.outputs if o)
        typed = infer_types(graph) if inlined or untyped else 0
        resolved = resolve_choices(graph)
        if not inlined and not typed and not resolved:
            # nothing else folds: a Loop whose trip count has no bound unrolls to the declared --max-iterations
            inlined = graph.max_iterations is not None and unroll_loops(graph, at_most_declared=True)
            if not inlined:
                break
        changed += inlined + resolved + fold_static_values(graph) + fold_constants(graph)
    if refuse_untypable_branches(graph):  # what follows the refused Ifs can be typed now
        changed += infer_types(graph) + resolve_choices(graph) + fold_static_values(graph) + fold_constants(graph)
    resolve_choices(graph, final=True)
    return changed


# ---------------------------------------------------------------- is the leading dim a per-sample batch?

def _rank(graph: Graph, name: str) -> int | None:
    return len(graph.tensors[name].shape) if name in graph.tensors else None


def _batch_flow(graph: Graph, node: Node, axes: dict[str, int]) -> BatchFlow:
    """The node's batch rule (ops/) given the batch axis of each of its inputs."""
    return batch_flow(BatchView(graph, node, tuple(axes.get(name) if name else None for name in node.inputs)))


# Ops whose output is data shaped by a (batch-sized) shape operand, not a size itself.
SHAPED_BY = {"Reshape", "Expand", "ConstantOfShape", "Tile", "Resize", "Upsample", "Pad", "Slice"}


def _batch_sized_conditions(graph: Graph, batch_axes: dict[str, int]) -> list[str]:
    """Ifs deciding on the batch size (`Equal(Shape(x)[0], 1)`): run per sample, the size is 1.

    A shape vector remembers where the batch size sits in it, so `Shape(x)[1]` is not
    batch-sized; anything else computed from a batch-sized value is."""
    axes = dict(batch_axes)
    consts = dict(graph.constants)
    sized: dict[str, int | None] = {}  # value → position of the batch size in a shape vector, None: all of it
    problems = []
    for node in graph.nodes:
        if node.op_type == "Constant":
            with contextlib.suppress(ValueError):  # a Constant of a kind the fold pass also refuses
                consts[node.outputs[0]] = constant_value(node)
            continue
        source = node.inputs[0] if node.inputs else ""
        if node.op_type in ("Shape", "Size") and source in axes:
            window = range(_rank(graph, source) or 0)[slice(node.attr("start"), node.attr("end"))]
            if node.op_type == "Size":
                sized[node.outputs[0]] = None
            elif axes[source] in window:
                sized[node.outputs[0]] = window.index(axes[source])
            continue
        if node.op_type == "If" and source in sized:
            problems.append(f"node {node.name!r} (If): its condition depends on the batch size")
        if source in sized and sized[source] is not None and node.op_type in ("Gather", "Slice"):
            position = sized[source]
            picked: list[int] | None = None
            if node.op_type == "Gather" and len(node.inputs) > 1 and node.inputs[1] in consts:
                length = (graph.info(source).shape or (0,))[0] if source in graph.tensors else 0
                picked = [int(i) % max(length, 1) for i in np.asarray(consts[node.inputs[1]]).reshape(-1)]
            elif node.op_type == "Slice" and all(n in consts for n in node.inputs[1:3]):
                length = (graph.info(source).shape or (0,))[0] if source in graph.tensors else 0
                bounds = [int(np.asarray(consts[n]).reshape(-1)[0]) for n in node.inputs[1:3]]
                step = int(np.asarray(consts[node.inputs[4]]).reshape(-1)[0]) \
                    if len(node.inputs) > 4 and node.inputs[4] in consts else 1
                picked = list(range(length)[bounds[0]:bounds[1]:step])
            if picked is not None:
                if position in picked:
                    sized[node.outputs[0]] = picked.index(position) if node.op_type == "Slice" else None
                continue
        if node.op_type not in SHAPED_BY and any(name in sized for name in node.inputs if name):
            sized.update({name: None for name in node.outputs if name})
        if any(name in axes for name in node.inputs if name):
            flow = _batch_flow(graph, node, axes)
            axes.update({name: axis for name, axis in zip(node.outputs, flow.outputs, strict=False)
                         if name and axis is not None})
    return problems


def follow_batch(graph: Graph, batch_axes: dict[str, int]) -> tuple[dict[str, int], list[str]]:
    """The batch axis of every value the batch reaches from the inputs in `batch_axes`, by each
    op's batch rule (ops/), and the nodes that mix samples along it (with why)."""
    axes = dict(batch_axes)
    problems = []
    for node in graph.nodes:
        if not any(name in axes for name in node.inputs if name):
            continue
        flow = _batch_flow(graph, node, axes)
        if flow.mixes is not None:
            problems.append(f"node {node.name!r} ({node.op_type}): {flow.mixes}")
            continue
        for name, axis in zip(node.outputs, flow.outputs, strict=False):
            if name and axis is not None:
                axes[name] = axis
    return axes, problems


def tensor_batch_axes(graph: Graph, input_axes: dict[str, int]) -> dict[str, int]:
    """The batch axis of each graph input and output that carries the run-time batch.

    An output takes the axis the batch reaches it on; one that depends on a batched input along
    a path the rules cannot follow takes axis 0 (per-sample results stacked), which its leading
    dim must then be able to carry (size 1); one that depends on no batched input carries no
    batch (the same value for every sample, as on the whole batch)."""
    if not input_axes:
        return {}
    reached, _ = follow_batch(graph, input_axes)
    depends = set(input_axes)
    for node in graph.nodes:
        if any(name in depends for name in node.inputs if name):
            depends.update(name for name in node.outputs if name)
    axes = dict(input_axes)
    lost = []
    for name in graph.outputs:
        if name in reached:
            axes[name] = reached[name]
        elif name in depends and name in graph.tensors:  # an untyped output is the compiler's to name
            shape = graph.info(name).shape
            if not shape or shape[0] != 1:
                lost.append(f"output {name!r} (shape {list(shape)} per sample): where the run-time batch is in it "
                            "cannot be followed; give the batch's size with --input-shape")
            axes[name] = 0
    if lost:
        raise UnsupportedModel(lost)
    return axes


def batch_mixing(graph: Graph, batch_axes: dict[str, int]) -> list[str]:
    """Where running the graph once per sample of the batch would differ from running it on the
    whole batch: nodes that reduce, slide, contract or recur along the batch axis, and Ifs on
    the batch size. Values are followed through the ops on a folded copy of the graph (so axes
    computed by shape subgraphs are known); where the batch axis cannot be followed (an op with
    no batch rule, a run-time axis), the node is trusted."""
    conditions = _batch_sized_conditions(graph, batch_axes)
    graph = Graph(graph.name, list(graph.inputs), list(graph.outputs), [replace(n) for n in graph.nodes],
                  dict(graph.tensors), dict(graph.constants), graph.opset)
    try:
        fold_static_values(graph)
        fold_constants(graph)
        settle(graph)
    except Exception:  # the pipeline reports it, with the node, when it folds for real
        return conditions
    return conditions + follow_batch(graph, batch_axes)[1]
