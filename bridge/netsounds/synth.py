"""Activation maps heard as spectrograms: netsounds' idea with the signal processing done right.

netsounds treated a filter's activation map (H × W) as a spectrogram — H frequency bins, W time
frames — and took an inverse FFT of each column: zero phase, no window, frames butted together
(a click at every join), and a min-max scaling that moved the signal off zero. Here:

- **bins**: the map's H rows are interpolated onto the FFT bins between :data:`F_LOW` and
  ``f_high = min(5 kHz, rate/4)`` (row 0 lowest, as netsounds' inverse FFT along H); every other bin
  is 0, so the sound is band-limited and has no DC;
- **frames**: the W columns are interpolated onto as many frames as the duration needs;
- **phase**: each bin's phase is *continued* from frame to frame (advanced by ``2π·k·hop/n_fft``,
  exact for a bin-centred sine), so a steady column is a steady sine, not a buzz at the frame rate;
- **window, overlap-add**: a periodic Hann window on every inverse-FFT frame, 75 % overlap, divided
  by the window's overlap sum (constant: 2 for Hann at hop n_fft/4);
- **normalisation**: each filter's map divided by its own maximum (a loud filter does not bury the
  others; an all-zero filter stays silent), the result peak-normalised to :data:`PEAK` — symmetric,
  no DC shift (netsounds' min-max to [-1, 1] moved silence to -1 whenever the signal was lopsided).

So the audio is band-limited to ``f_high`` plus the spread of a window's main lobe, and Bernstein's
inequality bounds every sample-to-sample step: ``|x[n+1] − x[n]| ≤ 2π·f_max/rate · PEAK`` with
``f_max = f_high + 2·rate/n_fft`` (:func:`max_step`). A click — a discontinuity at a frame join — would
exceed it. Frames are synthesised in blocks of :data:`BLOCK_FRAMES`, so memory stays bounded for long
concatenations.

>>> fft_size(44_100), fft_size(11_025)
(2048, 512)
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

F_LOW = 50.0
F_HIGH = 5000.0
PEAK = 0.9
#: Frames per synthesis block (bounded memory for any length).
BLOCK_FRAMES = 512
#: Duration of the "sum" scheme (all filters of a bank summed), seconds.
SUM_SECONDS = 4.0
#: Per filter in the "concat" scheme, seconds, and the most a bank's concatenation may last.
FILTER_SECONDS = 0.25
MAX_CONCAT_SECONDS = 60.0


def fft_size(rate: int) -> int:
    """The power of two nearest to 46 ms at ``rate`` (about 21.5 Hz bins)."""
    return 1 << round(math.log2(rate * 0.0464))


def f_high(rate: int) -> float:
    return min(F_HIGH, rate / 4)


def max_step(rate: int) -> float:
    """The largest sample-to-sample step a band-limited signal of peak :data:`PEAK` can take (Bernstein)."""
    fmax = f_high(rate) + 2 * rate / fft_size(rate)
    return 2 * math.pi * fmax / rate * PEAK


def normalise_filters(maps: np.ndarray) -> np.ndarray:
    """``(D, H, W)`` maps, each divided by its own maximum of ``|value|`` (all-zero maps stay 0).

    >>> normalise_filters(np.array([[[0.0, 2.0]], [[0.0, 0.0]], [[-1.0, 0.5]]])).tolist()
    [[[0.0, 1.0]], [[0.0, 0.0]], [[1.0, 0.5]]]
    """
    mags = np.abs(maps.astype(np.float32))
    top = mags.reshape(len(mags), -1).max(axis=1)
    top[top == 0] = 1.0
    return mags / top[:, None, None]


def _interp_rows(a: np.ndarray, n: int) -> np.ndarray:
    """Linear interpolation of ``a``'s first axis onto ``n`` points (a single row is held)."""
    if a.shape[0] == 1:
        return np.repeat(a, n, axis=0)
    pos = np.linspace(0, a.shape[0] - 1, n)
    i0 = np.minimum(pos.astype(int), a.shape[0] - 2)
    w = (pos - i0)[:, None]
    return a[i0] * (1 - w) + a[i0 + 1] * w


