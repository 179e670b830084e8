"""The ``sine`` output against a reference run: presets ``ab`` and ``diff`` (docs/compare.md).

- :class:`AbVoices` (``ab``): two voice tables on one sink, the reference's hard left and the run's hard
  right. Each run value is sounded on the right as :class:`~.sine_voices.VoiceTable` sounds it, and its
  reference value of the same step (same stream: layer, metric or voice group) through a twin table on the
  left, in the same block, under the same mapping and foreground budget. Identical runs therefore give
  identical channels (a centred sound); where a run parts, its side moves away from the other.
- :class:`DiffVoices` (``diff``): one voice per matched stream at a home pitch of its own, moved up or down
  by the deviation (:func:`~..mapping.deviation.diff_unit`) and as loud as it is large
  (:func:`~..mapping.deviation.diff_level`): silence while the runs agree.

Activation spectra are not played in either (there is no reference spectrum to set beside them); alarms
and ticks of the run sound as ever, centred.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..config import Config
from ..mapped import Mapped
from ..mapping.deviation import Aligner, diff_home, diff_level, diff_unit
from ..sound.maps import run_pan
from ..wire.protocol import Event
from .sine_voices import SineOptions, Sink, VoiceTable

#: ``ab``: where each side sounds (-1 hard left … +1 hard right).
REFERENCE_PAN = -1.0
RUN_PAN = 1.0


class SideSink:
    """One side of ``ab``: a voice table's voices on a shared sink at one stereo position, numbered in the
    sink's own (shared) order."""

    def __init__(self, sink: Sink, pan: float, label: str, numbers: list[int]) -> None:
        self.sink, self.pan, self.label = sink, pan, label
        self.numbers = numbers  # one counter shared by both sides: the sink's voices are numbered 0, 1, 2 …
        self.map: dict[int, int] = {}

    def add_voice(self, voice: int, pan: float, level: float, label: str, master: float) -> None:
        g = self.map[voice] = self.numbers[0]
        self.numbers[0] += 1
        self.sink.add_voice(g, self.pan, level, f"{self.label}{label}", master)

    def norms(self, voices: list[int], norms: list[float]) -> None:
        self.sink.norms([self.map[v] for v in voices], norms)

    def hz(self, voice: int, hz: float) -> None:
        self.sink.hz(self.map[voice], hz)

    def mute(self, voice: int) -> None:
        self.sink.mute(self.map[voice])

    def master(self, gain: float) -> None:
        self.sink.master(gain)

    def partial(self, voice: int, hz: float, level: float) -> None:
        self.sink.partial(self.map[voice], hz, level)

    def alarm(self, kind: str, label: str) -> None:
        self.sink.alarm(kind, label)

    def spectrum(self, blob: bytes, pan: float) -> None:
        """Not played (see the module docstring)."""

    def step(self, step: int) -> None:
        self.sink.step(step)


class AbVoices:
    """``ab``: the reference on the left, the run on the right (see the module docstring)."""

    def __init__(self, config: Config, opts: SineOptions, sink: Sink, budget: bool, aligner: Aligner) -> None:
        numbers = [0]
        self.aligner = aligner
        self.run = VoiceTable(config, opts, "continuous", SideSink(sink, RUN_PAN, "", numbers), budget)
        self.ref = VoiceTable(config, opts, "continuous", SideSink(sink, REFERENCE_PAN, "reference ", numbers), budget)

    @property
    def voices(self) -> dict[tuple[Any, ...], int]:
        return {**self.run.voices, **{("reference", *k): v for k, v in self.ref.voices.items()}}

    @property
    def alarms(self) -> int:
        return self.run.alarms

    def apply(self, event: Event | None, mapped: Sequence[Mapped]) -> None:
        matches = self.aligner.apply(event, mapped)
        self.run.apply(event, mapped)
        if matches:
            self.ref.apply(None, [x.m._replace(value=x.ref_value, norm=x.ref_norm) for x in matches])

    def silence(self, rule: int, run: str) -> None:
        self.run.silence(rule, run)  # the reference's side keeps its recorded (finite) values

    def release_run(self, run: str) -> None:
        self.run.release_run(run)
        self.ref.release_run(run)
        self.aligner.forget(run)


class DiffVoices:
    """``diff``: each matched stream a voice that sounds its deviation (see the module docstring)."""

    def __init__(self, opts: SineOptions, sink: Sink, aligner: Aligner) -> None:
        self.opts, self.sink, self.aligner = opts, sink, aligner
        self.voices: dict[tuple[Any, ...], int] = {}
        self.voice_run: dict[int, str] = {}
        self.runs: dict[str, int] = {}
        self.alarms = 0
        self.allocated = 0

    def _voice(self, m: Mapped) -> int:
        key = (m.rule, m.stream)
        v = self.voices.get(key)
        if v is None:
            v = self.voices[key] = self.allocated
            self.allocated += 1
            self.voice_run[v] = m.run
            pan = run_pan(self.runs.setdefault(m.run, len(self.runs)))
            master = 1.0 / math.sqrt(len(self.voices))
            self.sink.add_voice(v, pan, 0.0, f"{'/'.join(m.stream)} vs reference", master)
        return v

    def apply(self, event: Event | None, mapped: Sequence[Mapped]) -> None:
        for m in mapped:
            if m.norm != m.norm and m.midi and m.target != "tick":  # an alarm the engine sounds: heard as ever
                self.alarms += 1
                self.sink.alarm(m.kind or "nan", "")
                v = self.voices.get((m.rule, m.stream))
                if v is not None:
                    self.sink.mute(v)
        fmin, octaves, gain = self.opts.fmin, self.opts.octaves, self.opts.gain
        for x in self.aligner.apply(event, mapped):
            v = self._voice(x.m)
            hz = fmin * 2.0 ** (octaves * diff_unit(x.deviation, diff_home(v), octaves))
            self.sink.partial(v, hz, gain * diff_level(x.deviation))

    def silence(self, rule: int, run: str) -> None:
        """A non-finite value in ``rule``: its deviations are unknown until finite again, so their voices mute."""
        for (r, _), v in self.voices.items():
            if r == rule and self.voice_run.get(v) == run:
                self.sink.mute(v)

    def release_run(self, run: str) -> None:
        gone = [k for k, v in self.voices.items() if self.voice_run.get(v) == run]
        for k in gone:
            v = self.voices.pop(k)
            del self.voice_run[v]
            self.sink.mute(v)
        if gone and self.voices:
            self.sink.master(1.0 / math.sqrt(len(self.voices)))
        self.aligner.forget(run)


def reference_voices(config: Config, opts: SineOptions, mode: str, sink: Sink, budget: bool,
                     aligner: Aligner) -> AbVoices | DiffVoices:
    """The voices of ``mode`` (``ab`` or ``diff``) on ``sink``."""
    if mode == "ab":
        return AbVoices(config, opts, sink, budget, aligner)
    return DiffVoices(opts, sink, aligner)
