"""``trainsound top``: a live full-screen view of a running bridge in the terminal (rich).

It asks the bridge for ``/trainsound/snapshot`` (docs/protocol.md) several times a second over one
OSC-over-TCP connection (UDP when TCP is off), keeps a short history per row for the sparklines, and
draws runs, their groups and voices, loss, alarms as they come, counters and output health in 80×24
or more. ``j``/``k`` (or the arrow keys) select a voice group, ``f`` brings it forward in the bridge's
sine output or sends it back (``/trainsound/forward``, docs/sound.md), ``F`` sends every group back;
``q`` quits. No bridge at the start: exit 1 with one line; a bridge that goes away later is shown as
such and asked again until it is back.
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
FORWARD = "/trainsound/forward"
#: Keys that move the selection (vi keys and the terminal's arrow sequences).
DOWN, UP = ("j", "\x1b[B", "\x1bOB"), ("k", "\x1b[A", "\x1bOA")
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


def group_rows(snap: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """The voice groups' rows ``(row id, run, group)`` in the order shown (what ``j``/``k`` select)."""
    return [(row["id"], run["run"], row["group"]) for run in (snap or {}).get("runs", [])
            for row in sorted(run["rows"], key=lambda r: (r["kind"] != "loss", r["id"]))
            if row["id"].startswith("group:")]


def forwarded(snap: dict[str, Any] | None) -> set[tuple[str, str]]:
    """The groups the sine output has brought forward (its health in the snapshot)."""
    sine = (snap or {}).get("outputs", {}).get("sine", {})
    return {(f["run"], f["group"]) for f in sine.get("forward", [])}


def on_key(key: str, snap: dict[str, Any] | None, selected: str | None, client: ControlClient) -> str | None:
    """A key press: the new selection (a row id); ``f``/``F`` ask the bridge to bring forward or send back."""
    rows = group_rows(snap)
    ids = [r[0] for r in rows]
    i = ids.index(selected) if selected in ids else -1
    if key in DOWN and ids:
        return ids[min(i + 1, len(ids) - 1)]
    if key in UP and ids:
        return ids[max(i - 1, 0)]
    with contextlib.suppress(TrainsoundError):
        if key == "f" and i >= 0:
            _, run, group = rows[i]
            client.ask(FORWARD, (run, group, 0.0) if (run, group) in forwarded(snap) else (run, group))
        elif key == "F":
            client.ask(FORWARD)
    return selected


def render(snap: dict[str, Any] | None, hist: History, where: str, width: int, height: int,
           selected: str | None = None) -> Any:
    """One screen as a rich renderable (cut to ``height`` lines); the ``selected`` row is highlighted."""
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
    shown, front = 0, forwarded(snap)
    for run in snap.get("runs", []):
        step = "" if run.get("step") is None else f" @{run['step']}"
        rows = sorted(run["rows"], key=lambda r: (r["kind"] != "loss", r["id"]))  # groups: layout order
        for i, row in enumerate(rows):
            if shown >= room - 1:
                break
            bad = not isinstance(row["value"], (int, float))
            fwd = "▲" if (run["run"], row["group"]) in front and row["id"].startswith("group:") else ""
            style = ("reverse " if row["id"] == selected else "") + ("red" if bad else "")
            table.add_row(run["run"] + step if i == 0 else "", fwd + row["group"], row["name"], fmt(row["value"]),
                          sparkline(hist.rows.get(row["id"], ())), style=style or None)
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
    selected: str | None = None
    try:
        with raw_keys(), Live(console=console, screen=True, auto_refresh=False, transient=True) as live:
            while True:
                if snap is not None:
                    hist.update(snap)
                live.update(render(snap, hist, where, console.width, console.height, selected), refresh=True)
                key = wait_key(args.refresh)
                if key.lower().startswith("q"):
                    return 0
                selected = on_key(key, snap, selected, client)
                snap = client.get()
    finally:
        client.close()


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "top",
        help="a live full-screen view of the bridge: runs, voices with sparklines, alarms, counters",
        description="Watch a running bridge in the terminal (works over SSH in 80x24). j/k select a voice group, "
        "f brings it forward in the bridge's sine output (again: back), F sends every group back; q quits. "
        "Exit code 1 when no bridge answers.",
    )
    p.add_argument("--to", metavar="HOST:PORT", help=TO_HELP)
    p.add_argument("--refresh", type=float, default=DEFAULT_REFRESH, metavar="SECONDS", help="time between refreshes")
    p.set_defaults(func=cmd_top)
