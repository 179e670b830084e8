"""A vectorised bank of sine voices: phase-continuous, click-free, no per-sample Python.

Every voice is a sinusoid with a frequency, a gain and a stereo position.
Parameter changes take effect at the start of the next rendered block and are
*ramped* over that block (``block`` samples, 256 at 48 kHz ≈ 5 ms):

- a gain change is a linear gain ramp;
- a frequency change is an equal-phase crossfade: the old partial fades out
  while the new one fades in, with the new phase chosen so that both agree at
  the middle of the ramp. For the small steps of a slowly moving value this is
  indistinguishable from a glide; for big jumps it is a 5 ms legato. Either way
  the waveform and its envelope stay continuous: no clicks.

Rendering is separable, so its cost is a matrix product instead of one
``sin`` per voice and sample: with ``n = k·L + l``,
``sin(ω n + φ) = sin(ω L k + φ)·cos(ω l) + cos(ω L k + φ)·sin(ω l)``, hence
the sum over voices of a block of ``K·L`` samples is one ``(K × 2P) @ (2P × 2L)``
product (``P`` partials, two channels), with only ``(K + L)·P`` trig calls.
Phases are kept in float64 (wrapped to ``[0, 2π)``); the products run in float32.

Also here: one-shot samples (alarm, activation-spectrum sounds) mixed in at a
sample position, a master gain (ramped like the voices) and a soft limiter.

>>> bank = VoiceBank(48_000, block=256)
>>> v = bank.add_voice(pan=0.0)
>>> bank.set(v, freq=1000.0, gain=0.5)
>>> x = bank.render(188)          # ≈ 1 s
>>> x.shape, x.dtype
((48128, 2), dtype('float32'))
>>> bool(np.isfinite(x).all()), round(float(np.abs(x).max()), 2)
(True, 0.35)
"""

from __future__ import annotations

import functools
import logging
import math

import numpy as np

log = logging.getLogger(__name__)

TWO_PI = 2.0 * math.pi
#: Mix level up to which the limiter is exactly linear.
LIMIT_KNEE = 0.9
#: Frequencies are kept below this fraction of the sample rate (no aliasing).
MAX_FREQ_FRACTION = 0.45


def soft_limit(x: np.ndarray, knee: float = LIMIT_KNEE) -> np.ndarray:
    """Identity below ``knee``, a tanh knee above it: never beyond ±1, odd (no DC), in place.

    >>> soft_limit(np.array([0.5, -0.95, 1.2]))
    array([ 0.5       , -0.94621172,  0.99950548])
    """
    a = np.abs(x)
    over = a > knee
    if over.any():
        head = 1.0 - knee
        x[over] = np.sign(x[over]) * (knee + head * np.tanh((a[over] - knee) / head))
    return x


def pan_gains(pan: float) -> tuple[float, float]:
    """Constant-power left/right gains for ``pan`` in -1 (left) … +1 (right).

    >>> [round(g, 3) for g in pan_gains(0.0)]
    [0.707, 0.707]
    """
    p = min(max(pan, -1.0), 1.0)
    angle = (p + 1.0) * math.pi / 4.0
    return math.cos(angle), math.sin(angle)


def run_pan(index: int) -> float:
    """Stereo position of the ``index``-th run: centre, then alternately left/right, spreading out.

    >>> [run_pan(i) for i in range(5)]
    [0.0, -0.6, 0.6, -0.3, 0.3]
    """
    spots = (0.0, -0.6, 0.6, -0.3, 0.3, -0.9, 0.9, -0.45, 0.45, -0.75, 0.75, -0.15, 0.15)
    return spots[index % len(spots)]


