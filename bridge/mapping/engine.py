"""The mapping engine: protocol events → normalised values → MIDI bytes.

Pure: the engine holds per-stream state (smoothing, auto range, rate limits,
voice allocation) but does no I/O and reads no clock; time comes in with the
event (``Event.t``) or as ``now`` to :meth:`Engine.flush_due`.

Each :class:`Mapped` carries what every kind of output needs: MIDI outputs send
``midi`` now and ``later`` after ``length`` seconds; sound outputs (sine, pyo,
OSC out) use ``norm`` (0..1, NaN for the alarm) and ``voice``.

>>> from trainsound.bridge.config import default
>>> from trainsound.bridge.wire.protocol import parse_event
>>> eng = Engine(default())
>>> [m] = eng.map(parse_event("/nn/r/grad_norm/fc1", (1.0,), 0.0, b""))
>>> (m.stream, m.voice, m.channel, round(m.norm, 3), m.midi[0].hex())
(('r', 'fc1'), 0, 1, 0.667, '904c60')
"""

from __future__ import annotations

import heapq
import math
from typing import Any, Protocol

from ..alarms.options import AlarmOptions, AlarmsOptions
from ..alarms.signals import AlarmSignals
from ..alarms.watch import Watch
from ..mapped import Counters, Mapped
from ..wire import midi as mb
from ..wire.protocol import Event
from .groups import GroupOptions, groups_rule
from .rules import Rule
from .rungroups import RunGroups
from .values import StreamState, control, normalise, note_pitch


class Settings(Protocol):
    """What the engine reads of a config (:class:`trainsound.bridge.config.Config` has it all)."""

    @property
    def mappings(self) -> tuple[Rule, ...]: ...
    @property
    def alarm(self) -> AlarmOptions: ...
    @property
    def alarms(self) -> AlarmsOptions: ...
    @property
    def groups(self) -> GroupOptions: ...


class VoiceStore(Protocol):
    """Where voices are remembered per run name across restarts (the daemon's
    :class:`trainsound.bridge.service.voicestate.VoiceMemory`)."""

    def get(self, run: str, table: tuple[str, ...], stream: tuple[str, ...]) -> int | None: ...
    def put(self, run: str, table: tuple[str, ...], stream: tuple[str, ...], voice: int) -> None: ...


ADDRESS_CACHE_SIZE = 65_536
#: Events that end a run's first round of layers: its voice groups settle (see :mod:`.groups`).
SETTLE_KINDS = frozenset({"step", "loss", "metric", "event"})


