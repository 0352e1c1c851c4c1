"""When a convolution is a short-time Fourier transform, and the plan it runs by as FFTs.

Audio models compute their spectrogram as a 1-D Conv over the waveform whose filters are a
window times the DFT's cosines and sines (torch's `stft` exported as a Conv: Silero VAD,
openWakeWord's mel front end, torchlibrosa, nnAudio): channel c of frame t is

    y[c, t] = sign_c * part_c( sum_k x[t * hop + k] * window[k] * exp(-2 pi i bin_c k / N) )

with part_c the real or the imaginary part. As a GEMM that is C * N multiply-adds per frame
(257 channels x 512 taps twice for openWakeWord: 38% of its time at 2.3x ONNX Runtime); an FFT
of the windowed frame gives every bin at once in about N/2 log2(N/2) complex butterflies. The
weights decide it: `stft_plan` fits a window to the filters under each channel layout that
exporters write (all real parts, all imaginary parts, or the real parts of bins 0..F-1 then
their imaginary parts, either sign) and takes the layout whose fit reproduces every weight
within WEIGHT_TOLERANCE of the largest; learned filterbanks fit none and stay a Conv. The FFT's
result differs from the GEMM's by rounding only (both are the same sums, grouped differently).

Each frame is real, so the N-point DFT is one N/2-point complex FFT of z[n] = x[2n] + i x[2n+1]
and a last pass that separates the even and odd samples' spectra (`X[k] = E[k] + W^k O[k]`).
Four frames are transformed at once, one per v128 lane. Rendering:
backends/wasm/emitters/conv_dft.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

WEIGHT_TOLERANCE = 1e-5  # of the largest filter weight: float32 rounding of cos/sin times a window is ~6e-8
MIN_SIZE = 16  # frame lengths below this leave too few butterflies to beat the GEMM
MIN_CHANNELS = 8
LANES = 4  # frames per transform: one per f32x4 lane

REAL, IMAG = 0, 1


@dataclass(frozen=True, eq=False)
class StftPlan:
    """One convolution as FFTs: the frame geometry, the window, and which bin and part each channel reads."""

    batch: int
    signal: int  # L: input samples per sample of the batch
    size: int  # N: the frame length (the kernel), a power of two
    hop: int  # the stride
    frames: int  # T: output positions
    window: np.ndarray = field(repr=False)  # float32 [N]
    channels: tuple[tuple[int, int, float], ...]  # per output channel: (bin, REAL | IMAG, sign)

    @property
    def half(self) -> int:
        """M = N/2: the complex FFT's size."""
        return self.size // 2

    @property
    def stages(self) -> int:
        return self.half.bit_length() - 1

    @property
    def scratch_bytes(self) -> int:
        """The FFT's M complex values and the spectrum's M + 1, each re and im as one v128 of 4 frames."""
        return (2 * self.half + 1) * 2 * 16

    def bit_reversed(self) -> np.ndarray:
        """rev[e]: the sample pair that lands at FFT position e (the radix-2 input order)."""
        bits = self.stages
        return np.array([int(format(e, f"0{bits}b")[::-1], 2) if bits else 0 for e in range(self.half)])

    def twiddles(self, half_span: int) -> np.ndarray:
        """exp(-2 pi i m / (2 half_span)) for m < half_span, as float32 [half_span, 2]: a stage's butterflies."""
        angle = -2 * np.pi * np.arange(half_span) / (2 * half_span)
        return np.stack([np.cos(angle), np.sin(angle)], axis=1).astype(np.float32)

    def split_twiddles(self) -> np.ndarray:
        """exp(-2 pi i k / N) for k <= M, float32 [M + 1, 2]: what joins the even and odd samples' spectra."""
        angle = -2 * np.pi * np.arange(self.half + 1) / self.size
        return np.stack([np.cos(angle), np.sin(angle)], axis=1).astype(np.float32)


def _layouts(channels: int, size: int) -> list[tuple[tuple[int, int, float], ...]]:
    """The channel layouts exporters write: (bin, part, sign) per channel."""
    layouts = []
    if channels <= size:
        layouts += [tuple((f, part, 1.0) for f in range(channels)) for part in (REAL, IMAG)]
    if channels % 2 == 0 and channels // 2 <= size:
        bins = channels // 2
        layouts += [tuple((f, REAL, 1.0) for f in range(bins)) + tuple((f, IMAG, sign) for f in range(bins))
                    for sign in (1.0, -1.0)]
    return layouts


def fit_stft(weights: np.ndarray) -> tuple[np.ndarray, tuple[tuple[int, int, float], ...]] | None:
    """(window, channels) where the filters [C, N] are a window times DFT rows in one of the layouts; else None."""
    channels, size = weights.shape
    w = weights.astype(np.float64)
    scale = float(np.abs(w).max())
    if scale == 0 or not np.isfinite(scale):
        return None
    angle = 2 * np.pi * np.outer(np.arange(size), np.arange(size)) / size
    parts = (np.cos(angle), -np.sin(angle))  # real and imaginary parts of exp(-i angle)
    for layout in _layouts(channels, size):
        basis = np.stack([sign * parts[part][f] for f, part, sign in layout])
        norm = (basis * basis).sum(axis=0)
        # Least squares per tap; a tap every row ignores (sin at k = 0) gets window 0, which nothing reads.
        window = np.where(norm > 1e-9, (w * basis).sum(axis=0) / np.maximum(norm, 1e-9), 0.0)
        if np.abs(w - window * basis).max() <= WEIGHT_TOLERANCE * scale:
            return window.astype(np.float32), layout
    return None


def stft_plan(x_shape: tuple[int, ...], weights: np.ndarray | None, strides: tuple[int, ...],
              dilations: tuple[int, ...], pads: tuple[int, ...], groups: int, frames: int) -> StftPlan | None:
    """The FFT plan of a 1-D, one-input-channel, unpadded, undilated Conv whose constant filters are a windowed
    DFT (module docstring); None where the conv is anything else."""
    if weights is None or len(x_shape) != 3 or x_shape[1] != 1 or groups != 1 or weights.ndim != 3:
        return None
    channels, _, size = weights.shape
    if (size < MIN_SIZE or size & (size - 1) or channels < MIN_CHANNELS or dilations != (1,) or any(pads)
            or frames < 1):
        return None
    fitted = fit_stft(weights.reshape(channels, size))
    if fitted is None:
        return None
    window, layout = fitted
    return StftPlan(int(x_shape[0]), int(x_shape[2]), size, int(strides[0]), frames, window, layout)


def frame_groups(plan: StftPlan) -> tuple[int, int]:
    """(full groups of LANES frames, frames in the last partial group)."""
    return plan.frames // LANES, plan.frames % LANES


__all__ = ["IMAG", "LANES", "REAL", "StftPlan", "fit_stft", "frame_groups", "stft_plan"]
