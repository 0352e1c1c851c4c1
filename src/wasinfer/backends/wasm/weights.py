"""Compressed weight storage in the module and its expansion at start-up (see passes/quantize.py
for which weights and how they are quantised).

Module side, `WeightStore` (the compiler's `place_data` asks it about every array it places):
an array is stored compressed only when expanding the compressed bytes gives back exactly its
float32 bits; anything else stays float32, so no layout a kernel chooses can make it wrong.
- fp16: any float32 array of at least MIN_ELEMENTS elements that float16 holds exactly.
  Elementwise, so a kernel's packed copy of a weight compresses like the weight itself.
- int8 needs each element's channel. For a constant placed in its own layout (`ctx.addr`)
  the graph side knows it. For an array a kernel derives from a weight (GEMM packs a constant
  B into panels), the node is emitted once more in a throwaway context where every quantised
  weight is replaced by its channel numbers: packing only rearranges elements, so the k-th
  array the kernel places there holds the channel of each element of the k-th array it places
  for real. Kernels need no changes; one that computes with weight values instead of
  rearranging them gets arrays that fail the exactness check and are stored as float32.
  The per-element channels are then described as segments [outer, rep, lanes], element
  (o, r, l) of channel c0 + o*lanes + l: a weight in its own layout is one segment ([C, K, 1]
  rows for Conv, [1, K, N] columns for MatMul), a GEMM panel region [N/w, K, w] is one more.

Expansion (start function): `expand_rows` (lanes == 1: one splatted scale per run of `rep`),
`expand_cols` (a vector of `lanes` scales per row) widen i8x16 → i16x8 → i32x4, convert and
multiply four elements at a time; `expand_half` converts float16 to float32 with integer
SIMD (Wasm has no float16 conversion): normal numbers rebias the exponent, subnormals are
converted as integers times 2^-24, infinities and NaNs keep their payload. All loops write
whole vectors (int8: 4 elements, fp16: 8): a run's last step may spill up to 28 bytes past
it, which the next run rewrites (runs are expanded in address order) or which fall in the
SPILL bytes reserved after each compressed array (and after its staged bytes, for the reads).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from wasinfer.backends.wasm.context import Ctx
from wasinfer.backends.wasm.writer import I32, V128, Func, Module
from wasinfer.ir import Node
from wasinfer.passes import align
from wasinfer.passes.quantize import MIN_ELEMENTS, WeightEncoding, dequantize_int8

SPILL = 32  # bytes reserved after each compressed array for the expansion's last vectors
MAX_SEGMENT_SHARE = 64  # an int8 array needs at least this many elements per segment on average


# ---------------------------------------------------------------- module side

Hint = tuple[np.ndarray, np.ndarray]  # (channel of each element, scales by channel)


@dataclass(frozen=True)
class Segment:
    start: int  # first element
    c0: int  # its channel
    outer: int
    rep: int
    lanes: int


@dataclass
class Compressed:
    address: int  # where the float32 array goes
    elements: int
    payload: bytes  # int8 codes or float16 halves, then (int8) the scale table
    segments: list[Segment]  # int8 only
    table_offset: int = 0  # byte offset of the scale table in the payload; entry i is channel c_lo + i
    c_lo: int = 0


def _leading(count: int, ok: Callable[[int, int], np.ndarray]) -> int:
    """How many of items 0..count-1 pass `ok` before the first that fails (chunks that double)."""
    done, chunk = 0, 16
    while done < count:
        hi = min(count, done + chunk)
        passed = ok(done, hi)
        if not passed.all():
            return done + int(np.argmin(passed))
        done, chunk = hi, chunk * 2
    return count


def _segment_at(rest: np.ndarray) -> tuple[int, int, int]:
    """(outer, rep, lanes) of the segment that starts the channel stream `rest`."""
    c0 = int(rest[0])
    lanes = max(1, _leading(rest.size, lambda a, b: rest[a:b] == c0 + np.arange(a, b)))
    block = rest[:lanes]
    rep = max(1, _leading(rest.size // lanes, lambda a, b: np.all(
        rest[a * lanes:b * lanes].reshape(b - a, lanes) == block, axis=1)))
    size = rep * lanes
    group = np.tile(block, rep)
    outer = max(1, _leading(rest.size // size, lambda a, b: np.all(
        rest[a * size:b * size].reshape(b - a, size) - group == (np.arange(a, b) * lanes)[:, None], axis=1)))
    return outer, rep, lanes


def find_segments(channels: np.ndarray, limit: int) -> list[Segment] | None:
    """Describe a channel stream as [outer, rep, lanes] segments; None beyond `limit` segments."""
    ch = channels.reshape(-1).astype(np.int64)
    segments: list[Segment] = []
    pos = 0
    while pos < ch.size:
        if len(segments) >= limit:
            return None
        outer, rep, lanes = _segment_at(ch[pos:])
        segments.append(Segment(pos, int(ch[pos]), outer, rep, lanes))
        pos += outer * rep * lanes
    return segments


class WeightStore:
    """Decides, per placed array, whether the module stores it compressed, and emits the expansion."""

    def __init__(self, encoding: WeightEncoding | None):
        self.encoding = encoding or WeightEncoding()
        self.items: list[Compressed] = []
        self.float32_bytes = 0  # bytes of the arrays stored compressed, as float32
        self.stored_bytes = 0  # what they take in the data segment

    @property
    def kind(self) -> str:
        return self.encoding.kind

    def natural(self, name: str) -> Hint | None:
        """The channel hint for a constant placed in its own layout."""
        entry = self.encoding.int8.get(name)
        return None if entry is None else (entry.channels, entry.scales)

    def kernel_data(self, place: Callable[[np.ndarray, Hint | None], int], emit: Callable[[Ctx, Node], None],
                    node: Node, ctx: Ctx) -> Callable[[np.ndarray], int]:
        """`ctx.data` for one node: the k-th array the kernel places gets the k-th channel hint."""
        hints = self._channel_hints(emit, node, ctx)
        calls = iter(range(len(hints))) if hints else iter(())

        def data(array: np.ndarray) -> int:
            index = next(calls, None)
            return place(array, hints[index] if index is not None else None)

        return data

    def _channel_hints(self, emit: Callable[[Ctx, Node], None], node: Node, ctx: Ctx) -> list[Hint | None]:
        weights = list(dict.fromkeys(n for n in node.inputs if n in self.encoding.int8))
        if not weights:
            return []
        constants = dict(ctx.graph.constants)
        scales, offset = [], 0
        for name in weights:
            entry = self.encoding.int8[name]
            constants[name] = (entry.channels + offset).astype(np.float32)  # exact below 2**24 channels
            scales.append(entry.scales)
            offset += entry.scales.size
        all_scales = np.concatenate(scales)
        captured: list[np.ndarray] = []
        fake: dict[str, int] = {}

        def address(name: str) -> int:  # distinct, never placed: only the data calls matter here
            return fake.setdefault(name, (len(fake) + 1) << 20)

        def place(array: np.ndarray) -> int:
            captured.append(np.array(array))
            return (len(captured) + 64) << 20

        # the node's own context (scratch address, options) with a throwaway module, function and data
        throwaway = replace(ctx, module=Module(), graph=replace(ctx.graph, constants=constants), f=Func([], []),
                            addresses=address, place_data=place, helpers=dict(ctx.helpers))
        try:
            emit(throwaway, node)
        except Exception:  # the real emission reports any problem; here it only means no hints
            return []
        hints: list[Hint | None] = []
        for array in captured:
            ids = array.reshape(-1)
            valid = (ids.dtype == np.float32 and ids.size > 0 and bool(np.all(ids == np.rint(ids)))
                     and ids.min() >= 0 and ids.max() < all_scales.size)
            hints.append((ids.astype(np.int64), all_scales) if valid else None)
        return hints

    def encode(self, array: np.ndarray, address: int, hint: Hint | None) -> bool:
        """Take `array` (to be expanded at `address`) if it has an exact compressed form."""
        if array.dtype != np.float32 or array.size < MIN_ELEMENTS:
            return False
        flat = array.reshape(-1)
        if self.kind == "fp16":
            with np.errstate(over="ignore"):  # beyond float16's range: infinity, refused below
                halves = flat.astype(np.float16)
            if not np.array_equal(halves.astype(np.float32).view(np.uint32), flat.view(np.uint32)):
                return False
            self._add(Compressed(address, flat.size, halves.tobytes(), []))
            return True
        if self.kind != "int8" or hint is None or hint[0].size != flat.size:
            return False
        channels, scales = hint[0].reshape(-1), hint[1]
        per_element = scales[channels]
        with np.errstate(divide="ignore", invalid="ignore"):
            codes = np.rint(flat.astype(np.float64) / per_element.astype(np.float64))
        if not np.all(np.abs(codes) <= 127):
            return False
        codes8 = codes.astype(np.int8)
        if not np.array_equal(dequantize_int8(codes8, per_element).view(np.uint32), flat.view(np.uint32)):
            return False
        segments = find_segments(channels, max(1, flat.size // MAX_SEGMENT_SHARE))
        if segments is None:
            return False
        c_lo, c_hi = int(channels.min()), int(channels.max())
        table = scales[c_lo:c_hi + 1].astype(np.float32).tobytes()
        table_offset = align(flat.size)
        payload = codes8.tobytes() + bytes(table_offset - flat.size) + table
        self._add(Compressed(address, flat.size, payload, segments, table_offset, c_lo))
        return True

    def _add(self, item: Compressed) -> None:
        self.items.append(item)
        self.float32_bytes += item.elements * 4
        self.stored_bytes += len(item.payload)

    def stats(self) -> dict[str, object]:
        """For the compile summary and the metadata; nothing for float32 weights (every module would carry it)."""
        if self.kind == "float32":
            return {}
        return {"weight_encoding": self.kind, "compressed_tensors": len(self.encoding.tensors),
                "compressed_arrays": len(self.items), "compressed_float32_bytes": self.float32_bytes,
                "compressed_stored_bytes": self.stored_bytes}

    def finish(self, module: Module, reserve: Callable[[int], int],
               data: list[tuple[int, bytes]]) -> Callable[[Func], None] | None:
        """Stage the compressed bytes after the constants; return what the start function must call."""
        if not self.items:
            return None
        staged = []
        for item in self.items:
            source = reserve(len(item.payload) + SPILL)  # the loops read whole vectors past the end
            data.append((source, item.payload))
            staged.append((item, source))
        rows = cols = half = 0
        if any(s.lanes == 1 for item in self.items for s in item.segments):
            rows = _emit_expand_rows(module)
        if any(s.lanes > 1 for item in self.items for s in item.segments):
            cols = _emit_expand_cols(module)
        if any(not item.segments for item in self.items):
            half = _emit_expand_half(module)

        def emit(f: Func) -> None:
            for item, source in staged:
                if not item.segments:
                    f.i32(item.address).i32(source).i32(item.elements).call(half)
                    continue
                for s in item.segments:
                    table = source + item.table_offset + 4 * (s.c0 - item.c_lo)
                    f.i32(item.address + 4 * s.start).i32(source + s.start).i32(table)
                    f.i32(s.outer).i32(s.rep)
                    if s.lanes == 1:
                        f.call(rows)
                    else:
                        f.i32(s.lanes).call(cols)

        return emit


def _widen_int8(f: Func, codes: int) -> None:
    """Push four float32 lanes: the int8 codes at the address in local `codes`."""
    f.get(codes).mem("v128.load", align=0)
    f.ops("i16x8.extend_low_i8x16_s", "i32x4.extend_low_i16x8_s", "f32x4.convert_i32x4_s")


def _emit_expand_rows(module: Module) -> int:
    """(dst, src, table, outer, rep): `outer` runs of `rep` codes, run o scaled by table[o]."""
    index, f = module.reserve([I32] * 5, [], name="wasinfer_expand_int8_rows")
    dst, src, table, outer, rep = range(5)
    o, p, d, end = f.local(I32), f.local(I32), f.local(I32), f.local(I32)
    scale = f.local(V128)
    with f.for_range(o, 0, ("local", outer)):
        f.get(table).mem("f32.load").op("f32x4.splat").set(scale)
        f.get(src).set(p).get(dst).set(d).get(src).get(rep).op("i32.add").set(end)
        with f.block(b"\x03"):
            f.get(d)
            _widen_int8(f, p)
            f.get(scale).op("f32x4.mul").mem("v128.store", align=0)
            f.inc(p, 4).inc(d, 16)
            f.get(p).get(end).op("i32.lt_u").br_if(0)
        f.get(end).set(src).get(dst).get(rep).i32(4).op("i32.mul").op("i32.add").set(dst).inc(table, 4)
    return index


def _emit_expand_cols(module: Module) -> int:
    """(dst, src, table, outer, rep, lanes): element (o, r, l) scaled by table[o * lanes + l]."""
    index, f = module.reserve([I32] * 6, [], name="wasinfer_expand_int8_cols")
    dst, src, table, outer, rep, lanes = range(6)
    o, r, p, d, t, end = (f.local(I32) for _ in range(6))
    with f.for_range(o, 0, ("local", outer)):
        with f.for_range(r, 0, ("local", rep)):
            f.get(src).set(p).get(dst).set(d).get(table).set(t).get(src).get(lanes).op("i32.add").set(end)
            with f.block(b"\x03"):
                f.get(d)
                _widen_int8(f, p)
                f.get(t).mem("v128.load", align=0).op("f32x4.mul").mem("v128.store", align=0)
                f.inc(p, 4).inc(d, 16).inc(t, 16)
                f.get(p).get(end).op("i32.lt_u").br_if(0)
            f.get(end).set(src).get(dst).get(lanes).i32(4).op("i32.mul").op("i32.add").set(dst)
        f.get(table).get(lanes).i32(4).op("i32.mul").op("i32.add").set(table)
    return index


def _splat_i32(f: Func, value: int) -> Func:
    return f.v128(struct.pack("<4I", value, value, value, value))


def _emit_expand_half(module: Module) -> int:
    """(dst, src, n): n float16 values → float32, bit for bit as numpy's conversion, eight per step."""
    index, f = module.reserve([I32] * 3, [], name="wasinfer_expand_fp16")
    dst, src, n = range(3)
    end, raw, h, em = f.local(I32), f.local(V128), f.local(V128), f.local(V128)
    magnitude, rebias, below_inf, smallest_normal, tiny = (f.local(V128) for _ in range(5))
    for local, bits in ((magnitude, 0x7FFF), (rebias, 0x38000000), (below_inf, 0x7BFF), (smallest_normal, 0x400)):
        _splat_i32(f, bits).set(local)
    f.f32x4_const(2.0**-24).set(tiny)
    f.get(src).get(n).i32(2).op("i32.mul").op("i32.add").set(end)
    with f.block(b"\x03"):
        f.get(src).mem("v128.load", align=0).set(raw)
        for half, widen in enumerate(("i32x4.extend_low_i16x8_u", "i32x4.extend_high_i16x8_u")):
            f.get(dst)
            f.get(raw).op(widen).tee(h).get(magnitude).op("v128.and").set(em)
            # subnormals and zero: the 10-bit integer times 2**-24, exact in float32
            f.get(em).op("f32x4.convert_i32x4_s").get(tiny).op("f32x4.mul")
            # normal numbers: exponent rebiased by 127 - 15; infinity and NaN once more, to 255
            f.get(em).i32(13).op("i32x4.shl").get(rebias).op("i32x4.add")
            f.get(below_inf).get(em).op("i32x4.sub").i32(31).op("i32x4.shr_s").get(rebias).op("v128.and")
            f.op("i32x4.add")
            # select the subnormal form where em < 0x400 (all ones there), then put the sign back
            f.get(em).get(smallest_normal).op("i32x4.sub").i32(31).op("i32x4.shr_s").op("v128.bitselect")
            f.get(h).i32(15).op("i32x4.shr_u").i32(31).op("i32x4.shl").op("v128.or")
            f.mem("v128.store", offset=16 * half, align=0)
        f.inc(src, 16).inc(dst, 32)
        f.get(src).get(end).op("i32.lt_u").br_if(0)
    return index


__all__ = ["SPILL", "Hint", "Segment", "WeightStore", "find_segments"]
