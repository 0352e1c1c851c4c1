"""Memory planning: one arena, buffers reused by liveness (greedy best fit).

View ops (Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout) produce no buffer of
their own: their output aliases their input, so they cost nothing at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wasinfer.ir import Graph
from wasinfer.ops import VIEW_OPS

ALIGN = 16


def align(n: int, to: int = ALIGN) -> int:
    """n rounded up to a multiple of `to` (16: a v128 load or store of any buffer start is aligned)."""
    return (n + to - 1) // to * to


@dataclass
class MemoryPlan:
    offsets: dict[str, int] = field(default_factory=dict)  # buffer root → arena offset
    alias: dict[str, str] = field(default_factory=dict)  # tensor → buffer root
    scratch: dict[str, int] = field(default_factory=dict)  # node name → arena offset
    arena_size: int = 0
    naive_size: int = 0  # what one buffer per tensor would need

    def root(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name


def plan_memory(graph: Graph, scratch_bytes: dict[str, int], pinned: set[str] | None = None) -> MemoryPlan:
    """Assign every non-constant tensor an arena offset; `pinned` tensors live at fixed places."""
    plan = MemoryPlan()
    pinned = pinned or set()
    for node in graph.nodes:
        if node.op_type in VIEW_OPS:  # a view of a constant reads the constant itself
            plan.alias[node.outputs[0]] = node.inputs[0]

    def needs_buffer(name: str) -> bool:
        return bool(name) and name not in graph.constants and name not in pinned and plan.root(name) == name

    last_use: dict[str, int] = {}
    end = len(graph.nodes)
    for index, node in enumerate(graph.nodes):
        # a guarded node (a branch of a run-time If) reads its conditions when it is reached
        for name in node.inputs + node.outputs + [condition for condition, _ in node.guards]:
            if name and name not in graph.constants:
                last_use[plan.root(name)] = index
    for name in graph.outputs + graph.inputs:
        last_use[plan.root(name)] = end

    free: list[tuple[int, int]] = []  # (offset, size)
    top = 0

    def allocate(size: int) -> int:
        nonlocal top
        size = align(max(size, 1))
        best = None
        for i, (_, sz) in enumerate(free):
            if sz >= size and (best is None or sz < free[best][1]):
                best = i
        if best is None:
            off, top = top, top + size
            return off
        off, sz = free.pop(best)
        if sz > size:
            free.append((off + size, sz - size))
        return off

    def release(off: int, size: int) -> None:
        free.append((off, align(max(size, 1))))
        free.sort()
        merged: list[tuple[int, int]] = []
        for o, s in free:
            if merged and merged[-1][0] + merged[-1][1] == o:
                merged[-1] = (merged[-1][0], merged[-1][1] + s)
            else:
                merged.append((o, s))
        free[:] = merged

    for name in graph.inputs:
        if needs_buffer(name):
            plan.offsets[name] = allocate(graph.info(name).nbytes)
            plan.naive_size += align(graph.info(name).nbytes)
    for index, node in enumerate(graph.nodes):
        # a view's extra outputs (Dropout's mask) are never materialised; check_support
        # refuses a model that uses them
        for name in node.outputs[:1] if node.op_type in VIEW_OPS else node.outputs:
            if needs_buffer(name) and name not in plan.offsets:
                plan.offsets[name] = allocate(graph.info(name).nbytes)
                plan.naive_size += align(graph.info(name).nbytes)
        if scratch_bytes.get(node.name):
            plan.scratch[node.name] = allocate(scratch_bytes[node.name])
            release(plan.scratch[node.name], scratch_bytes[node.name])
        for name in {plan.root(n) for n in node.inputs + node.outputs + [c for c, _ in node.guards] if n}:
            if last_use.get(name) == index and name in plan.offsets:
                release(plan.offsets[name], graph.info(name).nbytes)
    plan.arena_size = align(top)
    return plan
