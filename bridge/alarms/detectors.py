"""Fault detectors: pure, per-stream state machines over one value at a time (docs/alarms.md).

Each detector is fed the values of one stream (a run's loss, one layer's or
group's grad norm) and answers ``True`` when the value shows its fault. They
read no clock and do no I/O; hold-off, the global rate limit and the outputs
are :mod:`.alarms`' business. Windows count values of the stream (one per step
for the usual client).

Cheap on the hot path: the reference level (median, MAD) of a window is
recomputed every ``window // 2`` values, not per value, so a value costs a
``log``, a few comparisons and an append.

>>> s = Spike(window=20, z=6.0, ratio=3.0)
>>> [s.feed(1.0 + 0.01 * (i % 3)) for i in range(30)].count(True), s.feed(10.0)
(0, True)
"""

from __future__ import annotations

import math
from collections import deque
from statistics import median

#: 1 / Φ⁻¹(3/4): the MAD of a normal sample times this is its standard deviation.
MAD_TO_SIGMA = 1.4826
#: The MAD's floor in log units: a stream that is nearly constant must not make tiny wiggles "far".
MIN_LOG_SPREAD = 0.01
#: Divergence must rise this many (robust) standard deviations of the loss's log above its best.
DIVERGENCE_Z = 3.0
#: Log values whose median is the spike detector's local level: it follows a falling loss with a lag of
#: half of it (a 0.5 %/step fall leaves a 1.5 % bias) and is not moved by one spike.
LEVEL = 7
#: The spike detector's rule, measured on real runs (bench/bench_faults.py; docs/alarms.md, "Fault benchmark"):
#: a jump of at least 15 % that is :data:`QUIET_Z` deviations out of the loss's noise (a language model's loss
#: is quiet: healthy runs reached z 11.7 early in training, injected faults 22–44), or a jump of ``min_ratio``
#: (2×) or more, ``z`` (4) deviations out, whose evidence ``z · ln(ratio)`` is at least :data:`EVIDENCE` (a
#: small classifier's loss near zero jumps 11× at z 2.6, or 2.6× at z 6.4, when healthy: evidence ≤ 6.6;
#: faults 8–30).
LOG_SMALLEST_JUMP = math.log(1.15)
QUIET_Z = 15.0
EVIDENCE = 7.5
#: The spike detector measures its noise first after this many residuals, then every quarter window:
#: a sparse loss (one value every 50 steps) is watched after a few hundred steps, not a few thousand.
FIRST_SPREAD = 8
#: Learning-rate values whose median is its recent level, changes compared with a jump, values first.
LR_LEVEL = 20
LR_HISTORY = 8
LR_READY = 4
#: After a warm restart the loss rises for a while by design: no divergence for this many values.
LR_RESTART = 50
#: A tick's change is this many times the largest recent step-to-step change (smooth schedules never are).
LR_JUMP = 5.0
#: Below this fraction of its recent level the learning rate is "at zero".
LR_ZERO = 1e-3
#: Values smoothed by a running median of this many before the loss trend detectors see them (robust to
#: one spike; lags a ramp by half of it).
SMOOTH = 9


def _log(x: float) -> float:
    return math.log(x) if x > 0.0 else -745.0  # log of the smallest double: zero is "very small", not an error


class Reference:
    """The median (and, with ``spread``, the MAD) of the last ``window`` log values, refreshed every
    ``window // 2`` values: a reference level that may lag by half a window costs a sort per half window."""

    __slots__ = ("every", "left", "mad", "median", "ready", "spread", "values")

    def __init__(self, window: int, spread: bool = False) -> None:
        self.values: deque[float] = deque(maxlen=window)
        self.every = max(1, window // 2)
        self.left = self.every
        self.median = 0.0
        self.mad = 0.0
        self.ready = False
        self.spread = spread

    def push(self, v: float) -> None:
        self.values.append(v)
        self.left -= 1
        if self.left == 0:
            self.refresh()

    def refresh(self) -> None:
        """The median (and MAD) anew: every ``window // 2`` values, the first after half a window (ready from then)."""
        self.left = self.every
        s = sorted(self.values)
        n = len(s)
        m = s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])
        self.median, self.ready = m, True
        if self.spread:
            self.mad = median([abs(x - m) for x in s])


