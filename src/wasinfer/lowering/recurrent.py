"""The static plan of LSTM, GRU and RNN: the node's configuration, scratch layout and weight layouts.

Per direction, a kernel projects every time step's input with one GEMM up front
(XW = X @ W^T + bias), then per step runs a small GEMM of the hidden state against R^T and an
elementwise pass over the gates. So the constant weights are laid out transposed, per
direction and per group of gate columns (`gate_columns`); the biases are summed (Wb + Rb)
or, for GRU with linear_before_reset, kept apart (`constant_biases`); and the scratch holds
the projections, the states, any run-time weights transposed and, where the projection walks
W's columns outermost, X packed in panels (`scratch_layout`, `projection_panel_bytes`).
Gate orders and activation defaults follow ONNX (W: LSTM iofc, GRU zrh; P: iof).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wasinfer.ir import Graph, Node
from wasinfer.lowering.gemm import a_panel_bytes, gemm_plan

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
DEFAULT_ACTIVATIONS = {"LSTM": ("Sigmoid", "Tanh", "Tanh"), "GRU": ("Sigmoid", "Tanh"), "RNN": ("Tanh",)}
# Activation functions a kernel applies to gates, by lower-case name; the alpha/beta each takes
# (consumed in order from activation_alpha/activation_beta), with the operator's default.
ACTIVATIONS = {name.lower(): name for name in
               ("Sigmoid", "Tanh", "Relu", "HardSigmoid", "LeakyRelu", "Elu", "Softsign", "Softplus")}
ALPHA = {"LeakyRelu": 0.01, "HardSigmoid": 0.2, "Elu": 1.0}
BETA = {"HardSigmoid": 0.5}
Activation = tuple[str, dict[str, float]]


@dataclass(frozen=True)
class RecurrentSpec:
    """What the node asks for, defaults filled in; `problems` lists why it cannot be compiled."""

    op: str
    gates: int
    hidden: int
    seq: int
    batch: int
    input: int
    layout: int
    reverse: list[bool]  # per direction
    activations: list[list[Activation]]  # per direction
    clip: float | None
    input_forget: bool
    linear_before_reset: bool
    problems: list[str] = field(default_factory=list)

    @property
    def dirs(self) -> int:
        return len(self.reverse)


def optional_input(node: Node, index: int) -> str:
    """The name of input `index`, or "" when the node leaves it out."""
    return node.inputs[index] if len(node.inputs) > index and node.inputs[index] else ""


def _activations(node: Node, dirs: int) -> tuple[list[list[Activation]], list[str]]:
    per = len(DEFAULT_ACTIVATIONS[node.op_type])
    names = list(node.attr("activations", []) or [])
    if not names:
        names = list(DEFAULT_ACTIVATIONS[node.op_type]) * dirs
    if len(names) != per * dirs:
        return [], [f"activations lists {len(names)} functions, expected {per * dirs} ({per} per direction)"]
    alphas, betas = list(node.attr("activation_alpha", []) or []), list(node.attr("activation_beta", []) or [])
    problems, parsed = [], []
    for name in names:
        canonical = ACTIVATIONS.get(name.lower())
        if canonical is None:
            problems.append(f"activation {name!r} is not supported (supported: {', '.join(ACTIVATIONS.values())})")
            continue
        params: dict[str, float] = {}
        if canonical in ALPHA:
            params["alpha"] = float(alphas.pop(0)) if alphas else ALPHA[canonical]
        if canonical in BETA:
            params["beta"] = float(betas.pop(0)) if betas else BETA[canonical]
        parsed.append((canonical, params))
    return [parsed[d * per:(d + 1) * per] for d in range(dirs)], problems


def recurrent_spec(node: Node, graph: Graph) -> RecurrentSpec:
    """The node's static configuration, with every reason it cannot be compiled in `problems`
    (but for dtypes: which ones a kernel supports is the backend's word)."""
    op = node.op_type
    gates = GATES[op]
    problems: list[str] = []
    seq_lens = optional_input(node, 4)
    layout = int(node.attr("layout", 0))
    if layout not in (0, 1):
        problems.append(f"layout {layout} is not defined")
    direction = node.attr("direction", "forward")
    reverse = {"forward": [False], "reverse": [True], "bidirectional": [False, True]}.get(direction)
    if reverse is None:
        problems.append(f"direction {direction!r} is not defined")
        reverse = [False]
    x_shape = graph.info(node.inputs[0]).shape
    w_shape = graph.info(node.inputs[1]).shape
    seq, batch = (x_shape[0], x_shape[1]) if layout == 0 else (x_shape[1], x_shape[0])
    hidden = int(node.attr("hidden_size", w_shape[1] // gates))
    if w_shape[0] != len(reverse) or w_shape[1] != gates * hidden:
        problems.append(f"W has shape {w_shape}, expected [{len(reverse)}, {gates * hidden}, input_size]")
    expected = {2: (len(reverse), gates * hidden, hidden), 3: (len(reverse), 2 * gates * hidden),
                7: (len(reverse), 3 * hidden)}
    for index, shape in expected.items():
        name = optional_input(node, index) if op == "LSTM" or index < 7 else ""
        if name and graph.info(name).shape != shape:
            problems.append(f"input {index} has shape {graph.info(name).shape}, expected {list(shape)}")
    if seq_lens:
        lengths = graph.constants.get(seq_lens)
        if lengths is None:  # each run's lengths are checked to be seq_length (emitters/recurrent.py)
            if graph.info(seq_lens).dtype not in (np.int32, np.int64) or graph.info(seq_lens).size != batch:
                problems.append(f"sequence_lens must be {batch} int32 values, not {graph.info(seq_lens).size} "
                                f"{graph.info(seq_lens).dtype}")
        elif not np.all(np.asarray(lengths) == seq):
            problems.append(f"sequence_lens {np.asarray(lengths).tolist()} shorter than seq_length {seq} "
                            "is not supported (padded sequences)")
    activations, act_problems = _activations(node, len(reverse))
    problems += act_problems
    clip = node.attr("clip")
    return RecurrentSpec(op, gates, hidden, seq, batch, x_shape[2], layout, reverse, activations,
                None if clip is None else float(clip), bool(node.attr("input_forget", 0)),
                bool(node.attr("linear_before_reset", 0)), problems)


@dataclass(frozen=True)
class ScratchLayout:
    """Byte offsets into the node's scratch area (each region 16-byte aligned): the input
    projections of every step (xw), the recurrent GEMM's result (hr), the hidden and cell
    state (h, c), GRU's r * H (rh), run-time W, R (transposed) and summed biases, and X packed
    in panels for the input projection (xa, `projection_panel_bytes`)."""

    xw: int
    hr: int
    h: int
    c: int
    rh: int
    wt: int
    rt: int
    bias: int
    xa: int
    size: int


def projection_panel_bytes(spec: RecurrentSpec, node: Node, graph: Graph) -> int:
    """Scratch for X in panels (lowering/gemm.py `pack_panels`' layout) where the input projection,
    seq * batch rows against a constant W^T too large for L2, walks W's column tiles outermost: each
    column tile reads all of X again, a load per panel and k instead of a load and a broadcast per row
    (ddddocr_rec's LSTM, 20 rows x 512 against 512 x 2048 per direction: 6.3 -> 5.6 ms)."""
    rows, gh = spec.seq * spec.batch, spec.gates * spec.hidden
    if node.inputs[1] not in graph.constants or not gemm_plan(rows, gh, spec.input, constant_b=True).columns_outer:
        return 0
    return a_panel_bytes(rows, spec.input)


def scratch_layout(spec: RecurrentSpec, node: Node, graph: Graph) -> ScratchLayout:
    gh = spec.gates * spec.hidden
    sizes = [spec.seq * spec.batch * gh, spec.batch * gh, spec.batch * spec.hidden, spec.batch * spec.hidden,
             spec.batch * spec.hidden,
             spec.input * gh if node.inputs[1] not in graph.constants else 0,
             spec.hidden * gh if node.inputs[2] not in graph.constants else 0,
             gh if optional_input(node, 3) and optional_input(node, 3) not in graph.constants else 0,
             projection_panel_bytes(spec, node, graph) // 4]
    offsets, cursor = [], 0
    for count in sizes:
        offsets.append(cursor)
        cursor += (count * 4 + 15) // 16 * 16
    xw, hr, h, c, rh, wt, rt, bias, xa = offsets
    return ScratchLayout(xw, hr, h, c, rh, wt, rt, bias, xa, cursor)


def recurrent_scratch(node: Node, graph: Graph) -> int:
    spec = recurrent_spec(node, graph)
    return 0 if spec.problems else scratch_layout(spec, node, graph).size


def gate_columns(weights: np.ndarray, d: int, cols: tuple[int, int]) -> np.ndarray:
    """Constant W or R [D, G*H, K] of direction d as the GEMM's B: transposed to [K, G*H] and
    restricted to the gate columns [lo, hi) (GRU's candidate gate runs a GEMM of its own)."""
    lo, hi = cols
    return np.ascontiguousarray(weights[d].astype(np.float32).T[:, lo:hi])


def constant_biases(biases: np.ndarray, d: int, split: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Constant B [D, 2*G*H] of direction d as (bias of the input projection, bias of the
    recurrent GEMM). GRU with linear_before_reset keeps Rb in the recurrent GEMM (Rbh sits inside
    r * (...)), so `split` gives Wb and Rb apart; otherwise Wb + Rb both go with the input projection."""
    gh = biases.shape[1] // 2
    wb, rb = biases[d, :gh].astype(np.float32), biases[d, gh:].astype(np.float32)
    return (wb, rb) if split else (wb + rb, None)


__all__ = ["ACTIVATIONS", "GATES", "Activation", "RecurrentSpec", "ScratchLayout", "constant_biases", "gate_columns",
           "optional_input", "projection_panel_bytes", "recurrent_scratch", "recurrent_spec", "scratch_layout"]
