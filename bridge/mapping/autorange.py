"""The auto range: a stream's own range, learned as it goes, that never turns its direction around.

The map from value to position (0..1) only ever *grows* (docs/mapping.md, "Auto range"): where the stream
has been, the map is frozen, so two values it has covered always sound in the order of their values, early
or late; a value beyond everything so far (a record) is placed beyond every earlier position, moving from
the outermost one into the room left towards that edge — geometrically, with a scale that grows with the
span covered, so a trend that goes on keeps moving and never reaches the edge.

>>> a = AutoRange(start=0.9)
>>> codes = [round(a.norm(3.0 * 0.001 ** (i / 499)) * 127) for i in range(500)]
>>> codes[0], codes[-1], all(x >= y for x, y in zip(codes, codes[1:]))
(114, 3, True)
>>> b = AutoRange()
>>> [round(b.norm(x), 3) for x in (1.0, 2.0, 0.5, 1.5, 1.0)]  # 1.5 sounds between 1.0 and 2.0, as it is
[0.5, 0.933, 0.067, 0.753, 0.5]
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, field

#: The scale of the first records on a log axis (decades): a first move of 0.15 decades (×1.4) travels 63 % of
#: the room towards its edge; later records get a scale that grows with the span covered.
AUTO_FIRST_SCALE = 0.15
#: A record's scale is at least this share of how far that side already reaches from the first value: a trend
#: keeps moving (the room left shrinks as a power of the distance travelled, not exponentially).
AUTO_SPAN_SCALE = 1.2
#: On a linear axis (a stream that went non-positive) the first scale is this many first steps.
AUTO_LINEAR_STEPS = 2.0
#: Knots kept per side; beyond, every other inner knot is dropped (the map moves by less than a knot's gap).
AUTO_MAX_KNOTS = 4096


@dataclass
class AutoRange:
    """A monotone map from a stream's values to 0..1 that only grows (see the module docstring).

    Works on log10 while every value seen is positive (norms and losses span decades), then on the values
    themselves (the map's knots carry over: ``10**v`` keeps their order).
    """

    start: float = 0.5
    """Where the first value sits (0..1): 0.9 for a stream expected to fall, like a loss."""
    log: bool = True
    # Knots from the first value outwards: lows descending, highs ascending (both begin with the first value).
    low_v: list[float] = field(default_factory=list)
    low_p: list[float] = field(default_factory=list)
    high_v: list[float] = field(default_factory=list)
    high_p: list[float] = field(default_factory=list)
    first_scale: float = AUTO_FIRST_SCALE

    def norm(self, x: float) -> float:
        """The position of ``x``; a record extends the map (see the module docstring)."""
        if self.log and x <= 0.0:
            self._go_linear()
        v = math.log10(x) if self.log else x
        lv, hv = self.low_v, self.high_v
        if not lv:
            self.low_v, self.low_p, self.high_v, self.high_p = [v], [self.start], [v], [self.start]
            return self.start
        if v > hv[-1]:
            scale = self._scale(v - hv[-1], hv[-1] - hv[0])
            p = 1.0 - (1.0 - self.high_p[-1]) * math.exp(-(v - hv[-1]) / scale)
            self._add(hv, self.high_p, v, p)
            return p
        if v < lv[-1]:
            scale = self._scale(lv[-1] - v, lv[0] - lv[-1])
            p = self.low_p[-1] * math.exp(-(lv[-1] - v) / scale)
            self._add(lv, self.low_p, v, p)
            return p
        if v >= hv[0]:
            return _interp(hv, self.high_p, v)
        return self._interp_low(v)

    def _scale(self, step: float, reach: float) -> float:
        """The scale of a record ``step`` beyond an edge already ``reach`` away from the first value."""
        if not self.log and len(self.low_v) == len(self.high_v) == 1:
            # A linear stream's first record sets its unit (a log stream's unit is the decade).
            self.first_scale = AUTO_LINEAR_STEPS * step
        return max(self.first_scale, AUTO_SPAN_SCALE * reach)

    def _interp_low(self, v: float) -> float:
        # Lows are descending: search the negated values without copying them.
        lv, lp = self.low_v, self.low_p
        lo, hi = 0, len(lv) - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if lv[mid] >= v:
                lo = mid
            else:
                hi = mid
        a, b = lv[lo], lv[hi]
        return lp[lo] if a == b else lp[lo] + (lp[hi] - lp[lo]) * (a - v) / (a - b)

    def _go_linear(self) -> None:
        """A non-positive value: from now on this stream is linear (the knots keep their order)."""
        self.log = False
        self.low_v = [10.0**u for u in self.low_v]
        self.high_v = [10.0**u for u in self.high_v]
        if len(self.low_v) + len(self.high_v) > 2:
            self.first_scale = AUTO_LINEAR_STEPS * max(self.high_v[-1] - self.low_v[-1], 1e-12) / 4
        elif self.low_v:
            self.first_scale = max(abs(self.low_v[0]), 1e-12)

    @staticmethod
    def _add(vs: list[float], ps: list[float], v: float, p: float) -> None:
        vs.append(v)
        ps.append(p)
        if len(vs) > AUTO_MAX_KNOTS:
            # Keep the first and the outermost knots; the map between them moves by less than a knot's gap.
            vs[1:-1] = vs[1:-1:2]
            ps[1:-1] = ps[1:-1:2]


def _interp(xs: list[float], ps: list[float], x: float) -> float:
    """Piecewise-linear interpolation on ascending knots (``x`` within them)."""
    i = bisect_left(xs, x)
    if i == 0:
        return ps[0]
    if i >= len(xs):
        return ps[-1]
    a, b = xs[i - 1], xs[i]
    return ps[i] if b == a else ps[i - 1] + (ps[i] - ps[i - 1]) * (x - a) / (b - a)