class Spike:
    """A value far above its local level: the residual ``log(x)`` minus the median of the last :data:`LEVEL`
    log values (a level that follows a falling loss within a few steps: detrended), against the robust
    standard deviation of the residuals over the last ``window`` values: see :data:`EVIDENCE` for the rule.

    A 3× jump on a loss falling fast is far above its level even while it is below the median of the
    last fifty values; a healthy fast fall leaves residuals near zero.

    >>> s = Spike(window=20, z=6.0, ratio=3.0)
    >>> [s.feed(2.0 * 0.98 ** i * (1.0 + 0.02 * (i % 3))) for i in range(200)].count(True), s.feed(0.12)
    (0, True)
    """

    __slots__ = ("every", "left", "level", "log_ratio", "residuals", "sigma", "z")

    def __init__(self, window: int, z: float, ratio: float) -> None:
        self.level: deque[float] = deque(maxlen=LEVEL)
        self.residuals: deque[float] = deque(maxlen=window)
        self.every = max(1, window // 4)
        self.left = min(FIRST_SPREAD, self.every)
        self.sigma = -1.0
        """Robust standard deviation of the residuals (log units); negative until first measured."""
        self.z, self.log_ratio = z, math.log(ratio)

    def feed(self, x: float) -> bool:
        v = _log(x)
        lv = self.level
        hit = False
        if len(lv) == LEVEL:
            r = v - sorted(lv)[LEVEL // 2]
            if self.sigma >= 0.0 and r >= LOG_SMALLEST_JUMP:
                z = r / max(self.sigma, MIN_LOG_SPREAD)
                hit = z >= QUIET_Z or (r >= self.log_ratio and z >= self.z and z * r >= EVIDENCE)
            res = self.residuals
            res.append(r)
            self.left -= 1
            if self.left == 0:
                self.left = self.every
                m = median(res)
                self.sigma = MAD_TO_SIGMA * median([abs(q - m) for q in res])
        lv.append(v)
        return hit

    @property
    def spread(self) -> float:
        """The residuals' robust standard deviation (0 until measured): the loss's noise around its trend."""
        return max(self.sigma, 0.0)


class Smoothed:
    """The running median of the last :data:`SMOOTH` log values (``None`` until full)."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: deque[float] = deque(maxlen=SMOOTH)

    def feed(self, x: float) -> float | None:
        self.last.append(_log(x))
        return sorted(self.last)[SMOOTH // 2] if len(self.last) == SMOOTH else None


class Plateau:
    """The loss stopped improving: no new best (by more than ``min_change``, relative) for ``window`` values.

    >>> p = Plateau(window=50, min_change=0.01)
    >>> [p.feed(2.0 * 0.99 ** i) for i in range(100)].count(True), [p.feed(0.7) for i in range(60)].index(True)
    (0, 54)
    """

    __slots__ = ("best", "drop", "since", "smooth", "window")

    def __init__(self, window: int, min_change: float) -> None:
        self.smooth = Smoothed()
        self.window, self.drop = window, -math.log1p(-min_change)
        self.best = math.inf
        self.since = 0

    def feed(self, x: float) -> bool:
        s = self.smooth.feed(x)
        if s is None:
            return False
        if s <= self.best - self.drop or self.best == math.inf:
            self.best, self.since = s, 0
            return False
        self.since += 1
        if self.since >= self.window:
            self.since = 0  # another full window before it says so again
            return True
        return False


class Divergence:
    """The loss trends upward: its smoothed value is ``rise`` times the lowest smoothed value of the last
    ``window`` values (its local level, not the best of the whole run: a loss that recovered from an
    earlier fault is judged against where it is now), ``z`` of its noise (``spread``: the spike detector's
    robust residual spread) above it, and not falling. The noise keeps a noisy minibatch loss late in
    training (0.003 one step, 0.3 the next) from sounding like divergence.

    >>> d = Divergence(window=50, rise=1.5)
    >>> [d.feed(1.0) for _ in range(40)].count(True), [d.feed(1.02 ** i) for i in range(60)].index(True)
    (0, 25)
    """

    __slots__ = ("history", "log_rise", "smooth", "z")

    def __init__(self, window: int, rise: float, z: float = DIVERGENCE_Z) -> None:
        self.smooth = Smoothed()
        self.log_rise, self.z = math.log(rise), z
        self.history: deque[float] = deque(maxlen=window)

    def feed(self, x: float, spread: float = 0.0) -> bool:
        s = self.smooth.feed(x)
        if s is None:
            return False
        h = self.history
        hit = False
        if h:
            d = s - min(h)
            hit = d >= self.log_rise and d >= self.z * MAD_TO_SIGMA * spread and s >= h[-1]
        h.append(s)
        return hit

    def rebase(self) -> None:
        """After an alarm: the new level is the one to beat (a second alarm means it rose again)."""
        if self.history:
            last = self.history[-1]
            self.history.clear()
            self.history.append(last)


class LearningRate:
    """The learning rate's changes a listener cares about: ``"tick"`` for a jump (a step decay, a warm
    restart: a relative change over ``change`` that is also :data:`LR_JUMP` times the largest of the last
    few step-to-step changes, so a smooth warmup or cosine never ticks), ``"zero"`` when it falls
    abruptly to ~0 (below :data:`LR_ZERO` of its recent level: training stalls, a plateau from the next step).

    >>> lr = LearningRate(change=0.1)
    >>> cos = [0.5 * (1 + math.cos(math.pi * i / 400)) for i in range(400)]
    >>> [lr.feed(x) for x in cos].count(None), [lr.feed(x) for x in (0.3, 0.3, 0.3, 0.0)]
    (400, ['tick', None, None, 'zero'])
    """

    __slots__ = ("change", "changes", "last", "since_rise", "values")

    def __init__(self, change: float) -> None:
        self.change = change
        self.since_rise = LR_RESTART
        """Values since the learning rate last jumped up (a warm restart)."""
        self.last: float | None = None
        self.changes: deque[float] = deque(maxlen=LR_HISTORY)
        self.values: deque[float] = deque(maxlen=LR_LEVEL)

    def feed(self, lr: float) -> str | None:
        last, self.last = self.last, lr
        out = None
        if last is not None:
            d = abs(lr - last)
            ch = self.changes
            if len(ch) >= LR_READY and d > self.change * max(abs(last), 1e-30) and d > LR_JUMP * max(ch):
                out = "tick"
                if lr > last:
                    self.since_rise = -1
            ch.append(d)
            if len(self.values) >= LR_READY:
                level = median(self.values)
                if level > 0.0 and lr <= LR_ZERO * level and last > 0.1 * level:
                    out = "zero"
        self.values.append(lr)
        self.since_rise += 1
        return out

    @property
    def restarted(self) -> bool:
        """The learning rate jumped up within the last :data:`LR_RESTART` values: the loss may rise on purpose."""
        return self.since_rise < LR_RESTART

    @property
    def low(self) -> bool:
        """The schedule has decayed below a tenth of its recent peak: a flat loss is expected, not a plateau."""
        return bool(self.values) and self.values[-1] < 0.1 * max(self.values)


class GradLevel:
    """One layer's (or group's) grad norm against its running median: ``"exploding"`` when it is ``factor``
    times the median; ``"vanishing"`` when it stays below a ``fraction`` of the median (or below ``floor``)
    for ``persist`` values in a row — one perfectly fitted batch is not a fault — or is exactly zero for
    ``zeros`` values in a row where it had gradient before (a dead layer; the whole run at zero is
    :class:`Dead`'s, and the caller asks first).

    >>> g = GradLevel(window=20, factor=20.0, fraction=1e-3, floor=1e-12, persist=2, zeros=3)
    >>> [g.feed(1.0) for _ in range(20)].count(None), g.feed(100.0), g.feed(1e-4), g.feed(1e-4)
    (20, 'exploding', None, 'vanishing')
    >>> [g.feed(0.0) for _ in range(3)]
    [None, None, 'vanishing']
    """

    __slots__ = ("floor", "log_factor", "log_fraction", "low", "persist", "ref", "zero", "zeros")

    def __init__(self, window: int, factor: float, fraction: float, floor: float, persist: int = 3,
                 zeros: int = 4) -> None:
        self.ref = Reference(window)
        self.log_factor, self.log_fraction, self.floor = math.log(factor), math.log(fraction), floor
        self.persist, self.zeros = persist, zeros
        self.low = 0
        self.zero = 0

    def feed(self, x: float) -> str | None:
        if x == 0.0:
            self.zero += 1
            return "vanishing" if self.zero == self.zeros and self.ref.values else None  # it had gradient
        self.zero = 0
        v = math.log(x) if x > 0.0 else -745.0
        r = self.ref
        out = None
        if x < self.floor or (r.ready and v - r.median <= self.log_fraction):
            self.low += 1
            if self.low == self.persist:
                out = "vanishing"
            if self.low <= r.values.maxlen:  # type: ignore[operator]
                # A vanished stretch does not become the level (its recovery is not an explosion) unless it
                # lasts a whole window: then it is the new level.
                return out
        else:
            self.low = 0
            if r.ready and v - r.median >= self.log_factor:
                out = "exploding"
        r.values.append(v)  # Reference.push, inlined: this runs for every value of every layer
        r.left -= 1
        if r.left == 0:
            r.refresh()
        return out


class Dead:
    """Every gradient of a run is exactly zero: each layer seen so far reported 0 since the last non-zero
    value, for ``rounds`` rounds (a round: every layer once).

    >>> d = Dead(rounds=2)
    >>> [d.feed(n, 1.0) for n in "abc"].count(True), [d.feed(n, 0.0) for n in "abcabc"].index(True)
    (0, 5)
    """

    __slots__ = ("layers", "need", "rounds", "zero")

    def __init__(self, rounds: int) -> None:
        self.layers: set[str] = set()
        self.zero: set[str] = set()
        self.rounds = rounds
        self.need = 0

    def feed(self, layer: str, x: float) -> bool:
        if layer not in self.layers:
            self.layers.add(layer)
        if x != 0.0:
            self.zero.clear()
            self.need = 0
            return False
        self.zero.add(layer)
        if len(self.zero) < len(self.layers):
            return False
        self.need += 1
        self.zero.clear()
        return self.need == self.rounds
