"""The one model representation every frontend produces and every pass rewrites."""

from wasinfer.ir.graph import Activation, Graph, Node, TensorInfo, UnsupportedModel

__all__ = ["Activation", "Graph", "Node", "TensorInfo", "UnsupportedModel"]
