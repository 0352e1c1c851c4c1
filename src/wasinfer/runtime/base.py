"""The one interface every execution backend implements."""

from __future__ import annotations

from typing import Protocol

import numpy as np


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
    name: str

    def input_names(self) -> list[str]: ...

    def output_names(self) -> list[str]: ...

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...
