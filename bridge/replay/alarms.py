"""Alarms on a recording: ``trainsound render SESSION --alarms`` / ``--alarms-json FILE`` (and ``replay``).

The recording is replayed through the same pipeline as live traffic (:func:`.replay.replay`), so the
incidents are those the bridge raised, or would have raised with this config (docs/alarms.md,
"Incidents"); :class:`AlarmLog` is a pipeline output that keeps every sounded alarm as plain data.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ..alarms.incidents import Incident
from ..alarms.watch import Alarm
from ..config import Config
from ..errors import TrainsoundError
from ..mapped import Mapped
from ..outputs.base import BaseOutput
from ..wire.protocol import Event
from ..wire.session import iter_records

if TYPE_CHECKING:
    from ..pipeline import Pipeline


class AlarmLog(BaseOutput):
    """Collects the alarms (and, with ``ticks``, the context ticks) that sounded: one per incident that the
    global rate allowed. The incidents themselves, listed whether they sounded or not, are the watch's
    (:func:`incidents`)."""

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


def incidents(pipeline: Pipeline) -> list[Incident]:
    """Every incident the pipeline's detectors raised, in order (up to :data:`.incidents.HISTORY_MAX`)."""
    return list(pipeline.engine.watch.incidents.history)


def detect(session: str | Path, config: Config) -> list[Incident]:
    """The incidents raised by replaying ``session`` on its recorded clock through a pipeline with no output.

    Incidents depend on steps, not on the clock, so this is the answer for every replay or render of it.
    """
    from ..pipeline import Pipeline
    from .loop import replay

    pipeline = Pipeline(config, [])
    replay(session, pipeline)
    return incidents(pipeline)


def fmt_value(x: float) -> str:
    return f"{x:.4g}" if math.isfinite(x) else str(x)


def print_alarms(found: Sequence[Incident], stream: TextIO, when: Callable[[float], float]) -> None:
    """One line per incident: step, ``when(time)`` in seconds (into the session or the rendered audio), run,
    its name, kind, value; then its streams when there are several."""
    if not found:
        print("no alarms", file=stream)
        return
    for i in found:
        print(f"step {i.step:>8}  {when(i.t):8.2f} s  run {i.run}  {i.name}  {i.kind}  value {fmt_value(i.value)}",
              file=stream)
        if i.count > 1:
            more = f" and {i.count - len(i.members)} more" if i.count > len(i.members) else ""
            print(f"{'':>14}{i.count} streams, steps {i.step}–{i.last_step}: {', '.join(i.members)}{more}",
                  file=stream)


def write_json(found: Sequence[Incident], path: str | Path) -> None:
    """One entry per incident: ``{"run", "kind", "step", "time", "name", "members", "value", "last_step",
    "streams"}`` (time: Unix seconds on the recorded clock)."""
    try:
        Path(path).write_text(json.dumps([i.as_dict() for i in found], indent=1) + "\n")
    except OSError as err:
        raise TrainsoundError(f"{path}: cannot write the alarms: {err.strerror}") from err


def report_alarms(args: argparse.Namespace, found: list[Incident],
                  when: Callable[[float], float] | None = None) -> None:
    """``--alarms``: one line each on stdout (``when``: recorded time → seconds shown; default: seconds into
    the session); ``--alarms-json FILE``: the list as JSON."""
    if args.alarms:
        if when is None:
            first = next(iter_records(args.session), None)
            t0 = 0.0 if first is None else first[0]
            when = lambda t: t - t0
        print_alarms(found, sys.stdout, when)
    if args.alarms_json:
        write_json(found, args.alarms_json)


def add_alarm_args(p: argparse.ArgumentParser) -> None:
    """``--alarms``, ``--alarms-json FILE``, ``--speak`` (render and replay)."""
    p.add_argument("--alarms", action="store_true",
                   help="run the fault detectors on the recording and print each incident (docs/alarms.md)")
    p.add_argument("--alarms-json", metavar="FILE", help="write the incidents as JSON, one entry each")
    p.add_argument("--speak", action="store_true", help="say each alarm after its earcon (espeak-ng)")
