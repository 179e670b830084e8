"""The sine output's foreground budget: where and how loud each mapped stream sounds (docs/sound.md).

:class:`Budget` places one mapped value: a list of ``(voice key, label, level, unit pitch)`` to sound — the
loss and the global gradient norm in their regions, a group's quiet bed voice, the spotlight when the group
holds it — or nothing for streams outside the budget (weight statistics, other metrics: the MIDI outputs
and the recording keep them; ``--preset everything`` plays them all as before). Layout and choice are the
pure functions of :mod:`..mapping.focus`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..mapped import Mapped
from ..mapping.autorange import AutoRange
from ..mapping.focus import SPOTLIGHT_CENTER, Spotlight, bed_unit, region_unit, relative_unit
from ..mapping.rules import Rule

#: Levels relative to ``[sine].gain``: the loss and the spotlight in front, the global norm a little behind.
LOSS_LEVEL = 0.8
SPOTLIGHT_LEVEL = 0.8
GLOBAL_LEVEL = 0.55
#: The bed's level relative to ``[sine].gain`` (``[sine].bed_gain``): about 15 dB under the loss.
DEFAULT_BED_GAIN = 0.14

#: A brought-forward group's level: the spotlight's, about 15 dB over its bed voice (20·log10(0.8/0.14)).
FORWARD_LEVEL = SPOTLIGHT_LEVEL
#: Groups in front at once at a listener's request; a further one sends the oldest back.
MAX_FORWARD = 2

#: The bed voices' first scale (decades; :mod:`..mapping.autorange`).
BED_FIRST_SCALE = 0.5

Placed = tuple[tuple[object, ...], str, float, float]
Moves = tuple[list[tuple[object, ...]], list[Placed]]
"""Voices to silence now, voices to sound now (a group going forward or back)."""


def role(rule: Rule, banded: bool) -> str:
    """``loss``, ``global`` (the framework's global gradient norm), ``group`` (a grouped note rule) or ``off``."""
    if banded:
        return "group"
    if rule.kind == "loss":
        return "loss"
    if rule.kind == "metric" and rule.match.endswith("/metric/grad_norm"):
        return "global"
    return "off"


@dataclass
class _Run:
    spotlight: Spotlight


class Budget:
    """Places mapped values in the foreground budget (see the module docstring)."""

    def __init__(self, rules: tuple[Rule, ...], banded: tuple[bool, ...], gain: float, bed_gain: float) -> None:
        self.roles = tuple(role(r, b) for r, b in zip(rules, banded, strict=True))
        self.gain, self.bed_gain = gain, bed_gain
        self.runs: dict[str, _Run] = {}
        self.bed: dict[tuple[int, tuple[str, ...]], AutoRange] = {}
        self.groups: dict[tuple[object, ...], int] = {}
        """Group voice key → the group's index in its run (for the spotlight)."""
        self.forward: dict[tuple[str, str], float] = {}
        """Groups brought forward ``(run, group)`` → until when (pipeline clock; ``inf``: until sent back); oldest
        first."""
        self.last: dict[tuple[object, ...], tuple[str, float]] = {}
        """Group voice key → its label and last position (a voice brought forward or back sounds at once)."""

    def release_run(self, run: str) -> None:
        self.runs.pop(run, None)
        self.bed = {k: a for k, a in self.bed.items() if not (k[1] and k[1][0] == run)}
        self.groups = {k: g for k, g in self.groups.items() if not (isinstance(k[1], tuple) and k[1][0] == run)}
        self.last = {k: x for k, x in self.last.items() if not (isinstance(k[1], tuple) and k[1][0] == run)}
        self.forward = {k: u for k, u in self.forward.items() if k[0] != run}

    # -- brought forward by a listener ----------------------------------------------------
    def bring_forward(self, run: str, group: str, until: float) -> Moves:
        """Bring group ``group`` of ``run`` forward until ``until`` (``inf``: until sent back); the oldest of
        more than :data:`MAX_FORWARD` goes back. A group not heard yet comes forward with its first value."""
        key = (run, group)
        fresh = key not in self.forward
        self.forward.pop(key, None)
        self.forward[key] = until
        mute, sound = self._swap(key, True) if fresh else ([], [])
        while len(self.forward) > MAX_FORWARD:
            m, s = self.send_back(next(iter(self.forward)))
            mute += m
            sound += s
        return mute, sound

    def send_back(self, key: tuple[str, str] | None = None) -> Moves:
        """Send one group (``None``: every group) back to the bed."""
        keys = list(self.forward) if key is None else [key] if key in self.forward else []
        mute: list[tuple[object, ...]] = []
        sound: list[Placed] = []
        for k in keys:
            del self.forward[k]
            m, s = self._swap(k, False)
            mute += m
            sound += s
        return mute, sound

    def expire(self, now: float) -> Moves:
        """Send back the groups whose time is up."""
        mute: list[tuple[object, ...]] = []
        sound: list[Placed] = []
        for k in [k for k, until in self.forward.items() if until <= now]:
            m, s = self.send_back(k)
            mute += m
            sound += s
        return mute, sound

    def _swap(self, group: tuple[str, str], forward: bool) -> Moves:
        """The group's heard voices: from bed to front (``forward``) or back, at their last position."""
        mute: list[tuple[object, ...]] = []
        sound: list[Placed] = []
        for key, (label, unit) in self.last.items():
            stream = key[1]
            if not isinstance(stream, tuple) or (stream[0], stream[-1]) != group:
                continue
            front = ("forward", *key)
            mute.append(key if forward else front)
            sound.append(self._group_voice(key, label, unit, forward))
        return mute, sound

    def _group_voice(self, key: tuple[object, ...], name: str, unit: float, forward: bool) -> Placed:
        if forward:
            return (("forward", *key), f"{name} (forward)", self.gain * FORWARD_LEVEL, unit)
        return (key, f"{name} (bed)", self.gain * self.bed_gain, unit)

    def holds(self, key: tuple[object, ...]) -> bool:
        """Whether the group voice ``key`` (rule, (run, group)) holds its run's spotlight."""
        rule, stream = key
        if not isinstance(rule, int) or rule < 0 or self.roles[rule] != "group" or not isinstance(stream, tuple):
            return False
        run = self.runs.get(stream[0])
        g = self.groups.get(key)
        return run is not None and g is not None and run.spotlight.holder == g

    def place(self, m: Mapped) -> list[Placed]:
        """What ``m`` sounds as (see the module docstring); positions are in the run's pitch range (0..1)."""
        r = self.roles[m.rule] if m.rule >= 0 else "off"
        if r == "off":
            return []
        run = self.runs.get(m.run)
        if run is None:
            run = self.runs[m.run] = _Run(Spotlight())
        name = "/".join(m.stream)
        if r == "loss":
            return [((m.rule, m.stream), f"{name} loss", self.gain * LOSS_LEVEL, region_unit("loss", m.norm))]
        if r == "global":
            # The map that only grows (as the loss's): the global norm's direction over the run is kept; its
            # sudden changes are the spotlight's to show.
            auto = self.bed.get((m.rule, m.stream))
            if auto is None:
                auto = self.bed[(m.rule, m.stream)] = AutoRange()
            pos = auto.norm(m.value) if m.value > 0.0 else 0.0
            return [((m.rule, m.stream), f"{m.run} global grad norm", self.gain * GLOBAL_LEVEL,
                     region_unit("global", pos))]
        # A group: its own bed voice (a map that only grows, in its slice), and the spotlight when it holds it.
        auto = self.bed.get((m.rule, m.stream))
        if auto is None:
            # A wide first scale: a slice of the bed is narrow, and a group's first steps are often its steepest.
            auto = self.bed[(m.rule, m.stream)] = AutoRange(first_scale=BED_FIRST_SCALE)
        bed = auto.norm(m.value) if m.value > 0.0 else 0.0
        self.groups[(m.rule, m.stream)] = m.voice
        groups = max(m.groups, 1)
        unit = bed_unit(bed, m.voice, groups)
        self.last[(m.rule, m.stream)] = (name, unit)
        front = bool(self.forward) and (m.run, m.stream[-1]) in self.forward
        out: list[Placed] = [self._group_voice((m.rule, m.stream), name, unit, front)]
        if m.value > 0.0:
            holder, anchor = run.spotlight.feed(m.voice, m.value)
            if holder == m.voice:
                out.append((("spotlight", m.run), f"{m.run} spotlight", self.gain * SPOTLIGHT_LEVEL,
                            relative_unit("spotlight", m.value, anchor, SPOTLIGHT_CENTER)))
        return out

