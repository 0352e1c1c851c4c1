"""Model formats → IR."""

from typing import Any

from wasinfer.frontends.onnx import FrontendError, Loaded, load_onnx, parse_shape_overrides

__all__ = ["FrontendError", "Loaded", "load_onnx", "load_tflite", "parse_shape_overrides"]


def __getattr__(name: str) -> Any:
    """The TFLite frontend (the flatbuffer reader and the compiler's error type) loads on first use."""
    if name == "load_tflite":
        from wasinfer.frontends.tflite import load_tflite

        return load_tflite
    raise AttributeError(f"module 'wasinfer.frontends' has no attribute {name!r}")
