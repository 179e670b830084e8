"""``trainsound learn``: ask the running bridge to solo one target so a DAW's MIDI Learn maps exactly it.

``trainsound learn --list`` lists the targets (name, channel, CC or note range), before any data too
(a rule no run has reached is one target, "any run");
``trainsound learn TARGET`` solos it for ``--seconds`` (default 5): only that
target's MIDI goes out, with a slow sweep when no data moves it. The bridge's side of it is
:func:`.answers.answer_learn`.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import TrainsoundError
from ..mapping.solo import DEFAULT_SECONDS
from ..wire.address import TO_HELP, choose_bridge
from .control import ask


def format_target(t: dict[str, Any]) -> str:
    """One line per target: name, channel, and its CC or note range."""
    if t["kind"] == "notes":
        lo, hi = t["notes"]
        what = f"notes {lo}-{hi}"
    elif t.get("cc") is not None:
        what = f"{t['kind']} {t['cc']}"
    else:
        what = t["kind"]
    run = "  (any run: the first run's channel)" if t.get("any_run") else ""
    return f"{t['name']:<40} channel {t['channel']:>2}  {what}{run}"


def cmd_learn(args: argparse.Namespace) -> int:
    _, host, port = choose_bridge(args.to)  # TCP first, then UDP, whatever the scheme
    if args.list or not args.target:
        targets = ask(host, port, "/trainsound/targets", (), args.timeout)
        if not targets:
            print("no targets: the bridge's mapping has no MIDI rules (see trainsound check-config)")
            return 0 if args.list else 2
        for t in targets:
            print(format_target(t))
        return 0
    reply = ask(host, port, "/trainsound/learn", (args.target, float(args.seconds)), args.timeout)
    if not reply.get("ok"):
        known = reply.get("targets")
        hint = f"; valid targets: {', '.join(known)}" if known else ""
        raise TrainsoundError(f"{reply.get('error', 'learn refused')}{hint}")
    print(f"soloing {format_target(reply['target'])} for {reply['seconds']:g} s: press MIDI Learn in your DAW now")
    return 0


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "learn",
        help="solo one CC or voice for a few seconds so a DAW's MIDI Learn catches exactly it",
        description="Ask the running bridge to play only TARGET (a rule's CC, or one voice's notes) for "
        "--seconds, sweeping it slowly when no data moves it; every other mapped value is muted meanwhile "
        "(the recording keeps everything). --list shows the targets.",
    )
    p.add_argument("target", nargs="?", help="a name from --list, e.g. loss_brightness/run1")
    p.add_argument("--list", action="store_true", help="list the targets: name, channel, CC or note range")
    p.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="how long to solo (default 5)")
    p.add_argument("--to", metavar="HOST:PORT", help=TO_HELP)
    p.add_argument("--timeout", type=float, default=2.0, metavar="SECONDS", help="how long to wait for a reply")
    p.set_defaults(func=cmd_learn)
