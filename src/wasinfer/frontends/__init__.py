"""Model formats → IR."""

from wasinfer.frontends.onnx import FrontendError, Loaded, load_onnx, parse_shape_overrides

__all__ = ["FrontendError", "Loaded", "load_onnx", "parse_shape_overrides"]
