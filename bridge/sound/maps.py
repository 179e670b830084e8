"""Pure maps from values to sound: the pitch map, stereo positions, the output limiter.

>>> pitch_hz(0.0), pitch_hz(1.0), round(pitch_hz(0.5), 2)
(110.0, 3520.0, 622.25)
"""

from __future__ import annotations

import math

import numpy as np

#: Mix level up to which the limiter is exactly linear.
LIMIT_KNEE = 0.9
#: The continuous pitch map: ``DEFAULT_FMIN·2^(DEFAULT_OCTAVES·norm)`` Hz.
DEFAULT_FMIN = 110.0
DEFAULT_OCTAVES = 5.0


def pitch_hz(norm: float, fmin: float = DEFAULT_FMIN, octaves: float = DEFAULT_OCTAVES) -> float:
    """The continuous mode's pitch map: ``fmin·2^(octaves·norm)``, ``norm`` clamped to 0..1."""
    return fmin * 2.0 ** (octaves * min(max(norm, 0.0), 1.0))


def norm_from_hz(hz: float, fmin: float = DEFAULT_FMIN, octaves: float = DEFAULT_OCTAVES) -> float:
    """Inverse of :func:`pitch_hz` (what a listener's ear — or a pitch tracker — recovers).

    >>> round(norm_from_hz(pitch_hz(0.3)), 9)
    0.3
    """
    return math.log2(hz / fmin) / octaves


def soft_limit(x: np.ndarray, knee: float = LIMIT_KNEE) -> np.ndarray:
    """Identity below ``knee``, a tanh knee above it: never beyond ±1, odd (no DC), in place.

    >>> soft_limit(np.array([0.5, -0.95, 1.2]))
    array([ 0.5       , -0.94621172,  0.99950548])
    """
    if x.size == 0 or (x.max() <= knee and x.min() >= -knee):  # the usual case: two reductions, no copies
        return x
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
