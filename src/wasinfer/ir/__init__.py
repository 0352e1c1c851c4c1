"""The one model representation every frontend produces and every pass rewrites."""

from wasinfer.ir.graph import Graph, Node, TensorInfo, UnsupportedModel

__all__ = ["Graph", "Node", "TensorInfo", "UnsupportedModel"]
