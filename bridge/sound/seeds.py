"""The seeds' formulas, exactly, in one place: C. Perone's sequenced gradient tones and soNNify's loss sine.

- Perone: per training step, each layer's 10 ms sine at ``200 + 100·norm`` Hz, amplitude 0.1, in layer
  order, then 20 ms of silence, at 44.1 kHz; clocked by steps, not by wall time.
- soNNify: the loss as one sine at ``200 + loss/first_loss·800`` Hz up to the first loss (the seed's
  formula); above it, where the seed clamped at 1000 Hz, one octave up per tenfold rise of the loss, up
  to 4000 Hz, so a diverging run is heard rising; ``val_loss`` instead of the loss once a run reports one.

>>> perone_hz(2.5)
450.0
>>> sonnify_hz(0.5, 2.0), sonnify_hz(2.0, 2.0), sonnify_hz(20.0, 2.0), sonnify_hz(1e6, 2.0)
(400.0, 1000.0, 2000.0, 4000.0)
"""

from __future__ import annotations

import math

import numpy as np

from ..wire.protocol import Event
from .alarms import alarm_slot

PERONE_SAMPLE_RATE = 44_100
PERONE_TONE_S = 0.010
PERONE_GAP_S = 0.020
PERONE_AMPLITUDE = 0.1
PERONE_BASE_HZ = 200.0
PERONE_HZ_PER_NORM = 100.0

SONNIFY_BASE_HZ = 200.0
SONNIFY_MAX_HZ = 1000.0
#: Above the first loss: octaves per decade of loss, and the cap (a loss 100× its first value).
SONNIFY_OCTAVES_PER_DECADE = 1.0
SONNIFY_CAP_HZ = 4000.0
SONNIFY_AMPLITUDE = 0.3


def perone_hz(norm: float) -> float:
    """Perone's tone frequency for a gradient norm."""
    return PERONE_BASE_HZ + PERONE_HZ_PER_NORM * norm


def perone_tone(freq: float, sample_rate: int = PERONE_SAMPLE_RATE) -> np.ndarray:
    """One 10 ms tone exactly as the seed computed it: ``0.1·sin(2π·f·n/fs)``, ``n < fs·0.01``.

    >>> t = perone_tone(300.0)
    >>> len(t), float(t[0]), round(float(t.max()), 3)
    (441, 0.0, 0.1)
    """
    n = np.arange(int(sample_rate * PERONE_TONE_S))
    return (PERONE_AMPLITUDE * np.sin(2 * np.pi * n * freq / sample_rate)).astype(np.float32)


def perone_gap(sample_rate: int = PERONE_SAMPLE_RATE) -> int:
    """Samples of silence after each step (20 ms).

    >>> perone_gap()
    882
    """
    return int(sample_rate * PERONE_GAP_S)


def sonnify_hz(loss: float, first_loss: float) -> float:
    """soNNify's loss pitch (see the module); a non-positive first loss counts as 1; never below 200 Hz."""
    ratio = loss / first_loss if first_loss > 0 else loss
    return loss_pitch(ratio, SONNIFY_BASE_HZ, SONNIFY_MAX_HZ, SONNIFY_CAP_HZ)


def loss_pitch(ratio: float, low: float, high: float, cap: float) -> float:
    """``low + ratio·(high − low)`` up to ``ratio`` 1 (the seed), then ``high`` rising
    :data:`SONNIFY_OCTAVES_PER_DECADE` octaves per decade up to ``cap``; never below ``low``.

    >>> loss_pitch(0.25, 200, 1000, 4000), round(loss_pitch(2.0, 200, 1000, 4000), 1)
    (400.0, 1232.0)
    """
    if ratio <= 1.0:
        return max(low, low + ratio * (high - low))
    return min(cap, high * 2.0 ** (SONNIFY_OCTAVES_PER_DECADE * math.log10(ratio)))


class SonnifyLoss:
    """soNNify's loss → Hz per run: ``val_loss``, when present, is *the* loss."""

    def __init__(self) -> None:
        self.first_loss: dict[str, float] = {}
        self.val_runs: set[str] = set()

    def hz(self, ev: Event) -> float | None:
        """The tone for an event, NaN for a non-finite loss (the alarm), None if it is not the loss."""
        if ev.kind == "metric" and ev.name == "val_loss":
            if ev.run not in self.val_runs:
                self.val_runs.add(ev.run)
                self.first_loss.pop(ev.run, None)
        elif ev.kind != "loss" or ev.run in self.val_runs:
            return None
        x = ev.values[0]
        if not math.isfinite(x):
            return math.nan
        return sonnify_hz(x, self.first_loss.setdefault(ev.run, x))


class PeroneSequencer:
    """Perone's step-clocked tones: pure, produces mono chunks of whole steps."""

    def __init__(self, sr: int) -> None:
        self.sr = sr
        self.layers: dict[str, list[str]] = {}  # run → layer order (first seen)
        self.pending: dict[str, dict[str, float]] = {}
        self.gap = np.zeros(perone_gap(sr), np.float32)
        self.tone_len = len(perone_tone(200.0, sr))
        self.alarm = alarm_slot(self.tone_len, sr, PERONE_AMPLITUDE)
        self.steps_done = 0
        self.alarms = 0

    def apply(self, event: Event | None) -> list[np.ndarray]:
        if event is None:
            return []
        run = event.run
        if event.kind == "step":
            return self._flush(run)
        if event.kind != "grad_norm" or not event.values:
            return []
        out: list[np.ndarray] = []
        cur = self.pending.setdefault(run, {})
        if event.name in cur:  # a full round without a step message: that was a step
            out = self._flush(run)
            cur = self.pending.setdefault(run, {})
        order = self.layers.setdefault(run, [])
        if event.name not in order:
            order.append(event.name)
        cur[event.name] = event.values[0]
        return out

    def _flush(self, run: str) -> list[np.ndarray]:
        cur = self.pending.pop(run, None)
        if not cur:
            return []
        parts = []
        for layer in self.layers[run]:
            if layer not in cur:
                continue
            x = cur[layer]
            if math.isfinite(x):
                parts.append(perone_tone(perone_hz(x), self.sr))
            else:
                self.alarms += 1
                parts.append(self.alarm)
        parts.append(self.gap)
        self.steps_done += 1
        return [np.concatenate(parts)]

    def finish(self) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for run in list(self.pending):
            out += self._flush(run)
        return out
