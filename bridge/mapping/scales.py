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
