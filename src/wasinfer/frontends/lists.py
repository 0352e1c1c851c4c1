"""Sequence- and optional-typed graph inputs, rewritten into the tensors a module's slots can carry.

A module's inputs are tensors (docs/abi.md), so a sequence input `x` of at most MAX tensors becomes MAX element
inputs `x.0` ... `x.{MAX-1}` of the sequence's element type, and, where its count varies (`--sequence
x=MIN..MAX`), an int64 scalar `x.count` that each run gives; a `SequenceConstruct` of the elements then stands
for `x` in the graph, so ONNX's inference types what reads it and passes/sequences.py folds it as any sequence
the graph builds (with a fixed count, the module is as specialised as one built for that list). An optional input
`x` becomes a bool scalar `x.present` and its element (`x.value`, or a sequence's elements as above) behind an
`Optional` node: the flag is read at run time (passes/sequences.py). The element inputs are ordinary tensor inputs
from here on: `--input-shape x=...` gives every element's dims (ranges too), `--input-shape x.1=...` one's.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from wasinfer.ir import ListValue

COUNT_DTYPE = TensorProto.INT64  # SequenceLength's type


class ListInputError(ValueError):
    """A sequence or optional input that cannot be carried (no declared count, a map)."""


def parse_sequence_counts(specs: list[str]) -> dict[str, tuple[int, int]]:
    """`NAME=MAX` (0..MAX tensors), `NAME=MIN..MAX`, or `NAME=N..N` (exactly N), as --sequence gives them."""
    counts: dict[str, tuple[int, int]] = {}
    for spec in specs:
        name, sep, text = spec.rpartition("=")
        low, dots, high = text.partition("..")
        try:
            bounds = (int(low), int(high)) if dots else (0, int(text))
        except ValueError:
            raise ListInputError(f"--sequence {spec!r}: expected NAME=MAX or NAME=MIN..MAX (counts of tensors)") \
                from None
        if not sep or not name or not 0 <= bounds[0] <= bounds[1]:
            raise ListInputError(f"--sequence {spec!r}: expected NAME=MAX or NAME=MIN..MAX with 0 <= MIN <= MAX")
        counts[name] = bounds
    return counts


def expand_list_inputs(model: onnx.ModelProto, counts: dict[str, tuple[int, int]],
                       overrides: dict[str, tuple[int, ...]]) -> list[ListValue]:
    """Rewrite `model`'s sequence and optional inputs in place (see the module's docstring); returns what each
    was. `overrides` (--input-shape) given for a sequence by its own name is given to each element instead."""
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    unknown = sorted(set(counts) - {v.name for v in graph.input})
    if unknown:
        raise ListInputError(f"--sequence names unknown inputs: {unknown}")
    inputs: list[onnx.ValueInfoProto] = []
    nodes: list[onnx.NodeProto] = []
    lists: list[ListValue] = []
    for value in graph.input:
        kind = value.type.WhichOneof("value")
        if value.name in initializers or kind in (None, "tensor_type"):
            if value.name in counts:
                raise ListInputError(f"--sequence {value.name}: the input is a tensor, not a sequence")
            inputs.append(value)
            continue
        if kind not in ("sequence_type", "optional_type"):
            raise ListInputError(f"input {value.name!r} is a {kind.removesuffix('_type')}: a module's inputs are "
                                 "tensors, sequences and optionals")
        present = None
        inner, inner_kind = value.type, kind
        if kind == "optional_type":
            present = f"{value.name}.present"
            inputs.append(helper.make_tensor_value_info(present, TensorProto.BOOL, []))
            inner = value.type.optional_type.elem_type
            inner_kind = inner.WhichOneof("value")
            if inner_kind == "tensor_type":
                element = f"{value.name}.value"
                inputs.append(_element(element, inner, overrides, value.name))
                nodes.append(helper.make_node("Optional", [element], [value.name], name=f"{value.name}/optional"))
                lists.append(ListValue(value.name, "optional", (element,), present=present))
                continue
            if inner_kind != "sequence_type":
                raise ListInputError(f"input {value.name!r} is an optional of a {inner_kind}: a module's inputs are "
                                     "tensors, sequences and optionals of them")
        listed = ListValue(value.name, "sequence" if present is None else "optional_sequence", ())
        sequence = listed.sequence_name
        if value.name not in counts:
            raise ListInputError(f"input {value.name!r} is a sequence{' (optional)' if present else ''}: give the "
                                 f"most tensors it may hold with --sequence {value.name}=MAX (or MIN..MAX; N..N for "
                                 "exactly N): each is one tensor slot of the module")
        low, high = counts[value.name]
        element_type = inner.sequence_type.elem_type
        if element_type.WhichOneof("value") != "tensor_type":
            raise ListInputError(f"input {value.name!r} is a sequence of {element_type.WhichOneof('value')}s: only "
                                 "sequences of tensors are carried")
        elements = tuple(f"{value.name}.{i}" for i in range(high))
        inputs += [_element(e, element_type, overrides, value.name) for e in elements]
        count = None
        if low < high:
            count = f"{value.name}.count"
            inputs.append(helper.make_tensor_value_info(count, COUNT_DTYPE, []))
        if elements:
            nodes.append(helper.make_node("SequenceConstruct", list(elements), [sequence],
                                          name=f"{sequence}/construct"))
        else:
            nodes.append(helper.make_node("SequenceEmpty", [], [sequence], name=f"{sequence}/empty",
                                          dtype=element_type.tensor_type.elem_type))
        if present is not None:
            nodes.append(helper.make_node("Optional", [sequence], [value.name], name=f"{value.name}/optional"))
        lists.append(ListValue(value.name, listed.kind, elements, count, present, (low, high)))
    for listed in lists:
        overrides.pop(listed.name, None)
    if lists:
        del graph.input[:]
        graph.input.extend(inputs)
        kept = list(graph.node)
        del graph.node[:]
        graph.node.extend([*nodes, *kept])
    return lists


def _element(name: str, type_proto: onnx.TypeProto, overrides: dict[str, tuple[int, ...]],
             owner: str) -> onnx.ValueInfoProto:
    """An element's tensor input, of the sequence's (optional's) element type, its named dims unnamed: each
    element's are its own symbols (`s.1.0`), not one size for every element; --input-shape for the owner is each
    element's unless one is given for the element itself."""
    value = onnx.ValueInfoProto()
    value.name = name
    value.type.CopyFrom(type_proto)
    for dim in value.type.tensor_type.shape.dim:  # each element's own dims (the model's `N` is not one size for all)
        if dim.HasField("dim_param"):
            dim.ClearField("dim_param")
    if owner in overrides and name not in overrides:
        overrides[name] = overrides[owner]
    if not value.type.tensor_type.HasField("shape") and name in overrides:  # of any shape: --input-shape's rank
        value.type.tensor_type.shape.SetInParent()  # (a scalar's has no dims)
        for _ in overrides[name]:
            value.type.tensor_type.shape.dim.add()
    return value


__all__ = ["ListInputError", "expand_list_inputs", "parse_sequence_counts"]
