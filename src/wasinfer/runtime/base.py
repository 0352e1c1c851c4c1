"""The one interface every execution backend implements."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class InputError(ValueError):
    """The caller's tensors do not match the model (name, dtype, shape, batch)."""


class Backend(Protocol):
    name: str

    def input_names(self) -> list[str]: ...

    def output_names(self) -> list[str]: ...

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...
