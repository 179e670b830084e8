"""Activation spectra → sound (netsounds, done right).

An ``activation_spectrum`` blob holds magnitudes, lowest frequency first. Each
becomes a short sound by inverse FFT and overlap-add:

- the ``K`` magnitudes are spread over FFT bins between ``fmin`` and ``fmax``
  on a log-frequency axis (so low bins are not crushed into a few Hz);
- every frame is windowed (Hann, hop N/4: the windows sum to a constant, so
  overlap-add has no frame-rate ripple) — netsounds had no window and no OLA;
- phases start at Schroeder's low-crest values and advance between frames by
  each bin's own frequency × hop, so frames continue each other's sinusoids
  instead of restarting at zero phase (netsounds' per-frame clicks);
- the sound fades in and out (raised cosine) and is scaled by its *peak* to
  the requested level: no min-max shift, hence no DC offset (netsounds'
  per-filter min-max scaling moved every signal off zero).

>>> x = spectrum_sound(np.ones(32, np.float32), 48_000)
>>> len(x), round(float(np.abs(x).max()), 3), abs(float(x.mean())) < 1e-3
(12000, 0.25, True)
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

FRAME = 1024
HOP = FRAME // 4
FMIN = 100.0
FMAX = 4000.0
SECONDS = 0.25
LEVEL = 0.25
FADE_FRACTION = 0.1


def decode_blob(blob: bytes) -> np.ndarray:
    """float32 little-endian magnitudes; non-finite or negative ones count as 0.

    >>> decode_blob(np.array([1.0, np.nan, -2.0], "<f4").tobytes())
    array([1., 0., 0.], dtype=float32)
    """
    m = np.frombuffer(blob, "<f4").astype(np.float32)
    return np.where(np.isfinite(m) & (m > 0), m, np.float32(0.0))


def bin_magnitudes(mags: np.ndarray, sample_rate: int, frame: int = FRAME, fmin: float = FMIN,
                   fmax: float = FMAX) -> np.ndarray:
    """Spread ``K`` magnitudes over the rfft bins of ``frame`` between ``fmin`` and ``fmax`` (log axis)."""
    nbins = frame // 2 + 1
    f = np.fft.rfftfreq(frame, 1.0 / sample_rate)
    out = np.zeros(nbins)
    inside = (f >= fmin) & (f <= min(fmax, 0.45 * sample_rate))
    if len(mags) == 0 or not inside.any():
        return out
    # Position of each FFT bin on the blob's index axis (0 … K-1), log-spaced in frequency.
    pos = (np.log(f[inside] / fmin) / math.log(fmax / fmin)) * (len(mags) - 1)
    out[inside] = np.interp(pos, np.arange(len(mags)), mags)
    return out


def schroeder_phases(n: int) -> np.ndarray:
    """Low-crest-factor start phases ``π·k²/n`` (a chord with no initial spike).

    >>> schroeder_phases(4).round(3)
    array([0.   , 0.785, 3.142, 7.069])
    """
    k = np.arange(n, dtype=np.float64)
    return np.pi * k * k / max(n, 1)


def spectrum_sound(mags: np.ndarray, sample_rate: int, *, seconds: float = SECONDS, level: float = LEVEL,
                   fmin: float = FMIN, fmax: float = FMAX, phases: np.ndarray | None = None) -> np.ndarray:
    """One spectrum → ``seconds`` of mono float32 audio with peak ``level`` (silence if all zero)."""
    n_out = round(seconds * sample_rate)
    spec = bin_magnitudes(np.asarray(mags, np.float64), sample_rate, FRAME, fmin, fmax)
    out = np.zeros(n_out, np.float32)
    if n_out == 0 or not spec.any():
        return out
    nbins = len(spec)
    theta0 = schroeder_phases(nbins) if phases is None else phases
    frames = (n_out + FRAME) // HOP + 1
    k = np.arange(nbins)
    # Bin k advances by 2π·k·HOP/FRAME per frame: each frame continues the same sinusoids.
    theta = theta0[None, :] + np.outer(np.arange(frames), 2 * np.pi * k * HOP / FRAME)
    ys = np.fft.irfft(spec[None, :] * np.exp(1j * theta), FRAME, axis=1) * np.hanning(FRAME + 1)[:-1]
    acc = np.zeros((frames + 3) * HOP)
    for j in range(4):  # hop = FRAME/4: four interleaved, non-overlapping layers of frames
        part = ys[j::4].reshape(-1)
        start = j * HOP
        acc[start:start + len(part)] += part[: len(acc) - start]
    # Skip the first frame's fade-in of the OLA itself: start where 4 windows overlap.
    x = acc[FRAME:FRAME + n_out]
    fade = max(1, int(FADE_FRACTION * n_out))
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, fade))
    x[:fade] *= ramp
    x[-fade:] *= ramp[::-1]
    x -= x.mean()  # exact zero mean (the DC bin is already empty; this removes fade rounding)
    peak = np.abs(x).max()
    if peak > 0:
        out[:] = x * (level / peak)
    return out


def render_layer(frames: Iterable[np.ndarray], sample_rate: int, seconds: float = SECONDS,
                 level: float = LEVEL) -> np.ndarray:
    """A layer's successive spectra as one continuous sound (``seconds`` each, 50 % crossfaded).

    >>> x = render_layer([np.ones(8), np.linspace(0, 1, 8)], 48_000)
    >>> len(x), bool(np.isfinite(x).all())
    (18000, True)
    """
    seg = round(seconds * sample_rate)
    half = seg // 2
    parts = [spectrum_sound(m, sample_rate, seconds=seconds, level=level) for m in frames]
    if not parts:
        return np.zeros(0, np.float32)
    out = np.zeros(half * (len(parts) - 1) + seg, np.float32)
    for i, p in enumerate(parts):
        out[i * half:i * half + seg] += p
    return out
