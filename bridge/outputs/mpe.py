"""MPE (MIDI Polyphonic Expression): one member channel per voice, pitch as a note plus a 14-bit bend.

A lower zone: the master channel is 1, the members are 2..members+1. The zone is
declared with the MPE Configuration Message (RPN 6 on the master channel) and each
member's pitch-bend range with RPN 0, at start and after every reconnect. A voice's
first value starts a note at the nearest semitone and bends to the exact pitch; later
values only bend, so a norm glides continuously without retriggering, until the pitch
leaves the bend range (then the note is started again at the new pitch) or the voice
has been silent for ``hold`` seconds (then it ends). Pure: time is passed in.

>>> z = MpeZone(members=2, bend_range=48)
>>> [m.hex() for m in z.update(0.0, "a", 60.5, 100)]
['e15540', '913c64']
>>> [m.hex() for m in z.update(0.1, "a", 61.0, 100)]
['e12b41']
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from ..mapped import Mapped
from ..mapping.rules import Rule, fractional_pitch
from ..wire import midi as mb

MASTER = 1
BEND_CENTRE = 8192
#: Silence after which a held note ends (its voice's channel is then free for another).
DEFAULT_HOLD = 2.0


def rpn(channel: int, number: int, msb: int, lsb: int = 0) -> list[bytes]:
    """Set registered parameter ``number`` on ``channel`` to (msb, lsb), then close the RPN (null RPN)."""
    return [
        mb.control_change(channel, 101, number >> 7),
        mb.control_change(channel, 100, number & 0x7F),
        mb.control_change(channel, 6, msb),
        mb.control_change(channel, 38, lsb),
        mb.control_change(channel, 101, 127),
        mb.control_change(channel, 100, 127),
    ]


def bend_code(semitones: float, bend_range: int) -> int:
    """14-bit pitch-bend value for an offset in semitones (clamped to the range)."""
    code = BEND_CENTRE + round(semitones / bend_range * BEND_CENTRE)
    return 0 if code < 0 else 16383 if code > 16383 else code


@dataclass
class _Voice:
    channel: int
    note: int
    bend: int
    last: float


class MpeZone:
    """Member-channel allocation and held notes for an MPE lower zone."""

    def __init__(self, members: int = 14, bend_range: int = 48, hold: float = DEFAULT_HOLD) -> None:
        self.members = list(range(MASTER + 1, MASTER + 1 + members))
        self.bend_range = bend_range
        self.hold = hold
        self._voices: dict[Hashable, _Voice] = {}
        self._free = list(self.members)
        self.retriggers = 0
        self.stolen = 0
        self._streams: dict[tuple[str, ...], Hashable] = {}  # stream → its note voice, for timbre/pressure

    def configure(self) -> list[bytes]:
        """The zone declaration (RPN 6 on the master) and every member's bend range (RPN 0)."""
        out = rpn(MASTER, 6, len(self.members))
        for ch in self.members:
            out += rpn(ch, 0, self.bend_range)
        return out

    def declare(self) -> list[bytes]:
        """The zone again for a listener that just connected: :meth:`configure`, then every sounding voice's
        current bend (an MCM may return a receiver's bends to their defaults; the notes keep their pitch).

        >>> z = MpeZone(members=2, bend_range=48)
        >>> _ = z.update(0.0, "a", 60.5, 100)
        >>> [m.hex() for m in z.declare()[-1:]], len(z.declare()) == len(z.configure()) + 1
        (['e15540'], True)
        """
        return self.configure() + [mb.pitch_bend(v.channel, v.bend) for v in self._voices.values()]

    def channel_of(self, key: Hashable) -> int | None:
        v = self._voices.get(key)
        return v.channel if v is not None else None

    def update(self, t: float, key: Hashable, pitch: float, velocity: int) -> list[bytes]:
        """Messages that make voice ``key`` sound at ``pitch`` (a fractional MIDI note)."""
        pitch = min(max(pitch, 0.0), float(mb.DATA_MAX))
        v = self._voices.get(key)
        out: list[bytes] = []
        if v is not None and abs(pitch - v.note) > self.bend_range:
            out.append(mb.note_off(v.channel, v.note))
            self._voices.pop(key)
            self._free.append(v.channel)
            self.retriggers += 1
            v = None
        if v is None:
            out += self._start(t, key, pitch, velocity)
            return out
        v.last = t
        code = bend_code(pitch - v.note, self.bend_range)
        if code != v.bend:
            v.bend = code
            out.append(mb.pitch_bend(v.channel, code))
        return out

    def _start(self, t: float, key: Hashable, pitch: float, velocity: int) -> list[bytes]:
        out: list[bytes] = []
        if not self._free:
            # More voices than members: the longest-silent voice gives up its channel (counted).
            old_key = min(self._voices, key=lambda k: self._voices[k].last)
            old = self._voices.pop(old_key)
            out.append(mb.note_off(old.channel, old.note))
            self._free.append(old.channel)
            self.stolen += 1
        ch = self._free.pop(0)
        note = round(pitch)
        code = bend_code(pitch - note, self.bend_range)
        self._voices[key] = _Voice(ch, note, code, t)
        # MPE: the member's bend is set before its note starts, so the note never sounds at a stale pitch.
        out += [mb.pitch_bend(ch, code), mb.note_on(ch, note, velocity)]
        return out

    def route(self, m: Mapped, rules: tuple[Rule, ...], alarm_channel: int) -> tuple[list[bytes], bool]:
        """What one mapped value becomes in the zone: ``(messages, held)``.

        ``held``: the messages belong to a zone voice (sent as they are, its note ends through the zone);
        otherwise they are ordinary channel messages moved onto the voice's member channel (its timbre or
        pressure) or onto the master channel (zone-wide), their ``later`` messages likewise.
        """
        if m.target == "note" and not m.alarm and 0 <= m.rule < len(rules):
            key = (m.rule, m.stream)
            self._streams[m.stream] = key
            return self.update(m.t, key, fractional_pitch(rules[m.rule], m.voice, m.norm), m.midi[0][2]), True
        if (m.alarm or m.tick) and m.channel == alarm_channel:  # alarms and context ticks keep their channel
            return list(m.midi), False
        voice = self._streams.get(m.stream)
        ch = (self.channel_of(voice) if voice is not None else None) or MASTER
        return [mb.with_channel(x, ch) for x in m.midi], False

    def moved(self, m: Mapped, msgs: list[bytes]) -> tuple[bytes, ...]:
        """``m.later`` on the channel :meth:`route` moved ``m.midi`` to."""
        if not msgs or not m.later:
            return m.later
        ch = mb.channel_of(msgs[0])
        return tuple(mb.with_channel(x, ch) for x in m.later)

    def release_run(self, run: str) -> list[bytes]:
        """End every voice of ``run`` (its event ``end``)."""
        return self.release([k for k in self._voices if isinstance(k, tuple) and k[1][:1] == (run,)])

    def expire(self, now: float) -> list[bytes]:
        """Note-offs for voices silent for ``hold`` seconds; their channels become free."""
        gone = [k for k, v in self._voices.items() if now - v.last >= self.hold]
        return self.release(gone)

    def release(self, keys: list[Hashable]) -> list[bytes]:
        out: list[bytes] = []
        for k in keys:
            v = self._voices.pop(k, None)
            if v is not None:
                out += [mb.note_off(v.channel, v.note), mb.pitch_bend(v.channel, BEND_CENTRE)]
                self._free.append(v.channel)
        return out

    def note_keys(self) -> list[tuple[int, tuple[str, ...]]]:
        """The sounding note voices' keys ``(rule, stream)``."""
        return [k for k in self._voices if isinstance(k, tuple)]

    def release_all(self) -> list[bytes]:
        return self.release(list(self._voices))

    @property
    def sounding(self) -> int:
        return len(self._voices)
