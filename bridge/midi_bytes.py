"""MIDI status bytes and message builders (3-byte ``bytes``; mido is for files).

>>> note_on(1, 60, 100).hex()
'903c64'
>>> pitch_bend(1, 8192).hex()
'e00040'
"""

from __future__ import annotations

NOTE_OFF = 0x80
NOTE_ON = 0x90
CONTROL_CHANGE = 0xB0
CHANNEL_PRESSURE = 0xD0
PITCH_BEND = 0xE0
ALL_SOUND_OFF = 120
ALL_NOTES_OFF = 123
DRUM_CHANNEL = 10
MIDI_CHANNELS = range(1, 17)


def _ch(channel: int) -> int:
    if not 1 <= channel <= 16:
        raise ValueError(f"MIDI channel must be in 1..16, got {channel}")
    return channel - 1


def note_on(channel: int, note: int, velocity: int) -> bytes:
    return bytes((NOTE_ON | _ch(channel), note & 0x7F, velocity & 0x7F))


def note_off(channel: int, note: int) -> bytes:
    return bytes((NOTE_OFF | _ch(channel), note & 0x7F, 0))


def control_change(channel: int, control: int, value: int) -> bytes:
    return bytes((CONTROL_CHANGE | _ch(channel), control & 0x7F, value & 0x7F))


def pitch_bend(channel: int, value: int) -> bytes:
    """``value`` is 0..16383, 8192 is centre."""
    return bytes((PITCH_BEND | _ch(channel), value & 0x7F, (value >> 7) & 0x7F))


def channel_pressure(channel: int, value: int) -> bytes:
    return bytes((CHANNEL_PRESSURE | _ch(channel), value & 0x7F))


def panic(channels: range | list[int] | set[int]) -> list[bytes]:
    """All-notes-off and all-sound-off on each channel (like mido's ``panic_messages``)."""
    out = []
    for ch in sorted(channels):
        out.append(control_change(ch, ALL_NOTES_OFF, 0))
        out.append(control_change(ch, ALL_SOUND_OFF, 0))
    return out
