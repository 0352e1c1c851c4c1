"""Winograd F(2x2, 3x3): the transformed weights satisfy the identity, chunks and scratch are bounded."""

from __future__ import annotations

import numpy as np
import pytest

import wasinfer.lowering.winograd as winograd
from wasinfer.lowering.gemm import PANEL
from wasinfer.lowering.window import Window
from wasinfer.lowering.winograd import (
    POINTS_1D,
    TILE_1D,
    tile_groups,
    toom_cook,
    transformed_weights,
    winograd_1d_plan,
    winograd_plan,
)

BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)  # B^T
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)  # A^T


def window(out_h: int, out_w: int) -> Window:
    return Window((out_h, out_w), (out_h, out_w), (3, 3), (1, 1), (1, 1), (1, 1), (1, 1))


def test_transformed_weights_give_the_direct_convolution() -> None:
    """A^T [U[c] . (B^T d B)] A summed over channels equals the 2x2 correlation of d with g."""
    rng = np.random.default_rng(0)
    out_channels, channels = 5, 3
    g = rng.standard_normal((out_channels, channels, 3, 3)).astype(np.float32)
    d = rng.standard_normal((channels, 4, 4))
    packed = transformed_weights(g)
    assert packed.shape == (16, -(-out_channels // PANEL), channels, PANEL)
    u = packed.transpose(0, 1, 3, 2).reshape(16, -1, channels)[:, :out_channels]  # U[xi] as [M, C]
    for m in range(out_channels):
        got = sum(AT @ (u[:, m, c].reshape(4, 4) * (BT @ d[c] @ BT.T)) @ AT.T for c in range(channels))
        direct = np.array([[sum((g[m, c] * d[c, i:i + 3, j:j + 3]).sum() for c in range(channels))
                            for j in range(2)] for i in range(2)])
        np.testing.assert_allclose(got, direct, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("out_h,out_w,channels,out_channels", [(14, 14, 32, 48), (200, 180, 64, 64),
                                                                (7, 9, 16, 16), (33, 8, 128, 16)])
def test_chunks_cover_every_tile_row_within_the_budget(out_h: int, out_w: int, channels: int,
                                                       out_channels: int) -> None:
    plan = winograd_plan(window(out_h, out_w), channels, out_channels)
    assert (plan.tile_rows, plan.tile_columns) == (-(-out_h // 2), -(-out_w // 2))
    chunk_bytes = 64 * (channels + out_channels) * plan.tile_columns * plan.chunk_rows
    assert plan.chunk_rows == 1 or chunk_bytes <= winograd.CHUNK_BYTES
    rows: list[int] = []
    output_rows = 0
    for n_rows, chunks, first, out_rows in plan.runs(out_h):
        for chunk in range(chunks if n_rows else 0):
            rows += range(first + chunk * n_rows, first + (chunk + 1) * n_rows)
            output_rows += n_rows * out_rows
    assert rows == list(range(plan.tile_rows)) and output_rows == out_h  # an odd height: one row in the last
    hp, wp = plan.padded
    assert plan.v_offset == 4 * channels * hp * wp
    assert plan.m_offset == plan.v_offset + 4 * 16 * channels * plan.chunk_rows * plan.tile_columns
    assert plan.scratch_bytes == plan.m_offset + 4 * 16 * out_channels * plan.chunk_rows * plan.tile_columns


def test_chunk_rows_follow_chunk_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 64 * (4 + 4) * 5 * 3)
    plan = winograd_plan(window(20, 10), 4, 4)
    assert (plan.tile_columns, plan.chunk_rows) == (5, 3)
    assert plan.runs(20) == [(3, 3, 0, 2), (1, 1, 9, 2), (1, 0, 10, 1)]


@pytest.mark.parametrize("tw,wo", [(4, None), (5, None), (9, None), (17, None), (4, 7), (8, 15), (9, 17), (5, 10)])
def test_tile_groups_cover_the_row_once_and_stop_at_an_odd_width(tw: int, wo: int | None) -> None:
    looped, rest = tile_groups(tw, wo)
    starts = [4 * i for i in range(looped)] + rest
    covered = {t for s in starts for t in range(s, s + 4)}
    assert covered == set(range(tw)) and max(starts) + 4 <= tw
    if wo is not None:  # the looped groups write all 8 of their columns: those must lie inside
        assert 8 * looped <= wo


# ---- 1-D F(4, r)

def window_1d(length: int, kernel: int, pad: int) -> Window:
    return Window((length, 1), (length + 2 * pad - kernel + 1, 1), (kernel, 1), (1, 1), (1, 1), (pad, 0), (pad, 0))


@pytest.mark.parametrize("r", sorted(POINTS_1D))
def test_toom_cook_matrices_correlate(r: int) -> None:
    """y = A^T [(G g) . (B^T d)] is the valid correlation of a tile's inputs with the kernel."""
    rng = np.random.default_rng(r)
    at, g_matrix, bt = toom_cook(TILE_1D, r, POINTS_1D[r])
    assert at.shape == (TILE_1D, TILE_1D + r - 1) and g_matrix.shape == (TILE_1D + r - 1, r)
    for _ in range(5):
        d, g = rng.standard_normal(TILE_1D + r - 1), rng.standard_normal(r)
        np.testing.assert_allclose(at @ ((g_matrix @ g) * (bt @ d)), np.correlate(d, g, "valid"), atol=1e-12)


def test_1d_transformed_weights_give_the_direct_convolution() -> None:
    rng = np.random.default_rng(1)
    out_channels, channels = 6, 3
    plan = winograd_1d_plan(window_1d(40, 5, 2), channels, out_channels)
    assert isinstance(plan, winograd.Winograd1dPlan)
    g = rng.standard_normal((out_channels, channels, 5, 1)).astype(np.float32)
    d = rng.standard_normal((channels, plan.alpha))
    packed = plan.transformed_weights(g)
    assert packed.shape == (plan.alpha, -(-out_channels // PANEL), channels, PANEL)
    u = packed.transpose(0, 1, 3, 2).reshape(plan.alpha, -1, channels)[:, :out_channels]  # U[xi] as [M, C]
    at, _, bt = plan.matrices()
    for m in range(out_channels):
        got = sum(at @ (u[:, m, c] * (bt @ d[c])) for c in range(channels))
        direct = sum(np.correlate(d[c], g[m, c, :, 0].astype(np.float64), "valid") for c in range(channels))
        np.testing.assert_allclose(got, direct, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("in_dims,kernel,pad,channels,out_channels", [
    ((512, 1), (5, 1), 0, 256, 512), ((1, 16000), (1, 3), 1, 64, 64), ((1, 40), (1, 3), 0, 16, 16),
    ((1, 61), (1, 5), 2, 16, 20), ((74, 32), (1, 3), 1, 24, 24)])
def test_1d_chunks_cover_every_group_once_within_the_budget(in_dims: tuple[int, ...], kernel: tuple[int, ...],
                                                            pad: int, channels: int, out_channels: int) -> None:
    a = kernel.index(max(kernel))
    pads = tuple(pad if i == a else 0 for i in range(2))
    out_dims = tuple(n + 2 * p - k + 1 for n, p, k in zip(in_dims, pads, kernel, strict=True))
    win = Window(in_dims, out_dims, kernel, (1, 1), (1, 1), pads, pads)
    plan = winograd_1d_plan(win, channels, out_channels)
    assert isinstance(plan, winograd.Winograd1dPlan)
    out_length = out_dims[a]
    assert plan.pre == (in_dims[0] if a == 1 else 1)
    assert 16 * (plan.row_groups - 1) < out_length <= 16 * plan.row_groups
    assert plan.last_outputs == out_length - 16 * (plan.row_groups - 1)
    chunk_bytes = 16 * plan.alpha * (channels + out_channels) * plan.chunk_groups
    assert plan.chunk_groups == 1 or chunk_bytes <= winograd.CHUNK_BYTES
    groups = [first + chunk * count + g for first, count, repeat in plan.chunks()
              for chunk in range(repeat) for g in range(count)]
    assert groups == list(range(plan.pre * plan.row_groups))
    # P holds every tile's inputs: a row's last tile reads up to phase_length * TILE_1D padded inputs
    assert TILE_1D * plan.phase_length >= TILE_1D * (4 * plan.row_groups - 1) + plan.alpha


@pytest.mark.parametrize("in_dims,kernel,pad,channels,out_channels", [
    ((74, 32), (3, 1), 0, 24, 24), ((3, 19, 4), (1, 3, 1), 1, 16, 16), ((2000, 16), (5, 1), 2, 64, 64),
    ((30, 8), (1, 3), 1, 72, 72), ((5, 3, 9), (1, 1, 5), 0, 16, 16)])  # short last-axis rows: transposed
def test_axis_chunks_cover_every_unit_once_within_the_budget(in_dims: tuple[int, ...], kernel: tuple[int, ...],
                                                             pad: int, channels: int, out_channels: int) -> None:
    a = kernel.index(max(kernel))
    pads = tuple(pad if i == a else 0 for i in range(len(kernel)))
    out_dims = tuple(n + 2 * p - k + 1 for n, p, k in zip(in_dims, pads, kernel, strict=True))
    win = Window(in_dims, out_dims, kernel, (1,) * len(kernel), (1,) * len(kernel), pads, pads)
    plan = winograd_1d_plan(win, channels, out_channels)
    assert isinstance(plan, winograd.WinogradAxisPlan)
    assert plan.transposed == (a == len(in_dims) - 1)
    if plan.transposed:  # the rows before the axis are the vectorised positions
        assert (plan.pre, plan.post) == (1, int(np.prod(in_dims[:-1])))
    assert plan.tiles * TILE_1D >= out_dims[a] > (plan.tiles - 1) * TILE_1D
    assert plan.padded_length >= TILE_1D * (plan.tiles - 1) + plan.alpha
    chunk_bytes = 4 * plan.alpha * (channels + out_channels) * plan.post * plan.chunk_units
    assert plan.chunk_units == 1 or chunk_bytes <= winograd.CHUNK_BYTES
    units = [first + chunk * count + u for first, count, repeat in plan.chunks()
             for chunk in range(repeat) for u in range(count)]
    assert units == list(range(plan.pre * plan.tiles))


# ---- F(4x4, 3x3)

def test_44_transformed_weights_give_the_direct_convolution() -> None:
    """A^T [U[c] . (B^T d B)] A summed over channels equals the 4x4 correlation of a 6x6 patch d with g."""
    rng = np.random.default_rng(2)
    out_channels, channels = 5, 3
    plan = winograd.winograd_44_plan(window(16, 16), channels, out_channels)
    g = rng.standard_normal((out_channels, channels, 3, 3)).astype(np.float32)
    d = rng.standard_normal((channels, 6, 6))
    packed = plan.transformed_weights(g)
    assert packed.shape == (36, -(-out_channels // PANEL), channels, PANEL)
    u = packed.transpose(0, 1, 3, 2).reshape(36, -1, channels)[:, :out_channels]
    at, _, bt = plan.matrices()
    assert np.array_equal(bt, np.round(bt))  # B^T, applied at run time, is exact in float32
    for m in range(out_channels):
        got = sum(at @ (u[:, m, c].reshape(6, 6) * (bt @ d[c] @ bt.T)) @ at.T for c in range(channels))
        direct = np.array([[sum((g[m, c] * d[c, i:i + 3, j:j + 3]).sum() for c in range(channels))
                            for j in range(4)] for i in range(4)])
        np.testing.assert_allclose(got, direct, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("out_h,out_w,applies", [(16, 16, True), (52, 52, True), (9, 30, True), (80, 120, True),
                                                 (20, 20, False), (3, 64, False), (11, 11, False)])
def test_44_where_rows_fill_groups_of_16(out_h: int, out_w: int, applies: bool) -> None:
    assert winograd.fits_4x4(window(out_h, out_w), 96) == applies


@pytest.mark.parametrize("out_h,out_w,out_channels,applies", [
    (13, 13, 96, True),  # 16 x 16 computed: 36 x 16 = 576 products against F(2x2)'s 16 x 49 = 784
    (14, 14, 48, True), (12, 12, 512, True), (10, 15, 96, True), (8, 12, 48, True), (4, 15, 96, True),
    (14, 14, 32, False), (10, 15, 24, False),  # too few output channels for its transforms
    (20, 20, 96, False),  # 1440 against 1600 products: over 3/4
    (8, 11, 96, False),  # under 12 columns
])
def test_44_on_small_maps_where_its_products_are_at_most_three_quarters(out_h: int, out_w: int, out_channels: int,
                                                                       applies: bool) -> None:
    assert winograd.fits_4x4(window(out_h, out_w), out_channels) == applies


@pytest.mark.parametrize("tile,out_h,out_w,channels,out_channels", [
    (4, 52, 52, 96, 96), (4, 80, 120, 96, 24), (4, 9, 30, 4, 4),
    (6, 52, 52, 96, 96), (6, 80, 120, 96, 24), (6, 13, 47, 4, 4)])
def test_44_and_66_runs_cover_every_tile_row_within_the_budget(tile: int, out_h: int, out_w: int, channels: int,
                                                               out_channels: int) -> None:
    """F(4x4) and F(6x6): tiles of `tile` rows, groups of 4 * tile columns, (tile + 2)^2 transformed points."""
    plan = winograd.winograd_44_plan(window(out_h, out_w), channels, out_channels, tile=tile)
    group, points = 4 * tile, (tile + 2) ** 2
    assert tile * plan.tile_rows >= out_h > tile * (plan.tile_rows - 1)
    assert plan.last_rows == out_h - tile * (plan.tile_rows - 1)
    assert group * plan.groups >= out_w > group * (plan.groups - 1)
    assert plan.last_columns == out_w - group * (plan.groups - 1)
    assert plan.chunk_rows == 1 or 4 * points * (channels + out_channels) * plan.chunk_columns <= winograd.CHUNK_BYTES
    rows = [first + chunk * count + r for first, count, repeat in plan.runs() for chunk in range(repeat)
            for r in range(count)]
    assert rows == list(range(plan.tile_rows))
    assert tile * plan.phase_length >= group * plan.groups + 2  # a last group's patches read group * groups + 2 columns
    assert plan.padded_rows == tile * plan.tile_rows + 2


# ---- F(6x6, 3x3): the same plan with tiles of 6x6 outputs

def test_66_transformed_weights_give_the_direct_convolution_within_float32_rounding() -> None:
    """A^T [U[c] . (B^T d B)] A summed over 256 channels equals the 6x6 correlation of an 8x8 patch with g: exactly
    in float64, and with U, B^T d B, the products and A^T run in float32 within 1e-5 of the largest output (F(4x4)
    measured the same way stays within 5e-6), well inside the parity tests' atol and rtol of 1e-4."""
    rng = np.random.default_rng(3)
    channels = 256
    plan = winograd.winograd_44_plan(window(48, 48), channels, 4, tile=6)
    assert (plan.alpha, plan.points, plan.step, plan.group_columns) == (8, 64, 6, 24)
    g = (rng.standard_normal((1, channels, 3, 3)) / np.sqrt(9 * channels)).astype(np.float32)
    d = rng.standard_normal((channels, 8, 8)).astype(np.float32)
    at, g_matrix, bt = plan.matrices()
    assert np.array_equal(bt, np.round(bt))  # B^T holds integers (up to 160): its products round only on overflow
    u = plan.transformed_weights(g)[:, 0, :, 0].T.reshape(channels, 8, 8)  # U[c] for output channel 0
    direct = np.array([[(g[0].astype(np.float64) * d[:, i:i + 3, j:j + 3]).sum() for j in range(6)]
                       for i in range(6)])
    exact_u = np.einsum("ia,cab,jb->cij", g_matrix, g[0].astype(np.float64), g_matrix)
    exact = at @ (exact_u * np.einsum("ia,cab,jb->cij", bt, d.astype(np.float64), bt)).sum(0) @ at.T
    np.testing.assert_allclose(exact, direct, rtol=1e-9, atol=1e-9)
    v = np.einsum("ia,cab,jb->cij", bt.astype(np.float32), d, bt.astype(np.float32)).astype(np.float32)
    rounded = at.astype(np.float32) @ (u * v).sum(0, dtype=np.float32) @ at.T.astype(np.float32)
    assert np.abs(rounded - direct).max() <= 1e-5 * np.abs(direct).max()


@pytest.mark.parametrize("out_h,out_w,channels,out_channels,applies", [
    (52, 52, 96, 96, True),  # ddddocr_det: 7.7% fewer products, gain 3.7 (0.77-0.93x alone)
    (80, 120, 96, 24, True),  # ppocr_det: 22% fewer, gain 4.2 (0.83-0.88x)
    (224, 224, 64, 64, True), (112, 112, 128, 128, True),  # VGG's large maps
    (52, 52, 48, 48, False),  # gain 1.8: its transforms eat the products saved (1.02-1.08x)
    (104, 104, 24, 24, False), (208, 208, 12, 24, False), (40, 60, 96, 24, False),
    (56, 56, 128, 256, False), (56, 56, 256, 256, False),  # transformed weights over 128 x 128 channel pairs
    (26, 26, 96, 96, False), (13, 13, 192, 192, False),  # rows too short for groups of 24: more products
])
def test_66_where_its_fewer_products_outweigh_its_transforms(out_h: int, out_w: int, channels: int, out_channels: int,
                                                              applies: bool) -> None:
    assert winograd.fits_6x6(window(out_h, out_w), channels, out_channels) == applies


# ---- F(4x4, 3x3) at stride 2: even inputs through F(4, 2), odd ones through the middle tap

def strided_window(in_h: int, in_w: int, pads: tuple[int, int, int, int] = (1, 1, 1, 1)) -> Window:
    out_h, out_w = (in_h + pads[0] + pads[2] - 3) // 2 + 1, (in_w + pads[1] + pads[3] - 3) // 2 + 1
    return Window((in_h, in_w), (out_h, out_w), (3, 3), (2, 2), (1, 1), pads[:2], pads[2:])


def test_strided_matrices_give_the_stride_2_correlation() -> None:
    """A^T [(G g G^T) . (B^T d B)] A is the 4x4 stride-2 correlation of a 9x9 patch d with a 3x3 kernel g, and
    B^T (applied at run time) holds small integers, exact in float32."""
    at, g, bt = winograd.strided_matrices()
    assert at.shape == (4, 9) and g.shape == (9, 3) and bt.shape == (9, 9)
    assert np.array_equal(bt, np.round(bt)) and np.abs(bt).max() <= 3
    rng = np.random.default_rng(3)
    for _ in range(5):
        w, d = rng.standard_normal((3, 3)), rng.standard_normal((9, 9))
        direct = np.array([[(w * d[2 * i:2 * i + 3, 2 * j:2 * j + 3]).sum() for j in range(4)] for i in range(4)])
        np.testing.assert_allclose(at @ ((g @ w @ g.T) * (bt @ d @ bt.T)) @ at.T, direct, rtol=1e-12, atol=1e-12)


def test_strided_transformed_weights_sum_over_channels_and_repeat_tap_1() -> None:
    """The plan's 81 packed U[xi] give the direct stride-2 conv summed over channels; only 36 of them differ (the
    middle tap's rows and columns repeat), which is all a module stores."""
    rng = np.random.default_rng(4)
    out_channels, channels = 5, 16
    plan = winograd.winograd_44_plan(strided_window(32, 32), channels, out_channels)
    assert plan.stride == 2 and plan.points == 81 and (plan.alpha, plan.step) == (9, 8)
    g = rng.standard_normal((out_channels, channels, 3, 3)).astype(np.float32)
    d = rng.standard_normal((channels, 9, 9))
    packed = plan.transformed_weights(g)
    assert packed.shape == (81, -(-out_channels // PANEL), channels, PANEL)
    assert len({u.tobytes() for u in packed}) == 36
    u = packed.transpose(0, 1, 3, 2).reshape(81, -1, channels)[:, :out_channels]
    at, _, bt = plan.matrices()
    for m in range(out_channels):
        got = sum(at @ (u[:, m, c].reshape(9, 9) * (bt @ d[c] @ bt.T)) @ at.T for c in range(channels))
        direct = np.array([[sum((g[m, c] * d[c, 2 * i:2 * i + 3, 2 * j:2 * j + 3]).sum() for c in range(channels))
                            for j in range(4)] for i in range(4)])
        np.testing.assert_allclose(got, direct, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("window_,channels,groups,applies", [
    (strided_window(66, 26), 16, 1, True),  # 33 x 13 outputs: 9 tile rows of one group of 16 columns, 13 kept
    (strided_window(80, 24), 16, 1, True),  # 12 outputs a row: a third more computed than kept, the limit
    (strided_window(80, 22), 16, 1, False),  # 11 outputs a row: more than a third wasted
    (strided_window(80, 40), 16, 1, False),  # 20 outputs a row: two groups for 20
    (strided_window(26, 26), 192, 1, False),  # 13 x 13 outputs: 16 tiles, too few for U's 4x weights
    (strided_window(52, 52), 96, 1, True),  # 26 x 26: 56 tiles
    (strided_window(208, 208), 24, 1, True),
    (strided_window(208, 208), 3, 1, False),  # a 3-channel stem: transforms cost more than they save
    (strided_window(52, 52), 16, 2, False),  # grouped
    (strided_window(6, 52), 16, 1, False),  # 3 output rows
    (Window((52, 52), (26, 52), (3, 3), (2, 1), (1, 1), (1, 1), (1, 1)), 16, 1, False),  # stride (2, 1)
    (Window((52, 52), (25, 25), (3, 3), (2, 2), (2, 2), (1, 1), (1, 1)), 16, 1, False),  # dilated
])
def test_where_the_stride_2_plan_applies(window_: Window, channels: int, groups: int, applies: bool) -> None:
    assert winograd.fits_strided(window_, channels, 32, groups, True) == applies
    assert not winograd.fits_strided(window_, channels, 32, groups, False)  # run-time weights: never


@pytest.mark.parametrize("in_h,in_w,channels,out_channels", [(208, 208, 24, 48), (26, 26, 192, 384), (34, 50, 16, 8)])
def test_strided_runs_cover_every_tile_row_within_the_budget(in_h: int, in_w: int, channels: int,
                                                             out_channels: int) -> None:
    win = strided_window(in_h, in_w, (0, 0, 0, 0))
    plan = winograd.winograd_44_plan(win, channels, out_channels)
    assert plan.chunk_rows == 1 or 4 * 81 * (channels + out_channels) * plan.chunk_columns <= \
        winograd.STRIDED_CHUNK_BYTES
    rows = [first + chunk * count + r for first, count, repeat in plan.runs() for chunk in range(repeat)
            for r in range(count)]
    assert rows == list(range(plan.tile_rows))
    # every patch reads inside P: 9 rows from 8 * tile row, 9 columns from 8 * tile (8 phases of phase_length)
    assert plan.padded_rows == 8 * (plan.tile_rows - 1) + 9
    assert 8 * plan.phase_length >= 8 * (4 * plan.groups - 1) + 9
