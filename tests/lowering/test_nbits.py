"""MatMulNBits' 4-bit plan: the repacked codes, scales and zero points compute what the dequantized weights do."""

from __future__ import annotations

import numpy as np
import pytest

from wasinfer.lowering.nbits import WIDTH, Int4Plan, pack_int4, reference, unpack_codes
from wasinfer.passes.contrib import dequantize_nbits


def test_codes_unpack_low_nibble_first() -> None:
    assert unpack_codes(np.array([[0x21, 0xF0]], np.uint8), 4).tolist() == [[1, 2, 0, 15]]


@pytest.mark.parametrize(("k", "n", "block", "zero_points"), [(40, 6, 16, True), (64, 8, 32, False),
                                                              (33, 5, 16, True), (128, 1, 128, True)])
def test_packed_weights_compute_the_dequantized_product(k: int, n: int, block: int, zero_points: bool) -> None:
    """K past whole blocks, N past whole groups of four columns, default or packed zero points."""
    rng = np.random.default_rng(k + n)
    blocks = -(-k // block)
    packed = rng.integers(0, 256, (n, blocks, block // 2)).astype(np.uint8)
    scales = rng.random(n * blocks).astype(np.float32)
    zeros = rng.integers(0, 256, (n, -(-blocks // 2))).astype(np.uint8) if zero_points else None
    bias = rng.standard_normal(n).astype(np.float32)
    a = rng.standard_normal((3, k)).astype(np.float32)
    plan = Int4Plan(k, n, block)
    codes, table, scaled_zeros, biases = pack_int4(plan, packed, scales, zeros, bias)
    assert codes.shape == (plan.groups, blocks, block // 2, WIDTH) and codes.dtype == np.uint8  # 4 bits a weight
    want = a @ dequantize_nbits(packed, scales, zeros, k, n, 4, block) + bias
    np.testing.assert_allclose(reference(plan, a, codes, table, scaled_zeros, biases), want, rtol=1e-5, atol=1e-4)
