"""What an op is, independent of any backend: the `OpDef` every op has, and the registry.

A definition says what the rest of the compiler needs to know about an op without reading
its kernel: its attributes' defaults (ONNX's own, per opset: `attr`), its role
(a kernel runs it, its output aliases its input, or it is evaluated at compile time), its part
in fusion (an activation a producer applies in its epilogue, or such a producer), and its
batch rule (where the samples of a run-time batch go through it, or why it mixes them).
Passes read these facts from here; backends decide how to run an op, never what it means.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from onnx import defs, helper

from wasinfer.ir import Graph, Node
from wasinfer.ir.symbolic import Extent


class Role(enum.Enum):
    KERNEL = "kernel"  # a backend runs it
    VIEW = "view"  # its output aliases its input: no code, no buffer
    COMPILE_TIME = "compile-time"  # always evaluated while compiling (shapes are static)
    INLINED = "inlined"  # replaced by a subgraph while compiling (If, Loop, Scan)
    LOWERED = "lowered"  # rewritten into other ops by a pass (Einsum, the quantized operators)


class Fusion(enum.Enum):
    NONE = ""
    ACTIVATION = "activation"  # may run in the epilogue of the kernel that produces its input
    PRODUCER = "producer"  # may apply such an activation to its output


@dataclass(frozen=True)
class BatchFlow:
    """Where the batch axis is in each output (None: not there, or not followed), or why the node
    mixes the samples of the batch, so that running the graph once per sample would be wrong."""

    outputs: tuple[int | None, ...] = ()
    mixes: str | None = None


@dataclass(frozen=True)
class BatchView:
    """What a batch rule sees: the node, the graph (static shapes, constants) and the batch axis
    of each input (None where the input carries no batch)."""

    graph: Graph
    node: Node
    axes: tuple[int | None, ...]

    @property
    def first(self) -> int | None:
        return self.axes[0] if self.axes else None

    def rank(self, name: str) -> int | None:
        return len(self.graph.tensors[name].shape) if name in self.graph.tensors else None

    @property
    def in_rank(self) -> int | None:
        return self.rank(self.node.inputs[0]) if self.node.inputs and self.node.inputs[0] else None

    def out_rank(self, index: int = 0) -> int | None:
        name = self.node.outputs[index] if len(self.node.outputs) > index else ""
        return self.rank(name) if name else None

    def ints(self, index: int) -> list[int] | None:
        """Input `index` as a list of ints when it is a constant, else None."""
        name = self.node.inputs[index] if len(self.node.inputs) > index else ""
        value = self.graph.constants.get(name) if name else None
        return None if value is None else [int(v) for v in np.asarray(value).reshape(-1)]

    def attr(self, name: str) -> Any:
        """The node's attribute, or ONNX's default for it at the graph's opset."""
        return attr(self.node, name, self.graph.opset)

    def same(self, axis: int | None) -> BatchFlow:
        """Every output has the batch on `axis`."""
        return BatchFlow((axis,) * len(self.node.outputs))

    def none(self) -> BatchFlow:
        return BatchFlow((None,) * len(self.node.outputs))

    def mixes(self, why: str) -> BatchFlow:
        return BatchFlow((None,) * len(self.node.outputs), why)


EDGE = "edge"  # a mask's fill: the last slab inside the run's dim, repeated (what an index clamped to it reads)


@dataclass(frozen=True)
class ExtentFlow:
    """What a rule found: each output's dims (None: static, its TensorInfo shape), the symbolic values of
    integer outputs that hold dims, the fills the inputs need past their actual dims
    (input index, axis, value or EDGE), or why a symbolic dim cannot go through the node."""

    outputs: tuple[Extent | None, ...] = ()
    values: tuple[Extent | None, ...] = ()
    masks: tuple[tuple[int, int, float | str], ...] = ()
    # fills that keep reads in bounds (a Gather's indices past the run's count) rather than change any value
    index_masks: tuple[tuple[int, int, float], ...] = ()
    refused: str | None = None
    # inputs the node must read from a tensor each run writes (input index, its values): a negative index
    # along a symbolic axis counts from the run's dim, not the largest
    run_time_inputs: tuple[tuple[int, Extent], ...] = ()


