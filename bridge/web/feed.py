"""The bridge-side live feed: the latest event per address, the latest mapped value per voice, recent alarms.

The receive thread calls :meth:`Feed.handle` with every accepted event and what the engine mapped from
it (the :class:`~..outputs.base.Output` protocol). It only stores references in dicts and appends
alarms (and, for the page, what changed) to bounded deques: no copies, no locks, no I/O, so the receive
loop is not slowed.

The web server's thread, polling at ~100 Hz, takes what changed (:meth:`Feed.changed`) and reads those
addresses alone. Other readers — the daemon answering ``/trainsound/snapshot``, a page's first hello —
take :meth:`Feed.copy`: ``dict.copy()`` and ``list(deque)`` of keys that are strings and tuples of
strings run in C without releasing the GIL, so a copy is consistent without a lock. The dicts are
bounded by the bridge's own bounds (``[bridge].max_runs``, ``max_voices``): :meth:`Feed.prune` forgets
the runs the pipeline forgot.

Generic on purpose: a voice is anything the engine maps (a layer, or a voice group's aggregate: rules
that group layers — :meth:`Feed.configure` — give each group a row of its own, keyed by
:func:`group_address`, and their layers' events no row); an alarm is ``(run, name, kind, step, value)``
(``nan`` from the engine; any detector calls :meth:`Feed.alarm` with its own kind), so new kinds reach
the page and ``trainsound top`` with no change there.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from ..config import Config
from ..mapped import Mapped
from ..mapping.groups import groups_rule
from ..outputs.base import COARSE_TICK, Output
from ..outputs.nonfinite import NonFinite, has_nan
from ..wire.protocol import Event

#: Alarms kept for late-joining readers (the page's log, ``trainsound top``).
ALARM_HISTORY = 256
#: The page's control requests held for the receive thread (a page cannot pile up more).
PAGE_REQUESTS = 64
#: Addresses (rows) kept in all, and per run: beyond, a new address is not kept and is counted as ``shed``
#: (its values are still mapped and heard; the page and ``top`` do not list it). Like the alarm table's
#: 4,096 a run: a real model's layers fit (GPT-2: ~600 addresses), a flood of names cannot grow the bridge.
MAX_ADDRESSES = 16_384
MAX_RUN_ADDRESSES = 4_096
#: Events stored that the page's thread has not taken yet (:meth:`Feed.changed`): past this many (the thread
#: stalled), no more are journaled and it takes every address afresh instead.
CHANGES = 65_536
#: A voice group's row: the kind of its stand-in event, and the prefix of its address (no OSC address starts so).
GROUP_KIND = "group"
GROUP_PREFIX = "group:"
#: Voice key: ``(rule index, stream captures)`` — the engine's own key, so rules keyed alike stay apart.
VoiceKey = tuple[int, tuple[str, ...]]
#: A journal entry: an address stored, or a voice a rate limit released.
Change = str | VoiceKey


class Alarm(NamedTuple):
    """One alarm as readers see it."""

    seq: int
    t: float
    run: str
    name: str
    """What raised it: a layer, metric or group name, or the message kind (``loss``)."""
    kind: str
    """``nan``, or a detector's kind (spike, plateau, divergence, exploding, vanishing, dead: docs/alarms.md)."""
    step: int | None
    value: float


class FeedCopy(NamedTuple):
    """A consistent copy of the feed, taken by a reader."""

    seq: int
    events: dict[str, Event]
    mapped: dict[str, Sequence[Mapped]]
    released: dict[VoiceKey, Mapped]
    alarms: list[Alarm]
    alarm_count: int

    def voices(self) -> dict[VoiceKey, tuple[Mapped, str]]:
        """Voice → (its latest mapped value, the address it came from); alarms are not voices."""
        out: dict[VoiceKey, tuple[Mapped, str]] = {}
        for address, ms in self.mapped.items():
            for m in ms:
                if m.norm == m.norm:
                    out[(m.rule, m.stream)] = (m, address)
        for key, m in self.released.items():
            prev = out.get(key)
            if prev is not None and m.t >= prev[0].t:
                out[key] = (m, prev[1])
        return out


