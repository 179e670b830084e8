"""Musical scales and value scaling: pure functions with examples.

>>> quantize(61.4, "major", root=0)
62
>>> quantize(60.9, "minor", root=9)
60
>>> quantize(63, "pentatonic")
62
>>> round(log_scale(1e-2, 1e-4, 1e2), 6)
0.333333
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

ScaleName = Literal["chromatic", "major", "minor", "pentatonic", "minor_pentatonic", "whole_tone", "blues"]

SCALES: dict[str, tuple[int, ...]] = {
    "chromatic": tuple(range(12)),
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "pentatonic": (0, 2, 4, 7, 9),
    "minor_pentatonic": (0, 3, 5, 7, 10),
    "whole_tone": (0, 2, 4, 6, 8, 10),
    "blues": (0, 3, 5, 6, 7, 10),
}
#: An auto range recomputes its percentiles every this many values (and for each of its first ones).
_AUTO_REFRESH = 16
#: The auto range's first guess of a stream's spread: one decade (before two values differ).
AUTO_FIRST_SPAN = 1.0
#: Room a steady trend needs before the edge it heads for (log streams, decades): a loss falling three
#: decades ends ~2 % above the floor, still moving.
AUTO_TREND_ROOM = 0.75
#: The slope never falls below this share of the window's spread-to-range slope.
AUTO_MIN_SLOPE = 0.1
#: Share of the range left free at either edge by the ideal (percentile) map.
AUTO_EDGE = 0.02
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def quantize(pitch: float, scale: str = "chromatic", root: int = 0) -> int:
    """Nearest MIDI note of ``scale`` (rooted at pitch class ``root``); ties go down."""
    degrees = SCALES[scale]
    base = math.floor(pitch)
    best, best_d = base, math.inf
    for cand in range(base - 6, base + 7):
        if (cand - root) % 12 in degrees:
            d = abs(cand - pitch)
            if d < best_d:
                best, best_d = cand, d
    return best


def linear_scale(x: float, lo: float, hi: float) -> float:
    """Map ``x`` from ``[lo, hi]`` to ``[0, 1]`` (not clamped).

    >>> linear_scale(5, 0, 10)
    0.5
    """
    return (x - lo) / (hi - lo)


def log_scale(x: float, lo: float, hi: float) -> float:
    """Map ``x`` from ``[lo, hi]`` to ``[0, 1]`` on a log axis; ``x <= 0`` maps to ``-inf``-like 0 side."""
    if x <= 0.0:
        return -math.inf
    return (math.log10(x) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))


def midi_to_hz(note: float) -> float:
    """Equal-tempered frequency of a (fractional) MIDI note.

    >>> midi_to_hz(69)
    440.0
    """
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


def parse_root(root: str | int) -> int:
    """Pitch class from a name or number.

    >>> parse_root("A")
    9
    """
    if isinstance(root, int):
        return root % 12
    return NOTE_NAMES.index(root.upper())


@dataclass
class AutoRange:
    """A running range that never turns a monotone trend into a constant (docs/mapping.md, "Auto range").

    Each value's position is the previous position moved along a line through the previous value
    (slope: the recent window's spread onto the range, capped, in each direction, so that some more
    travel still fits before that edge: the headroom that keeps a falling loss falling), pulled a little
    (``pull``) towards where the recent window's percentiles would put it, and then held on the
    side of the previous position that the value moved to. So a value lower than the last never
    sounds higher, yet a stationary stream spreads over the range. Works on log10 while every value
    seen is positive (norms and losses span decades).

    >>> a = AutoRange(64, start=0.9)
    >>> codes = [round(a.norm(3.0 * 0.001 ** (i / 499)) * 127) for i in range(500)]
    >>> codes[0], codes[-1], all(x >= y for x, y in zip(codes, codes[1:]))
    (114, 0, True)
    """

    size: int
    start: float = 0.5
    """Where the first value sits (0..1): 0.9 for a stream expected to fall, like a loss."""
    pull: float = 0.1
    window: deque[float] = field(default_factory=deque)
    log: bool = True
    last: float = math.nan
    pos: float = 0.5
    slope: float = 0.0
    drift: float = 0.0
    trend: float = 1.0
    """0 (noise) .. 1 (a steady trend), from the window's halves."""
    since: int = 0
    lo: float = 0.0
    hi: float = 0.0

    def norm(self, x: float) -> float:
        if self.log and x <= 0.0:
            # A non-positive value: from now on this stream is linear.
            self.log = False
            self.window = deque(10.0**v for v in self.window)
            self.last = 10.0**self.last if self.last == self.last else self.last
            self.since = _AUTO_REFRESH
        v = math.log10(x) if self.log else x
        w = self.window
        w.append(v)
        if len(w) > self.size:
            w.popleft()
        self.since += 1
        if self.since >= _AUTO_REFRESH or len(w) <= _AUTO_REFRESH:
            self.since = 0
            s = sorted(w)
            n = len(s)
            self.lo, self.hi = s[int(0.02 * (n - 1))], s[math.ceil(0.98 * (n - 1))]
            self.trend, self.drift = 1.0, w[-1] - w[0]
            if n >= _AUTO_REFRESH and self.hi > self.lo:
                # A trend: the newer half of the window sits apart from the older half (noise: it does not).
                half = list(w)
                older, newer = sorted(half[: n // 2]), sorted(half[n // 2 :])
                self.drift = drift = newer[len(newer) // 2] - older[len(older) // 2]
                self.trend = min(1.0, 2.0 * abs(drift) / (self.hi - self.lo))
        if self.last != self.last:  # the first value
            p = self.start
        else:
            p = self.pos + self.slope * (v - self.last)
            if self.hi > self.lo:
                ideal = AUTO_EDGE + (1.0 - 2 * AUTO_EDGE) * (v - self.lo) / (self.hi - self.lo)
                p += self.pull * (1.0 - abs(self.trend)) * (ideal - p)
            # Never against the value's direction: lower value, lower (or equal) position.
            if v < self.last:
                p = min(p, self.pos)
            elif v > self.last:
                p = max(p, self.pos)
            else:
                p = self.pos
        p = min(max(p, 0.0), 1.0)
        spread = self.hi - self.lo
        if spread <= 0.0:
            spread = AUTO_FIRST_SPAN if self.log else max(abs(v), 1.0)
        base = (1.0 - 2 * AUTO_EDGE) / spread
        # Noise: the window's spread onto the range. A trend: capped so that some more travel (a decade
        # or so) still fits before the edge it heads for, and never quite flat, so no edge holds it for good.
        room = AUTO_TREND_ROOM if self.log else spread
        edge = p if self.drift < 0 else 1.0 - p
        trend_slope = max(AUTO_MIN_SLOPE * min(base, 1.0 / room), min(base, edge / room))
        self.slope = (1.0 - self.trend) * base + self.trend * trend_slope
        self.last, self.pos = v, p
        return p
