"""Executing models: backends behind one interface."""

from wasinfer.runtime.base import Backend, InputError
from wasinfer.runtime.wasm import CompiledCache, WasmModel, make_engine

__all__ = ["Backend", "CompiledCache", "InputError", "WasmModel", "make_engine"]
