"""Mapping rules: an OSC address pattern to one MIDI target, validated and resolved once, at load time.

A :class:`Rule` carries what the hot path needs ready-made: its compiled pattern, the
event kind it matches, its captures, the names that key a voice and the index of the
argument it reads, so nothing is looked up per event.

>>> r = Rule(match="/nn/{run}/weight/{layer}", arg="update_ratio")
>>> r.kind, r.captures, r.index, r.pattern.fullmatch("/nn/a/weight/fc1").groupdict()
('weight', ('run', 'layer'), 4, {'run': 'a', 'layer': 'fc1'})
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

from ..errors import ConfigError
from ..table import Table
from ..wire.midi import DATA_MAX
from ..wire.protocol import VALUE_NAMES
from .scales import SCALES, parse_root

Target = Literal["note", "cc", "cc14", "pitchbend", "pressure"]
Scaling = Literal["linear", "log", "auto"]
VoiceMode = Literal["channel", "band", "none"]

# The choices, for validation and --help, derived from the types so they cannot drift apart.
TARGETS: tuple[str, ...] = get_args(Target)
SCALINGS: tuple[str, ...] = get_args(Scaling)
VOICE_MODES: tuple[str, ...] = get_args(VoiceMode)
LINEAR_RANGE = (0.0, 1.0)
#: Largest 14-bit CC controller number (its LSB is controller + 32).
CC14_MAX_CONTROLLER = 31

_TOKEN = re.compile(r"(\{[^{}/]*\}|\*)")
_KIND_OF_MATCH = re.compile(r"^/nn/[^/]+/(?P<kind>[a-z_]+)")
#: OSC 1.0 pattern syntax a rule does not have, spaces, and control characters: no address could match.
_UNSUPPORTED = re.compile(r"[\[\]?!,# \x00-\x1f\x7f]")


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """``/nn/{run}/grad_norm/{layer}`` → a regex with named groups; ``*`` matches one segment part.

    Raises:
        ValueError: a capture that is not an identifier, a capture named twice, a stray brace, or an
            OSC pattern character this syntax does not have (``[ ] ? ! ,`` …: it would never match).

    >>> compile_pattern("/nn/{run}/loss").fullmatch("/nn/a/loss").groupdict()
    {'run': 'a'}
    >>> compile_pattern("/nn/{run/loss")
    Traceback (most recent call last):
    ...
    ValueError: unbalanced '{' or '}' in '/nn/{run/loss'
    """
    out = []
    seen: set[str] = set()
    for token in _TOKEN.split(pattern):
        if token == "*":
            out.append("[^/]*")
        elif token.startswith("{") and token.endswith("}"):
            name = token[1:-1]
            if not name.isidentifier():
                raise ValueError(f"capture {token} in {pattern!r} must be a name like {{layer}}")
            if name in seen:
                raise ValueError(f"capture {token} appears twice in {pattern!r}")
            seen.add(name)
            out.append(f"(?P<{name}>[^/]+)")
        elif "{" in token or "}" in token:
            raise ValueError(f"unbalanced '{{' or '}}' in {pattern!r}")
        elif bad := _UNSUPPORTED.findall(token):
            raise ValueError(
                f"{''.join(dict.fromkeys(bad))!r} in {pattern!r} is not supported (write * for part of a segment, "
                f"{{name}} for a whole one)"
            )
        else:
            out.append(re.escape(token))
    return re.compile("".join(out))


def pattern_kind(match: str) -> str:
    """The event kind a pattern is written for; ``""`` when the pattern leaves it open.

    >>> pattern_kind("/nn/{run}/grad_norm/{layer}"), pattern_kind("/nn/{run}/{kind}")
    ('grad_norm', '')
    """
    m = _KIND_OF_MATCH.match(match.replace("{run}", "x"))
    return m["kind"] if m else ""


def resolve_index(kind: str, arg: int | str) -> int:
    """A rule's ``arg`` (index or argument name) as an index into an event's values.

    >>> resolve_index("weight", "update_ratio"), resolve_index("loss", 0)
    (4, 0)
    """
    if isinstance(arg, int):
        return arg
    names = VALUE_NAMES.get(kind, ())
    if arg not in names:
        raise ValueError(f"must be one of {', '.join(names) or '(an index)'}; got {arg!r}")
    return names.index(arg)


@dataclass(frozen=True)
class Rule:
    """One mapping rule: an address pattern to one MIDI target."""

    match: str
    name: str = ""
    arg: int | str = 0
    target: Target = "note"
    channel: int = 1
    voices: VoiceMode = "channel"
    voice_by: tuple[str, ...] | None = None
    """Capture names that key a voice; ``None``: all captures of ``match``."""
    scale: Scaling = "log"
    range: tuple[float, float] = (1e-4, 1e2)
    clamp: bool = True
    invert: bool = False
    smooth: float = 0.0
    rate_limit: float = 0.0
    notes: tuple[int, int] = (36, 96)
    musical_scale: str = "pentatonic"
    root: int = 0
    velocity: int = 96
    length: float = 0.15
    cc: int = 74
    band_width: int = 12
    auto_window: int = 256
    auto_start: float = 0.5
    """Where an auto-ranged stream's first value sits (0..1); 0.9 for one expected to fall, like a loss."""
    auto_scale: float = 0.15
    """The auto range's first scale (decades on a log axis): larger keeps more room for a long trend, smaller
    spreads a steady stream wider (docs/mapping.md, "Auto range"); 0.4 for the built-in loss."""
    # Resolved once from the fields above (see the module docstring).
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)
    captures: tuple[str, ...] = field(init=False, repr=False, compare=False)
    voice_key: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """The capture names that key this rule's voices (``voice_by``, else every capture)."""
    kind: str = field(init=False, repr=False, compare=False)
    """The event kind ``match`` is written for; ``""`` when the pattern leaves it open."""
    index: int = field(init=False, repr=False, compare=False)
    """Which of an event's values the rule reads (``arg`` resolved)."""

    def __post_init__(self) -> None:
        pattern = compile_pattern(self.match)
        kind = pattern_kind(self.match)
        captures = tuple(pattern.groupindex)
        for name, value in (("pattern", pattern), ("captures", captures), ("kind", kind),
                            ("voice_key", self.voice_by if self.voice_by is not None else captures),
                            ("index", resolve_index(kind, self.arg))):
            object.__setattr__(self, name, value)


