"""The `.wasm` contract: metadata section, ABI, conversion pipeline and validation."""

from typing import TYPE_CHECKING, Any

from wasinfer.artifact.metadata import Metadata, TensorSlot, read_metadata

if TYPE_CHECKING:
    from wasinfer.artifact.convert import convert_onnx
    from wasinfer.artifact.module import ConvertResult

__all__ = ["ConvertResult", "Metadata", "TensorSlot", "convert_onnx", "read_metadata"]


def __getattr__(name: str) -> Any:
    """The converter (and onnx, ~13 MiB resident) loads on first use: a server that only runs modules never needs it."""
    if name == "ConvertResult":
        from wasinfer.artifact.module import ConvertResult

        return ConvertResult
    if name == "convert_onnx":
        from wasinfer.artifact.convert import convert_onnx

        return convert_onnx
    raise AttributeError(f"module 'wasinfer.artifact' has no attribute {name!r}")
