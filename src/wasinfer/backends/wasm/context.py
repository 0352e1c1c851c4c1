"""What a kernel generator sees: the node, tensor addresses, and a function to fill.

Kernel generators (one module per op family in `backends/wasm/emitters/`) register themselves in
`REGISTRY` with `@kernel(...)`. Each has up to three parts, all pure functions of the node
and the static graph:
- `check(node, graph)` → problems (unsupported attribute values), empty when supported;
- `scratch(node, graph)` → bytes of temporary arena the kernel needs while it runs;
- `emit(ctx, node)` → writes the node's function body into `ctx.f`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from wasinfer.backends.wasm.dims import push_dim
from wasinfer.backends.wasm.writer import V128, Func, Module
from wasinfer.ir import Graph, Node, TensorInfo
from wasinfer.ir.symbolic import mul
from wasinfer.ops import REGISTRY as OP_DEFINITIONS

Check = Callable[[Node, Graph], list[str]]
Scratch = Callable[[Node, Graph], int]


@dataclass
class Ctx:
    module: Module
    graph: Graph
    f: Func
    addresses: Callable[[str], int]
    place_data: Callable[[np.ndarray], int]
    helpers: dict[str, int]
    scratch_addr: int = 0
    relaxed_simd: bool = False  # CompileOptions.relaxed_simd: kernels may use relaxed-SIMD opcodes (FMA)
    # where a graph input's or output's actual dims are (int32 each): written by the host or by the run
    dims: dict[str, int] = field(default_factory=dict)
    # where each symbol's value lies in memory during a run (backends/wasm/dims.py push_dim)
    symbols: dict[str, int] = field(default_factory=dict)

    def addr(self, name: str) -> int:
        return self.addresses(name)

    def info(self, name: str) -> TensorInfo:
        return self.graph.info(name)

    def const(self, name: str) -> np.ndarray | None:
        return self.graph.constants.get(name)

    def data(self, array: np.ndarray) -> int:
        """Place a kernel-specific constant (packed weights, tables) and return its address."""
        return self.place_data(np.ascontiguousarray(array))

    def helper(self, name: str) -> int:
        return self.helpers[name]

    def run_time_count(self, name: str, axes: Sequence[int]) -> int | None:
        """Where some of `axes` of tensor `name` are symbolic (ir/symbolic.py): a new v128 local holding, in
        each lane, the run's count of elements over those axes (a mean's divisor); None where it is static."""
        extent = self.graph.extents.get(name)
        if extent is None or all(isinstance(extent[a], int) for a in axes):
            return None
        local = self.f.local(V128)
        push_dim(self.f, mul(*(extent[a] for a in axes)), self.symbols)
        self.f.op("f32.convert_i32_s").op("f32x4.splat").set(local)
        return local


@dataclass
class Kernel:
    emit: Callable[[Ctx, Node], None]
    check: Check | None = None
    scratch: Scratch | None = None
    ops: tuple[str, ...] = field(default_factory=tuple)


REGISTRY: dict[tuple[str, str], Kernel] = {}

# Ops left out on purpose, with what to do instead; shown in place of the bare "not supported".
UNSUPPORTED_HINTS: dict[tuple[str, str], str] = {}


def kernel(*ops: str, domain: str = "", check: Check | None = None,
           scratch: Scratch | None = None) -> Callable[[Callable[[Ctx, Node], None]], Callable[[Ctx, Node], None]]:
    def register(emit: Callable[[Ctx, Node], None]) -> Callable[[Ctx, Node], None]:
        undefined = [op for op in ops if (domain, op) not in OP_DEFINITIONS]
        if undefined:  # what an op is lives in wasinfer.ops; an emitter only says how to run it
            raise ValueError(f"emitter {emit.__module__}.{emit.__name__}: no definition in wasinfer.ops "
                             f"for {undefined}")
        for op in ops:
            REGISTRY[(domain, op)] = Kernel(emit, check, scratch, ops)
        return emit
    return register


def only_float32(node: Node, graph: Graph, names: list[str] | None = None) -> list[str]:
    """The common check: the listed (default: all) tensors must be float32."""
    problems = []
    for name in names if names is not None else [n for n in node.inputs + node.outputs if n]:
        if name and graph.info(name).dtype != np.float32:
            problems.append(f"tensor {name!r} has dtype {graph.info(name).dtype}, only float32 is supported")
    return problems
