"""Synthesise voices at a lower rate and upsample once: the decimation choice and a streaming polyphase FIR."""

from __future__ import annotations

import numpy as np

#: Highest voice frequency as a fraction of the internal (decimated) rate: the interpolation filter's passband.
PASS_FRACTION = 0.33
#: Internal-rate divisors tried, largest first.
DECIMATIONS = (4, 2)
FIR_TAPS_PER_PHASE = 16
FIR_KAISER_BETA = 8.0


def decimation_for(sample_rate: int, block: int, max_freq: float) -> int:
    """The internal-rate divisor for voices up to ``max_freq`` Hz: 4, 2 or 1.

    Voices are synthesised at ``sample_rate / D`` and upsampled once for the mix;
    ``D`` is the largest factor that keeps ``max_freq`` in the interpolation
    filter's passband (``PASS_FRACTION`` of the internal rate) and the internal
    block a multiple of 16.

    >>> decimation_for(48_000, 256, 3520.0), decimation_for(48_000, 256, 6000.0), decimation_for(48_000, 32, 3520.0)
    (4, 2, 2)
    """
    for d in DECIMATIONS:
        if max_freq <= PASS_FRACTION * sample_rate / d and block % (16 * d) == 0:
            return d
    return 1


def interpolation_filter(factor: int, taps_per_phase: int = FIR_TAPS_PER_PHASE,
                         beta: float = FIR_KAISER_BETA) -> np.ndarray:
    """Kaiser-windowed sinc low-pass for upsampling by ``factor`` (cut-off at the old Nyquist), gain ``factor``.

    Odd length (padded with one zero to ``factor·taps_per_phase``), so its delay is
    a whole number of samples. With ``PASS_FRACTION`` = 0.33 the passband (≤ 0.33
    of the internal rate) is flat within 0.01 dB and every image (≥ 0.67 of it)
    is below -75 dB.

    >>> h = interpolation_filter(4)
    >>> len(h), round(float(h.sum()), 6), float(h[-1])
    (64, 4.0, 0.0)
    """
    n = factor * taps_per_phase - 1
    k = np.arange(n) - (n - 1) / 2.0
    h = np.sinc(k / factor) * np.kaiser(n, beta)
    return np.append(h * (factor / h.sum()), 0.0)


class Upsampler:
    """Streaming polyphase interpolation by an integer factor, state carried across calls.

    One call or many give the same samples (the last ``taps - 1`` input frames are
    kept as history), so block boundaries never click. Cost per *output* sample:
    ``taps_per_phase`` multiply-adds per channel, as one matrix product per call.
    Latency: ``delay`` output samples (the filter's group delay).
    """

    def __init__(self, factor: int, channels: int = 2) -> None:
        h = interpolation_filter(factor)
        self.factor = factor
        self.taps = len(h) // factor
        self.channels = channels
        # Rows of the product: ``taps`` input frames, interleaved channels (a contiguous slice of memory);
        # columns: output phase p, channel c. _h[(t, c), (p, c)] = h[(taps - 1 - t)·factor + p].
        taps_phase = h.reshape(self.taps, factor)[::-1]
        hh = np.zeros((self.taps, channels, factor, channels), np.float32)
        for c in range(channels):
            hh[:, c, :, c] = taps_phase
        self._h = hh.reshape(self.taps * channels, factor * channels)
        self._hist = np.zeros((self.taps - 1, channels), np.float32)
        self.delay = (len(h) - 2) // 2

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``(n, channels)`` at the low rate → ``(n·factor, channels)`` float32."""
        n, ch = x.shape
        z = np.concatenate([self._hist, x.astype(np.float32, copy=False)])
        self._hist = z[n:].copy()
        win = np.lib.stride_tricks.sliding_window_view(z.reshape(-1), self.taps * ch)[::ch]  # (n, taps·ch)
        return (win @ self._h).reshape(n * self.factor, ch)
