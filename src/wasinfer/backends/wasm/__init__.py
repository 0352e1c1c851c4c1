"""IR → WebAssembly bytes: a binary writer and one kernel generator per op family.

The compiler (and with it the passes and onnx's reference evaluator) loads on first use, so
that reading a module's metadata — what a server does — costs none of it.
"""

from typing import TYPE_CHECKING, Any

from wasinfer.backends.wasm.abi import ABI_VERSION, METADATA_SECTION

if TYPE_CHECKING:
    from wasinfer.backends.wasm.compiler import (
        Compiled,
        CompileOptions,
        UnsupportedModel,
        compile_graph,
        kernel_takes,
        supported_ops,
    )

__all__ = ["ABI_VERSION", "METADATA_SECTION", "CompileOptions", "Compiled", "UnsupportedModel", "compile_graph",
           "kernel_takes", "supported_ops"]
_COMPILER = {"Compiled", "CompileOptions", "UnsupportedModel", "compile_graph", "kernel_takes", "supported_ops"}


def __getattr__(name: str) -> Any:
    if name in _COMPILER:
        from wasinfer.backends.wasm import compiler

        return getattr(compiler, name)
    raise AttributeError(f"module 'wasinfer.backends.wasm' has no attribute {name!r}")
