"""Alarms that name the fault: the :class:`Watch` that runs the detectors (options: :mod:`.options`).

The watch is pure (time comes in with the event): it feeds each stream's values to its detectors
(:mod:`.detectors`), applies each stream's hold-off, gathers the alarms of one fault into one incident
(:mod:`.incidents`: the first sounds, the rest join it), applies the global rate limit to what sounds
(``[alarm].max_per_second`` over all runs and kinds, the engine's one budget; the rest are counted,
and listed all the same), and keeps the incidents as plain data for ``trainsound status``. It also
raises the context ticks (epoch boundaries, learning-rate jumps). :mod:`.signals` turns what it returns into
:class:`~trainsound.bridge.mapped.Mapped` items for the outputs. See docs/alarms.md.

Streams are keyed ``(run, name)``: :meth:`Watch.grad` takes a layer's grad norm now and a voice group's
aggregate the same way (name ``"group:<name>"``).

>>> w = Watch(AlarmsOptions())
>>> from trainsound.bridge.wire.protocol import parse_event
>>> [w.feed(parse_event("/nn/r/loss", (1.0 + 0.01 * (i % 5),), i * 0.01, b"")) for i in range(100)].count([])
100
>>> [a.kind for a in w.feed(parse_event("/nn/r/loss", (10.0,), 1.0, b""))]
['spike']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from ..sound.alarms import TICK_KINDS
from ..wire.protocol import Event
from .detectors import Dead, Divergence, GradLevel, LearningRate, Plateau, Spike
from .incidents import Incidents
from .options import ALARM_KINDS, AlarmsOptions, KindOptions

#: What most values raise: nothing (shared, never mutated).
NONE: tuple[Alarm, ...] = ()
#: Context ticks on MIDI: soft and short, under the alarms.
TICK_VELOCITY = 40
TICK_LENGTH = 0.1
#: Layers (and groups) watched per run; the bridge plays at most 256 voices per table anyway.
MAX_GRAD_STREAMS = 4096
#: Metric names taken for the learning rate.
LR_NAMES = frozenset({"lr", "learning_rate"})


class Alarm(NamedTuple):
    """One alarm (or context tick) as plain data."""

    t: float
    run: str
    name: str
    """The stream: ``loss``, a layer, ``group:<name>``, or ``""`` for the whole run (``dead``)."""
    kind: str
    step: int
    value: float

    @property
    def tick(self) -> bool:
        return self.kind in TICK_KINDS

    def label(self) -> str:
        return spoken_label(self.name, self.run, self.kind, self.step)

    def as_dict(self) -> dict[str, Any]:
        v = self.value if math.isfinite(self.value) else str(self.value)
        return {"run": self.run, "name": self.name, "kind": self.kind, "step": self.step, "value": v, "time": self.t}


def spoken_label(name: str, run: str, kind: str, step: int) -> str:
    """What speech says: the stream, the fault, the step.

    >>> spoken_label("loss", "r", "spike", 3400), spoken_label("", "mnist", "dead", -1)
    ('loss spike at step 3,400', 'run mnist dead')
    """
    who = name or f"run {run}"
    return f"{who} {kind}" + (f" at step {step:,}" if step >= 0 else "")


class _Run:
    __slots__ = ("dead", "divergence", "epoch", "grads", "losses", "lr", "plateau", "spike", "step")

    def __init__(self, o: dict[str, KindOptions], lr_change: float) -> None:
        self.step = -1
        self.losses = 0
        self.epoch: float | None = None
        self.lr = LearningRate(lr_change)
        self.spike = Spike(o["spike"].window, o["spike"].threshold, o["spike"].ratio)
        self.plateau = Plateau(o["plateau"].window, o["plateau"].threshold)
        self.divergence = Divergence(o["divergence"].window, o["divergence"].threshold)
        self.dead = Dead(int(o["dead"].threshold))
        self.grads: dict[str, GradLevel] = {}


class Watch:
    """Runs the detectors over events; hold-off, global rate limit, recent alarms (see the module)."""

    def __init__(self, opts: AlarmsOptions, limit: Callable[[float], bool] | None = None) -> None:
        self.opts = opts
        self.kinds = opts.kinds
        self._on = {k for k, o in opts.kinds.items() if o.enabled and opts.enabled}
        self._runs: dict[str, _Run] = {}
        self._last: dict[tuple[str, str, str], int] = {}
        self._limit = limit
        self.incidents = Incidents(opts.recent)
        """One incident per fault (:mod:`.incidents`): what ``status``, the web page and ``--alarms`` list."""
        self.raised: dict[str, int] = dict.fromkeys(ALARM_KINDS, 0)
        """Incidents per kind."""
        self.held = 0
        """Alarms kept quiet by a kind's hold-off."""
        self.rate_limited = 0
        """Alarms over the global rate limit (counted, not sounded)."""
        self.unwatched = 0
        """Grad-norm values of layers beyond :data:`MAX_GRAD_STREAMS` in their run (not watched)."""

    def _run(self, run: str) -> _Run:
        r = self._runs.get(run)
        if r is None:
            r = self._runs[run] = _Run(self.kinds, self.opts.lr_change)
        return r

    def step_of(self, run: str) -> int:
        r = self._runs.get(run)
        return -1 if r is None else r.step if r.step >= 0 else r.losses - 1  # no steps sent: count the losses

    # -- the global limit ---------------------------------------------------------------------------
    def allow(self, t: float) -> bool:
        """The global alarm rate (the engine's ``[alarm].max_per_second`` budget; none without one)."""
        if self._limit is None or self._limit(t):
            return True
        self.rate_limited += 1
        return False

    def admit(self, t: float, run: str, name: str, kind: str, value: float) -> Alarm | None:
        """An alarm of ``kind`` on ``(run, name)``: past its stream's hold-off it joins an incident; the alarm
        that opens one is returned to sound, if the global limit allows (the incident is listed either way)."""
        if kind not in self._on:
            return None
        step = self.step_of(run)
        key = (run, name, kind)
        last = self._last.get(key)
        if last is not None and 0 <= step - last < self.kinds[kind].hold_off:
            self.held += 1
            return None
        self._last[key] = step
        _, new = self.incidents.add(t, run, name, kind, step, value)
        return self._opened(new, t, run, name, kind, step, value)

    def _opened(self, new: bool, t: float, run: str, name: str, kind: str, step: int, value: float) -> Alarm | None:
        if not new:
            return None
        self.raised[kind] += 1
        return Alarm(t, run, name, kind, step, value) if self.allow(t) else None

    def nan(self, t: float, run: str, name: str, address: str, value: float) -> Alarm | None:
        """A non-finite value: the run's NaN incident opens (→ the alarm to sound) or goes on (→ None)."""
        if "nan" not in self._on:
            return None
        step = self.step_of(run)
        _, new = self.incidents.nan(t, run, name, address, step, value)
        return self._opened(new, t, run, name, "nan", step, value)

    # -- detectors ----------------------------------------------------------------------------------
    def feed(self, ev: Event) -> Sequence[Alarm]:
        """The alarms and ticks one event raises (``nan`` is raised by the mapping engine via :meth:`admit`)."""
        kind = ev.kind
        nan_runs = self.incidents.nan_runs
        if nan_runs and ev.run in nan_runs and ev.values and ev.finite:
            self.incidents.finite(ev.run, ev.address, self.step_of(ev.run))  # may end its NaN incident
        if kind == "loss":
            x = ev.values[0]
            return self.loss(ev.t, ev.run, x) if math.isfinite(x) else NONE
        if kind == "grad_norm":
            x = ev.values[0]
            return self.grad(ev.t, ev.run, ev.name, x) if math.isfinite(x) else NONE
        if kind == "step":
            return self._step(ev)
        if kind == "metric" and ev.name in LR_NAMES and ev.values and math.isfinite(ev.values[0]):
            return self._lr(ev.t, ev.run, ev.values[0])
        if kind == "event" and ev.name == "epoch" and self.opts.ticks:
            return [Alarm(ev.t, ev.run, "", "epoch", self.step_of(ev.run), math.nan)]
        return NONE

    def loss(self, t: float, run: str, x: float) -> Sequence[Alarm]:
        r = self._run(run)
        r.losses += 1
        out: list[Alarm] = []
        on = self._on
        if r.spike.feed(x) and "spike" in on:
            self._add(out, self.admit(t, run, "loss", "spike", x))
        # A flat loss at the end of a decayed schedule is the schedule working, not a plateau.
        if r.plateau.feed(x) and "plateau" in on and not r.lr.low:
            self._add(out, self.admit(t, run, "loss", "plateau", x))
        if r.divergence.feed(x, r.spike.spread) and "divergence" in on and not r.lr.restarted:
            a = self.admit(t, run, "loss", "divergence", x)
            if a is not None:
                r.divergence.rebase()
                out.append(a)
        return out

    def grad(self, t: float, run: str, name: str, x: float, layer: bool = True) -> Sequence[Alarm]:
        """A layer's grad norm (``layer=True``: it also counts for the run's ``dead`` detector), or a voice
        group's aggregate under its own name (``layer=False``). Runs per value: kept lean."""
        r = self._runs.get(run) or self._run(run)
        g = r.grads.get(name)
        if g is None:
            if len(r.grads) >= MAX_GRAD_STREAMS:  # a flood of layer names must not grow memory without end
                self.unwatched += 1
                return NONE
            e, v = self.kinds["exploding"], self.kinds["vanishing"]
            g = r.grads[name] = GradLevel(max(e.window, v.window), e.threshold, v.threshold, v.ratio,
                                          zeros=r.dead.rounds + 1)
            if layer:
                r.dead.layers.add(name)
        dead = False
        if layer:
            d = r.dead
            if x != 0.0:  # Dead.feed's usual case, inlined (the layer joined its set above)
                if d.zero:
                    d.zero.clear()
                d.need = 0
            else:
                dead = d.feed(name, x)
        hit = g.feed(x)
        if hit is not None and x == 0.0 and r.dead.need:  # the whole run is at zero: that is "dead", once
            hit = None
        if hit is None and not dead:
            return NONE
        out: list[Alarm] = []
        if hit is not None and hit in self._on:
            self._add(out, self.admit(t, run, name, hit, x))
        if dead and "dead" in self._on:
            self._add(out, self.admit(t, run, "", "dead", 0.0))
        return out

    @staticmethod
    def _add(out: list[Alarm], a: Alarm | None) -> None:
        if a is not None:
            out.append(a)

    def _step(self, ev: Event) -> list[Alarm]:
        r = self._run(ev.run)
        r.step = int(ev.values[0])
        if len(ev.values) < 2:
            return []
        epoch, r.epoch = r.epoch, ev.values[1]
        if self.opts.ticks and epoch is not None and ev.values[1] != epoch:
            return [Alarm(ev.t, ev.run, "", "epoch", r.step, ev.values[1])]
        return []

    def _lr(self, t: float, run: str, lr: float) -> Sequence[Alarm]:
        change = self._run(run).lr.feed(lr)
        if change == "tick" and self.opts.ticks:
            return [Alarm(t, run, "lr", "lr", self.step_of(run), lr)]
        if change == "zero" and "plateau" in self._on:  # nothing learns from the next step on: say so now
            a = self.admit(t, run, "lr", "plateau", lr)
            return NONE if a is None else [a]
        return NONE

    def forget_runs(self, runs: set[str]) -> None:
        for run in runs:
            self._runs.pop(run, None)
        self.incidents.forget_runs(runs)
        self._last = {k: v for k, v in self._last.items() if k[0] not in runs}

    def carry(self, old: Watch) -> None:
        """After a config reload: keep the incidents and the counts (the detectors start afresh)."""
        self.incidents.carry(old.incidents)
        self.raised = {k: self.raised[k] + old.raised.get(k, 0) for k in self.raised}
        self.held += old.held
        self.rate_limited += old.rate_limited
        self.unwatched += old.unwatched

    def status(self) -> dict[str, Any]:
        """Plain data for ``trainsound status`` and the web page."""
        inc = self.incidents
        return {"recent": [i.as_dict() for i in inc.listed()], "raised": dict(self.raised),
                "held": self.held, "merged": inc.merged, "rate_limited": self.rate_limited,
                "unwatched": self.unwatched}