def to_bins(column_maps: np.ndarray, rate: int) -> tuple[np.ndarray, slice]:
    """``(H, W)`` magnitudes → ``(bins_in_band, W)``: rows onto the bins from F_LOW to f_high."""
    n = fft_size(rate)
    lo, hi = math.ceil(F_LOW * n / rate), math.floor(f_high(rate) * n / rate)
    return _interp_rows(column_maps, hi - lo + 1), slice(lo, hi + 1)


def frames_of(spec: np.ndarray, frames: int) -> np.ndarray:
    """``(bins, W)`` → ``(bins, frames)``, columns linearly interpolated in time."""
    return _interp_rows(spec.T, frames).T


class Synth:
    """Overlap-add inverse-FFT synthesis with continued phase; feed it frames, read samples.

    Phase continues across every :meth:`frames` call, so consecutive spectrograms (the concat
    scheme's filters) join without a click as well.
    """

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.n = fft_size(rate)
        self.hop = self.n // 4
        self.window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(self.n) / self.n)).astype(np.float64)
        self.ola_gain = float(self.window.sum() / self.hop)  # the windows' overlap sum: 2 for Hann at n/4
        self._frame = 0
        self._tail = np.zeros(self.n - self.hop)

    def frames(self, band: np.ndarray, where: slice) -> Iterator[np.ndarray]:
        """Samples for the ``(bins_in_band, F)`` magnitudes ``band`` placed at bins ``where``; yields blocks."""
        k = np.arange(where.start, where.stop, dtype=np.float64)[:, None]
        for b0 in range(0, band.shape[1], BLOCK_FRAMES):
            mags = band[:, b0 : b0 + BLOCK_FRAMES].astype(np.float64)
            count = mags.shape[1]
            idx = self._frame + np.arange(count)[None, :]
            phase = (2 * np.pi * self.hop / self.n) * k * idx
            spec = np.zeros((self.n // 2 + 1, count), np.complex128)
            spec[where] = mags * np.exp(1j * np.mod(phase, 2 * np.pi))
            # irfft scaled so that a bin of magnitude m is a sine of amplitude m
            frames = np.fft.irfft(spec, n=self.n, axis=0) * (self.n / 2) * self.window[:, None]
            out = np.zeros((count - 1) * self.hop + self.n)
            for j in range(count):
                out[j * self.hop : j * self.hop + self.n] += frames[:, j]
            out[: len(self._tail)] += self._tail
            ready = count * self.hop
            self._tail = out[ready:].copy()
            self._frame += count
            yield out[:ready] / self.ola_gain

    def finish(self) -> np.ndarray:
        """The last overlapping samples (the final frame's decay)."""
        tail, self._tail = self._tail / self.ola_gain, np.zeros(self.n - self.hop)
        return tail


def render_bank(maps: np.ndarray, rate: int, scheme: str) -> np.ndarray:
    """One bank's ``(D, H, W)`` activations → float32 mono audio at ``rate``, peak :data:`PEAK`.

    ``sum``: every filter's normalised map summed (averaged) into one spectrogram of
    :data:`SUM_SECONDS`. ``concat``: the filters one after another, each :data:`FILTER_SECONDS`
    (shorter for big banks, so a bank lasts at most :data:`MAX_CONCAT_SECONDS`).
    """
    norm = normalise_filters(maps)
    synth = Synth(rate)
    parts: list[np.ndarray] = []
    if scheme == "sum":
        frames = max(2, round(SUM_SECONDS * rate / synth.hop))
        band, where = to_bins(norm.mean(axis=0), rate)
        parts.extend(synth.frames(frames_of(band, frames), where))
    elif scheme == "concat":
        seconds = min(FILTER_SECONDS, MAX_CONCAT_SECONDS / len(norm))
        frames = max(2, round(seconds * rate / synth.hop))
        for d in range(len(norm)):
            band, where = to_bins(norm[d], rate)
            parts.extend(synth.frames(frames_of(band, frames), where))
    else:
        raise ValueError(f"scheme must be sum or concat, got {scheme!r}")
    parts.append(synth.finish())
    x = np.concatenate(parts)
    top = float(np.abs(x).max())
    return (x * (PEAK / top) if top > 0 else x).astype(np.float32)
