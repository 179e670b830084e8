"""The ``trainsound`` command. Only :func:`main` turns errors into exit codes."""
# ruff: noqa: E402  (signal handlers are installed before the other imports)

from __future__ import annotations

# First of all, before the heavier imports below: a SIGHUP (reload) sent while the bridge is still
# starting must not kill it (its default action). The daemon acts on it once it serves.
from .service.signals import install_early, release_early

install_early()

import argparse
import importlib
import importlib.util
import ipaddress
import json
import logging
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from . import __version__
from . import config as cfgmod
from .errors import TrainsoundError
from .outputs.flags import add_output_args, output_specs
from .outputs.link import QUANTIZE, with_link
from .ratelog import EscapingFormatter
from .table import parse_hostport
from .wire.protocol import DEFAULT_HOST, DEFAULT_PORT

log = logging.getLogger("trainsound")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
#: Subcommands that live in their own modules, each exposing ``add_parser(subparsers)``: name → module.
#: Imported when the parser is built; each imports its heavy libraries only when it runs.
PLUGIN_COMMANDS: dict[str, str] = {
    "send": "trainsound.bridge.service.send",
    "render": "trainsound.bridge.replay.render",
    "compare": "trainsound.bridge.replay.compare",
    "devices": "trainsound.bridge.sound.devices",
    "ports": "trainsound.bridge.sound.devices",
    "status": "trainsound.bridge.service.status",
    "learn": "trainsound.bridge.service.learn",
    "demo": "trainsound.bridge.demo",
    "sonify-image": "trainsound.bridge.netsounds",
    "follow": "trainsound.bridge.tb.follow",
    "top": "trainsound.bridge.service.top",
}


#: Arguments that name a file: argparse dest → how the user wrote it (for the error message).
PATH_ARGS = {"config": "--config", "record": "--record", "wav": "--wav", "midi_file": "--midi-file",
             "session": "session", "reference": "--reference"}
#: A systemd specifier at the start of a path segment (``%h/…``): a unit expands it in its own settings,
#: never in an EnvironmentFile, so from ``TRAINSOUND_ARGS`` it arrives literally.
_SPECIFIER = re.compile(r"(?:^|/)(%[A-Za-z])")


def expand_path(flag: str, text: str) -> str:
    """A file argument as a shell user means it, whoever started us (systemd does no shell expansion):
    ``~/`` and ``$HOME/`` are the home folder; a systemd specifier is refused, not made a relative folder.

    >>> expand_path("--record", "~/a.tsr") == os.path.join(os.path.expanduser("~"), "a.tsr")
    True
    >>> expand_path("--record", "%h/a.tsr")
    Traceback (most recent call last):
    ...
    trainsound.bridge.errors.ConfigError: --record '%h/a.tsr': %h is a systemd specifier, ...
    """
    m = _SPECIFIER.search(text)
    if m:
        raise cfgmod.ConfigError(f"{flag} {text!r}: {m.group(1)} is a systemd specifier, which an environment "
                                 "file does not expand; write ~/… instead")
    if text.startswith(("$HOME/", "${HOME}/")):
        text = "~/" + text.split("/", 1)[1]
    return os.path.expanduser(text)


def setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    # Escaping formatter: log lines quote OSC addresses and run names, which must not forge lines.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EscapingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def load_config(path: str | None) -> cfgmod.Config:
    return cfgmod.load(path) if path else cfgmod.default()


def with_speech(config: cfgmod.Config) -> cfgmod.Config:
    """``--speak``: ``[alarms] speak = true``."""
    return replace(config, alarms=replace(config.alarms, speak=True))


def apply_preset(config: cfgmod.Config, name: str | None) -> cfgmod.Config:
    if not name:
        return config
    presets = importlib.import_module("trainsound.bridge.config.presets")
    result: cfgmod.Config = presets.apply_preset(config, name)
    return result


