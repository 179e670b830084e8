"""Bridge configuration: TOML → frozen, validated dataclasses.

Every error names the key path and the bad value, e.g.
``mappings[2].channel must be in 1..16, got 17``. Unknown keys are errors, with the known key they are
closest to (``bridge.listn is not a known key (value ':9150'); did you mean bridge.listen?``). A file is
validated whole: all its errors are reported at once.
"""

from __future__ import annotations

import ipaddress
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from importlib import import_module
from pathlib import Path
from typing import Any, Literal, cast, get_args

from ..alarms.options import AlarmOptions, AlarmsOptions, alarm_section
from ..alarms.options import section as alarms_section
from ..errors import ConfigError
from ..mapping.groups import AGGREGATES, GROUP_MODES, GroupOptions, GroupPattern, check_patterns
from ..mapping.rules import Rule, parse_rule
from ..table import Table, attempt, collecting, parse_hostport
from ..wire.protocol import DEFAULT_HOST, DEFAULT_PORT

__all__ = ["MIDI_APIS", "AlarmOptions", "BridgeOptions", "Config", "ConfigError", "MidiOptions", "Rule", "Table",
           "default", "default_rules", "from_dict", "load", "output_options", "parse_hostport", "with_bridge",
           "with_midi"]

MidiApi = Literal["auto", "alsa", "jack", "coremidi", "winmm"]
MIDI_APIS: tuple[str, ...] = get_args(MidiApi)
MidiMode = Literal["channels", "mpe"]
MIDI_MODES: tuple[str, ...] = get_args(MidiMode)

DEFAULT_CLIENT_NAME = "trainsound"
DEFAULT_STATS_INTERVAL = 60.0
DEFAULT_RCVBUF = 4 * 1024 * 1024
DEFAULT_SCHEDULE_HORIZON = 10.0
DEFAULT_SCHEDULE_QUEUE = 10_000
DEFAULT_MAX_VOICES = 256
DEFAULT_ALLOW = ("127.0.0.0/8", "::1/128")
DEFAULT_TCP = True
DEFAULT_TCP_MAX_CONNECTIONS = 8
DEFAULT_TCP_MAX_FRAME = 65_536
DEFAULT_TCP_IDLE = 300.0
DEFAULT_MAX_RUNS = 64
DEFAULT_RUN_IDLE = 600.0

#: Top-level tables owned by an output: table name → "module:function" taking a :class:`Table` and returning
#: the output's validated options. A literal registry, read when a config names the table, so the config
#: never imports an output module up front (and no output registers itself at import time).
OUTPUT_SECTIONS: dict[str, str] = {
    "sine": "trainsound.bridge.outputs.sine:section",
    "pyo": "trainsound.bridge.outputs.pyo:section",
    "osc_out": "trainsound.bridge.outputs.osc:section",
    "web": "trainsound.bridge.web.options:section",  # not an output, but a table owned by its module alike
    "oscquery": "trainsound.bridge.web.oscquery_options:section",
    # Not outputs, loaded the same lazy way: the MIDI output's clock, the daemon's voice memory.
    "link": "trainsound.bridge.outputs.link:section",
    "voices": "trainsound.bridge.service.voicestate:section",
}


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
    tcp_idle: float = DEFAULT_TCP_IDLE
    """Seconds a TCP connection may stay silent before the bridge closes it (0: never)."""
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
    mode: MidiMode = "channels"
    """``mpe``: each note voice on its own member channel of an MPE lower zone, gliding by pitch bend."""
    mpe_members: int = 14
    """Member channels of the lower zone (2..members+1); 14 keeps channel 16 for the alarm."""
    bend_range: int = 48
    """Member channels' pitch-bend range in semitones (MPE's default)."""


@dataclass(frozen=True)
class Config:
    bridge: BridgeOptions = field(default_factory=BridgeOptions)
    midi: MidiOptions = field(default_factory=MidiOptions)
    alarm: AlarmOptions = field(default_factory=AlarmOptions)
    alarms: AlarmsOptions = field(default_factory=AlarmsOptions)
    """The fault detectors (``[alarms]``, docs/alarms.md); ``[alarm]`` is how an alarm sounds on MIDI."""
    mappings: tuple[Rule, ...] = ()
    groups: GroupOptions = field(default_factory=GroupOptions)
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
            auto_start=0.9,  # a loss starts high and falls: room below it for the whole run
            auto_scale=0.4,  # and its first steps are its steepest: keep room for the rest of the fall
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
        *alias_rules(),
    )


