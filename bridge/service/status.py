"""``trainsound status``: ask the running bridge for its counters over its own OSC port.

One ``/trainsound/status`` message, one JSON reply (docs/protocol.md), through the one control
client (:mod:`.control`: TCP first, then UDP). Exit
code 0 when the bridge answered and every output is healthy, 1 when it did not
answer, 3 when it answered but an output is unhealthy — usable from scripts and
monitoring.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..wire.address import TO_HELP, choose_bridge
from .control import ControlClient, ask

EXIT_UNHEALTHY = 3


STATUS = "/trainsound/status"


def query_tcp(host: str, port: int, timeout: float = 2.0) -> dict[str, Any] | None:
    """The status over OSC-over-TCP only; ``None`` if nothing answers on TCP."""
    with ControlClient(host, port, timeout) as client:
        result: dict[str, Any] | None = client.tcp(STATUS)
    return result


def query(host: str, port: int, timeout: float = 2.0) -> dict[str, Any]:
    """Ask for ``/trainsound/status`` and wait for the reply (see :func:`.control.ask`)."""
    result: dict[str, Any] = ask(host, port, STATUS, (), timeout)
    return result


#: Recent alarms shown by ``trainsound status`` (the reply holds up to ``[alarms].recent``).
RECENT_SHOWN = 10


def hms(seconds: float) -> str:
    """
    >>> hms(93784.5)
    '1d 02:03:04'
    """
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{d}d {h:02d}:{m:02d}:{s:02d}" if d else f"{h:02d}:{m:02d}:{s:02d}"


def format_status(st: dict[str, Any]) -> str:
    """A human summary of a status reply."""
    lines = [
        f"trainsound bridge {st.get('version', '?')} (protocol {st.get('protocol', '?')}), "
        f"up {hms(float(st.get('uptime', 0)))}, listening on {':'.join(map(str, st.get('listen', [])))}"
        + (" udp+tcp" if st.get("tcp") else " udp"),
        f"config: {st.get('config', '?')} (reloads {st.get('reloads', 0)}, refused {st.get('reload_errors', 0)})",
        f"datagrams {st.get('datagrams', 0)}, messages {st.get('received', 0)}, accepted {st.get('accepted', 0)}, "
        f"mapped {st.get('mapping', {}).get('mapped', 0)}, dropped {st.get('dropped_total', 0)}, "
        f"lost in the kernel {st.get('kernel_drops', '?')}",
    ]
    for reason, n in sorted(st.get("dropped", {}).items(), key=lambda kv: -kv[1]):
        lines.append(f"  dropped {reason}: {n}")
    for reason, n in sorted(st.get("noted", {}).items()):
        lines.append(f"  noted {reason}: {n}")
    runs = st.get("runs", [])
    voices = st.get("voices", {})
    nvoices = sum(len(v) if isinstance(v, list) else int(v) for v in voices.values())
    lines.append(f"runs {len(runs)}: {', '.join(runs) or '-'}; voices {nvoices}; scheduled {st.get('scheduled', 0)}")
    for name, h in st.get("outputs", {}).items():
        # Why first: what a user needs when an output is not ok ("disk full: …", "waiting for JACK server").
        ok = "ok" if h.get("ok") else f"NOT OK: {h['why']}" if h.get("why") else "NOT OK"
        rest = ", ".join(f"{k}={v}" for k, v in h.items() if k not in ("ok", "why", "link", "forward"))
        lines.append(f"output {name}: {ok} ({rest})")
        if h.get("forward"):  # voice groups a listener brought forward (docs/sound.md)
            lines.append("  forward: " + ", ".join(
                f"{f['run']}/{f['group']}" + ("" if f["left"] is None else f" ({f['left']:g} s left)")
                for f in h["forward"]))
        link = h.get("link")
        if link:
            grid = f"notes on a {link['quantize']:g}-beat grid" if link["quantize"] else "notes unquantised"
            lines.append(f"  Ableton Link: {link['tempo']:.1f} BPM, beat {link['beat']:.1f}, "
                         f"{link['peers']} peer(s), {grid}")
    learn = st.get("learn")
    if learn:
        lines.append(f"learn: soloing {learn['name']} ({learn['left']:g} s left)")
    lines.extend(format_alarms(st.get("alarms") or {}))
    return "\n".join(lines)


def format_alarms(a: dict[str, Any], last: int = RECENT_SHOWN) -> list[str]:
    """The alarm lines of ``trainsound status``: incidents per kind, then the recent incidents (each run's
    first kept), newest last, with their streams.

    >>> format_alarms({"raised": {"spike": 1, "nan": 0}, "held": 2, "rate_limited": 0, "recent": [
    ...     {"run": "r", "name": "loss spike", "kind": "spike", "step": 300, "value": 9.5, "members": ["loss"]}]})
    ['alarms: spike 1 (held off 2, over the rate limit 0)', '  step 300  run r  loss spike  value 9.5']
    """
    raised = {k: n for k, n in a.get("raised", {}).items() if n}
    if not raised:
        return ["alarms: none"]
    out = [f"alarms: {', '.join(f'{k} {n}' for k, n in raised.items())} "
           f"(held off {a.get('held', 0)}, over the rate limit {a.get('rate_limited', 0)})"]
    for r in a.get("recent", [])[-last:]:
        v = r.get("value")
        val = f"{v:.4g}" if isinstance(v, (int, float)) else str(v)  # non-finite values travel as strings
        out.append(f"  step {r.get('step')}  run {r.get('run')}  {r.get('name')}  value {val}")
        members, n = r.get("members") or [], r.get("streams", 1)
        if n > 1:
            more = f" and {n - len(members)} more" if n > len(members) else ""
            out.append(f"      {n} streams, steps {r.get('step')}–{r.get('last_step')}: {', '.join(members)}{more}")
    return out


def cmd_status(args: argparse.Namespace) -> int:
    _, host, port = choose_bridge(args.to)  # TCP first, then UDP, whatever the scheme
    st = query(host, port, args.timeout)
    print(json.dumps(st, indent=2, sort_keys=True) if args.json else format_status(st))
    healthy = all(h.get("ok") for h in st.get("outputs", {}).values())
    return 0 if healthy else EXIT_UNHEALTHY


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "status",
        help="ask the running bridge for its counters, runs and output health",
        description="Ask the running bridge for uptime, messages received/mapped/dropped by reason, runs, "
        "voices and output health. Exit code: 0 healthy, 1 no answer, 3 an output is unhealthy.",
    )
    p.add_argument("--to", metavar="HOST:PORT", help=TO_HELP)
    p.add_argument("--json", action="store_true", help="print the raw JSON reply")
    p.add_argument("--timeout", type=float, default=2.0, metavar="SECONDS", help="how long to wait for a reply")
    p.set_defaults(func=cmd_status)
