"""The output protocol, the base class every output builds on, and the note scheduler.

An output receives every accepted event with what the engine mapped from it
(:meth:`Output.handle`, called on the receive thread: it must be cheap and
never block), a periodic :meth:`Output.tick` with the pipeline's clock (wall
time live, recorded time in replay), and :meth:`Output.close`, which silences
and finishes files. Heavy work (audio) belongs in the output's own thread.
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..config import Config
from ..mapped import Mapped
from ..wire import midi as mb
from ..wire.protocol import Event
from .nonfinite import NonFinite

log = logging.getLogger(__name__)

#: Set by a second stop signal: outputs cut their waits short (notes are still silenced, files finished).
HURRY = threading.Event()


def hurry_outputs() -> None:
    """Ask every output's :meth:`Output.close` to skip what it waits for."""
    HURRY.set()


def fresh_path(path: str | os.PathLike[str], what: str, now: float | None = None) -> Path:
    """``path`` if nothing would be lost by writing it (absent or empty), else a new timestamped name.

    A restarted bridge (systemd restarts it on failure) must never truncate the previous session:
    ``out.mid`` becomes ``out-20261130-050312.mid`` (``-2``, ``-3``, … if that exists too), and the
    log says so. A timestamp rather than ``out.1.mid``: numbered names are the MIDI file's parts.
    """
    p = Path(path)
    try:
        if p.stat().st_size == 0:
            return p
    except FileNotFoundError:
        return p
    except OSError:
        return p  # not ours to judge here: opening it reports the error with its reason
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    base = p.with_name(f"{p.stem}-{stamp}{p.suffix}")
    cand, n = base, 1
    while cand.exists():
        n += 1
        cand = base.with_name(f"{p.stem}-{stamp}-{n}{p.suffix}")
    log.warning("%s %s exists (%d bytes); kept, writing %s instead", what, p, p.stat().st_size, cand)
    return cand


#: The receive loop's tick for outputs that sound: due note-offs and rate-limited values on time.
FINE_TICK = 0.002
#: Its tick when only files and the page's feed listen: they flush every 50 ms anyway, and an idle bridge
#: woken 500 times a second took 2-4 % of a core.
COARSE_TICK = 0.05


@runtime_checkable
class Output(Protocol):
    """What the pipeline needs of an output."""

    name: str
    tick_interval: float = FINE_TICK
    """The longest this output may wait between two :meth:`tick` calls (seconds)."""

    def handle(self, event: Event | None, mapped: Sequence[Mapped]) -> None:
        """Take one event and its mapped values (receive thread; must not block).

        ``event`` is ``None`` for values the engine released later (rate limits).
        """

    def handle_batch(self, batch: Sequence[tuple[Event, Sequence[Mapped]]]) -> None:
        """A datagram's events with their mapped values, in order and at one time: :meth:`handle` for each
        unless an output can do the lot at once (the recording writes them in one go)."""
        for event, mapped in batch:
            self.handle(event, mapped)

    def tick(self, now: float) -> None:
        """Periodic housekeeping: due note-offs, reconnects, file flushes."""

    def close(self) -> None:
        """Silence everything and finish files so they are valid."""

    def health(self) -> dict[str, Any]:
        """A small dict for status reports: ``{"ok": bool, ...}``."""

    def release_run(self, run: str, now: float) -> None:
        """A run ended (its ``end`` event, or idle past ``[bridge].run_idle``): silence its voices now."""
        return None  # a default (nothing sounds), not an abstract method

    def bring_forward(self, run: str, group: str | None, until: float) -> None:
        """A listener brings voice group ``group`` of ``run`` forward until ``until`` (the pipeline's clock;
        ``inf``: until sent back; ``until`` ≤ now sends it back; ``group`` ``None``: send every group back).
        Only the sine output's foreground budget has a front and a back (docs/sound.md); others ignore it."""
        return None

    def forwarded(self) -> list[dict[str, Any]] | None:
        """The groups brought forward: ``[{"run", "group", "left"}]`` (``left`` ``None``: until sent back);
        ``None``: this output has no foreground to bring a group into."""
        return None

    def reconfigure(self, config: Config) -> None:
        """A reload's new config (SIGHUP): take what applies to an open output; the rest waits for a restart
        (nothing, by default)."""
        return None

    def describe(self) -> str:
        """One line for the start-up log: the output and where it goes."""
        return self.name


