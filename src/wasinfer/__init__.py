"""wasinfer: compile trained models into self-contained WebAssembly modules and serve them.

    import wasinfer

    module = wasinfer.compile("model.onnx", input_shapes={"x": (1, 3, 224, 224)})
    model = wasinfer.load(module)
    outputs = model.run({"x": image})

`compile`, `load` and the names below are the public API (wasinfer/api.py); importing the package loads
none of the compiler or the engine until one of them is first used.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from wasinfer.version import __version__

if TYPE_CHECKING:
    from wasinfer.api import compile, load
    from wasinfer.artifact.module import ConvertResult as Module
    from wasinfer.ir import UnsupportedModel
    from wasinfer.runtime.base import InputError, ModelFault
    from wasinfer.runtime.wasm import WasmModel as Model

# public name → (module, attribute)
_PUBLIC = {"compile": ("wasinfer.api", "compile"), "load": ("wasinfer.api", "load"),
           "Module": ("wasinfer.artifact.module", "ConvertResult"), "Model": ("wasinfer.runtime.wasm", "WasmModel"),
           "UnsupportedModel": ("wasinfer.ir", "UnsupportedModel"),
           "InputError": ("wasinfer.runtime.base", "InputError"), "ModelFault": ("wasinfer.runtime.base", "ModelFault")}

__all__ = ["InputError", "Model", "ModelFault", "Module", "UnsupportedModel", "__version__", "compile", "load"]


def __getattr__(name: str) -> Any:
    """The public names, imported on first use (PEP 562)."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'wasinfer' has no attribute {name!r}")
    module, attribute = _PUBLIC[name]
    value = getattr(import_module(module), attribute)
    globals()[name] = value
    return value
