"""MIDI learn: solo one target — a rule's CC or one voice's notes — so a DAW's MIDI Learn maps exactly it.

While a :class:`Solo` is active the pipeline passes only the target's mapped values to the
outputs (the recording still gets every message: nothing is lost); scheduled note-offs go
out as usual. When no data moves the target for :data:`SWEEP_IDLE` seconds, a slow sweep
(a triangle over the whole CC or note range, :data:`SWEEP_PERIOD` seconds) moves it, so the
DAW has something to learn from. Pure: time is passed in.

>>> round(triangle(0.0), 2), round(triangle(SWEEP_PERIOD / 2), 2), round(triangle(SWEEP_PERIOD), 2)
(0.0, 1.0, 0.0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..mapped import Mapped
from ..wire import midi as mb
from .rules import note_span

if TYPE_CHECKING:
    from .engine import Engine

DEFAULT_SECONDS = 5.0
MAX_SECONDS = 600.0
SWEEP_IDLE = 1.0
SWEEP_PERIOD = 4.0
SWEEP_STEP_CC = 0.1
SWEEP_STEP_NOTE = 0.25
CC_TARGETS = ("cc", "cc14", "pitchbend", "pressure")


@dataclass(frozen=True)
class Target:
    """Something a DAW can learn: one rule's controller (on one channel) or one voice's notes."""

    name: str
    kind: str
    """``cc``, ``cc14``, ``pitchbend``, ``pressure`` or ``notes``."""
    channel: int
    cc: int | None
    notes: tuple[int, int] | None
    rule: int
    stream: tuple[str, ...] | None
    """The one stream soloed; ``None``: every stream of the rule (they share a channel, or no run has spoken)."""
    any_run: bool = False
    """A rule with a voice per stream before any stream of it arrived: the channel is the first run's."""

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("rule")
        d["stream"] = "/".join(self.stream) if self.stream is not None else None
        return d


def triangle(t: float) -> float:
    """0 → 1 → 0 over :data:`SWEEP_PERIOD` seconds."""
    phase = (t / SWEEP_PERIOD) % 1.0
    return 2.0 * phase if phase < 0.5 else 2.0 * (1.0 - phase)


def list_targets(engine: Engine) -> list[Target]:
    """Every learnable target of the running mapping, in rule order then voice order.

    A rule with a voice per stream that no stream has reached yet (before the first run, or after the
    runs ended) is one target named after the rule, "any run", on the channel its first voice takes:
    a DAW can be mapped before training starts.

    >>> from trainsound.bridge.config import default
    >>> from trainsound.bridge.mapping.engine import Engine
    >>> [(t.name, t.channel, t.cc, t.any_run) for t in list_targets(Engine(default()))][1]
    ('loss_brightness', 1, 74, True)
    """
    out: list[Target] = []
    for i, rule in enumerate(engine.rules):
        streams = sorted(engine.streams_of(i).items(), key=lambda kv: kv[1])
        per_stream = rule.target == "note" or rule.voices == "channel"
        if not streams and per_stream and rule.target in ("note", *CC_TARGETS):
            name = rule.name or f"mappings[{i}]"
            cc = rule.cc if rule.target in ("cc", "cc14") else None
            notes = note_span(rule, 0) if rule.target == "note" else None
            out.append(Target(name, rule.target if rule.target != "note" else "notes", engine.channel_for(rule, 0),
                              cc, notes, i, None, any_run=True))
        elif rule.target == "note":
            for stream, voice in streams:
                out.append(Target(f"{rule.name}/{'/'.join(stream)}", "notes", engine.channel_for(rule, voice),
                                  None, note_span(rule, voice), i, stream))
        elif rule.target in CC_TARGETS:
            cc = rule.cc if rule.target in ("cc", "cc14") else None
            if rule.voices == "channel":
                for stream, voice in streams:
                    out.append(Target(f"{rule.name}/{'/'.join(stream)}", rule.target,
                                      engine.channel_for(rule, voice), cc, None, i, stream))
            else:
                out.append(Target(rule.name, rule.target, rule.channel, cc, None, i, None))
    return out


def find_target(engine: Engine, name: str) -> Target | None:
    return next((t for t in list_targets(engine) if t.name == name), None)


class Solo:
    """One active learn: which values pass, until when, and the sweep when nothing moves."""

    def __init__(self, target: Target, now: float, seconds: float, velocity: int = 100, length: float = 0.2):
        self.target = target
        self.until = now + seconds
        self.last_data = now
        self._next_sweep = now + SWEEP_IDLE
        self._t0 = now
        self.velocity = velocity
        self.length = length
        self.swept = 0
        self.muted = 0

    def admits(self, m: Mapped) -> bool:
        t = self.target
        return m.rule == t.rule and (t.stream is None or m.stream == t.stream) and not m.alarm

    def filter(self, mapped: list[Mapped]) -> list[Mapped]:
        kept = [m for m in mapped if self.admits(m)]
        self.muted += len(mapped) - len(kept)
        if kept:
            self.last_data = kept[-1].t
            self._next_sweep = self.last_data + SWEEP_IDLE
        return kept

    def sweep(self, now: float) -> list[Mapped]:
        """The next sweep value when the target has had no data for a while (else nothing)."""
        if now < self._next_sweep:
            return []
        t = self.target
        n = triangle(now - self._t0)
        self.swept += 1
        stream = t.stream or ()
        run = stream[0] if stream else "learn"
        if t.kind == "notes":
            assert t.notes is not None
            lo, hi = t.notes
            pitch = lo + round(n * (hi - lo))
            self._next_sweep = now + SWEEP_STEP_NOTE
            midi: tuple[bytes, ...] = (mb.note_on(t.channel, pitch, self.velocity),)
            later: tuple[bytes, ...] = (mb.note_off(t.channel, pitch),)
            return [Mapped(now, run, t.rule, t.name, "note", stream, 0, n, n, t.channel, midi, later,
                           self.length)]
        self._next_sweep = now + SWEEP_STEP_CC
        if t.kind == "cc":
            assert t.cc is not None
            midi = (mb.control_change(t.channel, t.cc, mb.data7(n)),)
        elif t.kind == "cc14":
            assert t.cc is not None
            midi = mb.control_change14(t.channel, t.cc, mb.data14(n))
        elif t.kind == "pitchbend":
            midi = (mb.pitch_bend(t.channel, mb.data14(n)),)
        else:
            midi = (mb.channel_pressure(t.channel, mb.data7(n)),)
        return [Mapped(now, run, t.rule, t.name, t.kind, stream, 0, n, n, t.channel, midi, (), 0.0)]

    def status(self, now: float) -> dict[str, Any]:
        return {**self.target.describe(), "left": round(max(0.0, self.until - now), 1), "swept": self.swept}
