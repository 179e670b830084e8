"""A run against its reference: the pure part of ``--reference`` and ``trainsound compare`` (docs/compare.md).

The reference is a recorded run's values per stream and step (:class:`Reference`, built by
:mod:`..replay.reference`); :class:`Aligner` follows each live run's own ``step`` messages and looks every
mapped value up in it, by the stream's name without the run (the same layer, metric or voice group), giving
a :class:`Match`: the run's value, the reference's, and their :func:`deviation` in decades. The ``diff``
preset sounds the deviation (:func:`diff_unit`, :func:`diff_level`), MIDI carries it as a CC per voice
(:func:`deviation_cc`), OSC as ``/trainsound/deviation``. No I/O, no clock.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from ..mapped import Mapped
from ..wire import midi as mb
from ..wire.protocol import Event
from .rules import Rule

log = logging.getLogger(__name__)

#: Two values agree when their deviation is at most this many decades (0.23 %): silent in ``diff``, and
#: ``compare``'s default tolerance. Float32 rounding of equal values is ~1e-8 decades.
DEFAULT_TOLERANCE = 1e-3
#: ``diff``: a deviation of this many decades (tenfold) sounds at full level.
DIFF_FULL_SCALE = 1.0
#: ``diff``: pitch moves this many octaves per decade of deviation (up when the run is larger).
DIFF_OCTAVES_PER_DECADE = 2.0
#: ``diff``: voices rest at homes spread over this middle part of the pitch map (unit 0..1).
DIFF_HOME_RANGE = (0.25, 0.75)
#: MIDI: voice ``v``'s deviation goes as CC ``DEVIATION_CC + v % DEVIATION_CCS`` (102–119: undefined in the
#: MIDI spec) on the voice's channel; 64 = agree, each step 1/32 decade, 1 and 127 = two decades or more.
DEVIATION_CC = 102
DEVIATION_CCS = 18
DEVIATION_CC_DECADES = 2.0
_GOLDEN = 0.6180339887498949

Key = tuple[int, tuple[str, ...]]
"""A mapped stream without its run: ``(rule index, the stream's other captures)``, e.g. ``(0, ("fc1",))``."""


def deviation(x: float, ref: float) -> float:
    """How far ``x`` lies from ``ref``, in decades: ``log10(x/ref)`` when both are positive; otherwise the
    signed ``log10(1 + |x−ref|/|ref|)`` (a value that may be zero or negative still has a size and a
    direction). NaN when either is not finite.

    >>> deviation(10.0, 1.0), deviation(1.0, 1.0), round(deviation(0.5, 1.0), 3)
    (1.0, 0.0, -0.301)
    >>> round(deviation(-1.0, 1.0), 3), round(deviation(1.0, 0.0), 1)
    (-0.477, 12.0)
    """
    if not (math.isfinite(x) and math.isfinite(ref)):
        return math.nan
    if x == ref:
        return 0.0
    if x > 0.0 and ref > 0.0:
        return math.log10(x / ref)
    return math.copysign(math.log10(1.0 + abs(x - ref) / max(abs(ref), 1e-12)), x - ref)


def diff_level(d: float, tolerance: float = DEFAULT_TOLERANCE) -> float:
    """``diff``'s level (0..1) for a deviation: silent within ``tolerance``, then the square root of its size
    (a twentieth of a decade, 12 %, at −13 dB; a decade and more at full level).

    >>> diff_level(0.0), diff_level(0.0005), round(diff_level(0.05), 3), diff_level(-3.0)
    (0.0, 0.0, 0.224, 1.0)
    """
    a = abs(d)
    if not a > tolerance:  # NaN included: an unknown deviation is not sounded
        return 0.0
    return math.sqrt(min(a / DIFF_FULL_SCALE, 1.0))


def diff_home(voice: int) -> float:
    """The resting pitch (unit 0..1 of the pitch map) of ``diff``'s ``voice``-th voice: spread by the golden
    ratio so that neighbours lie far apart.

    >>> [round(diff_home(v), 3) for v in range(4)]
    [0.25, 0.559, 0.368, 0.677]
    """
    lo, hi = DIFF_HOME_RANGE
    return lo + (hi - lo) * ((voice * _GOLDEN) % 1.0)


def diff_unit(d: float, home: float, octaves: float) -> float:
    """``diff``'s pitch (unit of a pitch map ``octaves`` wide): ``home``, moved by the deviation.

    >>> diff_unit(0.0, 0.5, 5.0), diff_unit(0.5, 0.5, 5.0), diff_unit(-9.0, 0.5, 5.0)
    (0.5, 0.7, 0.0)
    """
    u = home + (d if math.isfinite(d) else 0.0) * DIFF_OCTAVES_PER_DECADE / octaves
    return min(max(u, 0.0), 1.0)


def deviation_cc(channel: int, voice: int, d: float) -> bytes:
    """The deviation of ``voice`` as a MIDI CC on ``channel`` (see :data:`DEVIATION_CC`).

    >>> deviation_cc(1, 0, 0.0).hex(), deviation_cc(1, 1, 1.0).hex(), deviation_cc(2, 0, -5.0).hex()
    ('b06640', 'b06760', 'b16601')
    """
    u = d / DEVIATION_CC_DECADES if math.isfinite(d) else 0.0
    code = round(64 + 63 * min(max(u, -1.0), 1.0))
    return mb.control_change(channel, DEVIATION_CC + voice % DEVIATION_CCS, code)


@dataclass
class Series:
    """One stream's values by step (steps ascending); ``norms``: the mapping's 0..1 values (NaN for raw values)."""

    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    norms: list[float] = field(default_factory=list)

    def put(self, step: int, value: float, norm: float = math.nan) -> None:
        """The stream's value in ``step``; a later value of the same step replaces the earlier one."""
        if self.steps and self.steps[-1] == step:
            self.values[-1], self.norms[-1] = value, norm
        elif not self.steps or step > self.steps[-1]:
            self.steps.append(step)
            self.values.append(value)
            self.norms.append(norm)

    def put_raw(self, step: int, value: float) -> None:
        """A raw value of ``step``: its norm is the latest known (the engine maps a CC only when its code changes)."""
        self.put(step, value, self.norms[-1] if self.norms else math.nan)

    def at(self, step: int) -> int | None:
        """Index of the value that holds in ``step`` (the latest at or before it; a rate limit may have
        thinned that very step), or ``None`` outside the series.

        >>> s = Series([0, 1, 3], [1.0, 2.0, 4.0], [0.1, 0.2, 0.4])
        >>> s.at(2), s.at(3), s.at(-1), s.at(4)
        (1, 2, None, None)
        """
        if not self.steps or step > self.steps[-1]:
            return None
        i = bisect.bisect_right(self.steps, step) - 1
        return i if i >= 0 else None


@dataclass
class Reference:
    """A recorded run's values per stream and step (built by :func:`..replay.reference.load`)."""

    path: str
    run: str
    first_step: int
    last_step: int
    streams: dict[str, Series]
    """Raw values by the address after ``/nn/<run>/`` (``loss``, ``grad_norm/fc1``, ``weight/fc1.std``)."""
    mapped: dict[Key, Series]
    """The mapping's values (``value`` and ``norm``) of every mapped stream, voice groups included."""
    labels: dict[Key, str]
    """A readable name per mapped stream: ``fc1 (grad_norm_notes)``."""
    groups: frozenset[Key] = frozenset()
    """The mapped streams that are voice groups of layers."""
    unmatched: set[str] = field(default_factory=set)
    """Run streams with no reference stream, each logged once."""
    matched: set[Key] = field(default_factory=set)

    def missing(self, label: str) -> None:
        """A run's stream the reference lacks: logged the first time only."""
        if label not in self.unmatched:
            self.unmatched.add(label)
            log.info("reference %s (run %s) has no stream %s: it is not compared", self.path, self.run, label)


class Match(NamedTuple):
    """A run's mapped value with its reference's, in the run's step."""

    m: Mapped
    step: int
    ref_value: float
    ref_norm: float
    deviation: float
    """Decades (:func:`deviation`)."""


def run_index(rule: Rule) -> int:
    """Where the run's capture sits in the rule's streams (-1: the rule does not key by run)."""
    return rule.voice_key.index("run") if "run" in rule.voice_key else -1


def stream_key(m: Mapped, runs_at: Sequence[int]) -> Key:
    """The reference's key of a mapped value: its rule and its captures without the run."""
    return key_of(m.rule, m.stream, runs_at)


def key_of(rule: int, stream: tuple[str, ...], runs_at: Sequence[int]) -> Key:
    """``(rule, stream)`` without the run's capture."""
    i = runs_at[rule]
    return (rule, stream if i < 0 else stream[:i] + stream[i + 1 :])


class Aligner:
    """Follows each run's step and looks its mapped values up in the reference (one per output: its state is
    a step per run)."""

    def __init__(self, reference: Reference, rules: Sequence[Rule]) -> None:
        self.ref = reference
        self.runs_at = tuple(run_index(r) for r in rules)
        self.steps: dict[str, int] = {}

    def forget(self, run: str) -> None:
        self.steps.pop(run, None)

    def apply(self, event: Event | None, mapped: Sequence[Mapped]) -> list[Match]:
        """The matches of ``mapped`` (alarms, ticks and values with no reference in this step have none)."""
        if event is not None and event.kind == "step" and event.values:
            self.steps[event.run] = int(event.values[0])
        out: list[Match] = []
        for m in mapped:
            if m.rule < 0 or m.norm != m.norm or m.target in ("alarm", "tick"):
                continue
            # A value a rate limit held carries the step it came in (m.step); the rest came in this step.
            step = m.step if m.step >= 0 else self.steps.get(m.run)
            if step is None:
                continue
            key = stream_key(m, self.runs_at)
            s = self.ref.mapped.get(key)
            if s is None:
                self.ref.missing("/".join(key[1]) + f" ({m.rule_name or m.rule})")
                continue
            i = s.at(step)
            if i is None:
                continue
            self.ref.matched.add(key)
            out.append(Match(m, step, s.values[i], s.norms[i], deviation(m.value, s.values[i])))
        return out


class DeviationCcs:
    """MIDI: each matched voice's deviation as a CC (:func:`deviation_cc`), sent when its code changes."""

    def __init__(self, reference: Reference, rules: Sequence[Rule]) -> None:
        self.aligner = Aligner(reference, rules)
        self.last: dict[tuple[int, tuple[str, ...]], bytes] = {}

    def messages(self, event: Event | None, mapped: Sequence[Mapped]) -> list[tuple[Mapped, bytes]]:
        """``(the run's mapped value, its CC)`` for every matched value whose CC changed."""
        out = []
        for x in self.aligner.apply(event, mapped):
            msg = deviation_cc(x.m.channel, x.m.voice, x.deviation)
            key = (x.m.rule, x.m.stream)
            if self.last.get(key) != msg:
                self.last[key] = msg
                out.append((x.m, msg))
        return out