def _sum_partials(omega: np.ndarray, phase: np.ndarray, a: np.ndarray, b: np.ndarray | None,
                  pan: np.ndarray, length: int) -> np.ndarray:
    """``Σ_p (a_p + b_p·n)·pan_p·sin(ω_p n + φ_p)`` for ``n < length`` → ``(length, 2)`` float32.

    ``length`` must be a power-of-two multiple of 16 or a multiple of the chosen
    sub-length; the split ``n = k·L + l`` makes the sum one matrix product.
    """
    sub = 16
    while sub * sub * 4 <= length and length % (sub * 2) == 0:
        sub *= 2
    k_rows = length // sub
    arg_a = np.multiply.outer(np.arange(k_rows, dtype=np.float64) * sub, omega)
    arg_a += phase
    np.remainder(arg_a, TWO_PI, out=arg_a)
    arg_a32 = arg_a.astype(np.float32)
    sin_a, cos_a = np.sin(arg_a32), np.cos(arg_a32)
    arg_e = np.multiply.outer(np.arange(sub, dtype=np.float64), omega).astype(np.float32)
    sin_e, cos_e = np.sin(arg_e), np.cos(arg_e)
    # Right factor: rows = [cos part; sin part] of the partials, columns = (channel, l).
    p = len(omega)
    pan32 = pan.astype(np.float32)[:, :, None]
    right3 = np.empty((2 * p, 2, sub), np.float32)
    np.multiply(cos_e.T[:, None, :], pan32, out=right3[:p])
    np.multiply(sin_e.T[:, None, :], pan32, out=right3[p:])
    right = right3.reshape(2 * p, 2 * sub)
    alpha = np.broadcast_to(a.astype(np.float32), (k_rows, p)).copy()
    if b is not None:
        alpha += np.multiply.outer(np.arange(k_rows, dtype=np.float32) * sub, b.astype(np.float32))
    left = np.concatenate([alpha * sin_a, alpha * cos_a], axis=1)
    res = left @ right  # (K, 2·sub)
    if b is not None:
        left2 = np.concatenate([sin_a * b.astype(np.float32), cos_a * b.astype(np.float32)], axis=1)
        res += (left2 @ right) * np.tile(np.arange(sub, dtype=np.float32), 2)
    return res.reshape(k_rows, 2, sub).transpose(0, 2, 1).reshape(length, 2)


@functools.cache
def limit_blas_threads() -> None:
    """Run BLAS single-threaded in this process (once).

    The products here are small; on a busy 2-core machine OpenBLAS's thread pool
    made them 20× *slower* (measured), and threads fighting the audio callback
    for CPU cause underruns. Uses threadpoolctl when installed.
    """
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    except ImportError:
        log.debug("threadpoolctl not installed: BLAS keeps its default thread count")
        return
    threadpool_limits(1, user_api="blas")


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


