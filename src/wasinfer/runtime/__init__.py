"""Executing models: backends behind one interface."""

from wasinfer.runtime.base import Backend, DeadlineExceeded, InputError, MemoryLimitExceeded, ModelFault
from wasinfer.runtime.wasm import CompiledCache, EpochTicker, WasmModel, make_engine

__all__ = ["Backend", "CompiledCache", "DeadlineExceeded", "EpochTicker", "InputError", "MemoryLimitExceeded",
           "ModelFault", "WasmModel", "make_engine"]