class Feed(Output):
    """Latest values for readers on other threads (see the module docstring); fed like an output."""

    name = "feed"
    tick_interval = COARSE_TICK  # read by the page's thread at its own pace: ticks have nothing to do

    def __init__(self, config: Config | None = None) -> None:
        self.events: dict[str, Event] = {}
        """OSC address → the latest event that came to it."""
        self.mapped: dict[str, Sequence[Mapped]] = {}
        """OSC address → what the engine last mapped from it (rate limits map nothing most of the time)."""
        self.released: dict[VoiceKey, Mapped] = {}
        """Voice → the latest value a rate limit released later."""
        self.alarms: deque[Alarm] = deque(maxlen=ALARM_HISTORY)
        self.alarm_count = 0
        self.seq = 0
        """Bumped on every change: a reader that sees the same ``seq`` skips its copy."""
        self.readers = 0
        self.per_run: dict[str, int] = {}
        """Run → addresses kept (in first-seen order)."""
        self.shed = 0
        """Events to new addresses not kept: over :data:`MAX_ADDRESSES` or :data:`MAX_RUN_ADDRESSES`."""
        """Web clients connected now (the server sets it; shown in status)."""
        self.grouped: frozenset[int] = frozenset()
        """Indexes of the rules whose voices are groups (:meth:`reconfigure`)."""
        self.nonfinite: NonFinite | None = None
        """Made at the first non-finite value: a group row whose layer turned NaN shows NaN, no voice, until it
        is finite again (:mod:`..outputs.nonfinite`)."""
        self.changes: deque[Change] | None = None
        """What was stored, oldest first, once the page's server asks for it (:meth:`journal`): its thread
        takes what changed, not the whole feed, 100 times a second. ``dropped`` counts the notes not kept
        because :data:`CHANGES` waited."""
        self.dropped = 0
        self._dropped_seen = 0
        self.requests: deque[tuple[Any, ...]] = deque(maxlen=PAGE_REQUESTS)
        """The page's ``/trainsound/forward`` arguments (appended on the web thread), taken on :meth:`tick`."""
        self.control: Callable[[tuple[Any, ...], float], None] | None = None
        """Takes them on the receive thread (the daemon sets it: :func:`..service.answers.page_forward`)."""
        if config is not None:
            self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        """Learn which rules gather layers into voice groups (at start and on every reload)."""
        self.grouped = frozenset(i for i, r in enumerate(config.mappings)
                                 if groups_rule(r.voice_key, r.voices, config.groups))

    # -- the receive thread -------------------------------------------------------
    def handle(self, event: Event | None, mapped: Sequence[Mapped]) -> None:
        # The whole per-message cost of the page and of `trainsound top`: one or two dict stores.
        if not self._store(event, mapped):
            return
        if event is not None and self.changes is not None:
            self._note([event.address])
        self.seq += 1

    def handle_batch(self, batch: Sequence[tuple[Event, Sequence[Mapped]]]) -> None:
        """A datagram's events: what :meth:`handle` does for each, its usual case (nothing mapped) inlined,
        and their addresses journaled at once."""
        events = self.events
        held = self.nonfinite is not None and self.nonfinite.held
        for event, mapped in batch:
            if mapped or held:
                self._store(event, mapped)
            elif event.address in events or self._admit(event.run):  # a new address within the bounds
                events[event.address] = event
        if self.changes is not None:
            # The addresses, not the batch: strings are not tracked by the garbage collector, and holding the
            # datagram's events until the page's thread takes them made the collector run far more.
            self._note([event.address for event, _ in batch])
        self.seq += 1

    def _store(self, event: Event | None, mapped: Sequence[Mapped]) -> bool:
        """Keep ``event`` and what was mapped from it; ``False`` when its address is not kept (shed)."""
        grouped = self.grouped
        if (self.nonfinite is not None and self.nonfinite.held) or (mapped and has_nan(mapped)):
            mapped = self._held_silent(event, mapped)
        if event is not None:
            if event.address not in self.events and not self._admit(event.run):
                return False
            self.events[event.address] = event
            if mapped:
                own = True
                for m in mapped:
                    if m.norm != m.norm:
                        self._signal(m)
                    elif m.rule in grouped:
                        self._group_value(m)
                        own = False
                # The engine's own list (no copy), less the group values: those are their groups' rows.
                self.mapped[event.address] = mapped if own else [
                    m for m in mapped if m.rule not in grouped or m.norm != m.norm]
        else:  # values released later by a rate limit, a voice group's aggregate, a detector's alarm
            for m in mapped:
                if m.norm != m.norm:
                    self._signal(m)
                elif m.rule in grouped:
                    self._group_value(m)
                else:
                    self.released[(m.rule, m.stream)] = m
                    self._note([(m.rule, m.stream)])
        return True

    def _note(self, changes: list[Change]) -> None:
        """Journal changes for the page's thread (:meth:`changed`) while fewer than :data:`CHANGES` wait."""
        journal = self.changes
        if journal is None:
            return
        if len(journal) < CHANGES:  # so at most one datagram's worth over it
            journal.extend(changes)
        else:  # the page's thread stalled: it takes every address instead
            self.dropped += 1

    def _held_silent(self, event: Event | None, mapped: Sequence[Mapped]) -> Sequence[Mapped]:
        if self.nonfinite is None:
            self.nonfinite = NonFinite()
        mapped, newly = self.nonfinite.see(event, mapped)
        for rule, run in newly:
            if rule not in self.grouped:
                continue
            prefix = f"{GROUP_PREFIX}{run}/{rule}/"
            for address in [a for a in self.events if a.startswith(prefix)]:  # the group's rows: NaN, not "on"
                ev, ms = self.events[address], self.mapped.get(address, ())
                self.events[address] = ev._replace(values=(math.nan,), t=event.t if event is not None else ev.t)
                self.mapped[address] = tuple(m._replace(norm=math.nan, value=math.nan) for m in ms)
                self._note([address])
        return mapped

    def _signal(self, m: Mapped) -> None:
        """A sounded alarm (the engine's NaN alarm or a detector's: ``m.kind``, docs/alarms.md) joins the log;
        ticks (epoch, lr) and alarms held off by the engine's rate limits do not."""
        if m.target == "alarm" and m.midi:
            self.alarm(m.run, m.rule_name, m.kind or "nan", m.t, m.value, m.step if m.step >= 0 else None)

    def _group_value(self, m: Mapped) -> None:
        """A voice group's latest aggregate, kept as if it came to an address of its own: one row per group."""
        address = group_address(m)
        if address not in self.events and not self._admit(m.run):
            return
        self.events[address] = Event(m.t, m.run, GROUP_KIND, m.stream[-1], (m.value,), None, address, b"")
        self.mapped[address] = (m,)
        self._note([address])

    def _admit(self, run: str) -> bool:
        """Room for one more address of ``run``? (Counted when not.)"""
        n = self.per_run.get(run, 0)
        if n >= MAX_RUN_ADDRESSES or len(self.events) >= MAX_ADDRESSES:
            self.shed += 1
            return False
        self.per_run[run] = n + 1
        return True

    def alarm(self, run: str, name: str, kind: str, t: float, value: float, step: int | None = None) -> None:
        """Record an alarm; ``step`` defaults to the run's latest ``/nn/<run>/step``."""
        if step is None:
            ev = self.events.get(f"/nn/{run}/step")
            step = int(ev.values[0]) if ev is not None and ev.values else None
        self.alarm_count += 1
        self.alarms.append(Alarm(self.alarm_count, t, run, name, kind, step, value))
        self.seq += 1

    def prune(self, runs: set[str]) -> None:
        """Forget what belongs to runs no longer tracked (the pipeline forgot them)."""
        if all(r in runs for r in self.per_run):
            return  # the common case costs what the runs cost, not what the addresses cost
        stale = [a for a, ev in self.events.items() if ev.run not in runs]
        for a in stale:
            del self.events[a]
            self.mapped.pop(a, None)
        for run in [r for r in self.per_run if r not in runs]:
            del self.per_run[run]
        for k in [k for k, m in self.released.items() if m.run not in runs]:
            del self.released[k]
        if self.nonfinite is not None:
            for run in {k[1] for k in self.nonfinite.held} - runs:
                self.nonfinite.forget(run)
        if stale:
            self.seq += 1

    def release_run(self, run: str, now: float) -> None:
        """An ended run's rows stay until :meth:`prune` (the daemon's tick): the page shows how it ended."""

    def tick(self, now: float) -> None:
        """The page's requests, here on the receive thread (readers poll for the rest)."""
        while self.requests and self.control is not None:
            self.control(self.requests.popleft(), now)

    def close(self) -> None:
        """Nothing to finish."""

    def health(self) -> dict[str, Any]:
        return {"ok": True, "web_clients": self.readers, "addresses": len(self.events), "shed": self.shed}

    # -- readers -----------------------------------------------------------------
    def journal(self) -> None:
        """Note every change from now on, for :meth:`changed` (one reader: the page's server)."""
        if self.changes is None:
            self.changes = deque()  # bounded by _note: a maxlen would drop the oldest uncounted

    def changed(self) -> list[str | VoiceKey] | None:
        """The addresses stored and voices released since the last call, oldest first (repeats kept), or
        ``None`` when some were not journaled (too many waited): then every address is news.

        The receive thread appends while this pops: ``deque`` appends and pops are atomic and only this
        reader pops, so nothing is taken twice or missed."""
        changes = self.changes
        if changes is None:
            return None
        dropped = self.dropped  # read first: a drop after this is seen next time
        pop = changes.popleft
        out = [pop() for _ in range(len(changes))]
        if dropped != self._dropped_seen:
            self._dropped_seen = dropped
            return None
        return out

    def copy(self) -> FeedCopy:
        """A consistent copy (safe from any thread; see the module docstring)."""
        return FeedCopy(self.seq, self.events.copy(), self.mapped.copy(), self.released.copy(), list(self.alarms),
                        self.alarm_count)


def group_address(m: Mapped) -> str:
    """A group row's key: run, rule and group index (so rows sort in the layout's order), then its name.

    >>> group_address(Mapped(0.0, "gpt2", 0, "g", "note", ("gpt2", "h.0–h.2"), 3, 1.0, 0.5, 1, (), (), 0.0, 5))
    'group:gpt2/0/003/h.0–h.2'
    """
    return f"{GROUP_PREFIX}{m.run}/{m.rule}/{m.voice:03d}/{m.stream[-1]}"


def finite_or_none(x: float) -> float | str | None:
    """JSON has no NaN/Inf: non-finite values travel as strings the page prints as they are.

    >>> finite_or_none(0.5), finite_or_none(float("nan")), finite_or_none(float("-inf"))
    (0.5, 'NaN', '-Infinity')
    """
    if math.isfinite(x):
        return x
    return "NaN" if x != x else ("Infinity" if x > 0 else "-Infinity")
