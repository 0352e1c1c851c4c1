"""Model formats → IR: ONNX (onnx.py) and TensorFlow Lite (tflite.py, by way of ONNX)."""

from wasinfer.frontends.onnx import FrontendError, Loaded, ShapeOverrides, load_onnx, parse_shape_overrides

__all__ = ["FrontendError", "Loaded", "ShapeOverrides", "load_onnx", "parse_shape_overrides"]
