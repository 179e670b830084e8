"""Bridge configuration: TOML → frozen, validated dataclasses.

Every error names the key path and the bad value, e.g.
``mappings[2].channel must be in 1..16, got 17``. Unknown keys are errors.
"""

from __future__ import annotations

import ipaddress
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast, get_args

from .errors import ConfigError
from .protocol import DEFAULT_HOST, DEFAULT_PORT, VALUE_NAMES
from .scales import SCALES, parse_root

MidiApi = Literal["auto", "alsa", "jack", "coremidi", "winmm"]
Target = Literal["note", "cc", "cc14", "pitchbend", "pressure"]
Scaling = Literal["linear", "log", "auto"]
VoiceMode = Literal["channel", "band", "none"]

# The choices, for validation and --help, derived from the types so they cannot drift apart.
MIDI_APIS: tuple[str, ...] = get_args(MidiApi)
TARGETS: tuple[str, ...] = get_args(Target)
SCALINGS: tuple[str, ...] = get_args(Scaling)
VOICE_MODES: tuple[str, ...] = get_args(VoiceMode)

DEFAULT_CLIENT_NAME = "trainsound"
DEFAULT_STATS_INTERVAL = 60.0
DEFAULT_RCVBUF = 4 * 1024 * 1024
DEFAULT_SCHEDULE_HORIZON = 10.0
DEFAULT_SCHEDULE_QUEUE = 10_000
DEFAULT_MAX_VOICES = 256
DEFAULT_ALLOW = ("127.0.0.0/8", "::1/128")
LINEAR_RANGE = (0.0, 1.0)
DEFAULT_TCP = True
DEFAULT_TCP_MAX_CONNECTIONS = 8
DEFAULT_TCP_MAX_FRAME = 65_536
DEFAULT_MAX_RUNS = 64
DEFAULT_RUN_IDLE = 600.0

#: Output sections validated by their output module (loaded lazily, without heavy deps).
OUTPUT_SECTIONS: dict[str, str] = {}


def register_output_section(name: str, loader: str) -> None:
    """Let an output own a top-level ``[name]`` table, validated by ``module:function``."""
    OUTPUT_SECTIONS[name] = loader