#: Metric names the built-in mapping knows (docs/mapping.md, "Metric names"): the name a framework or a
#: script sends → (canonical name, CC, scale, range). Names of one metric share its CC.
METRIC_ALIASES: dict[str, tuple[str, int, str, tuple[float, float]]] = {
    "accuracy": ("accuracy", 11, "linear", (0.0, 1.0)),
    "acc": ("accuracy", 11, "linear", (0.0, 1.0)),
    "val_accuracy": ("val_accuracy", 75, "linear", (0.0, 1.0)),
    "val_acc": ("val_accuracy", 75, "linear", (0.0, 1.0)),
    "val_loss": ("val_loss", 76, "auto", (0.0, 1.0)),  # its own range, as the loss's
    "learning_rate": ("learning_rate", 72, "log", (1e-6, 1.0)),
    "lr": ("learning_rate", 72, "log", (1e-6, 1.0)),
    "grad_norm": ("global_grad_norm", 73, "log", (1e-4, 1e2)),
}


def alias_rules() -> tuple[Rule, ...]:
    """One CC rule per known metric name (:data:`METRIC_ALIASES`); ``accuracy`` keeps its old rule name."""
    return tuple(
        Rule(name="accuracy_expression" if name == "accuracy" else f"metric_{name}", match=f"/nn/{{run}}/metric/{name}",
             target="cc", cc=cc, scale=scale, range=rng, rate_limit=50.0)  # type: ignore[arg-type]
        for name, (canon, cc, scale, rng) in METRIC_ALIASES.items()
    )


def parse_groups(data: Any) -> GroupOptions:
    """The ``[groups]`` table (docs/mapping.md, "Voice groups"); errors name ``groups.<key>``."""
    t = Table(data, "groups")
    d = GroupOptions()
    raw = t.raw("patterns", [])
    if not isinstance(raw, list):
        raise ConfigError(f"groups.patterns must be an array of tables ([[groups.patterns]]), got {raw!r}")
    patterns = []
    for i, item in enumerate(raw):
        p = Table(item, f"groups.patterns[{i}]")
        match = p.string("match", "")
        name = p.string("name", "")
        if not name:
            raise ConfigError(f"{p.key('name')} must be a non-empty group name (captures as {{i}}), got {name!r}")
        try:
            patterns.append(GroupPattern(name=name, match=match))
        except ValueError as err:
            raise ConfigError(f"{p.key('match')}: {err}") from None
        p.finish()
    problem = check_patterns(patterns)
    if problem is not None:
        raise ConfigError(f"groups.{problem}")
    mode = t.string("mode", "patterns" if patterns else d.mode, GROUP_MODES)
    if mode == "patterns" and not patterns:
        raise ConfigError("groups.mode is 'patterns' but groups.patterns is empty")
    opts = GroupOptions(
        mode=cast(Any, mode),
        aggregate=cast(Any, t.string("aggregate", d.aggregate, AGGREGATES)),
        max_voices=t.integer("max_voices", d.max_voices, 1, 14),
        patterns=tuple(patterns),
        settle=t.number("settle_ms", d.settle * 1000.0, 0.0, 60_000.0) / 1000.0,
    )
    t.finish()
    return opts


def _load_output_section(name: str, data: Any) -> Any:
    mod, func = OUTPUT_SECTIONS[name].split(":")
    return getattr(import_module(mod), func)(Table(data, name))


def from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Config:
    """Build a :class:`Config` from parsed TOML, validating every key; all errors are raised at once (one
    :class:`ConfigError`, its messages joined by ``; `` after their count).

    >>> from_dict({"bridge": {"listn": ":9150", "rcvbuf": 1}, "midii": {}})
    Traceback (most recent call last):
    ...
    trainsound.bridge.errors.ConfigError: 3 errors: bridge.rcvbuf must be in 65536..1073741824, got 1; \
bridge.listn is not a known key (value ':9150'); did you mean bridge.listen?; midii is not a known key (value {}); \
did you mean midi?
    """
    with collecting() as errors:
        cfg = _from_dict(data, source)
    if len(errors) == 1:
        raise ConfigError(errors[0])
    if errors:
        raise ConfigError(f"{len(errors)} errors: " + "; ".join(errors))
    return cfg


