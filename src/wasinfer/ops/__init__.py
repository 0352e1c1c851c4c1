"""One definition per op: what it is, separate from how a backend runs it.

Each family module (`elementwise`, `shape`, `nn`, `linalg`, `reduce`, `layout`, `recurrent`,
`control`, `sequence`, `ml`, `quantized`, `contrib`) registers one `OpDef` per op with `define`: its role
(kernel, view, evaluated at compile time, inlined), its part in activation fusion (with the activation's parameters),
and its batch rule; attribute defaults are ONNX's own at the model's opset (`attr`). Passes
read these facts from here (memory planning the views, fusion the roles, `batch_mixing` the
batch rules); a backend registers an emitter for the ops it runs. Adding an op is one
`define(...)` in its family module and one emitter. `docs/ops.md` is generated from this
package (`python scripts/op_table.py`).
"""

import numpy as np

from wasinfer.ir import Graph, Node
from wasinfer.ops import (  # noqa: F401
    contrib,
    control,
    elementwise,
    layout,
    linalg,
    ml,
    nn,
    quantized,
    recurrent,
    reduce,
    sequence,
    shape,
)
from wasinfer.ops.definition import (
    REGISTRY,
    BatchFlow,
    BatchRule,
    BatchView,
    Fusion,
    OpDef,
    Role,
    attr,
    define,
    lookup,
    normal_domain,
    schema_defaults,
    with_fusion,
    with_role,
)


def activation_params(node: Node, graph: Graph) -> dict[str, float] | None:
    """The scalar parameters of an activation, or None when they are not compile-time constants
    or the input is not float32 (integer Clip runs as its own kernel, never fused)."""
    info = graph.tensors.get(node.inputs[0])
    if info is not None and info.dtype != np.float32:
        return None
    op = lookup(node)
    return op.activation(node, graph) if op is not None and op.activation is not None else {}


def batch_flow(view: BatchView) -> BatchFlow:
    """The node's batch rule applied (not followed where its op has none)."""
    op = lookup(view.node)
    return op.batch(view) if op is not None and op.batch is not None else view.none()


VIEW_OPS = with_role(Role.VIEW)
COMPILE_TIME_OPS = with_role(Role.COMPILE_TIME)

__all__ = ["COMPILE_TIME_OPS", "REGISTRY", "VIEW_OPS", "BatchFlow", "BatchRule", "BatchView", "Fusion", "OpDef",
           "Role", "activation_params", "attr", "batch_flow", "define", "lookup", "normal_domain", "schema_defaults",
           "with_fusion", "with_role"]
