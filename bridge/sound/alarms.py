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


# -- earcons: one short sound per fault (docs/alarms.md). Unlike the voices (pure sines), each has
# harmonics, a sweep or noise, and each says its fault: up for divergence, down for vanishing.
EARCON_AMPLITUDE = 0.3
TICK_AMPLITUDE = 0.08
#: How far the voices are turned down while an earcon (and its speech) plays: never masked by them.
DUCK_GAIN = 0.2


def _tone(f0: np.ndarray, sample_rate: int, harmonics: tuple[float, ...] = (1.0,)) -> np.ndarray:
    """A (possibly sweeping) tone following the per-sample frequency ``f0``, with harmonic weights."""
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    return sum((w * np.sin((k + 1) * phase) for k, w in enumerate(harmonics)), np.zeros(len(f0)))


def _env(n: int, attack: float, sample_rate: int, decay: float | None = None) -> np.ndarray:
    """Linear attack of ``attack`` s, then flat (or exponential decay with time constant ``decay`` s), 5 ms release."""
    t = np.arange(n) / sample_rate
    e = np.minimum(1.0, t / max(attack, 1e-4))
    if decay is not None:
        e = e * np.exp(-np.maximum(t - attack, 0.0) / decay)
    r = min(n, int(0.005 * sample_rate))
    e[n - r:] *= np.linspace(1.0, 0.0, r)
    return e


def _sweep(f_from: float, f_to: float, seconds: float, sample_rate: int) -> np.ndarray:
    n = int(seconds * sample_rate)
    return np.geomspace(f_from, f_to, n)


def _norm(x: np.ndarray, amplitude: float) -> np.ndarray:
    peak = float(np.abs(x).max())
    return (x * (amplitude / peak if peak > 0 else 0.0)).astype(np.float32)


def earcon(kind: str, sample_rate: int, amplitude: float = EARCON_AMPLITUDE) -> np.ndarray:
    """The short mono sound of an alarm or tick ``kind`` (docs/alarms.md has what each sounds like and why).

    >>> {k: round(len(earcon(k, 48_000)) / 48_000, 2) for k in ("spike", "divergence", "vanishing", "epoch")}
    {'spike': 0.18, 'divergence': 0.3, 'vanishing': 0.35, 'epoch': 0.02}
    >>> all(bool(np.isfinite(earcon(k, 44_100)).all()) for k in EARCON_KINDS)
    True
    """
    sr = sample_rate
    if kind == "nan":
        return alarm_sound(sr, amplitude)
    if kind == "spike":  # a sudden strike, high and bright: something jumped
        n = int(0.18 * sr)
        x = _tone(np.full(n, 2637.0), sr, (1.0, 0.3)) * _env(n, 0.002, sr, 0.04)
    elif kind == "plateau":  # the same flat note twice: nothing moves
        n, gap = int(0.12 * sr), int(0.06 * sr)
        one = _tone(np.full(n, 330.0), sr, (1.0, 0.0, 0.33, 0.0, 0.2)) * _env(n, 0.005, sr)
        x = np.concatenate([one, np.zeros(gap), one])
    elif kind == "divergence":  # a rising sweep: the loss climbs
        f = _sweep(400.0, 1600.0, 0.3, sr)
        x = _tone(f, sr, (1.0, 0.4)) * _env(len(f), 0.01, sr)
    elif kind == "exploding":  # three fast rising chirps: it grows and grows
        f = _sweep(600.0, 2400.0, 0.07, sr)
        one = _tone(f, sr, (1.0, 0.5)) * _env(len(f), 0.003, sr)
        x = np.concatenate([one, np.zeros(int(0.02 * sr))] * 3)[: -int(0.02 * sr)]
    elif kind == "vanishing":  # a falling, fading sweep: it slips away
        f = _sweep(1600.0, 200.0, 0.35, sr)
        x = _tone(f, sr, (1.0, 0.4)) * _env(len(f), 0.01, sr) * np.linspace(1.0, 0.3, len(f))
    elif kind == "dead":  # a low flat buzz: the flat line
        n = int(0.3 * sr)
        x = _tone(np.full(n, 110.0), sr, tuple(1.0 / k if k % 2 else 0.0 for k in range(1, 12))) * _env(n, 0.01, sr)
    elif kind == "epoch":  # a soft woodblock click
        n = int(0.02 * sr)
        return _norm(_tone(np.full(n, 1000.0), sr) * _env(n, 0.001, sr, 0.004), TICK_AMPLITUDE)
    elif kind == "lr":  # two soft high clicks
        n = int(0.02 * sr)
        one = _tone(np.full(n, 2000.0), sr) * _env(n, 0.001, sr, 0.004)
        return _norm(np.concatenate([one, np.zeros(int(0.04 * sr)), one]), TICK_AMPLITUDE)
    else:
        raise ValueError(f"no earcon for alarm kind {kind!r}")
    return _norm(x, amplitude)


#: Context ticks: soft, and the voices are not ducked under them.
TICK_KINDS = ("epoch", "lr")
EARCON_KINDS = ("spike", "plateau", "divergence", "exploding", "vanishing", "dead", "nan", *TICK_KINDS)


def duck_envelope(n: int, start: int, spans: list[tuple[int, int]], gain: float = DUCK_GAIN,
                  ramp: int = 480) -> np.ndarray:
    """The voices' gain over samples ``start..start+n``: ``gain`` inside each ``(from, to)`` span, 1 outside,
    with linear ramps of ``ramp`` samples around each span, so ducking never clicks.

    >>> e = duck_envelope(10, 0, [(3, 6)], gain=0.5, ramp=2)
    >>> [round(float(v), 2) for v in e]
    [1.0, 1.0, 0.75, 0.5, 0.5, 0.5, 0.5, 0.75, 1.0, 1.0]
    """
    t = np.arange(start, start + n, dtype=np.float64)
    env = np.ones(n)
    for a, b in spans:
        depth = np.clip(np.minimum(t - (a - ramp), (b + ramp) - t) / ramp, 0.0, 1.0)
        env = np.minimum(env, 1.0 - (1.0 - gain) * depth)
    return env.astype(np.float32)
