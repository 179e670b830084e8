"""Alarms and ticks as mapped values: the engine's half of docs/alarms.md.

The detectors (:mod:`.detectors`) and their watch (:mod:`.watch`) decide *that* a fault happened;
:class:`AlarmSignals` turns what they raise — and the NaN alarm the engine finds itself — into
:class:`~trainsound.bridge.mapped.Mapped` values with their MIDI note per kind, under one global
alarm rate (``[alarm].max_per_second``). The mapping engine holds one and calls it; it holds no
state of the engine's.
"""

from __future__ import annotations

import math

from ..mapped import Counters, Mapped
from ..ratelog import TokenBucket
from ..wire import midi as mb
from ..wire.protocol import Event
from .options import AlarmOptions, AlarmsOptions
from .watch import TICK_LENGTH, TICK_VELOCITY, Alarm, Watch


class AlarmSignals:
    """The watch, the NaN alarm's per-address hold-off and the global alarm budget, as :class:`Mapped`."""

    def __init__(self, opts: AlarmOptions, alarms: AlarmsOptions, counters: Counters) -> None:
        self.opts = opts
        self.counters = counters
        """The engine's counters (this counts ``alarms`` and ``alarms_limited``)."""
        # On the events' clock (replay and render limit alike); a burst of one second's worth.
        rate = opts.max_per_second
        self._budget = TokenBucket(rate, max(1.0, rate), clock=lambda: 0.0) if rate else None
        # One global alarm rate for every kind (NaN and the detectors'): the watch asks allow().
        self.watch = Watch(alarms, limit=self.allow)

    def signal(self, a: Alarm) -> Mapped:
        """An alarm or tick from the watch (or a voice group's detector) as a :class:`Mapped` with its MIDI note."""
        o, ch, tick = self.opts, self.opts.channel, a.tick
        note = self.watch.opts.tick_notes[a.kind == "lr"] if tick else self.watch.kinds[a.kind].note
        midi: tuple[bytes, ...] = (mb.note_on(ch, note, TICK_VELOCITY),)
        later: tuple[bytes, ...] = (mb.note_off(ch, note),)
        if not tick:  # alarms also send the alarm CC (release with the note)
            self.counters.alarms += 1
            midi = (mb.note_on(ch, note, o.velocity), mb.control_change(ch, o.cc, o.cc_value))
            later = (mb.note_off(ch, note), mb.control_change(ch, o.cc, 0))
        return Mapped(a.t, a.run, -1, a.name, "tick" if tick else "alarm", (a.run, a.name), 0, a.value, math.nan, ch,
                      midi, later, TICK_LENGTH if tick else o.length, kind=a.kind, step=a.step)

    def allow(self, t: float) -> bool:
        """The global ``[alarm].max_per_second`` budget, on the events' clock; False: counted, not sounded."""
        ok = self._budget is None or self._budget.take(now=t)
        self.counters.alarms_limited += not ok
        return ok

    def nan(self, ev: Event, rule_idx: int, stream: tuple[str, ...], voice: int, out: list[Mapped]) -> None:
        """A non-finite value: the run's NaN incident (sounded when it opens), and a mute of its voice."""
        x = ev.values[0] if ev.values else math.nan
        incidents = self.watch.incidents
        shed = incidents.shed
        a = self.watch.nan(ev.t, ev.run, ev.name or ev.kind, ev.address, x)
        self.counters.alarm_state_shed += incidents.shed - shed
        if a is not None:
            out.append(self.signal(a)._replace(rule=rule_idx, stream=stream, voice=voice))
            return
        if any(m.alarm for m in out):
            return
        # Part of an incident already sounded (or over the rate): the outputs still mute the voice whose value
        # is unknown.
        o = self.opts
        out.append(Mapped(ev.t, ev.run, rule_idx, ev.name or ev.kind, "alarm", stream, voice, x, math.nan, o.channel,
                          (), (), o.length, kind="nan", step=self.watch.step_of(ev.run)))

    def forget_runs(self, runs: set[str]) -> None:
        """Drop what ended runs left: their detectors' state and open incidents."""
        self.watch.forget_runs(runs)
