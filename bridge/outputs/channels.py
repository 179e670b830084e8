"""Runs apart on one MIDI port: each run's voices on a block of channels no other run uses.

The engine places a run's voices from the rule's channel on (group *g* on the *g*-th free channel, the
run-wide voice — the loss and metric CCs — with the first), the same way for every run; on one port two
runs would then share channel 1. :class:`RunChannels` moves each run's voices onto channels of its own,
keeping the engine's layout inside the run (group *g* at the block's start + *g*, the loss with the first
voice). A run's first voice keeps the engine's channel when it is free (a run name remembered across
restarts comes back on its channel); otherwise it starts at the first free channel. Channel 10 (drums)
and the alarm's channel are never given out: 14 channels. A run that ends gives its channels back; a run
silent for :data:`RECLAIM_AFTER` seconds gives them to a newcomer that finds no room.

When the runs do not fit in 14 channels, the newcomer *shares*: its voices go on the channels the engine
gives them, over other runs' (counted as ``shared_runs``, logged once per run). Lower ``[groups]
max_voices`` to keep more runs apart (4 groups + the loss: three runs), or give a run a bridge of its
own (``[midi] client_name``). Pure: time comes in with the values.

>>> from trainsound.bridge.config import default
>>> from trainsound.bridge.mapped import Mapped
>>> plan = RunChannels(default().mappings, alarm_channel=16)
>>> loss = lambda run: Mapped(0.0, run, 1, "loss_brightness", "cc", (run,), 0, 1.0, 0.5, 1, (), (), 0.0)
>>> plan.channel(loss("a")), plan.channel(loss("b")), plan.channel(loss("a"))
(1, 2, 1)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..mapped import Mapped
from ..mapping.groups import GroupOptions, groups_rule
from ..wire import midi as mb

if TYPE_CHECKING:
    from ..mapping.rules import Rule

log = logging.getLogger(__name__)

#: Seconds of silence after which a run's channels go to a newcomer that finds no free channel.
RECLAIM_AFTER = 30.0
#: Runs remembered at most (sharing runs hold no channel; a flood of run names must not grow memory).
MAX_RUNS = 1024

VoiceId = tuple[Any, ...]


@dataclass
class _Run:
    block: dict[int, int] = field(default_factory=dict)
    """Offset in the run's layout → channel."""
    voices: dict[VoiceId, int] = field(default_factory=dict)
    """A voice (rule family and the stream past the run) → its offset."""
    counts: dict[VoiceId, int] = field(default_factory=dict)
    """Per rule family of ungrouped voices: how many offsets handed out (first-seen order)."""
    last: float = 0.0
    shared: bool = False


