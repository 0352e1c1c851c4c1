"""A Conv that is a short-time Fourier transform, rendered as FFTs of four frames at once (lowering/dft.py).

Per sample and group of four frames (one per f32x4 lane; the last group's missing frames repeat its
last frame, so every read stays inside the input), in the kernel's scratch:

1. load: Z[e] = (x[2r] w[2r], x[2r+1] w[2r+1]) for r = rev(e), the window applied and the radix-2
   input order taken from a table of sample offsets;
2. log2(M) radix-2 stages of butterflies over Z (M = N/2), the twiddles splatted in tables; early
   stages (few twiddles, many blocks) keep each twiddle in registers and walk the blocks, late ones
   walk a block's twiddles;
3. split: X[k] = (Z[k] + conj Z[M-k]) / 2 + exp(-2 pi i k / N) (Z[k] - conj Z[M-k]) / 2i for k = 0..M,
   the real frame's spectrum;
4. store: each output channel reads its bin's real or imaginary part (bins past M as the conjugate of
   N - bin), adds its bias, applies the fused activation, and writes its four frames as one v128.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wasinfer.backends.wasm.context import Ctx
from wasinfer.backends.wasm.emitters.activation import epilogue
from wasinfer.backends.wasm.writer import I32, V128
from wasinfer.ir import Node
from wasinfer.lowering.dft import IMAG, LANES, StftPlan, frame_groups

COMPLEX = 32  # bytes of one complex value over four lanes: re (v128), then im (v128)
IN_REGISTERS = 4  # stages with at most this many twiddles keep each one in registers and walk the blocks


@dataclass
class _Run:
    """Output channels channel .. channel + count - 1: spectrum index index + i * step, one part, one sign."""

    channel: int
    count: int
    index: int
    step: int  # 1, or -1 for bins past M (read as the conjugate of N - bin)
    part: int  # REAL or IMAG
    sign: float


def _splat(values: np.ndarray) -> np.ndarray:
    """[..., 2] float32 pairs as [..., 2, 4]: each value in every lane, re's v128 then im's."""
    return np.repeat(values.astype(np.float32)[..., None], LANES, axis=-1)


class _Fft:
    """The locals and tables of one kernel; `group` renders steps 1-4 for one group of frames."""

    def __init__(self, ctx: Ctx, node: Node, plan: StftPlan):
        self.ctx, self.f, self.node, self.plan = ctx, ctx.f, node, plan
        f = self.f
        self.z = ctx.scratch_addr
        self.x_spectrum = self.z + plan.half * COMPLEX
        rev = plan.bit_reversed()
        self.offsets = ctx.data((2 * rev * 4).astype(np.int32))
        pairs = plan.window.reshape(plan.half, 2)[rev]
        self.windows = ctx.data(_splat(pairs))
        self.twiddles = {h: ctx.data(_splat(plan.twiddles(h))) for h in self._spans() if h > 1}
        split = plan.split_twiddles()
        # X = (A + B) / 2 + W' (A - B) with W' = -i W / 2 = (wi / 2, -wr / 2)
        self.split = ctx.data(_splat(np.stack([split[:, 1] / 2, -split[:, 0] / 2], axis=1)))
        self.bias = ctx.addr(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
        self.i = [f.local(I32) for _ in range(4)]
        self.v = [f.local(V128) for _ in range(8)]
        self.half_v = f.local(V128)

    def _spans(self) -> list[int]:
        return [1 << s for s in range(self.plan.stages)]

    def group(self, p0: int, py: int, lanes: int) -> None:
        self._load(p0, lanes)
        for h in self._spans():
            self._stage(h)
        self._split()
        self._store(py, lanes)

    def _load(self, p0: int, lanes: int) -> None:
        f, plan = self.f, self.plan
        pe, pw, pz, pa = self.i
        re, im = self.v[0], self.v[1]
        # lane l reads frame l of the group; a partial group's missing lanes repeat its last frame
        lane_bytes = [min(lane, lanes - 1) * plan.hop * 4 for lane in range(LANES)]
        f.i32(self.offsets).set(pe)
        f.i32(self.windows).set(pw)
        f.i32(self.z).set(pz)
        with f.block(b"\x03"):
            f.get(pe).mem("i32.load").get(p0).op("i32.add").set(pa)
            for part, local in ((0, re), (4, im)):
                f.get(pa).mem("f32.load", lane_bytes[0] + part).op("f32x4.splat")
                for lane in range(1, LANES):
                    f.get(pa).mem("f32.load", lane_bytes[lane] + part).lane("f32x4.replace_lane", lane)
                f.set(local)
            for offset, local in ((0, re), (16, im)):
                f.get(pz).get(local).get(pw).mem("v128.load", offset).op("f32x4.mul").mem("v128.store", offset)
            f.inc(pe, 4).inc(pw, COMPLEX).inc(pz, COMPLEX)
            f.get(pz).i32(self.z + plan.half * COMPLEX).op("i32.lt_u").br_if(0)

    def _butterfly(self, p: int, offset: int, h: int, twiddle: tuple[int, int] | None) -> None:
        """a = Z[p + offset], b = Z[p + offset + h]: a + w b and a - w b in their places (w = 1 without twiddle)."""
        f = self.f
        ar, ai, br, bi, tr, ti = self.v[:6]
        far = offset + h * COMPLEX
        f.get(p).mem("v128.load", far).set(br)
        f.get(p).mem("v128.load", far + 16).set(bi)
        if twiddle is None:
            tr, ti = br, bi
        else:
            wr, wi = twiddle
            f.get(br).get(wr).op("f32x4.mul").get(bi).get(wi).op("f32x4.mul").op("f32x4.sub").set(tr)
            f.get(br).get(wi).op("f32x4.mul").get(bi).get(wr).op("f32x4.mul").op("f32x4.add").set(ti)
        f.get(p).mem("v128.load", offset).set(ar)
        f.get(p).mem("v128.load", offset + 16).set(ai)
        for at, a, t, combine in ((offset, ar, tr, "f32x4.add"), (offset + 16, ai, ti, "f32x4.add"),
                                  (far, ar, tr, "f32x4.sub"), (far + 16, ai, ti, "f32x4.sub")):
            f.get(p).get(a).get(t).op(combine).mem("v128.store", at)

    def _stage(self, h: int) -> None:
        f, m_size = self.f, self.plan.half
        p, pt, block = self.i[0], self.i[1], self.i[2]
        wr, wi = self.v[6], self.v[7]
        span = 2 * h * COMPLEX
        end = self.z + m_size * COMPLEX
        if h == 1:  # w = 1: two butterflies per step
            f.i32(self.z).set(p)
            with f.block(b"\x03"):
                self._butterfly(p, 0, 1, None)
                if m_size >= 4:
                    self._butterfly(p, span, 1, None)
                f.inc(p, span * (2 if m_size >= 4 else 1)).get(p).i32(end).op("i32.lt_u").br_if(0)
            return
        table = self.twiddles[h]
        if h <= IN_REGISTERS:  # each twiddle in registers, its butterflies across the blocks
            for m in range(h):
                f.i32(table).mem("v128.load", m * COMPLEX).set(wr)
                f.i32(table).mem("v128.load", m * COMPLEX + 16).set(wi)
                f.i32(self.z + m * COMPLEX).set(p)
                with f.block(b"\x03"):
                    self._butterfly(p, 0, h, (wr, wi))
                    f.inc(p, span).get(p).i32(end).op("i32.lt_u").br_if(0)
            return
        f.i32(self.z).set(block)  # a block's twiddles in turn, two butterflies per step
        with f.block(b"\x03"):
            f.get(block).set(p)
            f.i32(table).set(pt)
            with f.block(b"\x03"):
                for step in range(2):
                    f.get(pt).mem("v128.load", step * COMPLEX).set(wr)
                    f.get(pt).mem("v128.load", step * COMPLEX + 16).set(wi)
                    self._butterfly(p, step * COMPLEX, h, (wr, wi))
                f.inc(pt, 2 * COMPLEX).inc(p, 2 * COMPLEX)
                f.get(p).get(block).op("i32.sub").i32(h * COMPLEX).op("i32.lt_u").br_if(0)
            f.inc(block, span).get(block).i32(end).op("i32.lt_u").br_if(0)

    def _split_one(self, pa: int, pb: int, pw: int, px: int) -> None:
        """X[k] at px from A = Z[k] at pa, B = conj Z[M - k] at pb and W' at pw."""
        f = self.f
        ar, ai, br, bi, sr, si, dr, di = self.v
        f.get(pa).mem("v128.load").set(ar)
        f.get(pa).mem("v128.load", 16).set(ai)
        f.get(pb).mem("v128.load").set(br)
        f.get(pb).mem("v128.load", 16).op("f32x4.neg").set(bi)
        f.get(ar).get(br).op("f32x4.add").get(self.half_v).op("f32x4.mul").set(sr)
        f.get(ai).get(bi).op("f32x4.add").get(self.half_v).op("f32x4.mul").set(si)
        f.get(ar).get(br).op("f32x4.sub").set(dr)
        f.get(ai).get(bi).op("f32x4.sub").set(di)
        # X = S/2 + W' D: re = W're D.re - W'im D.im, im = W're D.im + W'im D.re
        f.get(px).get(sr).get(pw).mem("v128.load").get(dr).op("f32x4.mul").op("f32x4.add")
        f.get(pw).mem("v128.load", 16).get(di).op("f32x4.mul").op("f32x4.sub").mem("v128.store")
        f.get(px).get(si).get(pw).mem("v128.load").get(di).op("f32x4.mul").op("f32x4.add")
        f.get(pw).mem("v128.load", 16).get(dr).op("f32x4.mul").op("f32x4.add").mem("v128.store", 16)

    def _split(self) -> None:
        f, m_size = self.f, self.plan.half
        pa, pb, pw, px = self.i
        f.f32x4_const(0.5).set(self.half_v)
        for k in (0, m_size):  # both read Z[0] twice
            f.i32(self.z).tee(pa).set(pb)
            f.i32(self.split + k * COMPLEX).set(pw)
            f.i32(self.x_spectrum + k * COMPLEX).set(px)
            self._split_one(pa, pb, pw, px)
        if m_size < 2:
            return
        f.i32(self.z + COMPLEX).set(pa)
        f.i32(self.z + (m_size - 1) * COMPLEX).set(pb)
        f.i32(self.split + COMPLEX).set(pw)
        f.i32(self.x_spectrum + COMPLEX).set(px)
        with f.block(b"\x03"):
            self._split_one(pa, pb, pw, px)
            f.inc(pa, COMPLEX).inc(pb, -COMPLEX).inc(pw, COMPLEX).inc(px, COMPLEX)
            f.get(pa).i32(self.z + m_size * COMPLEX).op("i32.lt_u").br_if(0)

    def _runs(self) -> list[_Run]:
        """Channels that read consecutive bins of one part with one sign, as runs; a bin past M reads X[N - bin]
        with its imaginary part negated."""
        plan = self.plan
        runs: list[_Run] = []
        for c, (bin_, part, sign) in enumerate(plan.channels):
            index, step = (bin_, 1) if bin_ <= plan.half else (plan.size - bin_, -1)
            sign = -sign if step < 0 and part == IMAG else sign
            last = runs[-1] if runs else None
            if last and (last.part, last.sign, last.step) == (part, sign, step) \
                    and last.index + last.count * step == index:
                last.count += 1
            else:
                runs.append(_Run(c, 1, index, step, part, sign))
        return runs

    def _store(self, py: int, lanes: int) -> None:
        f, plan = self.f, self.plan
        ps, pc, pbias, counter = self.i
        value = self.v[0]
        row = plan.frames * 4
        for run in self._runs():
            f.i32(self.x_spectrum + run.index * COMPLEX + run.part * 16).set(ps)
            f.get(py).i32(run.channel * row).op("i32.add").set(pc)
            if self.bias is not None:
                f.i32(self.bias + run.channel * 4).set(pbias)
            with f.for_range(counter, 0, run.count):
                f.get(ps).mem("v128.load")
                if run.sign < 0:
                    f.op("f32x4.neg")
                if self.bias is not None:
                    f.get(pbias).mem("v128.load32_splat").op("f32x4.add")
                epilogue(self.ctx, self.node)
                if lanes == LANES:
                    f.set(value).get(pc).get(value).mem("v128.store", 0, 0)
                else:
                    f.set(value)
                    for lane in range(lanes):
                        f.get(pc).get(value).lane("f32x4.extract_lane", lane).mem("f32.store", lane * 4)
                f.inc(ps, run.step * COMPLEX).inc(pc, row)
                if self.bias is not None:
                    f.inc(pbias, 4)


