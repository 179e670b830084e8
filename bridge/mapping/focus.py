"""The foreground budget (docs/sound.md, "What you hear"): a run's few streams in front, the rest a quiet bed.

Listeners follow three or four concurrent streams, not thirty. So, per run, the sine output plays in
front: the **loss**, the **global gradient norm**, and a **spotlight** on the voice group whose norm is
changing most; alarms are earcons on top. Every group also sounds quietly in a narrow band of its own (the
bed), where its series can be followed by ear — or recovered from the WAV. Pure: values in, positions out.

The run's pitch range (``fmin·2^(octaves·u)``, ``u`` in 0..1) is split into regions that never overlap,
so no voice covers another (:data:`REGIONS`; with the default 5 octaves from 110 Hz: loss 110–277 Hz, bed
294–831 Hz, global norm 880–1661 Hz, spotlight 1760–3520 Hz).

>>> region_unit("spotlight", 0.0), region_unit("loss", 1.0)
(0.8, 0.26666666666666666)
>>> round(soft_offset(4.0, 5.0, 6.0), 3), round(soft_offset(50.0, 5.0, 6.0), 3)  # linear inside, never past
(4.0, 6.0)
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field

#: Regions of the run's pitch range, in semitones of the default 60 (scaled to other ranges): the loss at the
#: bottom with the most room, the bed of groups above it, then the global norm and the spotlight.
REGIONS: dict[str, tuple[float, float]] = {
    "loss": (0.0, 16.0),
    "bed": (17.0, 35.0),
    "global": (36.0, 47.0),
    "spotlight": (48.0, 60.0),
}
REGION_SEMITONES = 60.0
#: Semitones per decade of the spotlight and the global norm: a tenfold change is heard as a leap of five
#: semitones, a healthy run's wobble (a tenth of a decade or two) as a semitone or less.
SEMITONES_PER_DECADE = 5.0
#: Where the spotlight's baseline sits in its region (more room above: explosions are the faults that leap).
SPOTLIGHT_CENTER = 0.4
#: Beyond the region's edge less this many semitones, a voice approaches the edge geometrically.
SOFT_EDGE = 1.5
#: Values per group that make its baseline (the median before a change).
BASELINE_VALUES = 32
#: The spotlight stays at least this many of its group's values before another group may take it...
HOLD_VALUES = 16
#: ...and a challenger must have changed this many decades more than the holder (or twice that at once).
SWITCH_MARGIN = 0.15


def region_unit(region: str, x: float) -> float:
    """Position ``x`` (0..1) within ``region`` → position in the run's whole pitch range (0..1)."""
    lo, hi = REGIONS[region]
    return (lo + min(max(x, 0.0), 1.0) * (hi - lo)) / REGION_SEMITONES


def bed_unit(norm: float, group: int, groups: int, guard: float = 0.2) -> float:
    """A group's bed voice: group ``g`` of ``G`` in its own slice of the bed region.

    >>> round(bed_unit(0.0, 0, 2), 4), round(bed_unit(1.0, 1, 2), 4)
    (0.3133, 0.5533)
    """
    g = max(groups, 1)
    n = min(max(norm, 0.0), 1.0)
    return region_unit("bed", (min(group, g - 1) + guard + n * (1.0 - 2.0 * guard)) / g)


def soft_offset(semitones: float, down: float, up: float) -> float:
    """An offset in semitones, linear up to :data:`SOFT_EDGE` from the edges ``-down``/``+up``, then approaching
    the edge geometrically (monotone: a larger change is never heard smaller)."""
    room = up if semitones >= 0 else down
    a = abs(semitones)
    knee = max(room - SOFT_EDGE, 0.0)
    if a > knee:
        soft = room - knee
        a = knee + soft * (1.0 - math.exp(-(a - knee) / soft)) if soft > 0 else knee
    return math.copysign(a, semitones)


def relative_unit(region: str, value: float, anchor: float, center: float) -> float:
    """``value`` heard against ``anchor`` (log10) at :data:`SEMITONES_PER_DECADE`, ``anchor`` at ``center`` of
    ``region``: a position in the run's pitch range.

    >>> st = 60 * (relative_unit("global", 10.0, 0.0, 0.5) - relative_unit("global", 1.0, 0.0, 0.5))
    >>> round(st, 2)  # tenfold: 5 semitones, a little less near the region's edge
    4.73
    """
    lo, hi = REGIONS[region]
    width = hi - lo
    st = SEMITONES_PER_DECADE * (math.log10(value) - anchor) if value > 0 else -math.inf
    off = soft_offset(max(st, -1e9), center * width, (1.0 - center) * width)
    return (lo + center * width + off) / REGION_SEMITONES


@dataclass
class Spotlight:
    """One run's spotlight over its groups: which group is changing most, and its baseline (log10).

    A group's change is how far its latest value lies from the median of its recent values, in decades.

    >>> s = Spotlight()
    >>> for i in range(40):
    ...     _ = s.feed(0, 1.0 + 0.01 * (i % 3)), s.feed(1, 0.1)
    >>> s.feed(1, 1.0)  # group 1 leaps tenfold: it takes the spotlight at once, baseline 0.1
    (1, -1.0)
    """

    recent: dict[int, deque[float]] = field(default_factory=dict)
    holder: int | None = None
    anchor: float = 0.0
    held: int = 0

    def change(self, g: int) -> float:
        w = self.recent.get(g)
        if not w or len(w) < 2:
            return 0.0
        return abs(w[-1] - statistics.median(list(w)[:-1]))

    def feed(self, g: int, value: float) -> tuple[int, float]:
        """Take group ``g``'s new value; return ``(holder, baseline)`` after it."""
        w = self.recent.setdefault(g, deque(maxlen=BASELINE_VALUES + 1))
        w.append(math.log10(value) if value > 0 else -12.0)
        if self.holder is None:
            self.holder, self.anchor, self.held = g, w[-1], 0
        elif g == self.holder:
            self.held += 1
        else:
            mine, theirs = self.change(g), self.change(self.holder)
            if (self.held >= HOLD_VALUES and mine > theirs + SWITCH_MARGIN) or mine > theirs + 2 * SWITCH_MARGIN:
                self.holder, self.held = g, 0
                self.anchor = statistics.median(list(w)[:-1]) if len(w) > 1 else w[-1]
        return self.holder, self.anchor
