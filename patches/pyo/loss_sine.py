"""loss_sine — the loss as the pitch of one sine per run (soNNify's loss → sine).

What you hear: a sine between 200 and 1000 Hz that glides (portamento) as the
loss moves. Its pitch is ``200 + (loss / first_loss) · 800`` Hz below the first
loss (soNNify's formula): a run starts at 1000 Hz and, as it learns, falls towards
200 Hz. A loss that climbs above its first value rises on: one octave per tenfold
rise, up to ``cap_hz`` (4000), where the seed stuck at 1000 Hz. When a run
reports ``val_loss`` (``/nn/<run>/metric/val_loss``) that is followed instead,
as soNNify did. Each run gets its own sine (up to ``max_runs``), so two runs
beat audibly when their losses meet.

Why: the loss is the one number everyone watches; a falling pitch is what
"learning" sounds like, a rising one is divergence. NaN/Inf sounds the alarm
(880/1175 Hz siren), and the run's sine falls silent until its loss is finite again.

A run's ``end`` event (or its idle timeout) fades its sine out and frees it for another run.

Options (``[pyo.options]``): ``low_hz`` (200), ``high_hz`` (1000), ``cap_hz`` (4000),
``glide`` (portamento in s, 0.08), ``level`` (0.2), ``max_runs`` (8).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from .base import Patch

log = logging.getLogger(__name__)

#: Lowest pitch for losses at or below zero (some objectives are negative).
FLOOR_HZ = 50.0


def loss_hz(loss: float, first: float, low: float = 200.0, high: float = 1000.0, cap: float = 4000.0) -> float:
    """soNNify's formula ``low + (loss / first) · (high − low)`` up to the first loss, then an octave per
    decade up to ``cap``; never below ``FLOOR_HZ``.

    >>> loss_hz(2.0, 2.0), loss_hz(0.5, 2.0), loss_hz(20.0, 2.0), loss_hz(1e9, 2.0)
    (1000.0, 400.0, 2000.0, 4000.0)
    """
    ratio = loss / first if first > 0.0 else 1.0
    if ratio > 1.0:
        return min(cap, high * 2.0 ** math.log10(ratio))
    return max(FLOOR_HZ, low + ratio * (high - low))


class LossSine(Patch):
    """One gliding sine per run following its (validation) loss."""

    name = "loss_sine"

    def __init__(
        self,
        server: Any,
        low_hz: float = 200.0,
        high_hz: float = 1000.0,
        cap_hz: float = 4000.0,
        glide: float = 0.08,
        level: float = 0.2,
        max_runs: int = 8,
        **options: Any,
    ) -> None:
        super().__init__(server, **options)
        from pyo import SigTo, Sine

        self.low, self.high, self.cap, self.max_runs = float(low_hz), float(high_hz), float(cap_hz), int(max_runs)
        n = self.max_runs
        # Voices exist from the start (silent): creating pyo objects is cheap, but doing it
        # on the audio path of a running server is not, and a fixed bank never grows.
        self.freqs = [SigTo(self.high, time=glide, init=self.high) for _ in range(n)]
        self.amps = [SigTo(0.0, time=0.05, init=0.0) for _ in range(n)]
        self.level = float(level)
        self.osc = self.out(Sine(self.freqs, mul=self.amps))
        self._run_voice: dict[str, int] = {}
        self._first: dict[tuple[str, str], float] = {}
        self._uses_val: set[str] = set()
        self._unknown: set[str] = set()  # runs whose followed loss is NaN/Inf: silent until it is finite

    def _voice(self, run: str) -> int | None:
        v = self._run_voice.get(run)
        if v is None:
            if len(self._run_voice) >= self.max_runs:
                if len(self._run_voice) == self.max_runs:
                    log.warning("loss_sine: more than %d runs; run %r is not heard", self.max_runs, run)
                    self._run_voice[run] = -1
                return None
            used = set(self._run_voice.values())
            v = self._run_voice[run] = min(i for i in range(self.max_runs) if i not in used)
            self._level()
        return v if v >= 0 else None

    def _level(self) -> None:
        # Equal loudness whatever the number of runs: total stays under `level`·√n.
        live = [v for v in self._run_voice.values() if v >= 0]
        silent = {self._run_voice.get(r) for r in self._unknown}
        for i in range(self.max_runs):
            self.amps[i].value = self.level / len(live) ** 0.5 if i in live and i not in silent else 0.0

    def on_end(self, run: str) -> None:
        """The run ended: its sine fades out (50 ms) and its voice is free for the next run."""
        v = self._run_voice.pop(run, None)
        self._first.pop((run, "loss"), None)
        self._first.pop((run, "val_loss"), None)
        self._uses_val.discard(run)
        self._unknown.discard(run)
        if v is not None and v >= 0:
            self._level()

    def _follow(self, run: str, which: str, loss: float) -> None:
        v = self._voice(run)
        if v is None:
            return
        first = self._first.setdefault((run, which), loss)
        self.freqs[v].value = loss_hz(loss, first, self.low, self.high, self.cap)
        if run in self._unknown:  # finite again: heard again
            self._unknown.discard(run)
            self._level()

    def on_nan(self, run: str, stream: str) -> None:
        """The alarm; and when the followed loss is the stream, the run's sine stops until it is finite."""
        super().on_nan(run, stream)
        if stream == ("val_loss" if run in self._uses_val else "loss") and self._run_voice.get(run, -1) >= 0:
            self._unknown.add(run)
            self._level()

    def on_loss(self, run: str, loss: float) -> None:
        if run not in self._uses_val:
            self._follow(run, "loss", loss)

    def on_metric(self, run: str, name: str, value: float) -> None:
        if name == "val_loss":
            self._uses_val.add(run)
            self._follow(run, "val_loss", value)


PATCH = LossSine
