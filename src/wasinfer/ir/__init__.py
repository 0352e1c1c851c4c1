"""The one model representation every frontend produces and every pass rewrites."""

from wasinfer.ir.graph import Activation, Graph, ListValue, Node, TensorInfo, UnsupportedModel

__all__ = ["Activation", "Graph", "ListValue", "Node", "TensorInfo", "UnsupportedModel"]
