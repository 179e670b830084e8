"""``trainsound status``: ask the running bridge for its counters over its own OSC port.

One ``/trainsound/status`` message, one JSON reply (docs/protocol.md). It goes
over TCP (SLIP) first: the TCP side is served every tick, so the answer does not
queue behind a UDP flood; UDP is the fallback when TCP is off (its request padded
to 60 kB, since the bridge never answers UDP with more bytes than it was sent). Exit
code 0 when the bridge answered and every output is healthy, 1 when it did not
answer, 3 when it answered but an output is unhealthy — usable from scripts and
monitoring.
"""

from __future__ import annotations

import argparse
import json
import socket
import time
from typing import Any

from pythonosc.osc_message import OscMessage, ParseError
from pythonosc.osc_message_builder import OscMessageBuilder

from ...transport import TO_HELP, choose_bridge
from ..errors import TrainsoundError
from ..wire.slip import SlipDecoder
from ..wire.slip import encode as slip_encode

EXIT_UNHEALTHY = 3


STATUS = "/trainsound/status"
STATUS_REPLY = "/trainsound/status.reply"
#: Over UDP a reply is never larger than its request (no reflection amplifier, docs/security.md): the UDP
#: fallback pads its request with a blob so the whole reply fits.
UDP_REQUEST_SIZE = 60_000


def _request(address: str, args: tuple[Any, ...] = ()) -> bytes:
    # python-osc builds the request and parses the reply: one-off queries, where its cost (5-7× the struct
    # codec's per message, bench/bench_codec.py) does not matter.
    b = OscMessageBuilder(address=address)
    for a in args:
        b.add_arg(a)
    return bytes(b.build().dgram)


def _json_of(packet: bytes, reply: str) -> Any:
    """The JSON in a ``reply`` datagram, or ``None`` if it is something else."""
    try:
        msg = OscMessage(packet)
    except ParseError:
        return None
    if msg.address != reply or not msg.params or not isinstance(msg.params[0], str):
        return None
    return json.loads(msg.params[0])


def ask_tcp(host: str, port: int, request: bytes, reply: str, timeout: float = 2.0) -> Any:
    """Send a control request over OSC-over-TCP and return its JSON reply; ``None`` if nothing answers on TCP."""
    try:
        conn = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return None
    decoder = SlipDecoder(1 << 22)
    with conn:
        conn.settimeout(timeout)
        conn.sendall(slip_encode(request))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = conn.recv(1 << 16)
            except (TimeoutError, OSError):
                return None
            if not data:
                return None
            for packet in decoder.feed(data):
                result = _json_of(packet, reply)
                if result is not None:
                    return result
    return None


def ask(host: str, port: int, address: str, args: tuple[Any, ...] = (), timeout: float = 2.0) -> Any:
    """Send control message ``address`` (TCP first, then UDP) and return the JSON of its ``.reply``.

    Raises:
        TrainsoundError: no reply within ``timeout`` (the bridge is not running there).
    """
    request, reply = _request(address, args), f"{address}.reply"
    via_tcp = ask_tcp(host, port, request, reply, timeout)
    if via_tcp is not None:
        return via_tcp
    padded = _request(address, (*args, bytes(UDP_REQUEST_SIZE)))
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(0.25)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                s.sendto(padded, (host, port))
                while True:
                    data, _ = s.recvfrom(1 << 17)
                    result = _json_of(data, reply)
                    if result is not None:
                        return result
            except (TimeoutError, ConnectionRefusedError, ValueError):
                continue  # retry: UDP may lose a datagram during a flood
            except OSError as err:
                raise TrainsoundError(f"cannot reach the bridge at {host}:{port}: {err.strerror}") from err
    raise TrainsoundError(f"no answer from a bridge at {host}:{port} within {timeout:g} s (is it running?)")


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


def query_tcp(host: str, port: int, timeout: float = 2.0) -> dict[str, Any] | None:
    """The status over OSC-over-TCP only; ``None`` if nothing answers on TCP."""
    result: dict[str, Any] | None = ask_tcp(host, port, _request(STATUS), STATUS_REPLY, timeout)
    return result


def query(host: str, port: int, timeout: float = 2.0) -> dict[str, Any]:
    """Ask for ``/trainsound/status`` and wait for the reply (see :func:`ask`)."""
    result: dict[str, Any] = ask(host, port, STATUS, (), timeout)
    return result


#: Recent alarms shown by ``trainsound status`` (the reply holds up to ``[alarms].recent``).
RECENT_SHOWN = 10


def _hms(seconds: float) -> str:
    """
    >>> _hms(93784.5)
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
        f"up {_hms(float(st.get('uptime', 0)))}, listening on {':'.join(map(str, st.get('listen', [])))}"
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
        rest = ", ".join(f"{k}={v}" for k, v in h.items() if k not in ("ok", "why", "link"))
        lines.append(f"output {name}: {ok} ({rest})")
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
    """The alarm lines of ``trainsound status``: totals per kind, then the most recent alarms, newest last.

    >>> format_alarms({"raised": {"spike": 1, "nan": 0}, "held": 2, "rate_limited": 0,
    ...                "recent": [{"run": "r", "name": "loss", "kind": "spike", "step": 300, "value": 9.5, "time": 0}]})
    ['alarms: spike 1 (held off 2, over the rate limit 0)', '  step 300  run r  loss  spike  value 9.5']
    """
    raised = {k: n for k, n in a.get("raised", {}).items() if n}
    if not raised:
        return ["alarms: none"]
    out = [f"alarms: {', '.join(f'{k} {n}' for k, n in raised.items())} "
           f"(held off {a.get('held', 0)}, over the rate limit {a.get('rate_limited', 0)})"]
    for r in a.get("recent", [])[-last:]:
        v = r.get("value")
        val = f"{v:.4g}" if isinstance(v, (int, float)) else str(v)  # non-finite values travel as strings
        who = r.get("name") or "(run)"
        out.append(f"  step {r.get('step')}  run {r.get('run')}  {who}  {r.get('kind')}  value {val}")
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
