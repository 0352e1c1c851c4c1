"""The `.wasm` contract: metadata section, ABI, conversion pipeline and validation."""

from wasinfer.artifact.convert import ConvertResult, convert_onnx
from wasinfer.artifact.metadata import Metadata, TensorSpec, read_metadata

__all__ = ["ConvertResult", "Metadata", "TensorSpec", "convert_onnx", "read_metadata"]
