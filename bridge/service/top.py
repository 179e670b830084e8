"""``trainsound top``: a live full-screen view of a running bridge in the terminal (rich).

It asks the bridge for ``/trainsound/snapshot`` (docs/protocol.md) several times a second over one
OSC-over-TCP connection (UDP when TCP is off), keeps a short history per row for the sparklines, and
draws runs, their groups and voices, loss, alarms as they come, counters and output health in 80×24
or more. ``q`` quits. No bridge at the start: exit 1 with one line; a bridge that goes away later is
shown as such and asked again until it is back.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import select
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import TrainsoundError
from ..wire.address import TO_HELP, choose_bridge
from .control import ControlClient
from .status import hms

SNAPSHOT = "/trainsound/snapshot"
SPARK = "▁▂▃▄▅▆▇█"
#: Points per row kept for its sparkline.
SPARK_POINTS = 24
DEFAULT_REFRESH = 0.2


def incident_line(a: dict[str, Any]) -> str:
    """An incident's name and its first members (``exploding in h.1–h.3 (6 layers): h.1.attn, …``), or an
    alarm's kind and stream.

    >>> incident_line({"kind": "nan", "name": "nan in loss, fc1 (2 streams)", "members": ["loss", "fc1"]})
    'nan in loss, fc1 (2 streams): loss, fc1'
    >>> incident_line({"kind": "spike", "name": "loss"})
    'spike in loss'
    """
    members = a.get("members")
    if members is None:
        return f"{a['kind']} in {a['name']}"
    if len(members) < 2:
        return str(a["name"])
    return f"{a['name']}: {', '.join(members[:3])}" + (", …" if len(members) > 3 else "")


def sparkline(values: Sequence[float], width: int = SPARK_POINTS) -> str:
    """The last ``width`` values as block characters (log scale when all are positive; non-finite: ``!``).

    >>> sparkline([1, 10, 100, 1000])
    '▁▃▆█'
    >>> sparkline([0.5, 0.5, float("nan")])
    '▁▁!'
    """
    vals = list(values)[-width:]
    finite = [v for v in vals if math.isfinite(v)]
    if not finite:
        return "!" * len(vals)
    use_log = all(v > 0 for v in finite)
    f = math.log10 if use_log else (lambda x: x)
    lo, hi = min(f(v) for v in finite), max(f(v) for v in finite)
    span = hi - lo
    out = []
    for v in vals:
        if not math.isfinite(v):
            out.append("!")
        else:
            out.append(SPARK[0] if span <= 0 else SPARK[min(len(SPARK) - 1, int((f(v) - lo) / span * len(SPARK)))])
    return "".join(out)


def _number(v: Any) -> float:
    if isinstance(v, (int, float)):
        return float(v)
    return {"Infinity": math.inf, "-Infinity": -math.inf}.get(str(v), math.nan)


def fmt(v: Any) -> str:
    """
    >>> fmt(0.000123), fmt(1.5), fmt("NaN"), fmt(None)
    ('1.230e-04', '1.5', 'NaN', '–')
    """
    if v is None:
        return "–"
    if not isinstance(v, (int, float)):
        return str(v)
    a = abs(v)
    return f"{v:.3e}" if a and (a < 1e-3 or a >= 1e5) else f"{v:.5g}"


class SnapshotClient(ControlClient):
    """Asks one bridge for snapshots: the control client (:mod:`.control`), its TCP connection kept open."""

    def __init__(self, host: str, port: int, timeout: float = 1.0) -> None:
        super().__init__(host, port, timeout)

    def get(self) -> dict[str, Any] | None:
        """A snapshot, or ``None`` if no bridge answered within the timeout."""
        try:
            snap: dict[str, Any] | None = self.ask(SNAPSHOT)
        except TrainsoundError:
            return None
        return snap


class History:
    """Recent values per row (bounded: ``SPARK_POINTS`` per row, rows of vanished runs dropped)."""

    def __init__(self) -> None:
        self.rows: dict[str, deque[float]] = {}
        self.last_t: dict[str, float] = {}

    def update(self, snap: dict[str, Any]) -> None:
        live = set()
        for run in snap.get("runs", []):
            for row in run["rows"]:
                rid = row["id"]
                live.add(rid)
                if self.last_t.get(rid) != row["t"]:
                    self.last_t[rid] = row["t"]
                    self.rows.setdefault(rid, deque(maxlen=SPARK_POINTS)).append(_number(row["value"]))
        for rid in [r for r in self.rows if r not in live]:
            del self.rows[rid]
            self.last_t.pop(rid, None)


def render(snap: dict[str, Any] | None, hist: History, where: str, width: int, height: int) -> Any:
    """One screen as a rich renderable (cut to ``height`` lines)."""
    from rich.table import Table
    from rich.text import Text

    lines: list[Text] = []
    if snap is None:
        lines.append(Text(f"trainsound top — {where}: bridge not answering, retrying…  (q quits)", style="bold red"))
        return Text("\n").join(lines)
    c = snap.get("counters", {})
    m = c.get("mapping", {})
    # Two lines that fit 80 columns: who and how much, then losses and health.
    lines.append(Text.assemble(
        ("trainsound top ", "bold"),
        f"{where} up {hms(c.get('uptime', 0))} msgs {c.get('received', 0)} mapped {m.get('mapped', 0)} (q quits)",
    ))
    health = " ".join(f"{n}:{'ok' if h.get('ok') else 'NOT OK'}" for n, h in snap.get("outputs", {}).items())
    lines.append(Text(
        f"dropped {c.get('dropped_total', 0)} kernel {snap.get('kernel_drops', '?')} "
        f"alarms {snap.get('alarm_count', 0)} outputs {health or '-'}",
        style="red" if "NOT OK" in health else "dim",
    ))
    # The incidents (one per fault, members listed) when the bridge sends them; else the sounded alarms.
    alarms = (snap.get("incidents") or snap.get("alarms", []))[-4:]
    room = max(3, height - len(lines) - 2 - max(1, len(alarms)))
    table = Table(box=None, pad_edge=False, show_edge=False, expand=True, padding=(0, 1))
    for col, kw in (("run", {"max_width": 12}), ("group", {"max_width": 10}), ("name", {"ratio": 1}),
                    ("value", {"justify": "right", "width": 10}), ("recent", {"width": SPARK_POINTS})):
        table.add_column(col, no_wrap=True, overflow="ellipsis", **kw)
    shown = 0
    for run in snap.get("runs", []):
        step = "" if run.get("step") is None else f" @{run['step']}"
        rows = sorted(run["rows"], key=lambda r: (r["kind"] != "loss", r["id"]))  # groups: layout order
        for i, row in enumerate(rows):
            if shown >= room - 1:
                break
            bad = not isinstance(row["value"], (int, float))
            table.add_row(run["run"] + step if i == 0 else "", row["group"], row["name"], fmt(row["value"]),
                          sparkline(hist.rows.get(row["id"], ())), style="red" if bad else None)
            shown += 1
    if not snap.get("runs"):
        table.add_row("-", "", "no runs yet", "", "")
    out: list[Any] = [*lines, table, Text("alarms:", style="bold")]
    for a in alarms:
        step = "" if a.get("step") is None else f" step {a['step']}"
        out.append(Text(f"  {a['run']}{step}: {incident_line(a)} ({fmt(a['value'])})", style="red"))
    if not alarms:
        out.append(Text("  none", style="dim"))
    from rich.console import Group

    return Group(*out)


@contextlib.contextmanager
def raw_keys() -> Iterator[None]:
    """Single key presses without Enter (cbreak), restored on exit; nothing when stdin is not a terminal."""
    if not sys.stdin.isatty():
        yield
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def wait_key(timeout: float) -> str:
    """A key pressed within ``timeout`` seconds, else ``""``."""
    if not sys.stdin.isatty():
        time.sleep(timeout)
        return ""
    r, _, _ = select.select([sys.stdin], [], [], timeout)
    return os.read(sys.stdin.fileno(), 16).decode(errors="replace") if r else ""


def cmd_top(args: argparse.Namespace) -> int:
    try:
        from rich.console import Console
        from rich.live import Live
    except ImportError as err:
        raise TrainsoundError("trainsound top needs rich: pip install 'trainsound[top]'") from err
    _, host, port = choose_bridge(args.to)  # TCP first, then UDP, whatever the scheme (like status)
    where = f"{host}:{port}"
    client = SnapshotClient(host, port)
    snap = client.get()
    if snap is None:
        raise TrainsoundError(f"no answer from a bridge at {where} (is it running? --to or TRAINSOUND_ADDR)")
    hist = History()
    console = Console()
    try:
        with raw_keys(), Live(console=console, screen=True, auto_refresh=False, transient=True) as live:
            while True:
                if snap is not None:
                    hist.update(snap)
                live.update(render(snap, hist, where, console.width, console.height), refresh=True)
                if wait_key(args.refresh).lower().startswith("q"):
                    return 0
                snap = client.get()
    finally:
        client.close()


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "top",
        help="a live full-screen view of the bridge: runs, voices with sparklines, alarms, counters",
        description="Watch a running bridge in the terminal (works over SSH in 80x24). q quits. Exit code 1 "
        "when no bridge answers.",
    )
    p.add_argument("--to", metavar="HOST:PORT", help=TO_HELP)
    p.add_argument("--refresh", type=float, default=DEFAULT_REFRESH, metavar="SECONDS", help="time between refreshes")
    p.set_defaults(func=cmd_top)
