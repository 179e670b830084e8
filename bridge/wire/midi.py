"""MIDI channel messages as 3-byte ``bytes``, built and read in one place (mido is for files).

>>> note_on(1, 60, 100).hex()
'903c64'
>>> pitch_bend(1, 8192).hex()
'e00040'
>>> is_note_on(note_on(2, 60, 1)), is_note_off(note_on(2, 60, 0)), note_key(note_off(2, 60))
(True, True, (1, 60))
"""

from __future__ import annotations

NOTE_OFF = 0x80
NOTE_ON = 0x90
CONTROL_CHANGE = 0xB0
CHANNEL_PRESSURE = 0xD0
PITCH_BEND = 0xE0
STATUS_MASK = 0xF0
CHANNEL_MASK = 0x0F
DATA_MASK = 0x7F
#: Largest 7-bit data value (CC value, velocity, note).
DATA_MAX = 127
#: Largest 14-bit value (pitch bend, 14-bit CC pair).
DATA14_MAX = 16383
#: A 14-bit CC's LSB controller is its MSB controller + 32.
CC14_LSB_OFFSET = 32
ALL_SOUND_OFF = 120
ALL_NOTES_OFF = 123
DRUM_CHANNEL = 10
MIDI_CHANNELS = range(1, 17)


def _ch(channel: int) -> int:
    if not 1 <= channel <= 16:
        raise ValueError(f"MIDI channel must be in 1..16, got {channel}")
    return channel - 1


def note_on(channel: int, note: int, velocity: int) -> bytes:
    return bytes((NOTE_ON | _ch(channel), note & DATA_MASK, velocity & DATA_MASK))


def note_off(channel: int, note: int) -> bytes:
    return bytes((NOTE_OFF | _ch(channel), note & DATA_MASK, 0))


def control_change(channel: int, control: int, value: int) -> bytes:
    return bytes((CONTROL_CHANGE | _ch(channel), control & DATA_MASK, value & DATA_MASK))


def control_change14(channel: int, control: int, value: int) -> tuple[bytes, bytes]:
    """A 14-bit CC (``value`` 0..16383): MSB on ``control``, LSB on ``control + 32``.

    >>> [m.hex() for m in control_change14(1, 1, 8192)]
    ['b00140', 'b02100']
    """
    return (control_change(channel, control, value >> 7),
            control_change(channel, control + CC14_LSB_OFFSET, value & DATA_MASK))


def pitch_bend(channel: int, value: int) -> bytes:
    """``value`` is 0..16383, 8192 is centre."""
    return bytes((PITCH_BEND | _ch(channel), value & DATA_MASK, (value >> 7) & DATA_MASK))


def channel_pressure(channel: int, value: int) -> bytes:
    return bytes((CHANNEL_PRESSURE | _ch(channel), value & DATA_MASK))


def panic(channels: range | list[int] | set[int]) -> list[bytes]:
    """All-notes-off and all-sound-off on each channel (like mido's ``panic_messages``)."""
    out = []
    for ch in sorted(channels):
        out.append(control_change(ch, ALL_NOTES_OFF, 0))
        out.append(control_change(ch, ALL_SOUND_OFF, 0))
    return out


def data7(x: float) -> int:
    """0..1 → 0..127 (rounded; ``x`` already clamped).

    >>> data7(0.0), data7(0.5), data7(1.0)
    (0, 64, 127)
    """
    return round(x * DATA_MAX)


def data14(x: float) -> int:
    """0..1 → 0..16383 (rounded; ``x`` already clamped).

    >>> data14(0.5)
    8192
    """
    return round(x * DATA14_MAX)


# -- reading ------------------------------------------------------------------------------
def with_channel(msg: bytes, channel: int) -> bytes:
    """The same channel message on another channel (1..16).

    >>> with_channel(control_change(3, 74, 64), 1).hex()
    'b04a40'
    """
    return bytes((msg[0] & STATUS_MASK | _ch(channel),)) + msg[1:]


def channel_of(msg: bytes) -> int:
    """The message's channel, 1..16."""
    return (msg[0] & CHANNEL_MASK) + 1


def is_note_on(msg: bytes) -> bool:
    """A note-on with a velocity (a note-on with velocity 0 is a note-off)."""
    return len(msg) == 3 and msg[0] & STATUS_MASK == NOTE_ON and msg[2] != 0


def is_note_off(msg: bytes) -> bool:
    return len(msg) == 3 and (msg[0] & STATUS_MASK == NOTE_OFF or (msg[0] & STATUS_MASK == NOTE_ON and msg[2] == 0))


def is_control_change(msg: bytes) -> bool:
    return msg[0] & STATUS_MASK == CONTROL_CHANGE


def note_key(msg: bytes) -> tuple[int, int]:
    """``(channel index 0..15, note)`` of a note message: what a note-off must match."""
    return msg[0] & CHANNEL_MASK, msg[1]


def note_off_for(key: tuple[int, int]) -> bytes:
    """The note-off for a :func:`note_key`."""
    return bytes((NOTE_OFF | key[0], key[1], 0))
