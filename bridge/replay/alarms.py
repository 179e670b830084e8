"""Alarms on a recording: ``trainsound render SESSION --alarms`` / ``--alarms-json FILE`` (and ``replay``).

The recording is replayed through the same pipeline as live traffic (:func:`.replay.replay`), so the
alarms are those the bridge raised, or would have raised with this config; :class:`AlarmLog` is a
pipeline output that keeps every sounded alarm as plain data.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ..alarms.watch import Alarm
from ..config import Config
from ..errors import TrainsoundError
from ..mapped import Mapped
from ..outputs.base import BaseOutput
from ..wire.protocol import Event
from ..wire.session import iter_records


class AlarmLog(BaseOutput):
    """Collects the alarms (and, with ``ticks``, the context ticks) that sounded."""

    name = "alarm_log"

    def __init__(self, ticks: bool = False) -> None:
        self.alarms: list[Alarm] = []
        self.ticks = ticks

    def _handle(self, event: Event | None, mapped: Sequence[Mapped]) -> None:
        for m in mapped:
            if (m.alarm and m.midi) or (self.ticks and m.tick):
                self.alarms.append(Alarm(m.t, m.run, m.rule_name, m.kind, m.step, m.value))

    def health(self) -> dict[str, Any]:
        return {"ok": True, "alarms": len(self.alarms)}


def detect(session: str | Path, config: Config) -> list[Alarm]:
    """The alarms raised by replaying ``session`` through a pipeline with no other output."""
    from ..pipeline import Pipeline
    from .loop import replay

    log = AlarmLog()
    replay(session, Pipeline(config, [log]))
    return log.alarms


def fmt_value(x: float) -> str:
    return f"{x:.4g}" if math.isfinite(x) else str(x)


def print_alarms(alarms: Sequence[Alarm], stream: TextIO, t0: float | None = None) -> None:
    """One line per alarm: step, seconds into the session (from ``t0``), run, name, kind, value."""
    if not alarms:
        print("no alarms", file=stream)
        return
    start = alarms[0].t if t0 is None else t0
    for a in alarms:
        print(f"step {a.step:>8}  {a.t - start:8.2f} s  run {a.run}  {a.name or '(run)'}  {a.kind}  "
              f"value {fmt_value(a.value)}", file=stream)


def write_json(alarms: Sequence[Alarm], path: str | Path) -> None:
    """``[{"run", "name", "kind", "step", "value", "time"}, …]`` (time: Unix seconds on the recorded clock)."""
    try:
        Path(path).write_text(json.dumps([a.as_dict() for a in alarms], indent=1) + "\n")
    except OSError as err:
        raise TrainsoundError(f"{path}: cannot write the alarms: {err.strerror}") from err


def report_alarms(args: argparse.Namespace, alarms: list[Alarm]) -> None:
    """``--alarms``: one line each on stdout; ``--alarms-json FILE``: the list as JSON."""
    if args.alarms:
        first = next(iter_records(args.session), None)
        print_alarms(alarms, sys.stdout, None if first is None else first[0])
    if args.alarms_json:
        write_json(alarms, args.alarms_json)


def add_alarm_args(p: argparse.ArgumentParser) -> None:
    """``--alarms``, ``--alarms-json FILE``, ``--speak`` (render and replay)."""
    p.add_argument("--alarms", action="store_true",
                   help="run the fault detectors on the recording and print each alarm (docs/alarms.md)")
    p.add_argument("--alarms-json", metavar="FILE", help="write the alarms as JSON")
    p.add_argument("--speak", action="store_true", help="say each alarm after its earcon (espeak-ng)")