class Table:
    """A TOML table being validated; remembers which keys were read."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path} must be a table, got {data!r}")
        self.data = data
        self.path = path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def raw(self, name: str, default: Any) -> Any:
        self.used.add(name)
        return self.data.get(name, default)

    def number(self, name: str, default: float, lo: float = -math.inf, hi: float = math.inf) -> float:
        v = self.raw(name, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(f"{self.key(name)} must be a number, got {v!r}")
        if not lo <= v <= hi:
            raise ConfigError(f"{self.key(name)} must be in {lo:g}..{hi:g}, got {v!r}")
        return float(v)

    def integer(self, name: str, default: int, lo: int, hi: int) -> int:
        v = self.raw(name, default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{self.key(name)} must be an integer, got {v!r}")
        if not lo <= v <= hi:
            raise ConfigError(f"{self.key(name)} must be in {lo}..{hi}, got {v!r}")
        return v

    def boolean(self, name: str, default: bool) -> bool:
        v = self.raw(name, default)
        if not isinstance(v, bool):
            raise ConfigError(f"{self.key(name)} must be true or false, got {v!r}")
        return v

    def string(self, name: str, default: str, choices: tuple[str, ...] | None = None) -> str:
        v = self.raw(name, default)
        if not isinstance(v, str):
            raise ConfigError(f"{self.key(name)} must be a string, got {v!r}")
        if choices is not None and v not in choices:
            raise ConfigError(f"{self.key(name)} must be one of {', '.join(choices)}; got {v!r}")
        return v

    def pair(self, name: str, default: tuple[float, float]) -> tuple[float, float]:
        v = self.raw(name, list(default))
        if (
            not isinstance(v, list)
            or len(v) != 2
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
        ):
            raise ConfigError(f"{self.key(name)} must be a list of two numbers, got {v!r}")
        if not v[0] < v[1]:
            raise ConfigError(f"{self.key(name)} must be [low, high] with low < high, got {v!r}")
        return float(v[0]), float(v[1])

    def strings(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        v = self.raw(name, list(default))
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise ConfigError(f"{self.key(name)} must be a list of strings, got {v!r}")
        return tuple(v)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(f"{self.key(unknown[0])} is not a known key (value {self.data[unknown[0]]!r})")


def parse_hostport(text: str, key: str, default_host: str = DEFAULT_HOST) -> tuple[str, int]:
    """``"HOST:PORT"``, ``":PORT"`` or ``"[v6]:PORT"`` → ``(host, port)``.

    >>> parse_hostport("127.0.0.1:9150", "listen")
    ('127.0.0.1', 9150)
    """
    m = re.fullmatch(r"\[(?P<v6>[^\]]+)\]:(?P<p1>\d+)|(?P<host>[^:]*):(?P<p2>\d+)", text.strip())
    if not m:
        raise ConfigError(f"{key} must be HOST:PORT, got {text!r}")
    host = m["v6"] or m["host"] or default_host
    port = int(m["p1"] or m["p2"])
    if not 1 <= port <= 65535:
        raise ConfigError(f"{key} port must be in 1..65535, got {port}")
    return host, port


@dataclass(frozen=True)
class BridgeOptions:
    listen: tuple[str, int] = (DEFAULT_HOST, DEFAULT_PORT)
    allow: tuple[str, ...] = DEFAULT_ALLOW
    stats_interval: float = DEFAULT_STATS_INTERVAL
    rcvbuf: int = DEFAULT_RCVBUF
    schedule_horizon: float = DEFAULT_SCHEDULE_HORIZON
    schedule_queue: int = DEFAULT_SCHEDULE_QUEUE
    allow_explicit: bool = False
    """``allow`` was set on purpose (config key or ``--allow``): required to listen beyond loopback."""
    tcp: bool = DEFAULT_TCP
    """Also accept OSC 1.1 over TCP (SLIP framing) on the same host and port."""
    tcp_max_connections: int = DEFAULT_TCP_MAX_CONNECTIONS
    tcp_max_frame: int = DEFAULT_TCP_MAX_FRAME
    max_runs: int = DEFAULT_MAX_RUNS
    """Runs tracked at once; when full, runs idle for ``run_idle`` seconds are forgotten."""
    run_idle: float = DEFAULT_RUN_IDLE
    max_voices: int = DEFAULT_MAX_VOICES
    """Voices per voice table (e.g. all (run, layer) pairs of the grad-norm rule)."""


@dataclass(frozen=True)
class MidiOptions:
    api: MidiApi = "auto"
    port: str = ""
    """Connect to an existing port whose name contains this; empty: a virtual port."""
    client_name: str = DEFAULT_CLIENT_NAME
    enabled: bool = True


@dataclass(frozen=True)
class AlarmOptions:
    channel: int = 16
    note: int = 90
    velocity: int = 127
    cc: int = 20
    cc_value: int = 127
    length: float = 0.4
    min_interval: float = 0.5


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

    @property
    def captures(self) -> tuple[str, ...]:
        return tuple(re.findall(r"\{(\w+)\}", self.match))


@dataclass(frozen=True)
class Config:
    bridge: BridgeOptions = field(default_factory=BridgeOptions)
    midi: MidiOptions = field(default_factory=MidiOptions)
    alarm: AlarmOptions = field(default_factory=AlarmOptions)
    mappings: tuple[Rule, ...] = ()
    outputs: Mapping[str, Any] = field(default_factory=dict)
    """Validated option objects of output-owned sections (``[sine]``, ``[osc_out]`` …)."""
    source: str = "<built-in default>"


def default_rules() -> tuple[Rule, ...]:
    """The built-in mapping: works with no config file (see docs/mapping.md)."""
    return (
        Rule(
            name="grad_norm_notes",
            match="/nn/{run}/grad_norm/{layer}",
            target="note",
            scale="log",
            range=(1e-4, 1e2),
            notes=(36, 96),
            musical_scale="pentatonic",
            voices="channel",
            rate_limit=20.0,
        ),
        Rule(
            name="loss_brightness",
            match="/nn/{run}/loss",
            target="cc",
            cc=74,
            scale="auto",
            voices="channel",
            rate_limit=50.0,
        ),
        Rule(
            name="update_ratio_mod",
            match="/nn/{run}/weight/{layer}",
            arg="update_ratio",
            target="cc",
            cc=1,
            scale="log",
            range=(1e-6, 1e-1),
            rate_limit=50.0,
        ),
        Rule(
            name="weight_std_resonance",
            match="/nn/{run}/weight/{layer}",
            arg="std",
            target="cc",
            cc=71,
            scale="auto",
            rate_limit=50.0,
        ),
        Rule(
            name="accuracy_expression",
            match="/nn/{run}/metric/accuracy",
            target="cc",
            cc=11,
            scale="linear",
            range=(0.0, 1.0),
            rate_limit=50.0,
        ),
    )


_KIND_OF_MATCH = re.compile(r"^/nn/[^/]+/(?P<kind>[a-z_]+)")


def _rule(data: Any, path: str) -> Rule:
    t = Table(data, path)
    match = t.string("match", "")
    if not match.startswith("/"):
        raise ConfigError(f"{t.key('match')} must be an OSC address pattern starting with '/', got {match!r}")
    m = _KIND_OF_MATCH.match(match.replace("{run}", "x"))
    kind = m["kind"] if m else None
    arg_raw = t.raw("arg", 0)
    if isinstance(arg_raw, bool) or not isinstance(arg_raw, (int, str)):
        raise ConfigError(f"{t.key('arg')} must be an index or an argument name, got {arg_raw!r}")
    if isinstance(arg_raw, str):
        names = VALUE_NAMES.get(kind or "", ())
        if arg_raw not in names:
            raise ConfigError(f"{t.key('arg')} must be one of {', '.join(names) or '(an index)'}; got {arg_raw!r}")
    elif kind in VALUE_NAMES and not 0 <= arg_raw < max(1, len(VALUE_NAMES[kind])):
        raise ConfigError(f"{t.key('arg')} must be in 0..{len(VALUE_NAMES[kind]) - 1} for {kind}, got {arg_raw!r}")
    d = Rule(match=match)  # the defaults live in one place: the dataclass
    scale = cast(Scaling, t.string("scale", d.scale, SCALINGS))
    rng = t.pair("range", d.range if scale != "linear" else LINEAR_RANGE)
    if scale == "log" and rng[0] <= 0:
        raise ConfigError(f"{t.key('range')} must be positive for log scaling, got {list(rng)!r}")
    notes = t.pair("notes", d.notes)
    if not (0 <= notes[0] <= 127 and 0 <= notes[1] <= 127 and notes[0] == int(notes[0]) and notes[1] == int(notes[1])):
        raise ConfigError(f"{t.key('notes')} must be two MIDI notes in 0..127, got {list(notes)!r}")
    captures = tuple(re.findall(r"\{(\w+)\}", match))
    vb_raw = t.raw("voice_by", None)
    voice_by: tuple[str, ...] | None = None
    if vb_raw is not None:
        voice_by = Table({"voice_by": vb_raw}, path).strings("voice_by", ())
        for c in voice_by:
            if c not in captures:
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
        velocity=t.integer("velocity", d.velocity, 1, 127),
        length=t.number("length_ms", d.length * 1000.0, 1.0, 60_000.0) / 1000.0,
        cc=t.integer("cc", d.cc, 0, 127),
        band_width=t.integer("band_width", d.band_width, 1, 127),
        auto_window=t.integer("auto_window", d.auto_window, 8, 100_000),
    )
    if rule.target == "cc14" and rule.cc > 31:
        raise ConfigError(f"{t.key('cc')} must be in 0..31 for a 14-bit CC (LSB is cc+32), got {rule.cc}")
    t.finish()
    return rule


def _load_output_section(name: str, data: Any) -> Any:
    from importlib import import_module

    mod, func = OUTPUT_SECTIONS[name].split(":")
    return getattr(import_module(mod), func)(Table(data, name))


def from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Config:
    """Build a :class:`Config` from parsed TOML, validating every key."""
    from . import outputs as _outputs  # noqa: F401  (registers output-owned sections)

    top = Table(data, "")
    b = Table(top.raw("bridge", {}), "bridge")
    listen = parse_hostport(b.string("listen", f"{DEFAULT_HOST}:{DEFAULT_PORT}"), "bridge.listen")
    allow = b.strings("allow", DEFAULT_ALLOW)
    for i, net in enumerate(allow):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError as err:
            raise ConfigError(f"bridge.allow[{i}] must be a network in CIDR form, got {net!r}") from err
    bridge = BridgeOptions(
        listen=listen,
        allow=allow,
        stats_interval=b.number("stats_interval", DEFAULT_STATS_INTERVAL, 0.0, 86_400.0),
        rcvbuf=b.integer("rcvbuf", DEFAULT_RCVBUF, 65_536, 1 << 30),
        schedule_horizon=b.number("schedule_horizon", DEFAULT_SCHEDULE_HORIZON, 0.0, 3600.0),
        schedule_queue=b.integer("schedule_queue", DEFAULT_SCHEDULE_QUEUE, 0, 10_000_000),
        allow_explicit="allow" in b.data,
        tcp=b.boolean("tcp", DEFAULT_TCP),
        tcp_max_connections=b.integer("tcp_max_connections", DEFAULT_TCP_MAX_CONNECTIONS, 0, 1024),
        tcp_max_frame=b.integer("tcp_max_frame", DEFAULT_TCP_MAX_FRAME, 64, 1 << 24),
        max_runs=b.integer("max_runs", DEFAULT_MAX_RUNS, 1, 100_000),
        run_idle=b.number("run_idle", DEFAULT_RUN_IDLE, 0.0, 86_400.0 * 365),
        max_voices=b.integer("max_voices", DEFAULT_MAX_VOICES, 1, 100_000),
    )
    b.finish()
    m = Table(top.raw("midi", {}), "midi")
    md = MidiOptions()
    midi = MidiOptions(
        api=cast(MidiApi, m.string("api", md.api, MIDI_APIS)),
        port=m.string("port", md.port),
        client_name=m.string("client_name", md.client_name) or md.client_name,
        enabled=m.boolean("enabled", md.enabled),
    )
    m.finish()
    a = Table(top.raw("alarm", {}), "alarm")
    d = AlarmOptions()  # the defaults live in one place: the dataclass
    alarm = AlarmOptions(
        channel=a.integer("channel", d.channel, 1, 16),
        note=a.integer("note", d.note, 0, 127),
        velocity=a.integer("velocity", d.velocity, 1, 127),
        cc=a.integer("cc", d.cc, 0, 127),
        cc_value=a.integer("cc_value", d.cc_value, 0, 127),
        length=a.number("length_ms", d.length * 1000.0, 1.0, 60_000.0) / 1000.0,
        min_interval=a.number("min_interval_ms", d.min_interval * 1000.0, 0.0, 60_000.0) / 1000.0,
    )
    a.finish()
    raw_rules = top.raw("mappings", None)
    if raw_rules is None:
        rules = default_rules()
    else:
        if not isinstance(raw_rules, list):
            raise ConfigError(f"mappings must be an array of tables ([[mappings]]), got {raw_rules!r}")
        rules = tuple(_rule(r, f"mappings[{i}]") for i, r in enumerate(raw_rules))
    outputs: dict[str, Any] = {}
    for name in OUTPUT_SECTIONS:
        if name in data:
            outputs[name] = _load_output_section(name, top.raw(name, {}))
    top.finish()
    return Config(bridge=bridge, midi=midi, alarm=alarm, mappings=rules, outputs=outputs, source=source)


def load(path: str | Path) -> Config:
    """Read and validate a TOML config file; errors name the file and the key."""
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as err:
        raise ConfigError(f"{p}: cannot read config file: {err.strerror}") from err
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{p}: not valid TOML: {err}") from err
    try:
        return from_dict(data, source=str(p))
    except ConfigError as err:
        raise ConfigError(f"{p}: {err}") from err


def default() -> Config:
    """The built-in configuration."""
    return from_dict({}, source="<built-in default>")


def with_bridge(cfg: Config, **changes: Any) -> Config:
    """A copy with some ``[bridge]`` options changed (CLI flags override the file)."""
    return replace(cfg, bridge=replace(cfg.bridge, **changes))


def with_midi(cfg: Config, **changes: Any) -> Config:
    return replace(cfg, midi=replace(cfg.midi, **changes))


def output_options(cfg: Config, name: str, default: Any) -> Any:
    """The validated options of output section ``name``, or ``default``."""
    return cast(Any, cfg.outputs.get(name, default))