def _from_dict(data: Mapping[str, Any], source: str) -> Config:
    # Each table on its own: an error in one (recorded by attempt) leaves the others to be checked too.
    top = Table(data, "")
    top.used.update(OUTPUT_SECTIONS)  # known top-level tables, for "did you mean"
    bridge = attempt(lambda: _bridge(top), BridgeOptions())
    midi = attempt(lambda: _midi(top), MidiOptions())
    alarm = attempt(lambda: alarm_section(Table(top.raw("alarm", {}), "alarm")), AlarmOptions())
    alarms = attempt(lambda: alarms_section(Table(top.raw("alarms", {}), "alarms"), nan_note=alarm.note),
                     AlarmsOptions())
    rules = _rules(top)
    groups = attempt(lambda: parse_groups(top.raw("groups", {})), GroupOptions())
    return Config(bridge=bridge, midi=midi, alarm=alarm, alarms=alarms, mappings=rules, groups=groups,
                  outputs=_outputs(data, top), source=source)


def _rules(top: Table) -> tuple[Rule, ...]:
    raw_rules = top.raw("mappings", None)
    if raw_rules is None:
        return default_rules()
    if not isinstance(raw_rules, list):
        return attempt(lambda: _refuse(f"mappings must be an array of tables ([[mappings]]), got {raw_rules!r}"), ())
    rules: list[Rule | None] = [attempt(partial(parse_rule, r, f"mappings[{i}]"), None)
                                for i, r in enumerate(raw_rules)]
    return tuple(r for r in rules if r is not None)


def _outputs(data: Mapping[str, Any], top: Table) -> dict[str, Any]:
    outputs: dict[str, Any] = {}
    for name in OUTPUT_SECTIONS:
        if name in data:
            outputs[name] = attempt(partial(_load_output_section, name, top.raw(name, {})), None)
    top.finish()
    return {k: v for k, v in outputs.items() if v is not None}


def _cidr(net: str, key: str) -> None:
    try:
        ipaddress.ip_network(net, strict=False)
    except ValueError as err:
        raise ConfigError(f"{key} must be a network in CIDR form, got {net!r}") from err


def _refuse(message: str) -> Any:
    raise ConfigError(message)


def _bridge(top: Table) -> BridgeOptions:
    b = Table(top.raw("bridge", {}), "bridge")
    listen = attempt(lambda: parse_hostport(b.string("listen", f"{DEFAULT_HOST}:{DEFAULT_PORT}"), "bridge.listen"),
                     (DEFAULT_HOST, DEFAULT_PORT))
    allow = b.strings("allow", DEFAULT_ALLOW)
    for i, net in enumerate(allow):
        attempt(partial(_cidr, net, f"bridge.allow[{i}]"), None)
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
        tcp_idle=b.number("tcp_idle", DEFAULT_TCP_IDLE, 0.0, 86_400.0 * 365),
        max_runs=b.integer("max_runs", DEFAULT_MAX_RUNS, 1, 100_000),
        run_idle=b.number("run_idle", DEFAULT_RUN_IDLE, 0.0, 86_400.0 * 365),
        max_voices=b.integer("max_voices", DEFAULT_MAX_VOICES, 1, 100_000),
    )
    b.finish()
    return bridge


def _midi(top: Table) -> MidiOptions:
    m = Table(top.raw("midi", {}), "midi")
    md = MidiOptions()
    midi = MidiOptions(
        api=cast(MidiApi, m.string("api", md.api, MIDI_APIS)),
        port=m.string("port", md.port),
        client_name=m.string("client_name", md.client_name) or md.client_name,
        enabled=m.boolean("enabled", md.enabled),
        mode=cast(MidiMode, m.string("mode", md.mode, MIDI_MODES)),
        mpe_members=m.integer("mpe_members", md.mpe_members, 1, 15),
        bend_range=m.integer("bend_range", md.bend_range, 1, 96),
    )
    m.finish()
    return midi


#: A config file larger than this is refused (a mistaken path to a log or a disk image, not a config).
MAX_CONFIG_BYTES = 1 << 20


def read_config_bytes(p: Path) -> bytes:
    """The file's bytes; a FIFO, device or directory is refused in one line, never waited on.

    Opened non-blocking and checked on the open descriptor: a FIFO at the config path would otherwise
    block the receive loop on a SIGHUP reload until someone writes to it.
    """
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise ConfigError(f"{p}: cannot read config file: {err.strerror}") from err
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{p}: not a regular file (a FIFO, device or directory); refusing to read it")
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{p}: {st.st_size} bytes is too large for a config file (limit {MAX_CONFIG_BYTES})")
        try:
            return fh.read(MAX_CONFIG_BYTES + 1)
        except OSError as err:
            raise ConfigError(f"{p}: cannot read config file: {err.strerror}") from err


def load(path: str | Path) -> Config:
    """Read and validate a TOML config file; errors name the file and the key."""
    p = Path(path)
    text = read_config_bytes(p)
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
