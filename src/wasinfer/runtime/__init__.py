"""Executing models: backends behind one interface."""

from wasinfer.runtime.base import (
    Backend,
    DeadlineExceeded,
    InputError,
    MemoryLimitExceeded,
    ModelFault,
    ModelInfo,
    TensorSpec,
)
from wasinfer.runtime.wasm import CompiledCache, WasmModel, make_engine, model_info

__all__ = ["Backend", "CompiledCache", "DeadlineExceeded", "InputError", "MemoryLimitExceeded",
           "ModelFault", "ModelInfo", "TensorSpec", "WasmModel", "make_engine", "model_info"]
