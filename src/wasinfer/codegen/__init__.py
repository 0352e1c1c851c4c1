"""IR → WebAssembly bytes: a binary writer and one kernel generator per op family."""

from wasinfer.codegen.compiler import (
    ABI_VERSION,
    METADATA_SECTION,
    Compiled,
    CompileOptions,
    UnsupportedModel,
    compile_graph,
    supported_ops,
)

__all__ = ["ABI_VERSION", "METADATA_SECTION", "CompileOptions", "Compiled", "UnsupportedModel", "compile_graph",
           "supported_ops"]
