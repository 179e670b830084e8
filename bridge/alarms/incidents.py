"""Incidents: the alarms of one fault, as one (docs/alarms.md, "Incidents").

One fault shows in many streams: a learning-rate spike makes the loss jump and a dozen layers' grad
norms explode over a few steps, their voice groups with them, the loss diverging after; a NaN spreads
to every address of the run. Alarms of one run that come within :data:`GAP` steps of the incident's
last member join it, whatever their kind: the first alarm opens it (it sounds, once, and gives the
incident its kind), the rest add members (silent, listed by kind). NaN is an incident of its own that
lasts while any of its streams is non-finite, however long.

Pure: steps come in with the alarms, no clock is read, so a recording gives the same incidents however
it is replayed or rendered.

>>> inc = Incidents(recent=10)
>>> inc.add(0.0, "r", "h.3.attn", "exploding", 201, 50.0)[1], inc.add(0.1, "r", "group h.3", "exploding", 203, 9.0)[1]
(True, False)
>>> inc.add(0.2, "r", "h.5.mlp", "exploding", 208, 40.0)[0].name
'exploding in h.3–h.5 (2 layers)'
>>> inc.add(0.3, "r", "loss", "divergence", 210, 9.0)[0].name
'exploding in h.3–h.5 (2 layers) + loss divergence'
"""

from __future__ import annotations

import math
import re
from collections import deque
from typing import Any

#: Steps between an incident's last member and an alarm that still joins it. A one-step learning-rate
#: spike on a GPT-2 raised its layers' alarms over 8 steps (201–208), one or two a step: a gap of 5
#: keeps them one incident and still tells apart two faults more than 5 steps apart.
GAP = 5
#: Members listed per incident (the rest are counted): a NaN reaches every address of a large model.
MAX_MEMBERS = 64
#: Non-finite addresses a NaN incident tracks (~200 bytes each: under 1 MB); beyond, they are counted.
MAX_ACTIVE = 4096
#: Incidents kept in the full history (``render --alarms-json``); beyond it they are counted.
HISTORY_MAX = 10_000
#: The prefix of a voice group's stream name (the watch's ``group <name>``).
GROUP = "group "
#: Kinds whose stream is the loss: the incident is named after it (``loss spike``).
LOSS_KINDS = frozenset({"spike", "plateau", "divergence"})

_NUMBERED = re.compile(r"^(.*?)(\d+)(\D*)$")


class _Kind:
    """The streams of one kind within an incident."""

    __slots__ = ("count", "groups", "layers", "members")

    def __init__(self) -> None:
        self.members: list[str] = []
        self.count = self.layers = self.groups = 0

    def join(self, name: str) -> bool:
        if name in self.members:
            return False
        self.count += 1
        group = name.startswith(GROUP)
        self.groups += group
        self.layers += bool(name) and not group and name not in ("loss", "lr")
        if len(self.members) < MAX_MEMBERS:
            self.members.append(name)
        return True

    def name(self, kind: str, run: str) -> str:
        m = self.members
        if kind == "dead" or not m:
            return f"run {run} {kind}"
        if kind in LOSS_KINDS and m == ["loss"]:
            return f"loss {kind}"
        if kind == "nan":  # where it showed first (the cause, usually), then how far it spread
            return f"nan in {m[0]}" + (f" and {self.count - 1} more streams" if self.count > 1 else "")
        if kind == "plateau" and m == ["lr"]:
            return "plateau: learning rate at 0"
        where = span([x[len(GROUP):] if x.startswith(GROUP) else x for x in m])
        n, what = (self.layers, "layer") if self.layers else (self.groups, "group")
        return f"{kind} in {where}" + (f" ({n} {what}s)" if n > 1 else "")


class Incident:
    """One fault: its first alarm (run, kind, step, time, value) and every stream — of any kind — that joined it."""

    __slots__ = ("active", "kinds", "last_step", "run", "step", "t", "value")

    def __init__(self, t: float, run: str, name: str, kind: str, step: int, value: float) -> None:
        self.t, self.run, self.step, self.value = t, run, step, value
        self.kinds: dict[str, _Kind] = {}
        """Per kind, in the order they showed: the first is the incident's kind."""
        self.last_step = step
        self.active: set[str] = set()
        """NaN incidents: the addresses still non-finite (the incident ends when none is)."""
        self.join(name, kind, step)

    def join(self, name: str, kind: str, step: int) -> bool:
        """Add ``name`` under ``kind`` (once); True when it is new to the incident."""
        self.last_step = max(self.last_step, step)
        k = self.kinds.get(kind)
        if k is None:
            k = self.kinds[kind] = _Kind()
        return k.join(name)

    @property
    def kind(self) -> str:
        return next(iter(self.kinds))

    @property
    def members(self) -> list[str]:
        """The streams that joined, each once, in order (at most :data:`MAX_MEMBERS` a kind)."""
        return list(dict.fromkeys(m for k in self.kinds.values() for m in k.members))

    @property
    def count(self) -> int:
        """Streams that joined (those beyond :data:`MAX_MEMBERS` counted, not listed)."""
        return len(self.members) + sum(k.count - len(k.members) for k in self.kinds.values())

    @property
    def name(self) -> str:
        """``loss spike``, ``exploding in h.3–h.5 (7 layers)``, ``loss spike + exploding in fc1–fc3 (3 layers)``,
        ``nan in loss and 29 more streams``, ``run r dead``."""
        return " + ".join(k.name(kind, self.run) for kind, k in self.kinds.items())

    def as_dict(self) -> dict[str, Any]:
        """Plain data: ``run kind step time name members value`` (+ ``kinds``, ``last_step``, ``streams``)."""
        v = self.value if math.isfinite(self.value) else str(self.value)
        return {"run": self.run, "kind": self.kind, "step": self.step, "time": self.t, "name": self.name,
                "members": self.members, "value": v, "kinds": list(self.kinds), "last_step": self.last_step,
                "streams": self.count}