class RunChannels:
    """Channel blocks per run for one MIDI port (the live port and the MIDI file use one each, alike)."""

    def __init__(self, rules: tuple[Rule, ...], alarm_channel: int, groups: GroupOptions | None = None) -> None:
        self.channels = [c for c in mb.MIDI_CHANNELS if c not in (alarm_channel, mb.DRUM_CHANNEL)]
        self._pos = {c: i for i, c in enumerate(self.channels)}
        self.reconfigure(rules, groups)

    def reconfigure(self, rules: tuple[Rule, ...], groups: GroupOptions | None = None) -> None:
        """A reload's rules: the new engine allocates its voices afresh, and so does the plan."""
        self.rules = rules
        opts = groups or GroupOptions()
        self._grouped = tuple(groups_rule(r.voice_key, r.voices, opts) for r in rules)
        self._runs: dict[str, _Run] = {}
        self._owner: dict[int, str] = {}
        self.shared_runs = 0

    # -- where a value goes ---------------------------------------------------------
    def voice(self, m: Mapped) -> tuple[str, VoiceId, int] | None:
        """``(run, voice id, offset)`` of a value the plan places, ``None`` for what keeps its channel: alarms
        and ticks, rules with a fixed channel (``voices = "band"`` or ``"none"``), rules not keyed by run, and a
        learn sweep of a rule no run has reached ("any run")."""
        if m.rule < 0 or m.rule >= len(self.rules) or m.alarm or m.tick:
            return None
        rule = self.rules[m.rule]
        key = rule.voice_key
        if rule.voices != "channel" or "run" not in key or len(m.stream) != len(key):
            return None
        i = key.index("run")
        rest = m.stream[:i] + m.stream[i + 1:]
        vid = (key, rule.channel, rest)
        base = self._pos.get(rule.channel, 0)
        if not rest:
            return m.stream[i], vid, base  # the run-wide voice: with the first voice, as the engine has it
        if self._grouped[m.rule]:
            return m.stream[i], vid, base + m.voice  # the group's index in the run's layout
        return m.stream[i], vid, -1  # an ungrouped voice: first-seen order within its run

    def placed(self, rule: int, stream: tuple[str, ...]) -> int | None:
        """The channel a voice already has (``learn --list`` reports it), ``None`` if it has none yet."""
        m = Mapped(0.0, "", rule, "", "", stream, 0, 0.0, 0.0, 0, (), (), 0.0)
        where = self.voice(m)
        if where is None or (r := self._runs.get(where[0])) is None or (o := r.voices.get(where[1])) is None:
            return None
        return r.block.get(o)

    def channel(self, m: Mapped) -> int:
        """The channel ``m`` goes out on (its own when the plan does not place it)."""
        placed = self.voice(m)
        if placed is None:
            return m.channel
        run, vid, offset = placed
        r = self._runs.get(run)
        if r is None:
            r = self._new_run(run, m.t)
        r.last = m.t
        o = r.voices.get(vid)
        if o is None:
            if offset < 0:
                family = vid[:2]
                offset = self._pos.get(vid[1], 0) + r.counts.get(family, 0)
                r.counts[family] = r.counts.get(family, 0) + 1
            o = r.voices[vid] = offset
        ch = r.block.get(o)
        if ch is None:
            ch = r.block[o] = self._place(run, r, o, m.channel, m.t)
        return ch

    def route(self, m: Mapped) -> Mapped:
        """``m`` with its messages (and ``later`` ones) on the plan's channel."""
        ch = self.channel(m)
        if ch == m.channel:
            return m
        return m._replace(channel=ch, midi=tuple(mb.with_channel(x, ch) for x in m.midi),
                          later=tuple(mb.with_channel(x, ch) for x in m.later))

    # -- allocation ---------------------------------------------------------------------
    def _new_run(self, run: str, now: float) -> _Run:
        if len(self._runs) >= MAX_RUNS:
            for name in sorted(self._runs, key=lambda n: self._runs[n].last)[: MAX_RUNS // 2]:
                self.release(name)
        r = self._runs[run] = _Run(last=now)
        return r

    def _place(self, run: str, r: _Run, offset: int, engine_channel: int, now: float) -> int:
        n = len(self.channels)
        if r.shared:
            return engine_channel
        if r.block:
            anchor = min(r.block)
            want = self._pos[r.block[anchor]] + offset - anchor  # the engine's layout inside the run
        else:
            want = self._pos.get(engine_channel, 0)
        free = self._free_from(want % n)
        if free is None:
            self._reclaim(run, now)
            free = self._free_from(want % n)
        if free is None:
            r.shared = True
            self.shared_runs += 1
            log.warning("MIDI: the %d channels are taken by other runs; run %r shares theirs ([groups] "
                        "max_voices lower keeps more runs apart; docs/mapping.md, \"Runs apart\")", n, run)
            return engine_channel
        self._owner[free] = run
        return free

    def _free_from(self, start: int) -> int | None:
        n = len(self.channels)
        for k in range(n):
            ch = self.channels[(start + k) % n]
            if ch not in self._owner:
                return ch
        return None

    def _reclaim(self, run: str, now: float) -> None:
        """Free the channels of every run silent for :data:`RECLAIM_AFTER` s (a run forgotten unannounced)."""
        for name, other in list(self._runs.items()):
            if name != run and other.block and now - other.last >= RECLAIM_AFTER:
                self.release(name)

    def release(self, run: str) -> None:
        """A run ended: its channels are free for the next run."""
        r = self._runs.pop(run, None)
        if r is None:
            return
        for ch in r.block.values():
            if self._owner.get(ch) == run:
                del self._owner[ch]

    def blocks(self) -> dict[str, list[int]]:
        """``{run: [channels]}`` of the runs holding channels (status reports, tests)."""
        return {name: sorted(set(r.block.values())) for name, r in self._runs.items() if r.block and not r.shared}
