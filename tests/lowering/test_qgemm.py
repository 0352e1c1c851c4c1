"""The int8 GEMM's plan and weight layout against numpy (lowering/qgemm.py)."""

from __future__ import annotations

import numpy as np
import pytest

from wasinfer.lowering.qgemm import PANEL, a_scratch_bytes, column_tables, pack_weights, qgemm_plan

rng = np.random.default_rng(5)


@pytest.mark.parametrize("m,n,k", [(1, 3, 1), (1, 40, 17), (4, 8, 2), (7, 33, 64), (9, 17, 5)])
def test_packed_weights_give_the_product_the_way_the_kernel_reads_them(m: int, n: int, k: int) -> None:
    """Per tile and k pair, four columns' pairs are eight bytes (one v128.load8x8_s), and the dot
    of a row's pair with them is that row's product: the whole product comes out of the layout."""
    plan = qgemm_plan(m, n, k)
    assert plan.panel == (1 if m == 1 else PANEL) and plan.width == (16 if m == 1 else 8)
    w = rng.integers(-128, 128, (k, n)).astype(np.int8)
    a = rng.integers(-255, 256, (m, k)).astype(np.int64)  # already shifted by the zero point
    packed = pack_weights(w, plan).astype(np.int64).reshape(len(plan.starts), plan.k_pairs, plan.width, 2)
    a_pairs = np.pad(a, ((0, 0), (0, plan.k_pairs * 2 - k))).reshape(m, plan.k_pairs, 2)
    got = np.full((m, n), -1, np.int64)
    for tile, start in enumerate(plan.starts):
        products = np.einsum("mpi,pci->mc", a_pairs, packed[tile])  # the dot's pair sums, over every k pair
        stored = plan.stored
        got[:, start:start + stored] = products[:, :stored]
    np.testing.assert_array_equal(got, a @ w.astype(np.int64))
    bias = np.arange(n, dtype=np.int32)
    tables = column_tables(bias, plan)
    for tile, start in enumerate(plan.starts):
        np.testing.assert_array_equal(tables[tile, :plan.stored], bias[start:start + plan.stored])
    assert a_scratch_bytes(plan) == -(-m // plan.panel) * plan.panel * plan.k_pairs * 4


def test_column_tiles_cover_every_column_and_overlap_only_at_the_end() -> None:
    plan = qgemm_plan(4, 20, 8)
    assert plan.starts == (0, 8, 12) and plan.regular == 2  # the last tile recomputes columns 12-15
    assert qgemm_plan(1, 32, 8).starts == (0, 16) and qgemm_plan(1, 5, 8).starts == (0,)
