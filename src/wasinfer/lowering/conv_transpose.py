"""How a ConvTranspose runs: the shared GEMM into a column buffer, then col2im, in tiles of input rows.

Per (sample, group): col[Mg*K, P] = W_g^T @ X_g (K = kernel positions, P = input positions),
then every row (m, kernel offset) of col is added into output plane m at
o = i*stride + offset*dilation - pad_begin. The plan resolves the output size and pads
(output_padding, output_shape, auto_pad, as the ONNX specification and its reference do),
which inputs land inside the output per axis and kernel offset (`TransposePlan.valid`, so the
scatter carries no bounds checks), and the tiles of input rows, about COLUMN_BUDGET bytes of
column buffer each, whose runs share one copy of the code (`TransposePlan.tiles`).

With output_shape but no auto_pad the specification puts the larger half of an odd total
padding first and ONNX Runtime the smaller, so that case is declined (`plan_problems`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from wasinfer.ir import Graph, Node

COLUMN_BUDGET = 2**20  # column-buffer bytes per tile of input rows: about the size of L2


@dataclass(frozen=True)
class TransposePlan:
    batch: int
    channels: int  # C
    out_channels: int  # M
    groups: int
    in_dims: tuple[int, ...]
    out_dims: tuple[int, ...]
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pad_begin: tuple[int, ...]
    tile_rows: int = 1  # input rows (spatial axis 0) per column-buffer tile

    @property
    def k_size(self) -> int:
        return math.prod(self.kernel)

    @property
    def positions(self) -> int:
        return math.prod(self.in_dims)

    @property
    def row_size(self) -> int:
        """Input positions per step of spatial axis 0."""
        return math.prod(self.in_dims[1:])

    @property
    def scratch_bytes(self) -> int:
        return self.out_channels // self.groups * self.k_size * self.tile_rows * self.row_size * 4

    def tiles(self) -> list[tuple[int, int, int]]:
        """(lo, hi, repeat): input rows [lo, hi) of a tile, and how many such tiles follow each other.
        Tiles whose rows all land inside the output for every kernel row differ only in where they
        read and write, so a run of them shares one copy of the code in a run-time loop."""
        rows, size = self.in_dims[0], self.tile_rows
        runs: list[tuple[int, int, int, bool]] = []
        for lo in range(0, rows, size):
            hi = min(rows, lo + size)
            inside = hi - lo == size and all(self.valid(0, k)[0] <= lo and hi <= self.valid(0, k)[1]
                                             for k in range(self.kernel[0]))
            if inside and runs and runs[-1][3]:
                runs[-1] = (*runs[-1][:2], runs[-1][2] + 1, True)
            else:
                runs.append((lo, hi, 1, inside))
        return [(lo, hi, repeat) for lo, hi, repeat, _ in runs]

    def valid(self, axis: int, offset: int) -> tuple[int, int]:
        """Input indices [lo, hi) whose output o = i*stride + offset*dilation - pad lies inside the output."""
        stride, shift = self.strides[axis], offset * self.dilations[axis] - self.pad_begin[axis]
        lo = max(0, -(shift // stride))  # ceil(-shift / stride)
        hi = min(self.in_dims[axis], (self.out_dims[axis] - 1 - shift) // stride + 1)
        return lo, max(lo, hi)


def _ints(node: Node, key: str, count: int, default: int) -> tuple[int, ...]:
    value = node.attr(key)
    return tuple(int(v) for v in value) if value else (default,) * count


def plan_problems(node: Node, graph: Graph) -> tuple[list[str], TransposePlan | None]:
    x_shape, w_shape = graph.info(node.inputs[0]).shape, graph.info(node.inputs[1]).shape
    rank = len(x_shape) - 2
    if rank < 1 or len(w_shape) != len(x_shape):
        return [f"input rank {len(x_shape)} / weight rank {len(w_shape)}: expected N, C and spatial axes"], None
    problems = []
    for key, length in (("strides", rank), ("dilations", rank), ("pads", 2 * rank), ("kernel_shape", rank),
                        ("output_padding", rank)):
        value = node.attr(key)
        if value and len(value) != length:
            problems.append(f"{key} has {len(value)} values, expected {length}")
    groups = int(node.attr("group", 1))
    if groups < 1 or x_shape[1] != w_shape[0] or x_shape[1] % groups:
        problems.append(f"group={groups} does not fit input channels {x_shape[1]} and weight shape {list(w_shape)}")
    kernel_dims = tuple(int(k) for k in node.attr("kernel_shape") or w_shape[2:])
    if kernel_dims != tuple(w_shape[2:]):
        problems.append(f"kernel_shape {list(kernel_dims)} differs from the weight's {list(w_shape[2:])}")
    auto_pad = str(node.attr("auto_pad", "NOTSET"))
    if auto_pad not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        problems.append(f"auto_pad={auto_pad!r} is not a valid value")
    if problems:
        return problems, None
    in_dims = tuple(x_shape[2:])
    strides, dilations = _ints(node, "strides", rank, 1), _ints(node, "dilations", rank, 1)
    extra = _ints(node, "output_padding", rank, 0)
    spans = [(k - 1) * d + 1 for k, d in zip(kernel_dims, dilations, strict=True)]
    full = [s * (n - 1) + p + span for s, n, p, span in zip(strides, in_dims, extra, spans, strict=True)]
    target = node.attr("output_shape")
    if target is not None:
        target = [int(v) for v in target][-rank:]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER") or target is not None:
        out_dims = tuple(target if target is not None else [n * s for n, s in zip(in_dims, strides, strict=True)])
        totals = [f - o for f, o in zip(full, out_dims, strict=True)]
        if auto_pad in ("NOTSET", "VALID") and any(t > 0 and t % 2 for t in totals):
            return [f"output_shape {list(out_dims)} with auto_pad={auto_pad} needs odd padding {totals}, whose extra "
                    "element the ONNX spec and ONNX Runtime put on opposite sides; give auto_pad or pads"], None
        if auto_pad == "SAME_LOWER":
            begin = tuple(max(t, 0) - max(t, 0) // 2 for t in totals)
        else:
            begin = tuple(max(t, 0) // 2 for t in totals)
    else:
        pads = _ints(node, "pads", 2 * rank, 0) if auto_pad == "NOTSET" else (0,) * (2 * rank)
        begin = pads[:rank]
        out_dims = tuple(f - pads[a] - pads[a + rank] for a, f in enumerate(full))
    if any(o <= 0 for o in out_dims):
        return [f"output spatial dims {list(out_dims)} are not positive"], None
    plan = TransposePlan(x_shape[0], x_shape[1], w_shape[1] * groups, groups, in_dims, out_dims, kernel_dims,
                         strides, dilations, begin)
    row_bytes = w_shape[1] * math.prod(kernel_dims) * plan.row_size * 4
    plan = replace(plan, tile_rows=max(1, min(in_dims[0], COLUMN_BUDGET // row_bytes)))
    expected = (plan.batch, plan.out_channels, *out_dims)
    if graph.info(node.outputs[0]).shape != expected:
        return [f"output shape {graph.info(node.outputs[0]).shape} differs from the computed {expected}"], None
    return [], plan


def transpose_plan(node: Node, graph: Graph) -> TransposePlan:
    problems, plan = plan_problems(node, graph)
    assert plan is not None, problems
    return plan


def transpose_scratch(node: Node, graph: Graph) -> int:
    plan = plan_problems(node, graph)[1]
    return plan.scratch_bytes if plan is not None else 0


__all__ = ["COLUMN_BUDGET", "TransposePlan", "plan_problems", "transpose_plan", "transpose_scratch"]