def span(names: list[str]) -> str:
    """The stretch of names an incident covers: one name, ``first–last`` of a numbered series, or a list.

    >>> span(["h.3"]), span(["h.3", "h.5", "h.4"]), span(["conv1", "fc2"]), span(["loss", "a", "b", "c"])
    ('h.3', 'h.3–h.5', 'conv1, fc2', 'loss, a, b, …')
    """
    if len(names) == 1:
        return names[0]
    # A numbered series (h.3 … h.5, transformer.h.0.attn … transformer.h.5.attn): its first and last by number.
    short = list(dict.fromkeys(_block(n) for n in names))
    if len(short) == 1:
        return short[0]
    parts = [_NUMBERED.match(s) for s in short]
    if all(parts) and len({(p.group(1), p.group(3)) for p in parts if p}) == 1:
        nums = sorted({int(p.group(2)) for p in parts if p})
        head, tail = parts[0].group(1), parts[0].group(3)  # type: ignore[union-attr]
        return f"{head}{nums[0]}{tail}" if len(nums) == 1 else f"{head}{nums[0]}{tail}–{head}{nums[-1]}{tail}"
    return ", ".join(short[:3]) + (", …" if len(short) > 3 else "")


def _block(name: str) -> str:
    """A layer's block: the name up to its last number-only part (``transformer.h.3.attn.c_attn`` → ``h.3``).

    >>> _block("transformer.h.3.attn.c_attn.weight"), _block("h.3"), _block("fc1")
    ('h.3', 'h.3', 'fc1')
    """
    parts = name.split(".")
    idx = [i for i, p in enumerate(parts) if p.isdigit()]
    if not idx:
        return name
    i = idx[-1]
    return ".".join(parts[max(0, i - 1):i + 1])


class Incidents:
    """The run's open incidents by kind, the recent ones (and each run's first: the cause), the history."""

    def __init__(self, recent: int, gap: int = GAP) -> None:
        self.gap = gap
        self._open: dict[tuple[str, str], Incident] = {}
        self.recent: deque[Incident] = deque(maxlen=recent)
        self.first: dict[str, Incident] = {}
        """Each run's first incident: kept when later ones push it out of :attr:`recent`."""
        self.history: list[Incident] = []
        self.unlisted = 0
        """Incidents beyond :data:`HISTORY_MAX` (counted, in :attr:`recent` only)."""
        self.merged = 0
        """Alarms that joined an incident instead of sounding."""
        self.shed = 0
        """Non-finite addresses beyond :data:`MAX_ACTIVE` in a NaN incident (not tracked: it may end sooner)."""
        self.nan_runs: set[str] = set()
        """Runs with a NaN incident in progress (their finite values may end it; no other run's are looked at)."""

    def add(self, t: float, run: str, name: str, kind: str, step: int, value: float) -> tuple[Incident, bool]:
        """An alarm → ``(its incident, True if it opened a new one)``."""
        key = (run, "nan" if kind == "nan" else "")  # a NaN is its own incident: it lasts while values are NaN
        inc = self._open.get(key)
        if inc is not None and (inc.active or 0 <= step - inc.last_step <= self.gap):
            inc.join(name, kind, step)
            self.merged += 1
            return inc, False
        inc = self._open[key] = Incident(t, run, name, kind, step, value)
        self.recent.append(inc)
        self.first.setdefault(run, inc)
        if len(self.history) < HISTORY_MAX:
            self.history.append(inc)
        else:
            self.unlisted += 1
        return inc, True

    def nan(self, t: float, run: str, name: str, address: str, step: int, value: float) -> tuple[Incident, bool]:
        """A non-finite value: the run's NaN incident (opened, or joined while it lasts)."""
        inc, new = self.add(t, run, name, "nan", step, value)
        if address in inc.active or len(inc.active) < MAX_ACTIVE:
            inc.active.add(address)
            self.nan_runs.add(run)
        else:
            self.shed += 1
        return inc, new

    def finite(self, run: str, address: str, step: int) -> None:
        """A finite value on ``address``: a NaN incident ends when all of its streams are finite again."""
        inc = self._open.get((run, "nan"))
        if inc is not None and address in inc.active:
            inc.active.discard(address)
            inc.last_step = max(inc.last_step, step)
            if not inc.active:
                self.nan_runs.discard(run)

    def listed(self) -> list[Incident]:
        """The recent incidents, newest last, with each run's first before them when it was pushed out."""
        shown = {id(i) for i in self.recent}
        return sorted((i for i in self.first.values() if id(i) not in shown), key=lambda i: i.t) + list(self.recent)

    def forget_runs(self, runs: set[str]) -> None:
        self._open = {k: v for k, v in self._open.items() if k[0] not in runs}
        self.nan_runs -= runs
        for run in runs:
            self.first.pop(run, None)

    def carry(self, old: Incidents) -> None:
        """After a config reload: keep the incidents (the open ones too: a fault in progress stays one)."""
        self.recent.extend(old.recent)
        self.first = {**old.first, **self.first}
        self.history = (old.history + self.history)[:HISTORY_MAX]
        self._open = {**old._open, **self._open}
        self.nan_runs |= old.nan_runs
        self.unlisted += old.unlisted
        self.merged += old.merged
