"""grad_chord — one voice per layer: pitch from its gradient norm (log scale), level from its update ratio.

What you hear: a chord of soft, slightly bright tones, one per layer (and run).
A layer's pitch rises with its gradient norm on a log scale, four octaves over
``norm_range`` (default 1e-4 … 1e2 → 110 … 1760 Hz), gliding between steps: a
layer whose gradients explode climbs to the top, a vanishing one sinks to the
bass. Its level follows the weight update ratio ``‖ΔW‖/‖W‖`` on a log scale
over ``update_range`` (1e-6 … 1e-1): layers that are really learning are loud,
frozen ones fade to a whisper (never to silence, so every layer stays
findable).

Why: this is the Perone / "gradient sonification" experiment (200 + 100·‖g‖ Hz
per layer) as a chord instead of 10 ms blips in turn, with the log scale those
experiments lacked (norms span decades, so linear pitch either explodes or
does not move). NaN/Inf in any value sounds the alarm: a two-tone 880/1175 Hz
siren over the chord, and a layer whose norm is NaN/Inf falls silent until it is finite again.

Options: ``norm_range`` ([1e-4, 1e2]), ``update_range`` ([1e-6, 1e-1]),
``low_hz`` (110), ``octaves`` (4), ``max_voices`` (32), ``level`` (0.25), ``glide`` (0.05 s).
"""

from __future__ import annotations

from typing import Any

from .base import Patch, WeightStats, log_unit

#: Level of a voice whose update ratio is at the bottom of the range (fraction of full).
QUIET_FLOOR = 0.15
#: Level of each voice's octave partial, relative to its fundamental.
OCTAVE_LEVEL = 0.12
#: Level of a voice before any weight report arrives.
DEFAULT_LEVEL = 0.6


def grad_hz(norm: float, lo: float = 1e-4, hi: float = 1e2, low_hz: float = 110.0, octaves: float = 4.0) -> float:
    """Pitch of a layer: ``low_hz · 2^(octaves · u)``, ``u`` the norm on a log scale over ``lo..hi``.

    >>> grad_hz(1e-4), grad_hz(1e2), round(grad_hz(1e-1), 1)
    (110.0, 1760.0, 440.0)
    """
    return low_hz * 2.0 ** (octaves * log_unit(norm, lo, hi))


def update_level(ratio: float, lo: float = 1e-6, hi: float = 1e-1) -> float:
    """Relative level from the update ratio: ``QUIET_FLOOR`` … 1 on a log scale.

    >>> update_level(1e-6), update_level(1e-1)
    (0.15, 1.0)
    """
    return QUIET_FLOOR + (1.0 - QUIET_FLOOR) * log_unit(ratio, lo, hi)


class GradChord(Patch):
    """One voice per (run, layer): pitch ← log grad norm, level ← log update ratio."""

    name = "grad_chord"

    def __init__(
        self,
        server: Any,
        norm_range: tuple[float, float] = (1e-4, 1e2),
        update_range: tuple[float, float] = (1e-6, 1e-1),
        low_hz: float = 110.0,
        octaves: float = 4.0,
        max_voices: int = 32,
        level: float = 0.25,
        glide: float = 0.05,
        **options: Any,
    ) -> None:
        super().__init__(server, **options)
        from pyo import Sig, SigTo, Sine

        self.norm_range = (float(norm_range[0]), float(norm_range[1]))
        self.update_range = (float(update_range[0]), float(update_range[1]))
        self.low_hz, self.octaves, self.max_voices = float(low_hz), float(octaves), int(max_voices)
        n = self.max_voices
        self.freqs = [SigTo(self.low_hz, time=glide, init=self.low_hz) for _ in range(n)]
        self.levels = [SigTo(0.0, time=0.08, init=0.0) for _ in range(n)]
        # A quiet octave partial makes voices easier to tell apart; the fundamental stays on top.
        # (Not SineLoop: pyo 1.1.0's SineLoop segfaults when its frequency moves fast.)
        self.osc = Sine(freq=self.freqs, mul=self.levels)
        self.octave = Sine(freq=[f * 2 for f in self.freqs], mul=[lv * OCTAVE_LEVEL for lv in self.levels])
        self.gain = Sig(0.0)
        self.level = float(level)
        self.voice = self.out((self.osc + self.octave) * self.gain)
        self._voices: dict[tuple[str, str], int] = {}
        self._free: list[int] = []  # voices of ended runs, reused first
        self._unknown: dict[int, float] = {}  # voice whose norm is NaN/Inf → its level: silent until finite

    def _voice(self, run: str, layer: str) -> int:
        key = (run, layer)
        v = self._voices.get(key)
        if v is None:
            # Past max_voices layers share voices (folded) rather than growing the graph.
            v = self._voices[key] = self._free.pop(0) if self._free else len(self._voices) % self.max_voices
            if len(self._voices) <= self.max_voices:
                self.levels[v].value = DEFAULT_LEVEL
                self.gain.value = self.level / len(self._voices) ** 0.5
        return v

    def on_end(self, run: str) -> None:
        """The run ended: its voices fade out (the level's 80 ms glide) and are free for the next run."""
        for key in [k for k in self._voices if k[0] == run]:
            v = self._voices.pop(key)
            self._unknown.pop(v, None)
            if v not in self._voices.values():  # a folded voice still shared by another layer keeps sounding
                self.levels[v].value = 0.0
                self._free.append(v)
        if self._voices:
            self.gain.value = self.level / len(self._voices) ** 0.5

    def on_grad_norm(self, run: str, layer: str, norm: float) -> None:
        v = self._voice(run, layer)
        self.freqs[v].value = grad_hz(norm, *self.norm_range, self.low_hz, self.octaves)
        if v in self._unknown:  # finite again: heard again at its level
            self.levels[v].value = self._unknown.pop(v)

    def on_nan(self, run: str, stream: str) -> None:
        """The alarm; a layer's voice whose norm is unknown falls silent until it is finite again."""
        super().on_nan(run, stream)
        v = self._voices.get((run, stream))
        if v is not None and v not in self._unknown:
            self._unknown[v] = float(self.levels[v].value)
            self.levels[v].value = 0.0

    def on_weights(self, run: str, layer: str, stats: WeightStats) -> None:
        v = self._voice(run, layer)
        level = update_level(stats.update_ratio, *self.update_range)
        if v in self._unknown:
            self._unknown[v] = level  # heard once its norm is finite again
        else:
            self.levels[v].value = level


PATCH = GradChord
