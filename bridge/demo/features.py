"""What a listener hears, measured from the rendered audio alone (never from the numbers sent).

The ``perone`` preset plays each step as 10 ms sine tones, one per layer, then 20 ms of silence
(docs/sound.md); the NaN alarm is a burst of 1.5–5 kHz noise in the tone's slot. So: cut the
sound into its non-silent stretches, cut those into 10 ms slots, and for each slot find the one
sine that explains it best (least squares over a fine log-frequency grid: exact even for a 10 ms
tone of 200 Hz, two cycles, where an FFT peak is smeared). A slot whose best sine explains less
than half its energy is noise: the alarm.

>>> sr = 44_100
>>> n = np.arange(441)
>>> tones = [0.1 * np.sin(2 * np.pi * f * n / sr) for f in (300.0, 450.0)]
>>> x = np.concatenate([tones[0], tones[1], np.zeros(882)] * 3)
>>> f = features(x, sr)
>>> round(f.median_hz), f.alarm_s, f.tones
(368, None, 6)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

#: Length of one of Perone's tones (the preset's documented 10 ms).
SLOT_S = 0.010
#: Silence this long (or longer) separates steps; Perone's gap is 20 ms.
MIN_GAP_S = 0.015
SILENCE = 1e-6
FMIN, FMAX = 40.0, 22_050.0
GRID = 2_400
#: A slot whose best sine explains less than this share of its energy is noise (the alarm).
TONAL = 0.5



@dataclass(frozen=True)
class Features:
    """Per-run audio features.

    Attributes:
        median_hz: median pitch of all tones.
        trend_oct_per_10s: slope of log2(pitch) against time, in octaves per 10 s (rising > 0).
        spread_oct: interquartile range of log2(pitch), in octaves (how much the pitch moves).
        peak_hz: highest pitch heard (after aliasing, which Perone's formula allows).
        range_oct: log2(highest / lowest pitch): the widest leap, explosions included.
        alarm_s: time of the first alarm (noise) slot, seconds from the start; ``None`` if none.
        tones: number of tonal slots; alarms: number of noise slots.
    """

    median_hz: float
    trend_oct_per_10s: float
    spread_oct: float
    peak_hz: float
    range_oct: float
    alarm_s: float | None
    tones: int
    alarms: int

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[(start, end)]`` of the True stretches of ``mask``."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def segments(x: np.ndarray, sr: int) -> list[tuple[int, int]]:
    """Non-silent stretches, split at silences of at least ``MIN_GAP_S`` (shorter quiet is kept)."""
    quiet = np.abs(x) <= SILENCE
    gap = int(MIN_GAP_S * sr)
    loud = np.ones_like(quiet)
    for a, b in _runs(quiet):
        if b - a >= gap:
            loud[a:b] = False
    return _runs(loud)


def _basis(n: int, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    freqs = np.geomspace(FMIN, FMAX, GRID)
    t = np.arange(n) / sr
    s = np.sin(2 * np.pi * freqs[:, None] * t)
    c = np.cos(2 * np.pi * freqs[:, None] * t)
    # Per frequency, the inverse Gram matrix of (sin, cos): the projection onto their span.
    ss, cc, sc = (s * s).sum(1), (c * c).sum(1), (s * c).sum(1)
    det = np.maximum(ss * cc - sc * sc, 1e-12)
    ginv = np.stack([cc / det, -sc / det, ss / det], axis=1)
    return freqs, s, c, ginv


def slot_pitches(slots: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Best-fitting sine frequency and the share of energy it explains, for each row of ``slots``."""
    freqs, s, c, ginv = _basis(slots.shape[1], sr)
    ps, pc = slots @ s.T, slots @ c.T
    captured = ginv[:, 0] * ps * ps + 2 * ginv[:, 1] * ps * pc + ginv[:, 2] * pc * pc
    best = captured.argmax(axis=1)
    energy = np.maximum((slots * slots).sum(axis=1), 1e-20)
    return freqs[best], captured[np.arange(len(slots)), best] / energy


def features(x: np.ndarray, sr: int) -> Features:
    """Features of mono audio ``x`` rendered in the ``perone`` preset."""
    n = max(1, round(SLOT_S * sr))
    starts: list[int] = []
    for a, b in segments(np.asarray(x, np.float64), sr):
        starts.extend(range(a, b - n // 2, n))
    if not starts:
        return Features(0.0, 0.0, 0.0, 0.0, 0.0, None, 0, 0)
    xp = np.pad(np.asarray(x, np.float64), (0, n))
    slots = np.stack([xp[i : i + n] for i in starts])
    hz, share = slot_pitches(slots, sr)
    times = np.asarray(starts) / sr
    tonal = share >= TONAL
    alarm = ~tonal
    alarm_s = float(times[alarm][0]) if alarm.any() else None
    if not tonal.any():
        return Features(0.0, 0.0, 0.0, 0.0, 0.0, alarm_s, 0, int(alarm.sum()))
    pitch = np.log2(hz[tonal])
    tt = times[tonal]
    trend = float(np.polyfit(tt, pitch, 1)[0] * 10.0) if np.ptp(tt) > 0 else 0.0
    q75, q25 = np.percentile(pitch, [75, 25])
    return Features(
        median_hz=float(2 ** np.median(pitch)),
        trend_oct_per_10s=trend,
        spread_oct=float(q75 - q25),
        peak_hz=float(hz[tonal].max()),
        range_oct=float(pitch.max() - pitch.min()),
        alarm_s=alarm_s,
        tones=int(tonal.sum()),
        alarms=int(alarm.sum()),
    )


def wav_features(path: str | Path) -> Features:
    """Features of a WAV file (mixed to mono)."""
    import soundfile as sf

    x, sr = sf.read(str(path), dtype="float64", always_2d=True)
    return features(x.mean(axis=1), int(sr))


# -- telling runs apart ---------------------------------------------------------------------
#: Smallest differences a listener can be told to listen for.
MIN_MEDIAN_RATIO = 2 ** (1 / 12)  # a semitone
MIN_TREND = 0.05  # octaves per 10 s
MIN_SPREAD = 0.1  # octaves


def tells_apart(a: Features, b: Features) -> str | None:
    """The first feature by which ``a`` and ``b`` differ audibly, or ``None`` if none does.

    >>> f = Features(300.0, 0.0, 0.5, 800.0, 2.0, None, 10, 0)
    >>> tells_apart(f, f) is None
    True
    >>> tells_apart(f, Features(300.0, 0.0, 0.5, 800.0, 2.0, 1.5, 10, 3))
    'alarm'
    """
    if (a.alarm_s is None) != (b.alarm_s is None):
        return "alarm"
    lo, hi = sorted((a.median_hz, b.median_hz))
    if lo > 0 and hi / lo >= MIN_MEDIAN_RATIO:
        return "median pitch"
    if abs(a.trend_oct_per_10s - b.trend_oct_per_10s) >= MIN_TREND:
        return "pitch trend"
    if abs(a.spread_oct - b.spread_oct) >= MIN_SPREAD:
        return "pitch spread"
    return None


def format_table(rows: dict[str, Features]) -> str:
    """A plain-text (and Markdown) table of features per run.

    >>> print(format_table({"r": Features(300.0, 0.1, 0.5, 800.0, 2.0, None, 10, 0)}))
    | run | median pitch | trend | spread | peak | range | alarm |
    |---|---|---|---|---|---|---|
    | r | 300 Hz | +0.10 oct/10 s | 0.50 oct | 800 Hz | 2.0 oct | — |
    """
    lines = [
        "| run | median pitch | trend | spread | peak | range | alarm |",
        "|---|---|---|---|---|---|---|",
    ]
    for run, f in rows.items():
        alarm = "—" if f.alarm_s is None else f"at {f.alarm_s:.2f} s"
        lines.append(
            f"| {run} | {f.median_hz:.0f} Hz | {f.trend_oct_per_10s:+.2f} oct/10 s | {f.spread_oct:.2f} oct | "
            f"{f.peak_hz:.0f} Hz | {f.range_oct:.1f} oct | {alarm} |"
        )
    return "\n".join(lines)
