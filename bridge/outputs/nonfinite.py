"""Streams whose value turned non-finite stay silent until a finite value comes to them again.

The engine answers a non-finite value with a NaN :class:`~..mapped.Mapped` (``target="alarm"``,
``kind="nan"``, the stream's rule, run and capture values) and maps nothing from it; each output mutes
that voice. A voice group (docs/mapping.md) sounds an aggregate of several layers, and the engine goes on
sounding a group's aggregate from its members' last finite values when one of them turned NaN — the
group's voice would drone on the pre-NaN value. :class:`NonFinite` is the outputs' one place for that:
it remembers which addresses turned non-finite under which ``(rule, run)``, drops group values of that
rule and run while any is held, and tells the output once, when a ``(rule, run)`` first turns non-finite,
so that it releases the group's voices (:meth:`~.base.BaseOutput._silence`). A finite value at the same
address ends the hold. Pure: no clock, no I/O.

>>> from trainsound.bridge.wire.protocol import parse_event
>>> nan_ev = parse_event("/nn/r/grad_norm/h.3", (float("nan"),), 1.0, b"")
>>> nan = Mapped(1.0, "r", 0, "g", "alarm", ("r", "h.3"), 0, float("nan"), float("nan"), 16, (), (), 0.2, kind="nan")
>>> group = Mapped(1.1, "r", 0, "g", "note", ("r", "h.0–h.3"), 0, 2.0, 0.5, 1, (), (), 0.2, groups=4)
>>> nf = NonFinite()
>>> nf.see(nan_ev, [nan]) == ([nan], [(0, "r")])
True
>>> nf.see(None, [group])  # the group's stale aggregate: dropped
([], [])
>>> ok = parse_event("/nn/r/grad_norm/h.3", (0.5,), 1.2, b"")
>>> nf.see(ok, [group]) == ([group], []), nf.held
(True, {})
"""

from __future__ import annotations

from collections.abc import Sequence

from ..config import Config
from ..mapped import Mapped
from ..mapping.groups import groups_rule
from ..wire.protocol import Event


class NonFinite:
    """What turned non-finite, per ``(rule, run)`` (see the module docstring)."""

    def __init__(self) -> None:
        self.held: dict[tuple[int, str], set[str]] = {}
        """``(rule, run)`` → the addresses whose latest value under it is non-finite."""
        self._keys: dict[str, list[tuple[int, str]]] = {}

    def see(self, event: Event | None, mapped: Sequence[Mapped]) -> tuple[Sequence[Mapped], list[tuple[int, str]]]:
        """``(mapped less the group values of held rules and runs, (rule, run) pairs held from now on)``."""
        if event is not None and self._keys:
            keys = self._keys.get(event.address)
            if keys is not None and event.finite:
                del self._keys[event.address]
                for k in keys:
                    addresses = self.held[k]
                    addresses.discard(event.address)
                    if not addresses:
                        del self.held[k]
        newly: list[tuple[int, str]] = []
        if event is not None:
            for m in mapped:
                if m.norm != m.norm and m.target == "alarm" and m.rule >= 0 and m.kind == "nan":
                    k = (m.rule, m.run)
                    held = self.held.get(k)
                    if held is None:
                        held = self.held[k] = set()
                        newly.append(k)
                    if event.address not in held:
                        held.add(event.address)
                        self._keys.setdefault(event.address, []).append(k)
        if self.held:
            runs = self.held
            if any(m.groups and (m.rule, m.run) in runs for m in mapped):
                mapped = [m for m in mapped if not (m.groups and (m.rule, m.run) in runs)]
        return mapped, newly

    def forget(self, run: str) -> None:
        """A run ended: nothing of it is held any more."""
        for k in [k for k in self.held if k[1] == run]:
            for address in self.held.pop(k):
                keys = self._keys.get(address)
                if keys is not None:
                    keys.remove(k)
                    if not keys:
                        del self._keys[address]


def has_nan(mapped: Sequence[Mapped]) -> bool:
    """Whether any mapped value is an alarm or tick (``norm`` NaN): the outputs' cheap first check."""
    for m in mapped:  # noqa: SIM110 - a plain loop: no generator made for every message
        if m.norm != m.norm:
            return True
    return False


def grouped_rules(config: Config) -> frozenset[int]:
    """Indexes of the rules whose voices are voice groups."""
    return frozenset(i for i, r in enumerate(config.mappings) if groups_rule(r.voice_key, r.voices, config.groups))
