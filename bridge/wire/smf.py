"""Standard MIDI File bytes, written incrementally: what :mod:`..outputs.midifile` appends to.

A type-1 file is a header chunk and one chunk per track; a track's events are
delta-time encoded. :class:`TrackBytes` keeps a track's events *encoded*, so
writing the whole file again costs one pass over bytes already made, not a
re-encoding of every event (issue 16, item 15).

>>> t = TrackBytes("run1")
>>> t.append([(0.0, bytes([0x90, 60, 100])), (0.5, bytes([0x80, 60, 0]))], origin=0.0)
>>> len(smf_bytes([t])) > 14
True
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

TICKS_PER_BEAT = 480
TEMPO = 500_000  # µs per beat (120 BPM): 960 ticks per second
TICKS_PER_SECOND = TICKS_PER_BEAT * 1_000_000 / TEMPO
END_OF_TRACK = b"\x00\xff\x2f\x00"


def varlen(n: int) -> bytes:
    """A variable-length quantity (7 bits a byte, high bit: more follows).

    >>> varlen(0), varlen(127), varlen(128), varlen(0x0FFFFFFF)
    (b'\\x00', b'\\x7f', b'\\x81\\x00', b'\\xff\\xff\\xff\\x7f')
    """
    out = bytearray([n & 0x7F])
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def meta(kind: int, data: bytes) -> bytes:
    """A meta event at delta 0."""
    return b"\x00\xff" + bytes([kind]) + varlen(len(data)) + data


def track_name(name: str) -> bytes:
    # SMF text is Latin-1 (as in mido): a run name outside it must not make a save fail.
    return meta(0x03, name.encode("latin-1", "replace"))


class TrackBytes:
    """One track's events, encoded as they are appended (in time order; earlier times clamp to the last)."""

    def __init__(self, name: str) -> None:
        self.head = track_name(name)
        self.body = bytearray()
        self.tick = 0
        self.events = 0

    def append(
        self, events: Sequence[tuple[float, bytes]], origin: float, ticks_per_second: float = TICKS_PER_SECOND
    ) -> None:
        body, last = self.body, self.tick
        for t, msg in sorted(events, key=lambda e: e[0]):
            tick = max(last, round((t - origin) * ticks_per_second))
            body += varlen(tick - last)
            body += msg
            last = tick
        self.tick = last
        self.events += len(events)

    def chunk(self) -> bytes:
        data = self.head + self.body + END_OF_TRACK
        return b"MTrk" + struct.pack(">I", len(data)) + data


def smf_bytes(tracks: Iterable[TrackBytes], tempo: int = TEMPO) -> bytes:
    """The whole file: header, the tempo track (``tempo`` µs per beat), then every track."""
    tracks = list(tracks)
    meta_track = track_name("trainsound") + meta(0x51, tempo.to_bytes(3, "big")) + END_OF_TRACK
    head = b"MThd" + struct.pack(">IHHH", 6, 1, len(tracks) + 1, TICKS_PER_BEAT)
    parts = [head, b"MTrk", struct.pack(">I", len(meta_track)), meta_track]
    parts.extend(t.chunk() for t in tracks)
    return b"".join(parts)