class BaseOutput(Output):
    """What every output shares: ``closed`` checked in one place, ``close()`` idempotent (mido's ``BaseOutput``).

    Subclasses set ``name`` and implement :meth:`_handle`, :meth:`_close` and, where they have periodic
    work, :meth:`_tick`; :meth:`health` and :meth:`describe` report on them (``reconfigure`` and
    ``describe`` default to the protocol's).
    """

    name = "output"
    closed = False
    silences = False
    """A sounding output: a stream that turned non-finite stays silent until it is finite again (a voice group's
    stale aggregate is not sounded; :mod:`.nonfinite`), and :meth:`_silence` releases a group's voices."""
    _nonfinite: NonFinite | None = None  # made at the first non-finite value

    def handle(self, event: Event | None, mapped: Sequence[Mapped]) -> None:
        if not self.closed:
            if self.silences:
                nf = self._nonfinite
                if nf is not None and nf.held:  # a finite event ends a hold even when nothing was mapped
                    mapped = self._held_silent(event, mapped)
                else:
                    for m in mapped:  # inline: this runs for every message
                        if m.norm != m.norm:
                            mapped = self._held_silent(event, mapped)
                            break
            self._handle(event, mapped)

    def handle_batch(self, batch: Sequence[tuple[Event, Sequence[Mapped]]]) -> None:
        if self.closed:
            return
        if self.silences:  # a sounding output: each through handle (its non-finite holds)
            for event, mapped in batch:
                self.handle(event, mapped)
            return
        h = self._handle
        for event, mapped in batch:
            h(event, mapped)

    def _held_silent(self, event: Event | None, mapped: Sequence[Mapped]) -> Sequence[Mapped]:
        nf = self._nonfinite
        if nf is None:
            nf = self._nonfinite = NonFinite()
        mapped, newly = nf.see(event, mapped)
        for rule, run in newly:
            self._silence(rule, run)
        return mapped

    def _silence(self, rule: int, run: str) -> None:
        """A value of ``rule`` in ``run`` turned non-finite: release the voices that sound it through a voice
        group (the NaN value itself mutes its own stream's voice). Nothing by default."""

    def tick(self, now: float) -> None:
        if not self.closed:
            self._tick(now)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._close()

    def release_run(self, run: str, now: float) -> None:
        """A run ended (its ``end`` event, or idle past ``[bridge].run_idle``): silence its voices now."""
        if not self.closed:
            if self._nonfinite is not None:
                self._nonfinite.forget(run)
            self._release_run(run, now)

    def _release_run(self, run: str, now: float) -> None:
        """Nothing sounds on by default."""

    def _handle(self, event: Event | None, mapped: Sequence[Mapped]) -> None:
        raise NotImplementedError

    def _tick(self, now: float) -> None:
        """Nothing periodic by default."""

    def _close(self) -> None:
        """Nothing to finish by default."""

    def health(self) -> dict[str, Any]:
        return {"ok": not self.closed}


class NoteScheduler:
    """Due-time queue of ``later`` messages with retrigger handling; pure (time passed in).

    A note-on for a (channel, note) that still sounds first ends the old note,
    so a stale note-off never cuts a fresh note short.

    >>> s = NoteScheduler()
    >>> s.start(0.0, (mb.note_on(1, 60, 100),), (mb.note_off(1, 60),), 0.1)
    [b'\\x90<d']
    >>> s.due(0.2)
    [(0.1, b'\\x80<\\x00', '')]
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, tuple[bytes, ...], str]] = []
        self._seq = 0
        self._sounding: dict[tuple[int, int], int] = {}  # note key → seq of its pending off
        self.channels: set[int] = set()

    def start(
        self, t: float, now_msgs: Sequence[bytes], later: tuple[bytes, ...], length: float, tag: str = ""
    ) -> list[bytes]:
        """Messages to send at ``t`` (retrigger note-offs first); ``later`` is queued with ``tag``."""
        out: list[bytes] = []
        for msg in now_msgs:
            self.channels.add(mb.channel_of(msg))
            if mb.is_note_on(msg):
                key = mb.note_key(msg)
                if key in self._sounding:
                    out.append(mb.note_off_for(key))
                self._sounding[key] = self._seq
            out.append(msg)
        if later:
            heapq.heappush(self._heap, (t + length, self._seq, later, tag))
            self._seq += 1
        return out

    def due(self, now: float) -> list[tuple[float, bytes, str]]:
        """``(due_time, message, tag)`` for every ``later`` message due by ``now``."""
        out: list[tuple[float, bytes, str]] = []
        while self._heap and self._heap[0][0] <= now:
            when, seq, msgs, tag = heapq.heappop(self._heap)
            for msg in msgs:
                if mb.is_note_off(msg):
                    key = mb.note_key(msg)
                    if self._sounding.get(key) != seq:
                        continue  # retriggered since: that newer note owns the off
                    del self._sounding[key]
                out.append((when, msg, tag))
        return out

    def release(self, tag: str) -> list[bytes]:
        """Every pending ``later`` message queued with ``tag`` (a run's note-offs), now.

        >>> s = NoteScheduler()
        >>> _ = s.start(0.0, (mb.note_on(1, 60, 100),), (mb.note_off(1, 60),), 9.0, "a")
        >>> _ = s.start(0.0, (mb.note_on(2, 62, 100),), (mb.note_off(2, 62),), 9.0, "b")
        >>> s.release("a"), s.sounding
        ([b'\\x80<\\x00'], 1)
        """
        keep, out = [], []
        for when, seq, msgs, t in self._heap:
            if t != tag:
                keep.append((when, seq, msgs, t))
                continue
            for msg in msgs:
                if mb.is_note_off(msg) and self._sounding.get(mb.note_key(msg)) == seq:
                    del self._sounding[mb.note_key(msg)]
                out.append(msg)
        heapq.heapify(keep)
        self._heap = keep
        return out

    def release_all(self) -> list[bytes]:
        """Every pending ``later`` message now (note-offs first), then panic on used channels."""
        out: list[bytes] = []
        while self._heap:
            out.extend(heapq.heappop(self._heap)[2])
        self._sounding.clear()
        return out + mb.panic(self.channels)

    @property
    def sounding(self) -> int:
        return len(self._sounding)
