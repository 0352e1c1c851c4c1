"""The one interface every execution backend implements, and the one way they describe tensors.

The server, the WASI-NN host and `validate` use a model through `Backend` alone: its `info`
(name, tensors, batch limit) and `run`. What a wasinfer module adds beyond that (slot addresses,
the compile options) stays in its own metadata section (wasinfer.artifact.metadata).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as a caller sees it, whatever runs it: the numpy dtype's name ("object"
    for ONNX strings), the shape with -1 where a dim is left to run time (the batch's included),
    the axis that carries the run-time batch (None: the tensor has none), and the range (smallest,
    largest) of each run-time dim that has one: a wasinfer module's symbolic dims (ABI version 3),
    which a run must keep inside, where a -1 without a range takes any size."""

    name: str
    dtype: str
    shape: list[int]
    batch_axis: int | None
    ranges: dict[int, tuple[int, int]] = field(default_factory=dict)  # axis → (min, max)
    steps: dict[int, int] = field(default_factory=dict)  # axis → the step of a range of multiples (absent: 1)

    def shown(self) -> str:
        """The shape as errors and the CLI print it: N for the batch, MIN..MAX[:STEP] for a symbolic dim, ? for any
        other run-time dim."""
        def dim(axis: int, d: int) -> str:
            if axis == self.batch_axis:
                return "N"
            if axis in self.ranges:
                low, high = self.ranges[axis]
                step = self.steps.get(axis, 1)
                return f"{low}..{high}" + (f":{step}" if step > 1 else "")
            return "?" if d == -1 else str(d)

        return "[" + ", ".join(dim(axis, d) for axis, d in enumerate(self.shape)) + "]"


@dataclass(frozen=True)
class ModelInfo:
    """What a backend says about the model it runs."""

    name: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    max_batch: int | None = None  # None: no compiled limit
    providers: tuple[str, ...] = ()  # ONNX Runtime: what the session runs on, in its order of preference


class InputError(ValueError):
    """The caller's tensors do not match the model (name, dtype, shape, batch)."""


class ModelFault(RuntimeError):
    """The module trapped, ran past its deadline or broke its memory limit.

    The fault is the module's, not the caller's: the request fails, nothing else does. The
    instance that raised it may be left mid-run with half-written memory, so it must not be
    used again; build a fresh one from the same compiled module instead.
    """


class DeadlineExceeded(ModelFault):
    """A call ran longer than the instance's deadline and was interrupted."""

    def __init__(self, message: str, deadline_seconds: float):
        super().__init__(message)
        self.deadline_seconds = deadline_seconds


class MemoryLimitExceeded(ModelFault):
    """The module wants more linear memory than the instance's cap allows."""


class Backend(Protocol):
    name: str  # the backend's kind: "wasm", "onnxruntime", "litert"

    @property
    def info(self) -> ModelInfo: ...

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...
