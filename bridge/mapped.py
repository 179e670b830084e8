"""What the mapping engine produces: one rule's result for one event (:class:`Mapped`), for every output.

Its own module so that outputs and the engine share the type without the engine's weight
(``from .mapping import Mapped`` still works).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Mapped(NamedTuple):
    """One rule's result for one event (or a rate-limited value released later)."""

    t: float
    run: str
    rule: int
    """Index of the rule in the config; -1 for an alarm not tied to a rule."""
    rule_name: str
    """Alarms and ticks: the stream's name instead (``loss``, a layer, ``""`` for the whole run)."""
    target: str
    stream: tuple[str, ...]
    """Capture values that key the voice, e.g. ``("run1", "fc1")``."""
    voice: int
    value: float
    """The raw input value."""
    norm: float
    """Mapped value in 0..1 after scaling, clamp, invert and smoothing; NaN = alarm."""
    channel: int
    midi: tuple[bytes, ...]
    later: tuple[bytes, ...]
    """Messages due ``length`` seconds after ``t`` (note-offs, alarm release)."""
    length: float
    groups: int = 0  # voice groups in the run's layout when ``voice`` is a group index (0: not grouped)
    kind: str = ""
    """Alarms: the fault (``spike`` … ``nan``, docs/alarms.md); ticks: ``epoch`` or ``lr``; at the run's ``step``."""
    step: int = -1
    """Alarms and ticks: the run's step; a value a rate limit held back: the step it came in (else -1)."""

    @property
    def alarm(self) -> bool:
        return self.target == "alarm"

    @property
    def tick(self) -> bool:
        return self.target == "tick"


@dataclass
class Counters:
    mapped: int = 0
    unmapped: int = 0
    thinned: int = 0
    unchanged: int = 0
    voice_limit: int = 0
    nonfinite: int = 0
    alarms: int = 0
    alarms_limited: int = 0
    """Alarms kept silent by the global ``[alarm].max_per_second`` (each address was due one)."""
    alarm_state_shed: int = 0
    """Addresses forgotten by the alarm limiter while their interval still ran (its table was full)."""