def emit_stft(ctx: Ctx, node: Node, plan: StftPlan) -> None:
    """y[b, c, t] for every sample and frame (module docstring)."""
    f = ctx.f
    fft = _Fft(ctx, node, plan)
    x, y = ctx.addr(node.inputs[0]), ctx.addr(node.outputs[0])
    sample, group, px, py, p0, pt = (f.local(I32) for _ in range(6))
    full, rest = frame_groups(plan)
    channels = len(plan.channels)
    with f.for_range(sample, 0, plan.batch):
        f.get(sample).i32(plan.signal * 4).op("i32.mul").i32(x).op("i32.add").set(px)
        f.get(sample).i32(channels * plan.frames * 4).op("i32.mul").i32(y).op("i32.add").set(py)
        if full:
            with f.for_range(group, 0, full):
                f.get(group).i32(LANES * plan.hop * 4).op("i32.mul").get(px).op("i32.add").set(p0)
                f.get(group).i32(LANES * 4).op("i32.mul").get(py).op("i32.add").set(pt)
                fft.group(p0, pt, LANES)
        if rest:
            f.get(px).i32(full * LANES * plan.hop * 4).op("i32.add").set(p0)
            f.get(py).i32(full * LANES * 4).op("i32.add").set(pt)
            fft.group(p0, pt, rest)


__all__ = ["emit_stft"]
