"""What the daemon answers to control messages it builds here rather than in the receive loop:
the status fitted to the room a UDP request leaves, and the learn targets and solo
(``/trainsound/targets``, ``/trainsound/learn``). The commands that ask are :mod:`.status`,
:mod:`.top` and :mod:`.learn`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import replace
from typing import Any

from ..mapping.solo import DEFAULT_SECONDS, MAX_SECONDS, Target, find_target, list_targets
from ..pipeline import Pipeline
from ..wire.osc import OscArg, encode_message

log = logging.getLogger(__name__)

#: The UDP answer to a control request too small to carry its reply: "ask over TCP" (20 bytes).
TCP_HINT = "/trainsound/tcp"
#: A status reply must fit one UDP datagram (and a TCP client's frame): beyond this many bytes of JSON
#: the voice lists become counts, then only the counters are left.
MAX_STATUS_REPLY = 60_000
#: The bound over TCP: under the peer's send buffer (1 MiB asked), so one non-blocking send takes it whole.
MAX_TCP_STATUS = 1 << 18
#: What a status cut to the bone keeps.
_SUMMARY_KEYS = ("version", "protocol", "uptime", "datagrams", "received", "accepted", "dropped_total")


def fit_status(st: dict[str, Any], limit: int) -> str:
    """``st`` as JSON of at most ``limit`` bytes (ASCII-escaped JSON: bytes = characters), shrunk in steps:
    the groups' values become counts; voice lists become counts and runs are cut to 100; then only the
    counters; then ``{"truncated": true, "tcp": true}``; ``""`` when not even that fits."""
    text = json.dumps(st)
    if len(text) > limit:
        st["groups"] = {run: {rule: len(g) for rule, g in rules.items()} for run, rules in st["groups"].items()}
        text = json.dumps(st)
    if len(text) > limit:
        st["voices"] = {k: len(v) for k, v in st["voices"].items()}
        st["runs"] = st["runs"][:100]
        st["truncated"] = True
        text = json.dumps(st)
    if len(text) > limit:
        text = json.dumps({k: st[k] for k in _SUMMARY_KEYS} | {"truncated": True, "tcp": bool(st["tcp"])})
    if len(text) > limit:
        text = json.dumps({"truncated": True, "tcp": bool(st["tcp"])})
    return text if len(text) <= limit else ""


LEARN_ADDRESSES = ("/trainsound/learn", "/trainsound/targets", "/trainsound/forward")
"""The listener's controls answered here (``/trainsound/forward``: a voice group in front of the sine output)."""
FORWARD_MAX_SECONDS = 86_400.0


def port_channel(pipeline: Pipeline, target: Target) -> Target:
    """``target`` on the channel the live MIDI port gives its voice (runs apart, :mod:`..outputs.channels`)."""
    for out in pipeline.outputs:
        plan = getattr(out, "plan", None)
        if plan is not None and target.stream is not None and out.name == "midi":
            ch = plan.placed(target.rule, target.stream)
            return target if ch is None else replace(target, channel=ch)
    return target


#: Why ``/trainsound/learn`` or ``/trainsound/forward`` over UDP is refused: each changes what sounds, and
#: a UDP source can be forged.
TCP_ONLY = ("{} is taken over TCP only (a UDP sender can be forged; docs/security.md): "
            "is the bridge's TCP side off ([bridge].tcp = false)?")
LEARN_TCP_ONLY = TCP_ONLY.format("learn")
#: The counter of each state change refused over UDP (docs/protocol.md).
NEEDS_TCP = {"/trainsound/learn": "learn_needs_tcp", "/trainsound/forward": "forward_needs_tcp"}


def answer_learn(pipeline: Pipeline, address: str, args: tuple[OscArg, ...], udp: bool = False,
                 sender: object = None) -> bytes:
    """The bridge's reply to ``/trainsound/targets``, ``/trainsound/learn s:target [f:seconds]`` or
    ``/trainsound/forward [s:run s:group [f:seconds]]``.

    Learn (it mutes all but one target for up to 600 s) and forward (it rebalances the sine output) are state
    changes: over UDP, whose sender can be forged and whose reply can be withheld, they are refused and
    counted, never acted on.
    """
    body: Any
    if udp and address in NEEDS_TCP:
        pipeline.stats.drop(NEEDS_TCP[address], sender, f"{address} over UDP: not acted on (TCP only)")
        body = {"ok": False, "error": TCP_ONLY.format(address.rsplit("/", 1)[1])}
    elif address == "/trainsound/forward":
        body = bring_forward(pipeline, args, time.time())
    elif address == "/trainsound/learn":
        body = start_learn(pipeline, args)
    else:
        body = [port_channel(pipeline, t).describe() for t in list_targets(pipeline.engine)]
    return encode_message(f"{address}.reply", [json.dumps(body)])