def parse_rule(data: Any, path: str) -> Rule:
    """One ``[[mappings]]`` table → a :class:`Rule`; errors name ``path`` and the key."""
    t = Table(data, path)
    match = t.string("match", "")
    if not match.startswith("/"):
        raise ConfigError(f"{t.key('match')} must be an OSC address pattern starting with '/', got {match!r}")
    try:
        pattern = compile_pattern(match)
    except ValueError as err:
        raise ConfigError(f"{t.key('match')}: {err}") from None
    kind = pattern_kind(match)
    arg_raw = t.raw("arg", 0)
    if isinstance(arg_raw, bool) or not isinstance(arg_raw, (int, str)):
        raise ConfigError(f"{t.key('arg')} must be an index or an argument name, got {arg_raw!r}")
    if isinstance(arg_raw, str):
        try:
            resolve_index(kind, arg_raw)
        except ValueError as err:
            raise ConfigError(f"{t.key('arg')} {err}") from None
    elif kind in VALUE_NAMES and not 0 <= arg_raw < max(1, len(VALUE_NAMES[kind])):
        raise ConfigError(f"{t.key('arg')} must be in 0..{len(VALUE_NAMES[kind]) - 1} for {kind}, got {arg_raw!r}")
    d = Rule(match=match)  # the defaults live in one place: the dataclass
    scale = cast(Scaling, t.string("scale", d.scale, SCALINGS))
    rng = t.pair("range", d.range if scale != "linear" else LINEAR_RANGE)
    if scale == "log" and rng[0] <= 0:
        raise ConfigError(f"{t.key('range')} must be positive for log scaling, got {list(rng)!r}")
    notes = t.pair("notes", d.notes)
    if not all(0 <= n <= DATA_MAX and n == int(n) for n in notes):
        raise ConfigError(f"{t.key('notes')} must be two MIDI notes in 0..127, got {list(notes)!r}")
    vb_raw = t.raw("voice_by", None)
    voice_by: tuple[str, ...] | None = None
    if vb_raw is not None:
        voice_by = Table({"voice_by": vb_raw}, path).strings("voice_by", ())
        for c in voice_by:
            if c not in pattern.groupindex:
                raise ConfigError(f"{t.key('voice_by')} names {c!r}, which {match!r} does not capture")
    root_raw = t.raw("root", d.root)
    try:
        root = parse_root(root_raw)
    except (ValueError, AttributeError, TypeError) as err:
        raise ConfigError(f"{t.key('root')} must be a note name (C, C#, … B) or 0..11, got {root_raw!r}") from err
    rule = Rule(
        match=match,
        name=t.string("name", d.name),
        arg=arg_raw,
        target=cast(Target, t.string("target", d.target, TARGETS)),
        channel=t.integer("channel", d.channel, 1, 16),
        voices=cast(VoiceMode, t.string("voices", d.voices, VOICE_MODES)),
        voice_by=voice_by,
        scale=scale,
        range=rng,
        clamp=t.boolean("clamp", d.clamp),
        invert=t.boolean("invert", d.invert),
        smooth=t.number("smooth", d.smooth, 0.0, 0.999),
        rate_limit=t.number("rate_limit", d.rate_limit, 0.0, 10_000.0),
        notes=(int(notes[0]), int(notes[1])),
        musical_scale=t.string("musical_scale", d.musical_scale, tuple(SCALES)),
        root=root,
        velocity=t.integer("velocity", d.velocity, 1, DATA_MAX),
        length=t.number("length_ms", d.length * 1000.0, 1.0, 60_000.0) / 1000.0,
        cc=t.integer("cc", d.cc, 0, DATA_MAX),
        band_width=t.integer("band_width", d.band_width, 1, DATA_MAX),
        auto_window=t.integer("auto_window", d.auto_window, 8, 100_000),
        auto_start=t.number("auto_start", d.auto_start, 0.0, 1.0),
        auto_scale=t.number("auto_scale", d.auto_scale, 0.01, 10.0),
    )
    if rule.target == "cc14" and rule.cc > CC14_MAX_CONTROLLER:
        raise ConfigError(f"{t.key('cc')} must be in 0..31 for a 14-bit CC (LSB is cc+32), got {rule.cc}")
    t.finish()
    return rule


def note_span(rule: Rule, voice: int) -> tuple[int, int]:
    """The note range a voice of a note rule plays in (its own band when ``voices = "band"``)."""
    lo, hi = rule.notes
    if rule.voices == "band":
        nbands = max(1, (hi - lo + 1) // rule.band_width)
        lo = lo + (voice % nbands) * rule.band_width
        hi = min(hi, lo + rule.band_width - 1)
    return lo, hi


def fractional_pitch(rule: Rule, voice: int, norm: float) -> float:
    """The unquantised pitch (a fractional MIDI note) of a note rule's value: what MPE glides to."""
    lo, hi = note_span(rule, voice)
    return lo + min(max(norm, 0.0), 1.0) * (hi - lo)