# -- commands -----------------------------------------------------------------
def cmd_bridge(args: argparse.Namespace) -> int:
    from .service.daemon import Daemon
    from .service.reload import ConfigSource, default_config_path

    path = args.config
    if path is None:
        # The service's config lives at the XDG path; with no file there, the built-in mapping.
        found = default_config_path()
        path = str(found) if found else None
    changes: dict[str, Any] = {}
    if args.listen:
        changes["listen"] = parse_hostport(args.listen, "--listen")
    if args.stats_interval is not None:
        changes["stats_interval"] = args.stats_interval
    if args.allow:
        for net in args.allow:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as err:
                raise cfgmod.ConfigError(f"--allow must be a network in CIDR form, got {net!r}") from err
        changes["allow"] = tuple(args.allow)
        changes["allow_explicit"] = True
    overrides = [lambda c: apply_preset(c, args.preset)]
    from .replay.reference import check_args, reference_override

    check_args(args, args.preset)
    if args.speak:
        overrides.append(with_speech)
    if changes:
        overrides.append(lambda c: cfgmod.with_bridge(c, **changes))
    if args.midi_api:
        overrides.append(lambda c: cfgmod.with_midi(c, api=args.midi_api))
    if args.link or args.quantize:
        overrides.append(lambda c: with_link(c, args.link, args.quantize))
    if args.web or args.web_allow:
        from .web.options import with_web

        overrides.append(lambda c: with_web(c, args.web, args.web_allow))
    if args.oscquery or args.oscquery_allow:
        from .web.oscquery_options import with_oscquery

        overrides.append(lambda c: with_oscquery(c, args.oscquery, args.oscquery_allow))
    if args.reference:  # the last override: the reference is mapped as the run will be
        overrides.append(reference_override(args.reference, args.reference_run))
    # Overrides are kept with the file so that a SIGHUP reload re-applies them.
    source = ConfigSource(path, tuple(overrides))
    config = source.load()
    from .web.options import require_server

    require_server(config)  # before any port opens: --web without aiohttp is refused (exit 2)
    specs = output_specs(args, config, live_midi_default=True, never_overwrite=True)
    return Daemon(config, specs, source=source).run(exiting=True)


