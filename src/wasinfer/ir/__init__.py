"""The one model representation every frontend produces and every pass rewrites."""

from wasinfer.ir.graph import Graph, Node, TensorInfo

__all__ = ["Graph", "Node", "TensorInfo"]
