"""Which convolutions are short-time Fourier transforms (lowering/dft.py): the fit of a window to DFT rows."""

from __future__ import annotations

import numpy as np
import pytest

from wasinfer.lowering.dft import IMAG, REAL, fit_stft, stft_plan

RNG = np.random.default_rng(0)


def dft_filters(size: int, bins: int, layout: str, window: np.ndarray | None = None, sign: float = 1.0) -> np.ndarray:
    """What torch's stft exports as Conv weights [C, 1, N]: a window times cos (real) and -sin (imaginary) rows."""
    window = np.hanning(size + 2)[1:-1] if window is None else window
    angle = 2 * np.pi * np.outer(np.arange(bins), np.arange(size)) / size
    real, imag = window * np.cos(angle), -window * np.sin(angle)
    rows = {"real": real, "imag": imag, "both": np.concatenate([real, sign * imag])}[layout]
    return rows.astype(np.float32)[:, None, :]


@pytest.mark.parametrize("layout,bins,sign,expected", [
    ("real", 257, 1.0, [(f, REAL, 1.0) for f in range(257)]),
    ("imag", 257, 1.0, [(f, IMAG, 1.0) for f in range(257)]),
    ("both", 129, 1.0, [(f, REAL, 1.0) for f in range(129)] + [(f, IMAG, 1.0) for f in range(129)]),
    ("both", 129, -1.0, [(f, REAL, 1.0) for f in range(129)] + [(f, IMAG, -1.0) for f in range(129)]),
])
def test_the_window_and_each_channel_s_bin_and_part_are_recovered(layout: str, bins: int, sign: float,
                                                                   expected: list[tuple[int, int, float]]) -> None:
    size = 512 if layout != "both" else 256
    window = RNG.uniform(0.5, 1.5, size)  # any window, not only Hann
    fitted = fit_stft(dft_filters(size, bins, layout, window, sign)[:, 0])
    assert fitted is not None
    recovered, channels = fitted
    assert list(channels) == expected
    checked = np.ones(size, bool)
    if layout == "imag":  # sin(2 pi f k / N) = 0 at k = 0 and N/2 for every bin: no row reads those taps
        checked[[0, size // 2]] = False
    np.testing.assert_allclose(recovered[checked], window[checked], rtol=1e-5)


def test_learned_filters_and_perturbed_dft_rows_stay_a_convolution() -> None:
    assert fit_stft(RNG.standard_normal((64, 512)).astype(np.float32)) is None
    filters = dft_filters(256, 129, "both")[:, 0].copy()
    filters[40, 17] += 1e-3  # one weight off by far more than float32 rounding
    assert fit_stft(filters) is None
    assert fit_stft(np.zeros((16, 64), np.float32)) is None


@pytest.mark.parametrize("x_shape,weights,strides,dilations,pads,groups", [
    ((1, 1, 4000), dft_filters(400, 201, "real"), (160,), (1,), (0, 0), 1),  # 400 is not a power of two
    ((1, 2, 4000), np.repeat(dft_filters(256, 129, "real"), 2, axis=1), (128,), (1,), (0, 0), 1),  # two channels
    ((1, 1, 4000), dft_filters(256, 129, "real"), (128,), (2,), (0, 0), 1),  # dilated
    ((1, 1, 4000), dft_filters(256, 129, "real"), (128,), (1,), (128, 128), 1),  # zero padding
    ((1, 1, 4000), dft_filters(8, 5, "real"), (4,), (1,), (0, 0), 1),  # too short to pay
    ((1, 1, 4000), None, (128,), (1,), (0, 0), 1),  # weights known only at run time
])
def test_only_unpadded_undilated_single_channel_power_of_two_frames_run_as_ffts(
        x_shape: tuple[int, ...], weights: np.ndarray | None, strides: tuple[int, ...], dilations: tuple[int, ...],
        pads: tuple[int, ...], groups: int) -> None:
    assert stft_plan(x_shape, weights, strides, dilations, pads, groups, 10) is None
    assert stft_plan((1, 1, 4000), dft_filters(256, 129, "real"), (128,), (1,), (0, 0), 1, 30) is not None


def test_the_plan_s_tables_are_the_radix_2_order_and_the_dft_s_twiddles() -> None:
    plan = stft_plan((1, 1, 1000), dft_filters(32, 17, "both"), (8,), (1,), (0, 0), 1, 122)
    assert plan is not None and (plan.size, plan.half, plan.stages) == (32, 16, 4)
    assert list(plan.bit_reversed()[:4]) == [0, 8, 4, 12]
    twiddles = plan.twiddles(4)
    np.testing.assert_allclose(twiddles[:, 0] + 1j * twiddles[:, 1], np.exp(-2j * np.pi * np.arange(4) / 8), atol=1e-7)
    assert plan.split_twiddles().shape == (17, 2)