class Engine:
    """Applies the config's rules to events."""

    def __init__(self, config: Settings, max_voices: int = 256, memory: VoiceStore | None = None) -> None:
        self.rules: tuple[Rule, ...] = config.mappings
        self.max_voices = max_voices
        self.memory = memory
        """Voices remembered per run name across restarts (:mod:`.service.voicestate`); ``None``: first-seen."""
        # address → [[rule, stream, voice, (run, layer, arg) if grouped, its RunGroups]]; voice, groups found later
        self._cache: dict[str, list[list[Any]]] = {}
        self._streams: dict[tuple[int, tuple[str, ...]], StreamState] = {}
        self._voices: dict[tuple[str, ...], dict[tuple[str, ...], int]] = {}
        self._pending: dict[tuple[int, tuple[str, ...]], None] = {}
        self.every_value = False
        """Map a CC value even when its code is the one last sent (a reference needs every step's value)."""
        self._free: dict[tuple[str, ...], list[int]] = {}
        self.counters = Counters()
        """What the engine did with the values (mapped, thinned, alarms, …): ``status``'s ``mapping``."""
        self.alarms = AlarmSignals(config.alarm, config.alarms, self.counters)
        self.watch: Watch = self.alarms.watch
        """The fault detectors' watch (docs/alarms.md); the same one for the engine's life (a reload carries
        its state over)."""
        self._watching = config.alarms.enabled
        self.group_opts = config.groups
        self._groups: dict[tuple[int, str], RunGroups] = {}  # (rule index, run) → the run's layer groups
        self._grouped = tuple(groups_rule(r.voice_key, r.voices, config.groups) for r in self.rules)
        excluded = {config.alarm.channel, mb.DRUM_CHANNEL}
        self._free_channels = [c for c in mb.MIDI_CHANNELS if c not in excluded]

    def carry(self, old: Engine) -> None:
        """Take over a previous engine's counters and alarm state (a reload: counters describe the
        bridge's life, not one engine's)."""
        self.counters = self.alarms.counters = old.counters
        self.watch.carry(old.watch)

    # -- matching ---------------------------------------------------------
    def _matches(self, address: str) -> list[list[Any]]:
        hit = self._cache.get(address)
        if hit is not None:
            return hit
        hit = []
        for i, rule in enumerate(self.rules):
            m = rule.pattern.fullmatch(address)
            if m is None:
                continue
            groups = m.groupdict()
            names = rule.voice_by if rule.voice_by is not None else tuple(groups)
            stream = tuple(groups[n] for n in names)
            # A grouped rule's entry also holds its (run, layer): the per-value path needs no index() lookups.
            where = (stream[rule.voice_key.index("run")], stream[rule.voice_key.index("layer")], rule.index) \
                if self._grouped[i] else None
            hit.append([i, stream, None, where, None])
        if len(self._cache) >= ADDRESS_CACHE_SIZE:
            self._cache.clear()
        self._cache[address] = hit
        return hit

    def voice_of(self, rule: Rule, stream: tuple[str, ...]) -> int | None:
        """Voice index of a stream, allocated in first-seen order, shared by rules keyed alike.

        Indices freed by :meth:`forget_runs` are reused, lowest first.
        """
        key = rule.voice_key
        table = self._voices.setdefault(key, {})
        v = table.get(stream)
        if v is None:
            if len(table) >= self.max_voices:
                return None
            mem, free, used = self.memory, self._free.setdefault(key, []), set(table.values())
            run = stream[key.index("run")] if mem is not None and "run" in key else None
            v = mem.get(run, key, stream) if mem is not None and run is not None else None
            if v is None or v in used:  # else: the voice this stream had before a restart (a DAW set expects it)
                v = heapq.heappop(free) if free else len(table)
                while v in used:  # a remembered voice took this index
                    v += 1
            elif v in free:
                free.remove(v)
                heapq.heapify(free)
            table[stream] = v
            if mem is not None and run is not None:
                mem.put(run, key, stream, v)
        return v

    def forget_runs(self, runs: set[str]) -> None:
        """Drop the voices and stream state of runs that ended, keeping every other voice where it is.

        A bridge left running for weeks sees runs come and go; their voice slots are
        freed for new runs. Only voice tables keyed by a ``{run}`` capture can tell runs apart.
        """
        for key, table in self._voices.items():
            if "run" not in key:
                continue
            i = key.index("run")
            for stream in [s for s in table if s[i] in runs]:
                heapq.heappush(self._free.setdefault(key, []), table.pop(stream))
        for rule_idx, stream in list(self._streams):
            names = self.rules[rule_idx].voice_key
            if "run" in names and stream[names.index("run")] in runs:
                del self._streams[(rule_idx, stream)]
                self._pending.pop((rule_idx, stream), None)
        self.alarms.forget_runs(runs)
        self._groups = {k: g for k, g in self._groups.items() if k[1] not in runs}
        self._cache.clear()  # it remembers voices

    def streams_of(self, i: int) -> dict[tuple[str, ...], int]:
        """The streams seen so far for rule ``i``, with their voice indices (a grouped run: its groups)."""
        out = dict(self._voices.get(self.rules[i].voice_key, {}))
        for (j, run), rg in self._groups.items():
            if j == i and rg.layout is not None:
                out.update({(run, name): g for g, name in enumerate(rg.layout.names)})
        return out

    def channel_for(self, rule: Rule, voice: int) -> int:
        """The MIDI channel a voice of ``rule`` plays on."""
        return self._channel(rule.channel, voice) if rule.voices == "channel" else rule.channel

    def voices(self) -> dict[str, list[str]]:
        """Voice tables for status reports: ``{"run,layer": ["r1/fc1", …]}`` (a grouped run: its groups)."""
        out = {",".join(k): dict.fromkeys("/".join(s) for s in t) for k, t in self._voices.items()}
        for (i, run), rg in self._groups.items():
            names = rg.layout.names if rg.layout is not None else [x for x in rg.order if x in rg.sent]
            out.setdefault(",".join(self.rules[i].voice_key), {}).update(dict.fromkeys(f"{run}/{n}" for n in names))
        return {k: list(v) for k, v in out.items()}

    def groups(self) -> dict[str, dict[str, dict[str, float | None]]]:
        """``{run: {rule name: {group: latest aggregate (None: not finite)}}}``; empty while a layout settles."""
        out: dict[str, dict[str, dict[str, float | None]]] = {}
        for (i, run), rg in self._groups.items():
            out.setdefault(run, {})[self.rules[i].name or str(i)] = {
                g: (v if math.isfinite(v) else None) for g, v in rg.values().items()}
        return out

    def _group(self, t: float, entry: list[Any], x: float, out: list[Mapped]) -> None:
        """A layer's value into its run's voice groups (a match ``entry`` of a grouped rule); what completes sounds."""
        rule_idx, (run, layer, _) = entry[0], entry[3]
        rg = entry[4] or self._run_groups(entry)
        emitted = rg.feed(layer, x, t)
        if emitted:  # most layer values complete no group: nothing to sound
            self._sound_groups(t, rule_idx, run, emitted, out)

    def _run_groups(self, entry: list[Any]) -> RunGroups:
        """The run's groups for a match ``entry`` of a grouped rule, found once and kept in it (forget_runs
        clears this cache with them)."""
        key = (entry[0], entry[3][0])
        if (rg := self._groups.get(key)) is None:
            rg = self._groups[key] = RunGroups(self.group_opts)
        entry[4] = rg
        return rg

    def _sound_groups(self, t: float, i: int, run: str, groups: list[Any], out: list[Mapped]) -> None:
        rule, rg = self.rules[i], self._groups[(i, run)]
        count = len(rg.layout.names) if rg.layout is not None else 0
        for g, name, value in groups:
            if math.isfinite(value) and (m := self._map_value(t, run, i, rule, (run, name), g, value, count)):
                out.append(m)
            # A group of several layers is watched as one stream too (its aggregate); a group of one is its layer.
            if self._watching and rule.kind == "grad_norm" and math.isfinite(value) and rg.layout is not None \
                    and len(rg.layout.members[g]) > 1:
                out.extend(self.alarms.signal(a) for a in self.watch.grad(t, run, f"group {name}", value, layer=False))

    def _settle(self, t: float, run: str | None) -> list[Mapped]:  # None: quiet layouts, stalled rounds
        out: list[Mapped] = []
        for (rule_idx, r), rg in self._groups.items():
            if rg.layout is None and (r == run or (run is None and t - rg.last_new >= self.group_opts.settle)):
                self._sound_groups(t, rule_idx, r, rg.settle(), out)
            elif run is None:
                self._sound_groups(t, rule_idx, r, rg.due(t), out)
        return out

    # -- mapping ----------------------------------------------------------
    def map(self, ev: Event) -> list[Mapped]:
        """Map one event through every matching rule, then the alarms and ticks it raises (docs/alarms.md)."""
        if ev.kind == "grad_norm" and ev.values and (x := ev.values[0]) - x == 0.0:  # finite: NaN, ±inf give NaN
            return self._map_grad(ev, x)
        out = self._map_rules(ev)
        if self._watching:
            for a in self.watch.feed(ev):  # most events raise nothing: no generator made for them
                out.append(self.alarms.signal(a))
        return out

    def _map_grad(self, ev: Event, x: float) -> list[Mapped]:
        """A finite grad norm, most of what a training run sends: :meth:`_map_rules` and the watch's ``feed``
        for it, less the branches that cannot apply (settling, non-finite values, other kinds)."""
        out: list[Mapped] = []
        matches = self._cache.get(ev.address) or self._matches(ev.address)
        if not matches:
            self.counters.unmapped += 1
        for entry in matches:
            where = entry[3]
            if where is not None and where[2] == 0:  # a voice group's layer, its rule on the only value
                entry[2] = 0  # a group's voice is its index in the run's layout
                rg = entry[4] or self._run_groups(entry)  # :meth:`_group`, inlined: one call less per value
                if emitted := rg.feed(where[1], x, ev.t):
                    self._sound_groups(ev.t, entry[0], where[0], emitted, out)
            else:
                self._map_entry(ev, entry, True, out)
        if self._watching:
            watch = self.watch
            if watch.incidents.nan_runs and ev.run in watch.incidents.nan_runs:
                watch.incidents.finite(ev.run, ev.address, watch.step_of(ev.run))  # may end its NaN incident
            alarms = watch.grad(ev.t, ev.run, ev.name, x)
            if alarms:
                out.extend(map(self.alarms.signal, alarms))
        return out

    def _map_rules(self, ev: Event) -> list[Mapped]:
        out: list[Mapped] = []
        if ev.kind in SETTLE_KINDS and self._groups:
            out = self._settle(ev.t, ev.run)
        finite = ev.finite
        if not finite:
            self.counters.nonfinite += 1
        if ev.kind == "event" and ev.name == "nan":
            self.alarms.nan(ev, -1, (ev.run,), 0, out)
        matches = self._matches(ev.address)
        if not matches:
            if not finite:
                # No rule for this address, but a non-finite value must still be heard.
                self.alarms.nan(ev, -1, (ev.run,), 0, out)
            elif not out:
                self.counters.unmapped += 1
            return out
        for entry in matches:
            self._map_entry(ev, entry, finite, out)
        return out

    def _map_entry(self, ev: Event, entry: list[Any], finite: bool, out: list[Mapped]) -> None:
        """One matching rule's result for ``ev`` (appended to ``out``)."""
        rule_idx, stream, voice, where, _ = entry
        rule = self.rules[rule_idx]
        if voice is None and where is not None:
            voice = entry[2] = 0  # a group's voice is its index in the run's layout
        elif voice is None:
            voice = self.voice_of(rule, stream)
            if voice is None:
                self.counters.voice_limit += 1
                if not finite and not out:  # no voice to mute, but a NaN is heard all the same
                    self.alarms.nan(ev, -1, (ev.run,), 0, out)
                return
            entry[2] = voice
        if not ev.values:
            return
        try:
            x = ev.values[rule.index]
        except IndexError:
            self.counters.unmapped += 1
            return
        if not math.isfinite(x) or (not finite and not out):
            self.alarms.nan(ev, rule_idx, stream, voice, out)
            return
        if where is not None:
            self._group(ev.t, entry, x, out)
            return
        m = self._map_value(ev.t, ev.run, rule_idx, rule, stream, voice, x)
        if m is not None:
            out.append(m)

    def _map_value(
        self, t: float, run: str, rule_idx: int, rule: Rule, stream: tuple[str, ...], voice: int, x: float,
        groups: int = 0,
    ) -> Mapped | None:
        key = (rule_idx, stream)
        st = self._streams.get(key)
        if st is None:
            st = self._streams[key] = StreamState()
        n = normalise(st, rule, x)
        channel = self.channel_for(rule, voice)
        target = rule.target
        interval = 1.0 / rule.rate_limit if rule.rate_limit > 0 else 0.0
        if target == "note":
            if t - st.last_sent < interval:
                self.counters.thinned += 1
                return None
            pitch = note_pitch(rule, voice, n)
            st.last_sent = t
            self.counters.mapped += 1
            return Mapped(
                t,
                run,
                rule_idx,
                rule.name,
                target,
                stream,
                voice,
                x,
                n,
                channel,
                (mb.note_on(channel, pitch, rule.velocity),),
                (mb.note_off(channel, pitch),),
                rule.length,
                groups,
            )
        code, midi = control(rule, channel, min(max(n, 0.0), 1.0))
        m = Mapped(t, run, rule_idx, rule.name, target, stream, voice, x, n, channel, midi, (), 0.0, groups)
        if code == st.last_code and st.pending is None and not self.every_value:
            self.counters.unchanged += 1
            return None
        if t - st.last_sent < interval:
            # Hold the newest value; flush_due() sends it when the interval is over.
            if st.pending is not None:
                self.counters.thinned += 1
            st.pending, st.pending_code, st.pending_step = m, code, self.watch.step_of(run)
            self._pending[key] = None
            return None
        st.pending = None
        st.last_code, st.last_sent = code, t
        self.counters.mapped += 1
        return m

    def _channel(self, base: int, voice: int) -> int:
        chans = self._free_channels
        if base in chans:
            start = chans.index(base)
            return chans[(start + voice) % len(chans)]
        return base if voice == 0 else chans[(voice - 1) % len(chans)]

    def flush_due(self, now: float) -> list[Mapped]:
        """Release rate-limited values whose interval is over (call periodically)."""
        out: list[Mapped] = self._settle(now, None) if self._groups else []
        if not self._pending:
            return out
        for key in list(self._pending):
            st = self._streams[key]
            m = st.pending
            if m is None:
                del self._pending[key]
                continue
            rule = self.rules[key[0]]
            if now - st.last_sent >= 1.0 / rule.rate_limit:
                st.pending = None
                del self._pending[key]
                if st.pending_code != st.last_code:
                    st.last_code, st.last_sent = st.pending_code, now
                    self.counters.mapped += 1
                    out.append(m._replace(t=now, step=st.pending_step))
        return out
