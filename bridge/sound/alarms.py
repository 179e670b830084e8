"""The alarm's sounds: band-limited noise bursts, unlike any voice (all voices are pure sines)."""

from __future__ import annotations

import numpy as np

ALARM_BAND_HZ = (1500.0, 5000.0)
ALARM_BURSTS = 3
ALARM_BURST_S = 0.06
ALARM_PERIOD_S = 0.1
ALARM_SEED = 0x7A11


def band_noise(n: int, sample_rate: int, band: tuple[float, float] = ALARM_BAND_HZ,
               seed: int = ALARM_SEED) -> np.ndarray:
    """Deterministic noise band-limited to ``band`` (FFT mask), zero mean, peak 1.

    >>> x = band_noise(4800, 48_000)
    >>> float(np.abs(x).max()), abs(float(x.mean())) < 1e-3
    (1.0, True)
    """
    spec = np.fft.rfft(np.random.default_rng(seed).standard_normal(max(n, 2)))
    f = np.fft.rfftfreq(max(n, 2), 1.0 / sample_rate)
    spec[(f < band[0]) | (f > band[1])] = 0.0
    x = np.fft.irfft(spec, max(n, 2))[:n]
    x -= x.mean()
    peak = np.abs(x).max()
    return (x / peak if peak > 0 else x).astype(np.float32)


def alarm_sound(sample_rate: int, amplitude: float = 0.3) -> np.ndarray:
    """The NaN/Inf alarm: three 60 ms bursts of 1.5–5 kHz noise, 100 ms apart (mono, 0.26 s).

    Noise is unlike any voice (all voices are pure sines), has no DC and needs
    no pitch: it says "not a number" whatever the mapping.

    >>> a = alarm_sound(48_000)
    >>> len(a), round(float(np.abs(a).max()), 2), bool(np.isfinite(a).all())
    (12480, 0.3, True)
    """
    burst = int(ALARM_BURST_S * sample_rate)
    period = int(ALARM_PERIOD_S * sample_rate)
    out = np.zeros(period * (ALARM_BURSTS - 1) + burst, np.float32)
    env = np.hanning(burst).astype(np.float32)
    for i in range(ALARM_BURSTS):
        out[i * period:i * period + burst] += band_noise(burst, sample_rate, seed=ALARM_SEED + i) * env
    peak = np.abs(out).max()
    return out * np.float32(amplitude / peak)


def alarm_slot(n: int, sample_rate: int, amplitude: float) -> np.ndarray:
    """The alarm squeezed into an ``n``-sample slot (a Hann-shaped noise burst; perone's NaN tone).

    >>> s = alarm_slot(441, 44_100, 0.1)
    >>> len(s), float(s[0]), round(float(np.abs(s).max()), 3) <= 0.1
    (441, 0.0, True)
    """
    return band_noise(n, sample_rate) * np.hanning(n).astype(np.float32) * np.float32(amplitude)