@dataclass(frozen=True)
class ExtentView:
    """What a rule sees: the node and the graph with the extents and symbolic values found so far."""

    graph: Graph
    node: Node

    def extent(self, index: int) -> Extent:
        name = self.node.inputs[index] if len(self.node.inputs) > index else ""
        if not name:
            return ()
        found = self.graph.extents.get(name)
        return found if found is not None else tuple(self.graph.info(name).shape)

    def symbolic(self, index: int) -> bool:
        name = self.node.inputs[index] if len(self.node.inputs) > index else ""
        return bool(name) and name in self.graph.extents

    def values(self, index: int) -> Extent | None:
        """Input `index` as a flat tuple of dims: its symbolic values, or a constant's ints, else None."""
        name = self.node.inputs[index] if len(self.node.inputs) > index else ""
        if not name:
            return None
        if name in self.graph.shape_values:
            return self.graph.shape_values[name]
        value = self.graph.constants.get(name)
        if value is None or not np.issubdtype(np.asarray(value).dtype, np.integer):
            return None
        return tuple(int(v) for v in np.asarray(value).reshape(-1))

    def ints(self, index: int) -> list[int] | None:
        """Input `index` as ints when they are known while compiling (a constant, or static dims), else None."""
        found = self.values(index)
        return [d for d in found if isinstance(d, int)] if found is not None and all(
            isinstance(d, int) for d in found) else None

    def attr(self, name: str) -> Any:
        return attr(self.node, name, self.graph.opset)

    @property
    def rank(self) -> int:
        return len(self.extent(0))

    def out(self, *extents: Extent | None) -> ExtentFlow:
        return ExtentFlow(tuple(extents))

    def refuse(self, why: str) -> ExtentFlow:
        return ExtentFlow(refused=why)


ExtentRule = Callable[[ExtentView], ExtentFlow]


BatchRule = Callable[[BatchView], BatchFlow]
ActivationParams = Callable[[Node, Graph], dict[str, float] | None]


@dataclass(frozen=True)
class OpDef:
    op_type: str
    domain: str = ""
    role: Role = Role.KERNEL
    fusion: Fusion = Fusion.NONE
    # the scalar parameters of a fusable activation, or None when it cannot be fused here
    activation: ActivationParams | None = None
    # None: the batch cannot be followed through it (the node is trusted, as an unlisted op)
    batch: BatchRule | None = None
    summary: str = ""
    family: str = ""  # the ops/ module that defines it (docs/ops.md groups by it)
    # None: a symbolic dim (--input-shape MIN..MAX) cannot go through it yet (ops/extent.py)
    extent: ExtentRule | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.domain, self.op_type)


REGISTRY: dict[tuple[str, str], OpDef] = {}


def define(op_type: str, *, domain: str = "", role: Role = Role.KERNEL,
           fusion: Fusion = Fusion.NONE, activation: ActivationParams | None = None,
           batch: BatchRule | None = None, summary: str = "", extent: ExtentRule | None = None) -> OpDef:
    """Register the one definition of an op (a second one for the same op is a mistake)."""
    family = str(sys._getframe(1).f_globals.get("__name__", "")).rsplit(".", 1)[-1]
    op = OpDef(op_type, domain, role, fusion, activation, batch, summary, family, extent)
    if op.key in REGISTRY:
        raise ValueError(f"op {domain + '.' if domain else ''}{op_type} is defined twice")
    REGISTRY[op.key] = op
    return op


def normal_domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def lookup(node: Node) -> OpDef | None:
    return REGISTRY.get((normal_domain(node.domain), node.op_type))


def with_role(role: Role) -> frozenset[str]:
    """Default-domain op types of one role."""
    return frozenset(op.op_type for op in REGISTRY.values() if op.role is role and not op.domain)


def with_fusion(fusion: Fusion) -> frozenset[str]:
    return frozenset(op.op_type for op in REGISTRY.values() if op.fusion is fusion and not op.domain)


@cache
def schema_defaults(op_type: str, domain: str, opset: int) -> Mapping[str, Any]:
    """ONNX's attribute defaults for the op as of `opset` (of its own domain for ai.onnx.ml)."""
    try:
        schema = defs.get_schema(op_type, opset, domain) if not domain else defs.get_schema(op_type, domain=domain)
    except defs.SchemaError:  # not defined yet at that opset (a model that uses it early): the newest
        try:
            schema = defs.get_schema(op_type, domain=domain)
        except defs.SchemaError:
            return {}
    found: dict[str, Any] = {}
    for name, attribute in schema.attributes.items():
        if attribute.default_value.type:  # type 0: required, or no default
            value = helper.get_attribute_value(attribute.default_value)
            found[name] = value.decode() if isinstance(value, bytes) else value
    return found


def attr(node: Node, name: str, opset: int) -> Any:
    """A node's attribute, or ONNX's default at `opset` where the node leaves it out (None where
    the attribute has no default)."""
    if name in node.attrs:
        return node.attrs[name]
    return schema_defaults(node.op_type, normal_domain(node.domain), opset).get(name)

