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

#: Addresses the NaN-alarm limiter remembers at once (~200 bytes each: under 1 MB).
ALARM_STATE_MAX = 4096


class AlarmSignals:
    """The watch, the NaN alarm's per-address hold-off and the global alarm budget, as :class:`Mapped`."""

    def __init__(self, opts: AlarmOptions, alarms: AlarmsOptions, counters: Counters) -> None:
        self.opts = opts
        self.counters = counters
        """The engine's counters (this counts ``alarms``, ``alarms_limited``, ``alarm_state_shed``)."""
        self._last_alarm: dict[str, float] = {}
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

    def _remember_alarm(self, address: str, t: float, interval: float) -> None:
        """Note when ``address`` last alarmed, in a table of at most :data:`ALARM_STATE_MAX` addresses.

        Distinct addresses are unbounded on the wire (400,000 held 82 MB): when full, the addresses
        whose alarm is oldest are dropped; one whose interval still ran is counted as shed.
        """
        table = self._last_alarm
        table.pop(address, None)  # re-inserted last: the dict's order is the order of last alarms
        while len(table) >= ALARM_STATE_MAX:
            oldest = next(iter(table))  # the front is the earliest alarm: amortised O(1)
            if t - table.pop(oldest) < interval:
                self.counters.alarm_state_shed += 1
        table[address] = t

    def allow(self, t: float) -> bool:
        """The global ``[alarm].max_per_second`` budget, on the events' clock; False: counted, not sounded."""
        ok = self._budget is None or self._budget.take(now=t)
        self.counters.alarms_limited += not ok
        return ok

    def nan(self, ev: Event, rule_idx: int, stream: tuple[str, ...], voice: int, out: list[Mapped]) -> None:
        """A non-finite value: the NaN alarm (held off per address), or else a silent mute of its voice."""
        x = ev.values[0] if ev.values else math.nan
        last = self._last_alarm.get(ev.address, -math.inf)
        # [alarm].min_interval_ms is the NaN alarm's hold-off (per address); the watch applies the global rate.
        if ev.t - last >= self.opts.min_interval:
            a = self.watch.admit(ev.t, ev.run, ev.name or ev.kind, "nan", x, hold=False)
            if a is not None:
                # Only a sounded alarm is remembered: one over the rate sounds as soon as the budget allows.
                self._remember_alarm(ev.address, ev.t, self.opts.min_interval)
                out.append(self.signal(a)._replace(rule=rule_idx, stream=stream, voice=voice))
                return
        if any(m.alarm for m in out):
            return
        # Not sounded (held off or over the limit), but the outputs still mute the voice whose value is unknown.
        o = self.opts
        out.append(Mapped(ev.t, ev.run, rule_idx, ev.name or ev.kind, "alarm", stream, voice, x, math.nan, o.channel,
                          (), (), o.length, kind="nan", step=self.watch.step_of(ev.run)))

    def forget_runs(self, runs: set[str]) -> None:
        """Drop what ended runs left: their NaN hold-offs and their detectors' state."""
        self._last_alarm = {a: t for a, t in self._last_alarm.items() if a.split("/")[2] not in runs}
        self.watch.forget_runs(runs)
