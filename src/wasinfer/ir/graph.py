"""Tensors, nodes and graphs; every shape static, or the largest of a symbolic one.

Frontends specialise every dynamic dimension (the run-time batch is handled outside the graph, by
running it per sample), except the ones given a range (`--input-shape x=1,3,48,32..1280`): those
are symbols (ir/symbolic.py), each tensor's `TensorInfo.shape` is its largest, and
`Graph.extents` holds the dims of the tensors that depend on a symbol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wasinfer.ir.symbolic import Extent


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


@dataclass(frozen=True)
class Activation:
    """An activation fused into the kernel that produces its input (passes/fuse.py): the op it
    was (Relu, Clip, ...) and its scalar parameters, settled at compile time."""

    op_type: str
    params: dict[str, float] = field(default_factory=dict)


@dataclass
class Node:
    """One op. `attrs` holds the model's attributes only; what the compiler learns about a node
    has a typed field of its own, so passes and kernels never trade private attributes."""

    op_type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    domain: str = ""
    # the activation applied in this node's epilogue (its output is the activation's output)
    activation: Activation | None = None
    # why a pass left this node for the compiler to decline (an If whose branches differ in type,
    # an Einsum it could not lower), shown in place of the bare "not supported"
    declined: str | None = None
    # the node runs only where each (bool tensor, value) holds: it came from a branch of an If
    # decided at run time (passes/control.py), outermost If first
    guards: tuple[tuple[str, bool], ...] = ()

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)


@dataclass(frozen=True)
class ListValue:
    """A sequence- or optional-typed graph input or output, carried by tensors (frontends/lists.py makes an
    input's, passes/sequences.py an output's): a module's slots are tensors, so a sequence is its elements' tensors,
    at most as many as it may hold, and a count, and an optional is its element and a "present" flag.

    `kind`: "sequence", "optional" (of a tensor) or "optional_sequence". `elements`: the tensors, in order (a
    sequence's first `count` hold its elements this run; an optional's one, or a sequence's). `count`: the int64
    scalar tensor holding a sequence's count each run, or None where it is len(elements) on every run. `present`:
    an optional's bool scalar tensor holding whether it is present this run, or True / False where the compiler
    knows (None for a sequence). `counts`: an input's declared (smallest, largest) count."""

    name: str
    kind: str
    elements: tuple[str, ...]
    count: str | None = None
    present: str | bool | None = None
    counts: tuple[int, int] | None = None

    @property
    def sequence_name(self) -> str:
        """The value that is the sequence itself: the input, or what an optional input holds."""
        return f"{self.name}/sequence" if self.kind == "optional_sequence" else self.name


@dataclass
class Graph:
    """A static dataflow graph. `tensors` holds the type of every value, constants included."""

    name: str
    inputs: list[str]
    outputs: list[str]
    nodes: list[Node]
    tensors: dict[str, TensorInfo]
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    opset: int = 13
    # constants stored compressed in the module (int8 / fp16, passes/quantize.py): kernels keep
    # them in layouts the start-up expansion can write (no Winograd transform of such weights)
    compressed: set[str] = field(default_factory=set)
    # why a run is refused, by the Refuse nodes that say so (passes/control.py): the module's run
    # returns status 2 + the index here, and the runtime raises the message
    run_errors: list[str] = field(default_factory=list)
    # the symbols of --input-shape's ranges, each with its (smallest, largest) value; and those the data decides
    symbols: dict[str, tuple[int, int]] = field(default_factory=dict)
    # inputs whose values are dims, declared with a range (--input-values, passes/values.py): (smallest, largest,
    # the run's status code when a value is outside them); each element is a symbol each run reads
    valued: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    # inputs whose values a kernel computes with at run time (a Resize's scales or sizes, passes/values.py), declared
    # with a range: (smallest, largest, the run's status code when a value is outside them); no symbols
    read_values: dict[str, tuple[float, float, int]] = field(default_factory=dict)
    # the most iterations a Loop whose trip count has no bound the compiler can find may run (--max-iterations):
    # it is unrolled to that many, and a run whose trip count is above it is refused naming the Loop (passes/loops.py)
    max_iterations: int | None = None
    # outputs whose size along an axis the data decides (NonZero's count, passes/dynamic.py), with their dims:
    # that axis is a symbol of its own (in `symbols`, smallest 0), whose value the node's kernel writes
    decided: dict[str, Extent] = field(default_factory=dict)
    # outputs typed from the model's declaration because ONNX's inference gave them none, a named leading dim
    # taken as 1 (a batch, as ai.onnx.ml's classifiers declare it): a guess, which passes/control.py's
    # infer_types replaces once the graph's own types give the output one (Silero VAD declares its
    # [sequence_length] output so, 32 on a 32-window input)
    guessed: set[str] = field(default_factory=set)
    # the dims of every tensor that depends on a symbol (passes/symbolic.py); a tensor not here is static.
    # Its buffer is laid out for its largest shape, and only the part inside its actual dims is meaningful
    extents: dict[str, Extent] = field(default_factory=dict)
    # integer tensors whose *values* are dims that depend on a symbol (Shape of such a tensor, and the
    # arithmetic exporters do on it), recorded before folding makes them constants at the largest dims
    shape_values: dict[str, Extent] = field(default_factory=dict)
    # nodes that folding evaluates once, at the largest dims, although their values depend on the run's dims
    # (a sum over a symbolic axis of a ConstantOfShape): refused by name (passes/symbolic.py)
    fold_hazards: list[str] = field(default_factory=list)
    # sequence- and optional-typed inputs and outputs (ListValue), in graph order: `inputs` and `outputs` hold the
    # tensors that carry them, in their place
    list_inputs: list[ListValue] = field(default_factory=list)
    list_outputs: list[ListValue] = field(default_factory=list)

    def info(self, name: str) -> TensorInfo:
        return self.tensors[name]

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    def producer(self, name: str) -> Node | None:
        for node in self.nodes:
            if name in node.outputs:
                return node
        return None

    def add_constant(self, name: str, value: np.ndarray) -> None:
        self.constants[name] = value
        self.tensors[name] = TensorInfo(name, value.dtype, tuple(value.shape))

    def param_count(self) -> int:
        return sum(int(v.size) for v in self.constants.values())


class UnsupportedModel(ValueError):
    """Everything a frontend or the compiler cannot handle in a model, so that one run lists it all
    (and nothing is written)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("unsupported:\n" + "\n".join(f"  - {p}" for p in problems))
