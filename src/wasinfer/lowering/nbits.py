"""MatMulNBits with 4-bit weights, run on its packed weights: y[M, N] = A[M, K] @ W[K, N] (+ bias), where
W[k, n] = (q[k, n] - zero[n, b]) * scale[n, b] for k in block b (com.microsoft MatMulNBits, bits 4).

The weights stay 4 bits each in the module and in memory (a float32 copy would be 8x their size); each run
unpacks them in registers. Per block b of BLOCK k's and column n:

    sum_k a[k] * W[k, n] = scale[n, b] * sum_k a[k] * q[k, n] - scale[n, b] * zero[n, b] * sum_k a[k]

so the inner loop multiplies A by the raw codes (0..15, exact in float32) and each block ends with one
multiply by the scale and one by the row's block sum of A (computed once per row). Sixteen columns go
together, in four f32x4 accumulators: the weights are repacked at compile time (`pack_int4`) as
[G][B][BLOCK/2][16] bytes for column groups of 16, one byte per column holding the codes of k (low nibble)
and k + 1 (high nibble), so one v128 load gives two k steps of sixteen columns, and a[k], a[k + 1] are
splatted once for all of them. Columns past N are padded with zero codes, scales and zero points (never
stored); K past the model's, up to whole blocks, with zero codes, and the row of A copied
into scratch with zeros after it (`scratch_bytes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LANES = 4  # columns per f32x4
WIDTH = 16  # columns per group: one v128 of codes per two k's


@dataclass(frozen=True)
class Int4Plan:
    k: int
    n: int
    block: int

    @property
    def blocks(self) -> int:
        return -(-self.k // self.block)

    @property
    def groups(self) -> int:
        return -(-self.n // WIDTH)

    @property
    def padded_k(self) -> int:
        return self.blocks * self.block


def unpack_codes(packed: np.ndarray, count: int) -> np.ndarray:
    """The first `count` 4-bit codes of each row of packed bytes, low nibble first, as uint8."""
    values = np.stack([packed & 15, packed >> 4], axis=-1).reshape(*packed.shape[:-1], -1)
    return values[..., :count]


def pack_int4(plan: Int4Plan, packed: np.ndarray, scales: np.ndarray, zero_points: np.ndarray | None,
              bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(codes [G, B, BLOCK/2, 16] uint8, scales [G, B, 16] float32, scale * zero [G, B, 16] float32, bias [G * 16]
    float32) from MatMulNBits' inputs: packed [N, B, BLOCK/2] uint8, scales [N * B], zero points [N, ceil(B/2)]
    uint8 (two per byte) or absent (8)."""
    n, blocks, block, groups = plan.n, plan.blocks, plan.block, plan.groups
    q = unpack_codes(packed.reshape(n, blocks, block // 2), block)  # [N, B, BLOCK]
    if zero_points is None:
        zero = np.full((n, blocks), 8.0, np.float32)
    else:
        zero = unpack_codes(zero_points.reshape(n, -1), blocks).astype(np.float32)
    scale = scales.reshape(n, blocks).astype(np.float32)
    width = groups * WIDTH
    codes = np.zeros((width, blocks, block), np.uint8)
    codes[:n] = q
    # zero codes past K: the padded k's of A are zero too, so whatever they hold adds nothing
    flat = codes.reshape(width, blocks * block)
    flat[:, plan.k:] = 0
    pairs = flat.reshape(width, blocks, block // 2, 2)
    nibbles = (pairs[..., 0] | (pairs[..., 1] << 4)).astype(np.uint8)  # [W, B, BLOCK/2]
    grouped = nibbles.reshape(groups, WIDTH, blocks, block // 2).transpose(0, 2, 3, 1)
    tables = []
    for table in (scale, scale * zero):
        padded = np.zeros((width, blocks), np.float32)
        padded[:n] = table
        tables.append(np.ascontiguousarray(padded.reshape(groups, WIDTH, blocks).transpose(0, 2, 1)))
    bias_table = np.zeros(width, np.float32)
    if bias is not None:
        bias_table[:n] = bias.reshape(-1)
    return np.ascontiguousarray(grouped), tables[0], tables[1].astype(np.float32), bias_table


def scratch_bytes(plan: Int4Plan) -> int:
    """A row of A padded to whole blocks, then its block sums."""
    return 4 * (plan.padded_k + plan.blocks)


def reference(plan: Int4Plan, a: np.ndarray, codes: np.ndarray, scales: np.ndarray, scaled_zeros: np.ndarray,
              bias: np.ndarray) -> np.ndarray:
    """What the kernel computes, in numpy (the tests' check of the packing): A [M, K] → [M, N]."""
    rows = np.zeros((a.shape[0], plan.padded_k), np.float32)
    rows[:, :plan.k] = a
    blocked = rows.reshape(-1, plan.blocks, plan.block)
    q = np.stack([codes & 15, codes >> 4], axis=3).reshape(plan.groups, plan.blocks, plan.block, WIDTH)
    raw = np.einsum("mbk,gbkc->mgbc", blocked, q.astype(np.float32))
    sums = blocked.sum(axis=2)  # [M, B]
    y = (raw * scales[None] - scaled_zeros[None] * sums[:, None, :, None]).sum(axis=2)
    return np.asarray((y.reshape(a.shape[0], -1) + bias[None])[:, :plan.n], np.float32)