class VoiceBank:
    """Sine voices plus one-shot samples, rendered block by block into stereo float32."""

    def __init__(self, sample_rate: int, block: int = 256, capacity: int = 16) -> None:
        if block % 16:
            raise ValueError(f"block must be a multiple of 16, got {block}")
        self.sr = int(sample_rate)
        self.block = int(block)
        self.n = 0
        self._omega = np.zeros(capacity)  # current, rad/sample
        self._phase = np.zeros(capacity)
        self._gain = np.zeros(capacity)
        self._t_omega = np.zeros(capacity)  # targets
        self._t_gain = np.zeros(capacity)
        self._pan = np.zeros((capacity, 2))
        self.master = 1.0
        self._t_master = 1.0
        self.position = 0
        """Samples rendered so far."""
        self._shots: list[tuple[int, np.ndarray]] = []
        self.max_freq = MAX_FREQ_FRACTION * self.sr
        limit_blas_threads()

    # -- voices ------------------------------------------------------------
    def add_voice(self, pan: float = 0.0) -> int:
        """A new silent voice; returns its index."""
        if self.n == len(self._omega):
            grow = len(self._omega)
            for name in ("_omega", "_phase", "_gain", "_t_omega", "_t_gain"):
                setattr(self, name, np.concatenate([getattr(self, name), np.zeros(grow)]))
            self._pan = np.concatenate([self._pan, np.zeros((grow, 2))])
        i = self.n
        self._pan[i] = pan_gains(pan)
        self.n += 1
        return i

    def set(self, voice: int, *, freq: float | None = None, gain: float | None = None) -> None:
        """New targets for a voice; they are reached by a ramp over the next block."""
        if freq is not None:
            f = min(max(freq, 1.0), self.max_freq)
            w = TWO_PI * f / self.sr
            if self._gain[voice] == 0.0 and self._t_gain[voice] == 0.0:
                self._omega[voice] = w  # silent: no need to glide from the old pitch
            self._t_omega[voice] = w
        if gain is not None:
            self._t_gain[voice] = max(0.0, gain)

    def set_master(self, gain: float) -> None:
        self._t_master = gain

    def freq(self, voice: int) -> float:
        """The voice's target frequency in Hz."""
        return float(self._t_omega[voice] * self.sr / TWO_PI)

    def gain(self, voice: int) -> float:
        return float(self._t_gain[voice])

    def play(self, samples: np.ndarray, at: int | None = None) -> None:
        """Mix a one-shot ``(n, 2)`` (or mono) float sample in from sample ``at`` (default: next block)."""
        x = np.asarray(samples, np.float32)
        if x.ndim == 1:
            x = np.repeat(x[:, None], 2, axis=1) * np.float32(math.sqrt(0.5))
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        self._shots.append((self.position if at is None else max(int(at), self.position), x))

    def silence(self) -> None:
        """Fade every voice out over the next block."""
        self._t_gain[: self.n] = 0.0

    @property
    def active(self) -> int:
        return int(np.count_nonzero(self._t_gain[: self.n]))

    # -- rendering ---------------------------------------------------------
    def render(self, blocks: int) -> np.ndarray:
        """The next ``blocks`` blocks as ``(blocks·block, 2)`` float32 in -1..1."""
        size = self.block
        total = blocks * size
        out = np.zeros((total, 2), np.float32)
        if blocks <= 0:
            return out
        n = self.n
        if n:
            self._render_voices(out, n)
        self._mix_shots(out)
        self._apply_master(out)
        soft_limit(out)
        self.position += total
        return out

    def _render_voices(self, out: np.ndarray, n: int) -> None:
        size = self.block
        w0, w1 = self._omega[:n], self._t_omega[:n]
        g0, g1 = self._gain[:n], self._t_gain[:n]
        ph = self._phase[:n]
        pan = self._pan[:n]
        moved = w0 != w1
        live = (g0 > 0) | (g1 > 0)
        # First block: ramps. Steady voices (same ω) ramp their gain; voices that
        # change pitch crossfade an old partial out and a new one in.
        keep = live & ~moved
        cross = live & moved
        ph_new = ph.copy()
        ph_new[cross] = ph[cross] + (w0[cross] - w1[cross]) * (size / 2)
        omegas = [w0[keep], w0[cross], w1[cross]]
        phases = [ph[keep], ph[cross], ph_new[cross]]
        a = [g0[keep], g0[cross], np.zeros(int(cross.sum()))]
        b = [(g1[keep] - g0[keep]) / size, -g0[cross] / size, g1[cross] / size]
        pans = [pan[keep], pan[cross], pan[cross]]
        if keep.any() or cross.any():
            out[:size] = _sum_partials(np.concatenate(omegas), np.concatenate(phases), np.concatenate(a),
                                       np.concatenate(b), np.concatenate(pans), size)
        # The voice's running phase continues from the new partial.
        ph_new = np.remainder(ph_new + w1 * size, TWO_PI)
        rest = len(out) - size
        on = g1 > 0
        if rest and on.any():
            out[size:] = _sum_partials(w1[on], ph_new[on], g1[on], None, pan[on], rest)
        self._phase[:n] = np.remainder(ph_new + w1 * rest, TWO_PI)
        self._omega[:n] = w1
        self._gain[:n] = g1

    def _mix_shots(self, out: np.ndarray) -> None:
        if not self._shots:
            return
        start, end = self.position, self.position + len(out)
        keep: list[tuple[int, np.ndarray]] = []
        for at, x in self._shots:
            lo, hi = max(at, start), min(at + len(x), end)
            if hi > lo:
                out[lo - start:hi - start] += x[lo - at:hi - at]
            if at + len(x) > end:
                keep.append((at, x))
        self._shots = keep

    def _apply_master(self, out: np.ndarray) -> None:
        m0, m1 = self.master, self._t_master
        if m0 == m1:
            if m0 != 1.0:
                out *= np.float32(m0)
            return
        size = min(self.block, len(out))
        ramp = np.linspace(m0, m1, size, endpoint=False, dtype=np.float32)
        out[:size] *= ramp[:, None]
        out[size:] *= np.float32(m1)
        self.master = m1