def snapshot_reply(parts: dict[str, Any], limit: int | None) -> bytes:
    """``/trainsound/snapshot``'s reply from what the loop handed over (``feed``, ``config`` and the counters):
    the feed as the page sees it, cut to fit (fewer rows per run, fewer alarms); over UDP (``limit``) never
    larger than the request, else :data:`TCP_HINT`. Pure: built on the reply worker (:mod:`.replies`)."""
    from ..web.snapshot import build, fit

    snap = build(parts.pop("feed"), parts.pop("config"))
    snap.update(parts)
    # The reply's head (address, type tags) takes 40 bytes, the string's NUL and padding up to 4.
    text = fit(snap, MAX_TCP_STATUS if limit is None else min(limit, MAX_STATUS_REPLY) - 40)
    bound = MAX_TCP_STATUS + 64 if limit is None else limit
    reply = encode_message("/trainsound/snapshot.reply", [text]) if text else b""
    return reply if reply and len(reply) <= bound else encode_message(TCP_HINT, [])


def start_learn(pipeline: Pipeline, args: tuple[OscArg, ...]) -> dict[str, Any]:
    """Solo the named target for the given seconds (MIDI learn); what went wrong otherwise, with the valid names."""
    if not args or not isinstance(args[0], str):
        return {"ok": False, "error": "/trainsound/learn needs a target name (s) and optional seconds (f)"}
    name = args[0]
    seconds = float(args[1]) if len(args) > 1 and isinstance(args[1], (int, float)) else DEFAULT_SECONDS
    if not 0.0 < seconds <= MAX_SECONDS:
        return {"ok": False, "error": f"seconds must be in (0, {MAX_SECONDS:g}], got {seconds:g}"}
    target = find_target(pipeline.engine, name)
    if target is None:
        return {"ok": False, "error": f"unknown learn target {name!r}",
                "targets": [t.name for t in list_targets(pipeline.engine)]}
    pipeline.learn(target, time.time(), seconds)
    return {"ok": True, "target": port_channel(pipeline, target).describe(), "seconds": seconds}


def bring_forward(pipeline: Pipeline, args: tuple[OscArg, ...], now: float) -> dict[str, Any]:
    """``/trainsound/forward s:run s:group [f:seconds]`` (no seconds: until sent back; 0: send it back now);
    no arguments: every group back. The reply says what is forward (docs/sound.md, "Bring a voice forward")."""
    if args:
        if len(args) < 2 or not all(isinstance(a, str) for a in args[:2]):
            return {"ok": False, "error": "/trainsound/forward needs a run (s) and a voice group (s) and optional "
                                          "seconds (f), or nothing to send every group back"}
        run, group = str(args[0]), str(args[1])
        seconds = float(args[2]) if len(args) > 2 and isinstance(args[2], (int, float)) else math.inf
        if not 0.0 <= seconds <= FORWARD_MAX_SECONDS and seconds != math.inf:
            return {"ok": False, "error": f"seconds must be in [0, {FORWARD_MAX_SECONDS:g}], got {seconds:g}"}
        known = sorted({g for rules in pipeline.engine.groups().get(run, {}).values() for g in rules})
        if group not in known:
            return {"ok": False, "error": f"no voice group {group!r} in run {run!r}", "groups": known}
    fronts = [f for f in (out.forwarded() for out in pipeline.outputs) if f is not None]
    if not fronts and args:
        return {"ok": False, "error": "no output has a foreground to bring a group into: only the sine output "
                                      "(--audio, --wav) under the foreground budget (not --preset everything)"}
    for out in pipeline.outputs:
        if args:
            out.bring_forward(run, group, now + seconds if seconds > 0 else -math.inf)
        else:
            out.bring_forward("", None, now)
    return {"ok": True, "forward": [f for out in pipeline.outputs for f in out.forwarded() or ()]}


def page_forward(pipeline: Pipeline | None, args: tuple[OscArg, ...], now: float) -> None:
    """The web page's ``/trainsound/forward`` (its button: docs/web.md), on the receive thread; a refusal is
    logged (the page shows what is forward from the status)."""
    if pipeline is not None:
        reply = bring_forward(pipeline, args, now)
        if not reply["ok"]:
            log.warning("web page: /trainsound/forward %s: %s", " ".join(map(str, args)), reply["error"])
