"""GEMM tiling and weight layouts against numpy references."""

from __future__ import annotations

import numpy as np
import pytest

import wasinfer.lowering.gemm as gemm
from wasinfer.lowering.gemm import (
    PANEL,
    bias_strides,
    column_block,
    constant_bias,
    gemm_plan,
    matmul_batches,
    pack_columns,
    pack_panels,
)

rng = np.random.default_rng(0)


@pytest.mark.parametrize("m,k", [(1, 3), (4, 5), (6, 7), (9, 2)])
def test_pack_panels_layout(m: int, k: int) -> None:
    a = rng.standard_normal((m, k)).astype(np.float32)
    packed = pack_panels(a)
    assert packed.shape == (-(-m // PANEL), k, PANEL) and packed.flags.c_contiguous
    for p in range(packed.shape[0]):
        for r in range(PANEL):
            # row p*PANEL + r of A, or (padding) A's last row again
            np.testing.assert_array_equal(packed[p, :, r], a[min(p * PANEL + r, m - 1)])


@pytest.mark.parametrize("m,n,k", [(1, 37, 20), (4, 8, 5), (7, 13, 1030), (9, 3, 600), (5, 100, 512)])
def test_gemm_plan_covers_c_and_k(m: int, n: int, k: int) -> None:
    plan = gemm_plan(m, n, k)
    assert plan.blocks == -(-k // gemm.K_BLOCK)
    assert (plan.blocks - 1) * plan.k_len < k <= plan.blocks * plan.k_len and plan.k_len <= gemm.K_BLOCK
    rows = [r for lo, hi, step in plan.row_tiles if hi > lo for r in range(lo, hi)]
    assert rows == list(range(m))
    assert all(step == gemm.ROWS for lo, hi, step in plan.row_tiles[:1] if hi > lo)
    counts = np.zeros(n, int)
    for lo, tiles, width in plan.regions:
        counts[lo:lo + tiles * width] += 1
    assert counts.min() == 1  # every column of C is computed
    if plan.blocks > 1:  # later K blocks add to C: no column may be computed twice
        assert counts.max() == 1


def test_k_blocks_follow_k_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gemm, "K_BLOCK", 16)
    plan = gemm_plan(4, 8, 45)
    assert (plan.blocks, plan.k_len) == (3, 15)


@pytest.mark.parametrize("m,n,k,outer", [
    (20, 8210, 1024, True),  # ddddocr_rec's classifier: B's K block is 16 MiB, A's 40 KiB
    (5, 1100, 64, True),  # two row tiles, B just past the budget
    (1, 8210, 1024, False),  # one row: one row tile reads B once either way
    (4, 8210, 1024, False),  # one row tile
    (20, 64, 512, False),  # B fits in L2: rows outer reuse it from there
    (4096, 8210, 512, False),  # A's block would not stay in L2 either
])
def test_columns_outer_for_few_rows_against_a_large_constant_b(m: int, n: int, k: int, outer: bool) -> None:
    assert gemm_plan(m, n, k, constant_b=True).columns_outer is outer
    assert not gemm_plan(m, n, k).columns_outer  # a run-time B is not packed per column tile


@pytest.mark.parametrize("m,n,k,blocks", [
    (20, 8210, 1024, 1),  # ddddocr_rec's classifier: A (80 KiB) stays in L2, so K is not cut
    (20, 8210, 4096, 8),  # A too large for L2 whole: K blocks of 512 keep A's block there
    (20, 64, 1024, 2),  # B fits in L2, rows outermost: K blocks as before
])
def test_columns_outer_cuts_k_only_where_a_does_not_fit(m: int, n: int, k: int, blocks: int) -> None:
    plan = gemm_plan(m, n, k, constant_b=True)
    assert plan.blocks == blocks and plan.k_len == -(-k // blocks)
    assert plan.columns_outer is (n == 8210)
    counts = np.zeros(n, int)
    for lo, tiles, width in plan.regions:
        counts[lo:lo + tiles * width] += 1
    assert counts.min() == 1 and (blocks == 1 or counts.max() == 1)  # overlapping tiles only without K blocks


@pytest.mark.parametrize("k,n", [(5, 37), (3, 8), (6, 21), (2, 3)])
def test_pack_columns_layout(k: int, n: int) -> None:
    b = rng.standard_normal((k, n)).astype(np.float32)
    regions = gemm_plan(4, n, k).regions
    packed, starts = pack_columns(b, regions)
    assert packed.dtype == np.float32 and len(starts) == len(regions)
    for (lo, tiles, width), start in zip(regions, starts, strict=True):
        # a tile's k step is `width` consecutive floats: [tiles][K][width]
        block = packed[start:start + tiles * k * width].reshape(tiles, k, width)
        for t in range(tiles):
            np.testing.assert_array_equal(block[t], b[:, lo + t * width:lo + (t + 1) * width])


@pytest.mark.parametrize("k", [1, 9, 100, 512, 5000])
def test_column_block_keeps_b_within_budget(k: int) -> None:
    block = column_block(k)
    assert block % 8 == 0 and block >= gemm.GEMM_MIN_COLUMNS
    if block > gemm.GEMM_MIN_COLUMNS:
        assert block * min(k, gemm.K_BLOCK) * 4 <= gemm.GEMM_B_BUDGET


@pytest.mark.parametrize("c_shape,form", [((5,), (0, 1)), ((1, 5), (0, 1)), ((3, 1), (1, 0)), ((3, 5), (5, 1))])
def test_constant_bias_takes_the_cheapest_form(c_shape: tuple[int, ...], form: tuple[int, int]) -> None:
    c = rng.standard_normal(c_shape).astype(np.float32)
    values, row, col = constant_bias(c, 2.0, 3, 5)
    assert (row, col) == form
    flat = values.reshape(-1)  # read as the kernel does: element (i, j) at i * row + j * col
    full = np.array([[flat[i * row + j * col] for j in range(5)] for i in range(3)])
    np.testing.assert_array_equal(full, np.broadcast_to(c * np.float32(2.0), (3, 5)))
    assert bias_strides(c_shape) == form


@pytest.mark.parametrize("a_shape,b_shape", [((3, 1, 5, 9), (4, 9, 11)), ((9,), (2, 9, 3)), ((2, 4, 9), (9,))])
def test_matmul_batches_follow_numpy(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> None:
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    pairs, m, n, k = matmul_batches(a_shape, b_shape)
    flat_a, flat_b = a.reshape(-1), b.reshape(-1)
    got = np.stack([flat_a[i:i + m * k].reshape(m, k) @ flat_b[j:j + k * n].reshape(k, n) for i, j in pairs])
    np.testing.assert_allclose(got.reshape(-1), np.matmul(a, b).reshape(-1))
