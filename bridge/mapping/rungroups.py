"""One run's voice groups for one rule, live: values held while the layout settles, then each group's
aggregate once a round of its layers is in (the layouts themselves are :mod:`.groups`').

Runs for every layer value that arrives: kept lean (a layer's group is looked up once, not per value).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from .groups import GroupOptions, Layout, aggregate, depth_index, plan


@dataclass
class RunGroups:
    """One run's groups for one rule: holds values while the layout settles, then emits aggregates.

    Layers with plain names (no numeric path part) are sounded at once while they fit in ``max_voices``:
    each will be a group of its own, so nothing waits for the layout.

    :meth:`feed` and :meth:`settle` return ``[(group index, group name, aggregate)]`` to sound now.

    >>> rg = RunGroups(GroupOptions(max_voices=2))
    >>> rg.feed("h.0.a", 1.0, 0.0), rg.feed("h.1.a", 2.0, 0.0), rg.feed("h.2.a", 4.0, 0.0)
    ([], [], [])
    >>> [(g, n, round(v, 3)) for g, n, v in rg.feed("h.0.a", 3.0, 1.0)]  # a repeat: the layout settles
    [(0, 'h.0–h.1', 1.581), (1, 'h.2', 4.0)]
    >>> rg.feed("h.1.a", 1.0, 1.0), rg.feed("h.2.a", 2.0, 1.0)
    ([(0, 'h.0–h.1', 2.23606797749979)], [(1, 'h.2', 2.0)])
    """

    opts: GroupOptions
    order: list[str] = field(default_factory=list)
    latest: dict[str, float] = field(default_factory=dict)
    layout: Layout | None = None
    last_new: float = -math.inf
    _fresh: list[set[str]] = field(default_factory=list)
    sent: set[str] = field(default_factory=set)
    _since: list[float] = field(default_factory=list)
    _next_due: float = math.inf
    _indexed: bool = False
    _members: list[set[str]] = field(default_factory=list)
    _group_of: dict[str, int] = field(default_factory=dict)
    """Layer → its group under the current layout (cleared whenever the layout changes)."""

    def feed(self, layer: str, value: float, t: float) -> list[tuple[int, str, float]]:
        lay = self.layout
        if lay is not None and layer in self.latest and (g := self._group_of.get(layer)) is not None:
            # The usual case, once per layer and step: a known layer of a settled layout.
            fresh = self._fresh[g]
            if layer not in fresh:
                self.latest[layer] = value
                if not fresh:
                    self._since[g] = t
                    if t + self.opts.settle < self._next_due:
                        self._next_due = t + self.opts.settle
                fresh.add(layer)
                return [self._emit(g)] if len(fresh) >= len(self._members[g]) else []
        out: list[tuple[int, str, float]] = []
        if self.layout is None:
            if layer not in self.latest:
                self.order.append(layer)
                self.last_new = t
                self.latest[layer] = value
                self._indexed = self._indexed or depth_index(layer) is not None
                if self.opts.mode == "auto" and not self._indexed and len(self.order) <= self.opts.max_voices:
                    # Plain names (fc1, conv1) while they fit: each is its own group, so sound it now.
                    self.sent.add(layer)
                    out.append((len(self.order) - 1, layer, value))
                return out
            out = self.settle()
        lay = self.layout
        assert lay is not None
        if layer not in self.latest:
            self.order.append(layer)
            if (self.opts.mode == "auto" and lay.container is None and len(lay.names) < self.opts.max_voices
                    and all(len(m) == 1 for m in lay.members)):
                # A layer seen late, while every layer has a voice of its own and there is room: one more.
                self.layout = lay = replace(lay, names=(*lay.names, layer), members=(*lay.members, (layer,)))
                self._group_of.clear()
                self._members.append({layer})
                self._fresh.append(set())
                self._since.append(t)
        g = self._group_of.get(layer)
        if g is None:
            g = self._group_of[layer] = lay.group_of(layer)
        members = self._members[g]
        if layer not in members:
            members.add(layer)
        fresh = self._fresh[g]
        if layer in fresh:  # a member stopped reporting: sound what the group has
            out.append(self._emit(g))
        self.latest[layer] = value
        if not fresh:
            self._since[g] = t
            self._next_due = min(self._next_due, t + self.opts.settle)
        fresh.add(layer)
        if len(fresh) >= len(members):
            out.append(self._emit(g))
        return out

    def due(self, now: float) -> list[tuple[int, str, float]]:
        """Groups whose round began ``settle`` seconds ago and is still incomplete (members that stopped
        reporting, or never report again): sounded with what they have."""
        if self.layout is None or now < self._next_due:  # the usual case, every tick: one comparison
            return []
        settle = self.opts.settle
        out = [self._emit(g) for g, fresh in enumerate(self._fresh) if fresh and now - self._since[g] >= settle]
        self._next_due = min((self._since[g] + settle for g, f in enumerate(self._fresh) if f), default=math.inf)
        return out

    def settle(self) -> list[tuple[int, str, float]]:
        """Fix the layout from the layers seen so far and sound every group (idempotent)."""
        if self.layout is not None or not self.order:
            return []
        self.layout = lay = plan(self.order, self.opts, fixed=len(self.sent))
        self._group_of.clear()
        self._members = [set(m) for m in lay.members]
        self._fresh = [set() for _ in lay.members]
        self._since = [0.0] * len(lay.members)
        # Groups of one layer already sounded under their own name need not sound again.
        return [self._emit(g) for g, mem in enumerate(lay.members)
                if not (len(mem) == 1 and mem[0] == lay.names[g] and mem[0] in self.sent)]

    def _emit(self, g: int) -> tuple[int, str, float]:
        self._fresh[g] = set()
        return self._value(g)

    def values(self) -> dict[str, float]:
        """Each group's current aggregate (for status pages); empty while the layout settles."""
        return {} if self.layout is None else {n: v for _, n, v in map(self._value, range(len(self.layout.names)))}

    def _value(self, g: int) -> tuple[int, str, float]:
        assert self.layout is not None
        return g, self.layout.names[g], aggregate([self.latest[x] for x in self._members[g]], self.opts.aggregate)
