"""What the daemon answers to control messages it builds here rather than in the receive loop:
the status fitted to the room a UDP request leaves, and the learn targets and solo
(``/trainsound/targets``, ``/trainsound/learn``). The commands that ask are :mod:`.status`,
:mod:`.top` and :mod:`.learn`.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

from ..mapping.solo import DEFAULT_SECONDS, MAX_SECONDS, Target, find_target, list_targets
from ..pipeline import Pipeline
from ..wire.osc import OscArg, encode_message

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


LEARN_ADDRESSES = ("/trainsound/learn", "/trainsound/targets")


def port_channel(pipeline: Pipeline, target: Target) -> Target:
    """``target`` on the channel the live MIDI port gives its voice (runs apart, :mod:`..outputs.channels`)."""
    for out in pipeline.outputs:
        plan = getattr(out, "plan", None)
        if plan is not None and target.stream is not None and out.name == "midi":
            ch = plan.placed(target.rule, target.stream)
            return target if ch is None else replace(target, channel=ch)
    return target


#: Why ``/trainsound/learn`` over UDP is refused: it changes what sounds, and a UDP source can be forged.
LEARN_TCP_ONLY = ("learn is taken over TCP only (a UDP sender can be forged; docs/security.md): "
                  "is the bridge's TCP side off ([bridge].tcp = false)?")


def answer_learn(pipeline: Pipeline, address: str, args: tuple[OscArg, ...], udp: bool = False,
                 sender: object = None) -> bytes:
    """The bridge's reply to ``/trainsound/targets`` or ``/trainsound/learn s:target [f:seconds]``.

    Learn is a state change (it mutes all but one target for up to 600 s): over UDP, whose sender can be
    forged and whose reply can be withheld, it is refused and counted, never acted on (issue 28, item 10).
    """
    body: Any = [port_channel(pipeline, t).describe() for t in list_targets(pipeline.engine)]
    if address == "/trainsound/learn" and udp:
        pipeline.stats.drop("learn_needs_tcp", sender, "/trainsound/learn over UDP: not acted on (TCP only)")
        body = {"ok": False, "error": LEARN_TCP_ONLY}
    elif address == "/trainsound/learn":
        body = start_learn(pipeline, args)
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
