"""One stream's value → what it sounds: the normalised value (scale, auto range, clamp, invert, smoothing),
a note's pitch, a control's code and MIDI bytes. Pure; the engine keeps one :class:`StreamState` per stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..mapped import Mapped
from ..wire import midi as mb
from .autorange import AutoRange
from .rules import Rule, note_span
from .scales import linear_scale, log_scale, quantize


@dataclass
class StreamState:
    """What the engine remembers of one stream: smoothing, auto range, the last value sent and one held back."""

    smoothed: float | None = None
    last_code: int = -1
    last_sent: float = -math.inf
    pending: Mapped | None = None
    pending_code: int = -1
    pending_step: int = -1  # the run's step when the held value came: a reference lines it up by that
    auto: AutoRange | None = None


def normalise(st: StreamState, rule: Rule, x: float) -> float:
    """``x`` in 0..1 by the rule's scale (its auto range kept in ``st``), then clamp, invert and smoothing."""
    if rule.scale == "linear":
        n = linear_scale(x, *rule.range)
    elif rule.scale == "log":
        n = log_scale(x, *rule.range)
    else:
        if st.auto is None:
            st.auto = AutoRange(start=rule.auto_start, first_scale=rule.auto_scale)
        n = st.auto.norm(x)
    if rule.clamp or not math.isfinite(n):
        n = 0.0 if n < 0.0 else 1.0 if n > 1.0 else n
    if rule.invert:
        n = 1.0 - n
    if rule.smooth > 0.0:
        n = n if st.smoothed is None else rule.smooth * st.smoothed + (1.0 - rule.smooth) * n
        st.smoothed = n
    return n


def note_pitch(rule: Rule, voice: int, n: float) -> int:
    """The note a normalised value plays: in the voice's span, on the rule's scale."""
    lo, hi = note_span(rule, voice)
    pitch = quantize(lo + min(max(n, 0.0), 1.0) * (hi - lo), rule.musical_scale, rule.root)
    while pitch > hi:
        pitch = quantize(pitch - 1, rule.musical_scale, rule.root)
    while pitch < lo:
        pitch = quantize(pitch + 1, rule.musical_scale, rule.root)
    return max(0, min(mb.DATA_MAX, pitch))


def control(rule: Rule, channel: int, c: float) -> tuple[int, tuple[bytes, ...]]:
    """A control target's code for ``c`` (0..1) and its MIDI bytes (``cc``, ``cc14``, ``pitchbend``, ``pressure``)."""
    target = rule.target
    if target == "cc":
        code = mb.data7(c)
        return code, (mb.control_change(channel, rule.cc, code),)
    if target == "cc14":
        code = mb.data14(c)
        return code, mb.control_change14(channel, rule.cc, code)
    if target == "pitchbend":
        code = mb.data14(c)
        return code, (mb.pitch_bend(channel, code),)
    code = mb.data7(c)  # pressure
    return code, (mb.channel_pressure(channel, code),)
