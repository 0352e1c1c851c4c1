"""Recurrent layers: LSTM, GRU and RNN (forward, reverse, bidirectional; layout 0 and 1).

Per direction, the input projection of every time step is one GEMM up front
(XW = X @ W^T + bias, rows in X's memory order; X packed in panels in scratch where that GEMM walks
W's columns outermost, as Gemm's classifier shapes do), then each step runs a small GEMM of the
hidden state against R^T and an elementwise pass over the gates, a v128 at a time with a
splatted tail. Gate orders and formulas follow ONNX (W: LSTM iofc, GRU zrh; P: iof):

    LSTM  i = f(Xi + Hi + Pi*C)  f = f(Xf + Hf + Pf*C)  c = g(Xc + Hc)  C' = f*C + i*c
          o = f(Xo + Ho + Po*C')  H' = o * h(C')
    GRU   z = f(Xz + Hz)  r = f(Xr + Hr)  h = g(Xh + (r*H)Rh + Rbh)  [linear_before_reset:
          g(Xh + r*(H Rh + Rbh))]  H' = (1 - z)*h + z*H
    RNN   H' = f(Xi + Hi)

where Xg/Hg are the gate's input/recurrent projections with their biases. `clip` bounds
every pre-activation of f and g (not the cell state before h), and `input_forget` makes the
forget gate 1 - i, as ONNX Runtime does. Weights and biases may be constants (packed at
compile time) or run-time tensors (transposed into scratch first). The node's configuration,
scratch layout and weight layouts are planned in lowering/recurrent.py; this module renders them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel, only_float32
from wasinfer.backends.wasm.dims import dim_local
from wasinfer.backends.wasm.emitters.activation import apply_v128
from wasinfer.backends.wasm.emitters.gemm import Operand, emit_gemm
from wasinfer.backends.wasm.emitters.layout import emit_permute
from wasinfer.backends.wasm.emitters.pool import for_lanes, load_lanes, store_lanes
from wasinfer.backends.wasm.writer import I32, V128
from wasinfer.ir import Graph, Node
from wasinfer.ir.symbolic import Expr
from wasinfer.lowering.recurrent import (
    Activation,
    constant_biases,
    gate_columns,
    optional_input,
    projection_panel_bytes,
    recurrent_scratch,
    recurrent_spec,
    scratch_layout,
)


def _check(node: Node, graph: Graph) -> list[str]:
    seq_lens = optional_input(node, 4)
    names = [n for n in node.inputs + node.outputs if n and n != seq_lens]
    return only_float32(node, graph, names) + recurrent_spec(node, graph).problems


class _Emitter:
    """Code for one node; `d` methods take the direction index."""

    def __init__(self, ctx: Ctx, node: Node) -> None:
        self.ctx, self.node, self.f = ctx, node, ctx.f
        self.spec = spec = recurrent_spec(node, ctx.graph)
        self.s = scratch_layout(spec, node, ctx.graph)
        self.base = ctx.scratch_addr
        self.gh = spec.gates * spec.hidden
        self.peephole = 0  # address of this direction's P, when the node has one

    def at(self, offset: int) -> int:
        return self.base + offset

    # ------------------------------------------------------------ weights and biases

    def matrix(self, index: int, d: int, scratch: int, cols: tuple[int, int]) -> Operand | np.ndarray:
        """W or R of direction d, transposed to [K, G*H], restricted to gate columns `cols`."""
        name = self.node.inputs[index]
        value = self.ctx.const(name)
        if value is not None:
            return gate_columns(value, d, cols)
        return Operand(self.at(scratch) + cols[0] * 4, self.gh, 1)

    def transpose_runtime(self, index: int, d: int, scratch: int) -> None:
        name = self.node.inputs[index]
        if name in self.ctx.graph.constants:
            return
        rows, cols = self.ctx.info(name).shape[1:]
        emit_permute(self.f, self.at(scratch), self.ctx.addr(name) + d * rows * cols * 4, (rows, cols), [1, 0], 4)

    def biases(self, d: int) -> tuple[Operand | None, Operand | None]:
        """(bias of the input projection, bias of the recurrent GEMM). GRU with
        linear_before_reset keeps Rb in the recurrent GEMM (Rbh sits inside r * (...));
        otherwise Wb + Rb both go with the input projection."""
        spec, f = self.spec, self.f
        name = optional_input(self.node, 3)
        if not name:
            return None, None
        gh = self.gh
        value = self.ctx.const(name)
        split = spec.op == "GRU" and spec.linear_before_reset
        if value is not None:
            xw_bias, hr_bias = constant_biases(value, d, split)
            xw = Operand(self.ctx.data(xw_bias), 0, 1)
            return xw, None if hr_bias is None else Operand(self.ctx.data(hr_bias), 0, 1)
        addr = self.ctx.addr(name) + d * 2 * gh * 4
        if split:
            return Operand(addr, 0, 1), Operand(addr + gh * 4, 0, 1)
        i = f.local(I32)
        with f.for_range(i, 0, gh * 4, 4):
            f.get(i).get(i).mem("f32.load", offset=addr).get(i).mem("f32.load", offset=addr + gh * 4)
            f.op("f32.add").mem("f32.store", offset=self.at(self.s.bias))
        return Operand(self.at(self.s.bias), 0, 1), None

    # ------------------------------------------------------------ state and outputs

    def state_addr(self, index: int, d: int, b: int) -> int:
        """Address of [d, b, :] of an [D, batch, H] (layout 0) or [batch, D, H] (layout 1) tensor."""
        spec = self.spec
        name = self.node.inputs[index] if index < 10 else self.node.outputs[index - 10]
        row = d * spec.batch + b if spec.layout == 0 else b * spec.dirs + d
        return self.ctx.addr(name) + row * spec.hidden * 4

    def init_state(self, index: int, d: int, buffer: int) -> None:
        f, spec = self.f, self.spec
        row = spec.hidden * 4
        if optional_input(self.node, index):
            for b in range(spec.batch):
                f.i32(self.at(buffer) + b * row).i32(self.state_addr(index, d, b)).i32(row).memory_copy()
        else:
            f.i32(self.at(buffer)).i32(0).i32(spec.batch * row).memory_fill()

    def final_state(self, output: int, d: int, buffer: int) -> None:
        f, spec = self.f, self.spec
        if len(self.node.outputs) <= output or not self.node.outputs[output]:
            return
        row = spec.hidden * 4
        for b in range(spec.batch):
            f.i32(self.state_addr(10 + output, d, b)).i32(self.at(buffer) + b * row).i32(row).memory_copy()

    def store_y(self, d: int, t: int) -> None:
        """Y[t, d, b] (layout 0) or Y[b, t, d] (layout 1) = H[b]."""
        f, spec = self.f, self.spec
        if not self.node.outputs or not self.node.outputs[0]:
            return
        y, row = self.ctx.addr(self.node.outputs[0]), spec.hidden * 4
        if spec.layout == 0:
            f.get(t).i32(spec.dirs * spec.batch * row).op("i32.mul").i32(y + d * spec.batch * row).op("i32.add")
            f.i32(self.at(self.s.h)).i32(spec.batch * row).memory_copy()
            return
        for b in range(spec.batch):
            f.get(t).i32(spec.dirs * row).op("i32.mul").i32(y + (b * spec.seq * spec.dirs + d) * row).op("i32.add")
            f.i32(self.at(self.s.h) + b * row).i32(row).memory_copy()

    # ------------------------------------------------------------ elementwise gate passes

    def activate(self, act: Activation) -> None:
        """Clip (when set) then the activation, on the v128 on the stack."""
        if self.spec.clip is not None:
            self.f.f32x4_const(-self.spec.clip).op("f32x4.pmax").f32x4_const(self.spec.clip).op("f32x4.pmin")
        apply_v128(self.ctx, act[0], act[1])

    def gate_pass(self, t: int, body: Any) -> None:
        """For every batch row b and hidden lane block: `body(lanes, ptrs)` with pointers to
        XW[t, b], HR[b], H[b], C[b] and rH[b] at the current lane; all advance together."""
        f, spec = self.f, self.spec
        b = f.local(I32)
        ptrs = {k: f.local(I32) for k in ("xw", "hr", "h", "c", "rh", "p")}
        with f.for_range(b, 0, spec.batch):
            if spec.layout == 0:
                f.get(t).i32(spec.batch).op("i32.mul").get(b).op("i32.add")
            else:
                f.get(b).i32(spec.seq).op("i32.mul").get(t).op("i32.add")
            f.i32(self.gh * 4).op("i32.mul").i32(self.at(self.s.xw)).op("i32.add").set(ptrs["xw"])
            f.get(b).i32(self.gh * 4).op("i32.mul").i32(self.at(self.s.hr)).op("i32.add").set(ptrs["hr"])
            for key, offset in (("h", self.s.h), ("c", self.s.c), ("rh", self.s.rh)):
                f.get(b).i32(spec.hidden * 4).op("i32.mul").i32(self.at(offset)).op("i32.add").set(ptrs[key])
            f.i32(self.peephole).set(ptrs["p"])

            def step(lanes: int) -> None:
                body(lanes, ptrs)
                for ptr in ptrs.values():
                    f.inc(ptr, 4 * lanes)

            for_lanes(f, spec.hidden, step)

    def load(self, ptr: int, lanes: int, offset: int = 0) -> None:
        self.f.get(ptr)
        load_lanes(self.f, lanes, offset)

    def projected(self, ptrs: dict[str, int], lanes: int, gate: int) -> None:
        """Push XW[gate] + HR[gate]."""
        off = gate * self.spec.hidden * 4
        self.load(ptrs["xw"], lanes, off)
        self.load(ptrs["hr"], lanes, off)
        self.f.op("f32x4.add")

    def lstm_body(self, acts: list[Activation], lanes: int, ptrs: dict[str, int]) -> None:
        f, hid = self.f, self.spec.hidden * 4
        act_f, act_g, act_h = acts
        peep = bool(optional_input(self.node, 7))
        c_old, i, fg, c_new, o = (f.local(V128) for _ in range(5))
        self.load(ptrs["c"], lanes)
        f.set(c_old)

        def gate(index: int, p_offset: int | None, cell: int, act: Activation, into: int) -> None:
            self.projected(ptrs, lanes, index)
            if peep and p_offset is not None:
                self.load(ptrs["p"], lanes, p_offset)
                f.get(cell).op("f32x4.mul").op("f32x4.add")
            self.activate(act)
            f.set(into)

        gate(0, 0, c_old, act_f, i)
        if self.spec.input_forget:
            f.f32x4_const(1.0).get(i).op("f32x4.sub").set(fg)
        else:
            gate(2, 2 * hid, c_old, act_f, fg)
        self.projected(ptrs, lanes, 3)
        self.activate(act_g)
        f.get(i).op("f32x4.mul").get(fg).get(c_old).op("f32x4.mul").op("f32x4.add").set(c_new)
        gate(1, hid, c_new, act_f, o)
        f.get(ptrs["c"]).get(c_new)
        store_lanes(f, lanes)
        f.get(ptrs["h"]).get(c_new)
        apply_v128(self.ctx, act_h[0], act_h[1])
        f.get(o).op("f32x4.mul")
        store_lanes(f, lanes)

    def gru_gates(self, acts: list[Activation], lanes: int, ptrs: dict[str, int]) -> tuple[int, int]:
        """z and r into locals."""
        f = self.f
        z, r = f.local(V128), f.local(V128)
        for gate, into in ((0, z), (1, r)):
            self.projected(ptrs, lanes, gate)
            self.activate(acts[0])
            f.set(into)
        return z, r

    def gru_update(self, z: int, candidate: int, lanes: int, ptrs: dict[str, int]) -> None:
        """H = (1 - z) * h + z * H."""
        f = self.f
        f.get(ptrs["h"]).f32x4_const(1.0).get(z).op("f32x4.sub").get(candidate).op("f32x4.mul")
        f.get(z)
        self.load(ptrs["h"], lanes)
        f.op("f32x4.mul").op("f32x4.add")
        store_lanes(f, lanes)

    def gru_fused_body(self, acts: list[Activation], lanes: int, ptrs: dict[str, int]) -> None:
        """linear_before_reset: h = g(Xh + r * (H Rh + Rbh)), all of HR from one GEMM."""
        f, off = self.f, 2 * self.spec.hidden * 4
        z, r = self.gru_gates(acts, lanes, ptrs)
        h = f.local(V128)
        self.load(ptrs["xw"], lanes, off)
        self.load(ptrs["hr"], lanes, off)
        f.get(r).op("f32x4.mul").op("f32x4.add")
        self.activate(acts[1])
        f.set(h)
        self.gru_update(z, h, lanes, ptrs)

    def gru_reset_body(self, acts: list[Activation], lanes: int, ptrs: dict[str, int]) -> None:
        """First pass without linear_before_reset: z (kept in HR's z block) and r * H."""
        f = self.f
        z, r = self.gru_gates(acts, lanes, ptrs)
        f.get(ptrs["hr"]).get(z)
        store_lanes(f, lanes)
        f.get(ptrs["rh"]).get(r)
        self.load(ptrs["h"], lanes)
        f.op("f32x4.mul")
        store_lanes(f, lanes)

    def gru_candidate_body(self, acts: list[Activation], lanes: int, ptrs: dict[str, int]) -> None:
        """Second pass: h = g(Xh + (r*H) Rh), then the update with the z kept by the first."""
        f = self.f
        z, h = f.local(V128), f.local(V128)
        self.load(ptrs["hr"], lanes)
        f.set(z)
        self.projected(ptrs, lanes, 2)
        self.activate(acts[1])
        f.set(h)
        self.gru_update(z, h, lanes, ptrs)

    def rnn_body(self, acts: list[Activation], lanes: int, ptrs: dict[str, int]) -> None:
        f = self.f
        f.get(ptrs["h"])
        self.projected(ptrs, lanes, 0)
        self.activate(acts[0])
        store_lanes(f, lanes)

    # ------------------------------------------------------------ one direction

    def run_time_length(self) -> int | None:
        """A local with the run's sequence length where it is a symbolic dim (ops/extent.py), else None:
        the steps past it are not run, so the final states are the last real step's."""
        extent = self.ctx.graph.extents.get(self.node.inputs[0])
        axis = 0 if self.spec.layout == 0 else 1
        if extent is None or not isinstance(extent[axis], Expr):
            return None
        return dim_local(self.f, extent[axis], self.ctx.symbols)

    def direction(self, d: int) -> None:
        f, spec, s, gh, hidden = self.f, self.spec, self.s, self.gh, self.spec.hidden
        acts = spec.activations[d]
        p_name = optional_input(self.node, 7)
        self.peephole = self.ctx.addr(p_name) + d * 3 * hidden * 4 if p_name else 0
        self.transpose_runtime(1, d, s.wt)
        self.transpose_runtime(2, d, s.rt)
        xw_bias, hr_bias = self.biases(d)
        rows = spec.seq * spec.batch
        emit_gemm(self.ctx, rows, gh, spec.input, Operand(self.ctx.addr(self.node.inputs[0]), spec.input, 1),
                  self.matrix(1, d, s.wt, (0, gh)), Operand(self.at(s.xw), gh, 1), xw_bias,
                  a_scratch=self.at(s.xa) if projection_panel_bytes(spec, self.node, self.ctx.graph) else None)
        self.init_state(5, d, s.h)
        if spec.op == "LSTM":
            self.init_state(6, d, s.c)
        step, t = f.local(I32), f.local(I32)
        h_state = Operand(self.at(s.h), hidden, 1)
        split = spec.op == "GRU" and not spec.linear_before_reset
        first_cols = (0, 2 * hidden) if split else (0, gh)
        r_first = self.matrix(2, d, s.rt, first_cols)
        r_candidate = self.matrix(2, d, s.rt, (2 * hidden, gh)) if split else None
        seq = self.run_time_length()
        with f.for_range(step, 0, spec.seq if seq is None else ("local", seq)):
            if spec.reverse[d]:
                if seq is None:
                    f.i32(spec.seq - 1)
                else:
                    f.get(seq).i32(1).op("i32.sub")
                f.get(step).op("i32.sub").set(t)
            else:
                f.get(step).set(t)
            emit_gemm(self.ctx, spec.batch, first_cols[1], hidden, h_state, r_first,
                      Operand(self.at(s.hr), gh, 1), hr_bias)
            if spec.op == "LSTM":
                self.gate_pass(t, lambda lanes, p: self.lstm_body(acts, lanes, p))
            elif spec.op == "RNN":
                self.gate_pass(t, lambda lanes, p: self.rnn_body(acts, lanes, p))
            elif not split:
                self.gate_pass(t, lambda lanes, p: self.gru_fused_body(acts, lanes, p))
            else:
                assert r_candidate is not None
                self.gate_pass(t, lambda lanes, p: self.gru_reset_body(acts, lanes, p))
                emit_gemm(self.ctx, spec.batch, hidden, hidden, Operand(self.at(s.rh), hidden, 1), r_candidate,
                          Operand(self.at(s.hr) + 2 * hidden * 4, gh, 1))
                self.gate_pass(t, lambda lanes, p: self.gru_candidate_body(acts, lanes, p))
            self.store_y(d, t)
        self.final_state(1, d, s.h)
        if spec.op == "LSTM":
            self.final_state(2, d, s.c)


@kernel("LSTM", "GRU", "RNN", check=_check, scratch=recurrent_scratch)
def emit_recurrent(ctx: Ctx, node: Node) -> None:
    emitter = _Emitter(ctx, node)
    _check_run_time_lengths(ctx, node, emitter.spec.seq)
    for d in range(emitter.spec.dirs):
        emitter.direction(d)


def _check_run_time_lengths(ctx: Ctx, node: Node, seq: int) -> None:
    """A sequence_lens each run gives must be seq_length for every batch entry, as a constant one must (padded
    sequences are not run): the run traps otherwise."""
    name = optional_input(node, 4)
    if not name or ctx.const(name) is not None:
        return
    f, info = ctx.f, ctx.info(name)
    wide = info.dtype == np.int64
    f.i32(0)
    for b in range(info.size):
        f.i32(ctx.addr(name) + info.dtype.itemsize * b).mem("i64.load" if wide else "i32.load")
        if not wide:
            f.op("i64.extend_i32_s")
        f.i64(seq).op("i64.ne").op("i32.or")
    with f.if_():
        f.op("unreachable")


__all__ = ["emit_recurrent"]
