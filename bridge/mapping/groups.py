"""Voice groups: a run's many layers gathered into a few voices, each sounding one aggregate.

Pure: no I/O, no clock. Three pieces, used by the mapping engine (:mod:`.mapping`) and open to
anything that wants the same view of a run (detectors, the status page):

- :func:`plan` — the layout: an ordered list of layer names (model order, i.e. first seen) →
  :class:`Layout` (group names, members, ``group_of(layer)``), automatic and structural, or from
  ``[groups].patterns``;
- :func:`aggregate` — a group's value from its layers' values (``rms``, ``max``, ``mean``);
- :class:`.rungroups.RunGroups` — one run's state for one rule: it holds values until the layout has
  settled (the first round of layers), then emits each group's aggregate once a round of its layers is in.

>>> lay = plan([f"transformer.h.{i}.mlp" for i in range(12)] + ["lm_head"], GroupOptions(max_voices=5))
>>> lay.names
('h.0–h.2', 'h.3–h.5', 'h.6–h.8', 'h.9–h.11', 'lm_head')
>>> lay.group_of("transformer.h.4.mlp"), lay.group_of("transformer.h.40.attn")
(1, 3)
>>> round(aggregate([3.0, 4.0], "rms"), 4)
3.5355
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, get_args

Aggregate = Literal["rms", "max", "mean"]
GroupMode = Literal["auto", "patterns", "none"]
AGGREGATES: tuple[str, ...] = get_args(Aggregate)
GROUP_MODES: tuple[str, ...] = get_args(GroupMode)
#: 16 MIDI channels less the drum channel (10) and the alarm channel (16): what a MIDI instrument keeps apart.
DEFAULT_MAX_VOICES = 14
#: A run's layout settles once a layer repeats, a step or end event arrives, or no new layer came for this long.
DEFAULT_SETTLE = 0.25
#: Name of the group that takes layers no pattern matches.
REST_GROUP = "other"
SPAN = "–"

# The first numeric path segment: ``transformer.h.3.attn`` → prefix ``transformer.h``, index 3.
_INDEX = re.compile(r"^(?:(?P<prefix>.*?)\.)?(?P<i>\d+)(?:\.|$)")
_TOKEN = re.compile(r"(\{[^{}]*\}|\*)")


@dataclass(frozen=True)
class GroupPattern:
    """One explicit group: ``match`` over layer names (``{name}`` captures one path part, ``*`` any text),
    ``name`` a template over the captures: ``{name = "block{i}", match = "transformer.h.{i}.*"}``."""

    name: str
    match: str
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", compile_layer_pattern(self.match))
        missing = set(re.findall(r"\{([^{}]*)\}", self.name)) - set(self.regex.groupindex)
        if missing:
            raise ValueError(f"name {self.name!r} uses {{{sorted(missing)[0]}}}, which {self.match!r} does not capture")

    def example(self) -> str:
        """A layer name this pattern matches (captures → ``0``, ``*`` → ``x``), for the overlap check."""
        return _TOKEN.sub(lambda m: "x" if m[0] == "*" else "0", self.match)


@dataclass(frozen=True)
class GroupOptions:
    """The ``[groups]`` config table."""
    mode: GroupMode = "auto"
    aggregate: Aggregate = "rms"
    max_voices: int = DEFAULT_MAX_VOICES
    patterns: tuple[GroupPattern, ...] = ()
    settle: float = DEFAULT_SETTLE


def groups_rule(voice_key: Sequence[str], voices: str, opts: GroupOptions) -> bool:
    """Whether a rule's streams are grouped: its voices are keyed by run and layer, and grouping is on.

    >>> groups_rule(("run", "layer"), "channel", GroupOptions()), groups_rule(("run",), "channel", GroupOptions())
    (True, False)
    """
    return opts.mode != "none" and voices != "none" and sorted(voice_key) == ["layer", "run"]


def band(norm: float, group: int, groups: int, guard: float = 0.1) -> float:
    """A group's value in its own band of the unit range: group ``g`` of ``G`` sounds in
    ``[(g + guard)/G, (g + 1 - guard)/G]``, so no two groups share a pitch (sine and pyo voices).

    >>> band(0.0, 0, 2), round(band(1.0, 1, 2), 6)
    (0.05, 0.95)
    """
    n = min(max(norm, 0.0), 1.0)
    return (group + guard + n * (1.0 - 2.0 * guard)) / max(groups, 1)


def compile_layer_pattern(pattern: str) -> re.Pattern[str]:
    """``transformer.h.{i}.*`` → a regex: ``{i}`` one dot-separated part, ``*`` any text.

    >>> compile_layer_pattern("h.{i}.*").fullmatch("h.3.attn.c_proj").groupdict()
    {'i': '3'}
    """
    out = []
    seen: set[str] = set()
    for token in _TOKEN.split(pattern):
        if token == "*":
            out.append(".*")
        elif token.startswith("{"):
            name = token[1:-1]
            if not name.isidentifier() or name in seen:
                raise ValueError(f"capture {token} in {pattern!r} must be a name like {{i}}, used once")
            seen.add(name)
            out.append(f"(?P<{name}>[^.]+)")
        elif "{" in token or "}" in token:
            raise ValueError(f"unbalanced '{{' or '}}' in {pattern!r}")
        else:
            out.append(re.escape(token))
    if not pattern or "/" in pattern or " " in pattern:
        raise ValueError(f"{pattern!r} can match no layer name (names are non-empty, without '/' or spaces)")
    return re.compile("".join(out))


def check_patterns(patterns: Sequence[GroupPattern]) -> str | None:
    """The first problem with a pattern list (two patterns that claim the same layer), or ``None``.

    >>> check_patterns([GroupPattern("b{i}", "h.{i}.*"), GroupPattern("attn", "h.0.attn.*")])
    "patterns[1] ('h.0.attn.*') overlaps patterns[0] ('h.{i}.*'): layer 'h.0.attn.x' matches both"
    """
    for j, b in enumerate(patterns):
        for i, a in enumerate(patterns[:j]):
            for x, y in ((a, b), (b, a)):
                ex = x.example()
                if y.regex.fullmatch(ex):
                    return (f"patterns[{j}] ({b.match!r}) overlaps patterns[{i}] ({a.match!r}): "
                            f"layer {ex!r} matches both")
    return None


def aggregate(values: Sequence[float], how: str = "rms") -> float:
    """A group's value: ``rms`` (the default: a group's norm, dominated by its loudest layers as a norm
    over all of them would be), ``max`` or ``mean``.

    >>> aggregate([1.0, 3.0], "mean"), aggregate([1.0, 3.0], "max"), aggregate([], "rms")
    (2.0, 3.0, nan)
    """
    if not values:
        return math.nan
    if how == "max":
        return max(values)
    if how == "mean":
        return sum(values) / len(values)
    return math.sqrt(sum(v * v for v in values) / len(values))


def depth_index(layer: str) -> tuple[str, int] | None:
    """``(container path, index)`` of a layer's first numeric path part, or ``None``.

    >>> depth_index("transformer.h.11.attn.c_attn"), depth_index("0"), depth_index("lm_head")
    (('transformer.h', 11), ('', 0), None)
    """
    m = _INDEX.match(layer) or re.search(r"\.(?P<i>\d+)(?:\.|$)", layer)
    if m is None:
        return None
    prefix = m.groupdict().get("prefix") or layer[: m.start("i")].rstrip(".")
    return prefix, int(m["i"])


def _span(a: str, b: str) -> str:
    return a if a == b else f"{a}{SPAN}{b}"


@dataclass(frozen=True)
class Layout:
    """Groups of one run: ``names[g]`` and ``members[g]`` (layer names, model order)."""
    names: tuple[str, ...]
    members: tuple[tuple[str, ...], ...]
    container: str | None = None
    """The repeating module path (``transformer.h``) the depth groups split, if any."""
    blocks: tuple[tuple[int, int], ...] = ()
    """Per group, the container indices it spans (``(-1, -1)`` for a group outside the container)."""
    patterns: tuple[GroupPattern, ...] = ()

    def group_of(self, layer: str) -> int:
        """The group of a layer, also of one the layout has not seen (by its depth index or pattern)."""
        for g, mem in enumerate(self.members):
            if layer in mem:
                return g
        if self.patterns:
            for p in self.patterns:
                m = p.regex.fullmatch(layer)
                if m is not None:
                    name = p.name.format(**m.groupdict())
                    if name in self.names:
                        return self.names.index(name)
            return self.names.index(REST_GROUP) if REST_GROUP in self.names else len(self.names) - 1
        d = depth_index(layer)
        if self.container is not None and d is not None and d[0] == self.container:
            spans = [(g, b) for g, b in enumerate(self.blocks) if b[0] >= 0]
            for g, (lo, hi) in spans:
                if lo <= d[1] <= hi:
                    return g
            return spans[-1][0] if d[1] > spans[-1][1][1] else spans[0][0]
        return len(self.names) - 1


def _chunks(items: Sequence[str], n: int) -> list[list[str]]:
    """``items`` in at most ``n`` contiguous chunks whose sizes differ by at most one (larger first).

    >>> [len(c) for c in _chunks(list("abcdefghijkl"), 11)]
    [2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    """
    q, r = divmod(len(items), max(1, n))
    out, i = [], 0
    for k in range(min(n, len(items))):
        size = q + (k < r)
        out.append(list(items[i : i + size]))
        i += size
    return out


def plan(layers: Sequence[str], opts: GroupOptions, fixed: int = 0) -> Layout:
    """The layout of a run whose layers (in model order) are ``layers``; see the module docstring.

    The first ``fixed`` layers keep a group each (they were sounded under their own names before the
    layout settled); the rest share the remaining voices.
    """
    if opts.mode == "patterns":
        return _pattern_layout(layers, opts)
    if 0 < fixed < opts.max_voices:
        head = list(layers[:fixed])
        rest = plan(layers[fixed:], replace(opts, max_voices=max(1, opts.max_voices - fixed)))
        return Layout(tuple(head) + rest.names, tuple((x,) for x in head) + rest.members, rest.container,
                      ((-1, -1),) * fixed + rest.blocks)
    if not layers:
        return Layout((), ())
    m = opts.max_voices
    depth = {name: depth_index(name) for name in layers}
    counts: dict[str, set[int]] = {}
    for d in depth.values():
        if d is not None:
            counts.setdefault(d[0], set()).add(d[1])
    container = max(counts, key=lambda p: len(counts[p]), default=None)
    if container is None or len(counts[container]) < 2:
        if len(layers) <= m:
            return Layout(tuple(layers), tuple((x,) for x in layers))
        ch = _chunks(layers, m)
        return Layout(tuple(_span(c[0], c[-1]) for c in ch), tuple(tuple(c) for c in ch))
    inside = [x for x in layers if depth[x] is not None and depth[x][0] == container]  # type: ignore[index]
    first = layers.index(inside[0])
    before = [x for x in layers[:first] if x not in inside]
    after = [x for x in layers[first:] if x not in inside]
    # Layers between blocks that are not in the container (rare) join the group after the blocks.
    idx = sorted(counts[container])
    if m - bool(before) - bool(after) < 1:
        # Too few voices for groups of their own: the layers before and after join the depth groups.
        inside, before, after = list(layers), [], []
        depth = {x: d if d is not None and d[0] == container else (container, idx[0] if i < first else idx[-1])
                 for i, (x, d) in enumerate(depth.items())}
    slots = max(1, m - bool(before) - bool(after))
    names: list[str] = []
    members: list[tuple[str, ...]] = []
    blocks: list[tuple[int, int]] = []
    if before:
        names.append(_span(before[0], before[-1]))
        members.append(tuple(before))
        blocks.append((-1, -1))
    short = container.rsplit(".", 1)[-1] if container else ""
    for chunk in _chunks([str(i) for i in idx], slots):
        lo, hi = int(chunk[0]), int(chunk[-1])
        names.append(_span(f"{short}.{lo}" if short else str(lo), f"{short}.{hi}" if short else str(hi)))
        members.append(tuple(x for x in inside if depth[x][0] == container and lo <= depth[x][1] <= hi))  # type: ignore[index]
        blocks.append((lo, hi))
    if after:
        names.append(_span(after[0], after[-1]))
        members.append(tuple(after))
        blocks.append((-1, -1))
    return Layout(tuple(names), tuple(members), container, tuple(blocks))


def _pattern_layout(layers: Sequence[str], opts: GroupOptions) -> Layout:
    names: list[str] = []
    members: dict[str, list[str]] = {}
    for layer in layers:
        name = REST_GROUP
        for p in opts.patterns:
            m = p.regex.fullmatch(layer)
            if m is not None:
                name = p.name.format(**m.groupdict())
                break
        if name not in members:
            names.append(name)
            members[name] = []
        members[name].append(layer)
    return Layout(tuple(names), tuple(tuple(members[n]) for n in names), patterns=opts.patterns)
