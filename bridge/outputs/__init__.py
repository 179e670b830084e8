"""Outputs behind one small protocol, imported only when chosen.

An output receives every accepted event with what the engine mapped from it
(:meth:`Output.handle`, called on the receive thread: it must be cheap and
never block), a periodic :meth:`Output.tick` with the pipeline's clock (wall
time live, recorded time in replay), and :meth:`Output.close`, which silences
and finishes files. Heavy work (audio) belongs in the output's own thread.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from importlib import import_module
from typing import Any, Protocol, runtime_checkable

from ..config import register_output_section
from ..errors import OutputUnavailable
from ..mapping import Mapped
from ..protocol import Event

#: output name → "module:factory". The factory takes (config, **options).
REGISTRY: dict[str, str] = {
    "midi": "trainsound.bridge.outputs.midi:MidiOut",
    "midi_file": "trainsound.bridge.outputs.midifile:MidiFileOut",
    "record": "trainsound.bridge.outputs.record:RecordOut",
    "osc": "trainsound.bridge.outputs.osc:OscOut",
    "sine": "trainsound.bridge.outputs.sine:SineOut",
    "pyo": "trainsound.bridge.outputs.pyo:PyoOut",
}

# Output-owned config tables, validated by the output's light options module (no audio imports).
register_output_section("sine", "trainsound.bridge.outputs.sine:options_from_table")
register_output_section("pyo", "trainsound.bridge.outputs.pyo:section")
register_output_section("osc_out", "trainsound.bridge.outputs.osc:section")


@runtime_checkable
class Output(Protocol):
    """What the pipeline needs of an output."""

    name: str

    def handle(self, event: Event | None, mapped: Sequence[Mapped]) -> None:
        """Take one event and its mapped values (receive thread; must not block).

        ``event`` is ``None`` for values the engine released later (rate limits).
        """

    def tick(self, now: float) -> None:
        """Periodic housekeeping: due note-offs, reconnects, file flushes."""

    def close(self) -> None:
        """Silence everything and finish files so they are valid."""

    def health(self) -> dict[str, Any]:
        """A small dict for status reports: ``{"ok": bool, ...}``."""


def load(name: str) -> Any:
    """Import an output's factory by name; a missing library raises :class:`OutputUnavailable`."""
    try:
        target = REGISTRY[name]
    except KeyError:
        raise OutputUnavailable(f"unknown output {name!r}; known: {', '.join(sorted(REGISTRY))}") from None
    mod, attr = target.split(":")
    try:
        return getattr(import_module(mod), attr)
    except ImportError as err:
        raise OutputUnavailable(f"output {name!r} needs {err.name or err}: {err}") from err


class NoteScheduler:
    """Due-time queue of ``later`` messages with retrigger handling; pure (time passed in).

    A note-on for a (channel, note) that still sounds first ends the old note,
    so a stale note-off never cuts a fresh note short.

    >>> s = NoteScheduler()
    >>> s.start(0.0, (bytes((0x90, 60, 100)),), (bytes((0x80, 60, 0)),), 0.1)
    [b'\\x90<d']
    >>> s.due(0.2)
    [(0.1, b'\\x80<\\x00', '')]
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, tuple[bytes, ...], str]] = []
        self._seq = 0
        self._sounding: dict[tuple[int, int], int] = {}  # (status&0x0F, note) → seq of its pending off
        self.channels: set[int] = set()

    def start(
        self, t: float, now_msgs: Sequence[bytes], later: tuple[bytes, ...], length: float, tag: str = ""
    ) -> list[bytes]:
        """Messages to send at ``t`` (retrigger note-offs first); ``later`` is queued with ``tag``."""
        out: list[bytes] = []
        for msg in now_msgs:
            self.channels.add((msg[0] & 0x0F) + 1)
            if len(msg) == 3 and msg[0] & 0xF0 == 0x90 and msg[2]:
                key = (msg[0] & 0x0F, msg[1])
                if key in self._sounding:
                    out.append(bytes((0x80 | key[0], key[1], 0)))
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
                if len(msg) == 3 and msg[0] & 0xF0 == 0x80:
                    key = (msg[0] & 0x0F, msg[1])
                    if self._sounding.get(key) != seq:
                        continue  # retriggered since: that newer note owns the off
                    del self._sounding[key]
                out.append((when, msg, tag))
        return out

    def release_all(self) -> list[bytes]:
        """Every pending ``later`` message now (note-offs first), then panic on used channels."""
        from ..midi_bytes import panic

        out: list[bytes] = []
        while self._heap:
            out.extend(heapq.heappop(self._heap)[2])
        self._sounding.clear()
        return out + panic(self.channels)

    @property
    def sounding(self) -> int:
        return len(self._sounding)