def cmd_check_config(args: argparse.Namespace) -> int:
    from .receive.sockets import check_exposure

    c = cfgmod.load(args.file)
    # The rules the bridge applies at start beyond the file's own keys (each raises one line naming the key).
    try:
        check_exposure(c.bridge.listen[0], c.bridge.allow_explicit)
    except TrainsoundError as err:
        raise cfgmod.ConfigError(f"{args.file}: bridge.listen: {err}") from None
    print(f"{args.file}: ok — listen {c.bridge.listen[0]}:{c.bridge.listen[1]}, {len(c.mappings)} mapping rule(s)")
    for i, r in enumerate(c.mappings):
        print(f"  mappings[{i}] {r.name or '(unnamed)'}: {r.match} → {r.target} ({r.scale})")
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from .outputs import build_outputs
    from .pipeline import Pipeline
    from .replay.alarms import incidents, report_alarms
    from .replay.loop import replay
    from .wire.session import iter_messages

    if args.dump:
        for t, address, values in iter_messages(args.session):
            vals = [
                v.hex() if isinstance(v, bytes) else (None if isinstance(v, float) and math.isnan(v) else v)
                for v in values
            ]
            print(json.dumps({"t": t, "address": address, "args": vals}))
        return EXIT_OK
    config = apply_preset(load_config(args.config), args.preset)
    if args.midi_api:
        config = cfgmod.with_midi(config, api=args.midi_api)
    if args.speak:
        config = with_speech(config)
    from .replay.reference import session_config

    config = session_config(args, config, args.session)  # --reference
    specs = output_specs(args, config, live_midi_default=False)
    want_alarms = args.alarms or args.alarms_json
    if not specs and not want_alarms:
        raise TrainsoundError("replay needs at least one output (e.g. --midi-file out.mid, --wav out.wav, --midi) "
                              "or --alarms")
    live = any(s.name in ("midi", "osc", "pyo") or s.options.get("live") for s in specs)
    # A replay plays to what it was asked for or fails: an output that cannot open is an error here.
    outputs = build_outputs(config, [replace(s, required=True) for s in specs])
    for out in outputs:
        h = out.health()
        if out.name == "midi" and not h.get("ok"):
            for o in outputs:
                o.close()
            raise TrainsoundError(f"replay --midi: nothing to play to: {h.get('why') or 'not connected'}")
    pipeline = Pipeline(config, outputs)
    n = replay(args.session, pipeline, realtime=args.realtime or live, speed=args.speed)
    report_alarms(args, incidents(pipeline))
    s = pipeline.stats.snapshot()
    print(
        f"replayed {n} messages from {args.session} ({s['accepted']} accepted, {s['dropped_total']} dropped)",
        file=sys.stderr,
    )
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from .replay.alarms import add_alarm_args
    from .replay.reference import add_reference_args

    p = argparse.ArgumentParser(prog="trainsound", description="Hear your neural network train.")
    p.add_argument("--version", action="version", version=f"trainsound {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    b = sub.add_parser(
        "bridge",
        help="run the bridge daemon: OSC in → MIDI / files / sound out",
        description="Run the bridge daemon. With no options: listen on 127.0.0.1:9150, built-in "
        "mapping, live MIDI on a virtual port 'trainsound:out'.",
    )
    b.add_argument(
        "--config",
        metavar="FILE",
        help="TOML config, re-read on SIGHUP (default: ~/.config/trainsound/bridge.toml if it exists, "
        "else the built-in mapping)",
    )
    b.add_argument("--listen", metavar="HOST:PORT", help=f"where to listen (default {DEFAULT_HOST}:{DEFAULT_PORT})")
    b.add_argument(
        "--allow",
        action="append",
        metavar="CIDR",
        help="accept senders from this network (repeatable); required to listen beyond loopback "
        "(default: 127.0.0.0/8 and ::1)",
    )
    b.add_argument("--record", metavar="FILE", help="record every accepted message to a session file")
    b.add_argument("--link", action="store_true", help="join the local Ableton Link session (needs trainsound[link])")
    b.add_argument(
        "--quantize",
        choices=tuple(QUANTIZE),
        help="with --link: start notes on this grid of the Link session (default from [link]: 1/16)",
    )
    b.add_argument("--speak", action="store_true", help="say each alarm after its earcon (espeak-ng; docs/alarms.md)")
    b.add_argument(
        "--stats-interval", type=float, metavar="SECONDS", help="log counters this often (0: only on SIGUSR1)"
    )
    add_output_args(b, live_midi_default=True)
    add_reference_args(b)
    from .web.options import add_web_args

    add_web_args(b)
    from .web.oscquery_options import add_oscquery_args

    add_oscquery_args(b)
    b.set_defaults(func=cmd_bridge)


    c = sub.add_parser("check-config", help="validate a config file; errors name the key")
    c.add_argument("file")
    c.set_defaults(func=cmd_check_config)

    r = sub.add_parser(
        "replay",
        help="feed a session recording through the mapping to any output",
        description="Replay a recording made with 'trainsound bridge --record'. File outputs are "
        "written as fast as possible on the recorded clock; live outputs play in real time.",
    )
    r.add_argument("session")
    r.add_argument("--config", metavar="FILE")
    r.add_argument("--realtime", action="store_true", help="pace the replay in real time")
    r.add_argument("--speed", type=float, default=1.0, help="time factor with --realtime")
    r.add_argument("--dump", action="store_true", help="print the recording as JSON lines")
    add_alarm_args(r)
    add_reference_args(r)
    add_output_args(r, live_midi_default=False)
    r.set_defaults(func=cmd_replay)

    for module in dict.fromkeys(PLUGIN_COMMANDS.values()):  # a module may register several commands
        importlib.import_module(module).add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.func is not cmd_bridge:
        release_early()
    setup_logging(-1 if args.quiet else args.verbose)
    try:
        for dest, flag in PATH_ARGS.items():
            if isinstance(getattr(args, dest, None), str):
                setattr(args, dest, expand_path(flag, getattr(args, dest)))
        rc: int = args.func(args)
        return rc
    except TrainsoundError as err:
        print(f"trainsound: error: {err}", file=sys.stderr)
        return EXIT_USAGE if isinstance(err, cfgmod.ConfigError) else EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into e.g. `head`: stop quietly, like other Unix tools.
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
