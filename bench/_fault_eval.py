"""Scoring a fault-benchmark recording: trainsound's incidents (``trainsound render REC --alarms-json``)
and the published rules, against the fault's step and the kinds that name it.

``--alarms-json`` holds one entry per incident (``run, kind, step, time, name, members, value``, and
``kinds`` when one incident holds several); an older bridge wrote one entry per alarm (``run, name, kind,
step, value, time``): such an entry is read as an incident whose one member is its name.

>>> incidents([{"run": "r", "name": "loss", "kind": "spike", "step": 7, "value": 3.0, "time": 1.0}])
[Incident(kind='spike', step=7, name='loss', members=('loss',), kinds=('spike',))]
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _fault_rules import RULES, Streams, decode, events, run_rules
from _faultrig import EXPECTED

#: An incident or a rule's firing counts for the fault when it is this many steps from it, or fewer.
WINDOW = 5


@dataclass(frozen=True)
class Incident:
    kind: str
    step: int
    name: str
    members: tuple[str, ...]
    kinds: tuple[str, ...]


def incidents(entries: Any) -> list[Incident]:
    """Incidents from ``--alarms-json``'s list (either format), in step order."""
    if isinstance(entries, dict):  # a wrapper object, should one appear
        entries = entries.get("incidents", entries.get("alarms", []))
    out = []
    for e in entries:
        members, kind = e.get("members"), str(e.get("kind"))
        name = str(e.get("name", ""))
        out.append(Incident(kind, int(e.get("step", -1)), name,
                            tuple(str(m) for m in members) if members is not None else (name,),
                            tuple(str(k) for k in e.get("kinds") or (kind,))))
    return sorted(out, key=lambda i: i.step)


def render_alarms(rec: Path, timeout: float, config: Path | None = None) -> list[Incident]:
    """``trainsound render REC --alarms-json OUT``: the detectors' incidents on the recording.

    Raises:
        RuntimeError: the command failed or took longer than ``timeout`` seconds.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "alarms.json"
        cmd = [sys.executable, "-m", "trainsound.bridge", "render", str(rec), "--alarms-json", str(out)]
        if config is not None:
            cmd += ["--config", str(config)]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise RuntimeError(f"render --alarms-json: no answer within {timeout:g} s") from err
        if r.returncode != 0 or not out.exists():
            last = (r.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"render --alarms-json exited {r.returncode}: {last}")
        return incidents(json.loads(out.read_text()))


@dataclass
class Score:
    """One run, scored. ``at`` is ``None`` for a healthy run."""

    key: str
    framework: str
    fault: str
    at: int | None
    layer: str = "-"
    error: str | None = None
    incidents: list[Incident] = field(default_factory=list)
    rules: dict[str, list[int]] = field(default_factory=dict)
    worst: int | None = None
    undecodable: int = 0
    jump: tuple[float, float] | None = None

    # -- trainsound --------------------------------------------------------------------------------
    def near(self) -> list[Incident]:
        """Incidents within ±WINDOW steps of the fault."""
        return [i for i in self.incidents if self.at is not None and abs(i.step - self.at) <= WINDOW]

    def false(self) -> list[Incident]:
        """Incidents that name no fault: all on a healthy run; before the fault's window on a faulty one."""
        if self.at is None:
            return list(self.incidents)
        return [i for i in self.incidents if i.step < self.at - WINDOW]

    def first_match(self) -> Incident | None:
        """The first incident holding an expected kind, from the fault's window on."""
        want = EXPECTED.get(self.fault, frozenset())
        return next((i for i in self.incidents if self.at is not None and i.step >= self.at - WINDOW
                     and want.intersection(i.kinds)), None)

    def named_near(self) -> bool:
        """An expected kind within ±WINDOW steps of the fault (however many incidents beside it)."""
        m = self.first_match()
        return m is not None and abs(m.step - (self.at or 0)) <= WINDOW

    def hit(self) -> bool:
        """Named right: an expected kind within ±WINDOW steps, as one incident there, naming the block if frozen."""
        m = self.first_match()
        if m is None or abs(m.step - (self.at or 0)) > WINDOW or len(self.near()) != 1:
            return False
        return self.fault != "frozen_block" or self.names_layer(m)

    def names_layer(self, inc: Incident) -> bool:
        text = " ".join((inc.name, *inc.members))
        return self.layer in text

    def lead(self) -> int | None:
        """Steps from the first matching incident to the loss's worst point after the fault."""
        m = self.first_match()
        return None if m is None or self.worst is None else self.worst - m.step

    # -- published rules -----------------------------------------------------------------------------
    def rule_found(self, rule: str) -> int | None:
        """Offset of the first event the rule starts within ±WINDOW of the fault, or ``None`` (a rule that has
        been firing on every step since before the fault names nothing new)."""
        starts = events(self.rules.get(rule, []))
        near = [s - self.at for s in starts if self.at is not None and abs(s - self.at) <= WINDOW]
        return near[0] if near else None

    def rule_false(self, rule: str) -> int:
        """The rule's events that name no fault (all on a healthy run; before the window on a faulty one)."""
        fired = self.rules.get(rule, [])
        if self.at is not None:
            fired = [s for s in fired if s < self.at - WINDOW]
        return len(events(fired))


def worst_step(st: Streams, at: int) -> int | None:
    """The loss's worst point from ``at`` on: its first non-finite value, else its highest."""
    after = sorted((s, x) for s, x in st.loss.items() if s >= at)
    if not after:
        return None
    bad = next((s for s, x in after if not math.isfinite(x)), None)
    return bad if bad is not None else max(after, key=lambda sx: sx[1])[0]


def _ratio(series: dict[int, float], at: int) -> float:
    """Highest value in steps ``at``…``at+5`` over the median of the 20 before (inf for a non-finite one)."""
    before = sorted(x for s, x in series.items() if at - 20 <= s < at and math.isfinite(x))
    after = [series[s] for s in range(at, at + WINDOW + 1) if s in series]
    if not before or not after or before[len(before) // 2] <= 0:
        return math.nan
    if not all(math.isfinite(x) for x in after):
        return math.inf
    return max(after) / before[len(before) // 2]


def jump(st: Streams, at: int) -> tuple[float, float]:
    """What the fault did to the streams: (loss ratio, global grad-norm ratio) right after it."""
    return _ratio(st.loss, at), _ratio(dict(st.total()), at)


def score(rec: Path, meta: dict[str, Any], timeout: float, config: Path | None = None) -> Score:
    """Score one recording; an error (a failed run, a render that fails or hangs) is kept, not raised."""
    job = meta["job"]
    at = None if job["fault"] == "healthy" else int(meta["at"])
    sc = Score(Path(rec).stem, job["framework"], job["fault"], at, str(meta.get("layer", "-")), meta.get("error"))
    if sc.error is not None or not rec.exists():
        sc.error = sc.error or "no recording"
        return sc
    try:
        st = decode(rec)
        sc.undecodable = st.undecodable
        sc.rules = run_rules(st)
        if at is not None:
            sc.worst, sc.jump = worst_step(st, at), jump(st, at)
        sc.incidents = render_alarms(rec, timeout, config)
    except Exception as err:  # one bad recording costs its row, not the bench
        sc.error = f"{type(err).__name__}: {err}"
    return sc


__all__ = ["RULES", "WINDOW", "Incident", "Score", "incidents", "render_alarms", "score"]
