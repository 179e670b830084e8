"""The runs of a recording, each a span of its own on a render's step clock (``trainsound render``).

A service left recording for weeks holds many runs, one after another, each starting again at step 0.
:func:`scan_runs` finds them (a run is its name's steps; the same name counting again from a lower step
is a new run), :func:`segments` orders them by arrival and gives each its own span (runs that overlap in
time share one, clocked by the one with most steps), :func:`run_session` keeps one run of a recording.
Standard library only; reads the recording once.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..wire.osc import decode_message
from ..wire.session import SessionWriter, iter_records, read_header


@dataclass
class RunSpan:
    """One run's steps: ``times`` (recorded) and ``steps`` (their numbers), in arrival order."""

    name: str
    label: str
    """``name``, or ``name (2)`` for the second run under the same name (it counted again from a lower step)."""
    times: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)


@dataclass
class Segment:
    """Runs that share a span of the render (usually one run): its step times are those of its longest run."""

    runs: list[RunSpan]

    @property
    def label(self) -> str:
        return " + ".join(r.label for r in self.runs)

    @property
    def times(self) -> list[float]:
        return max(self.runs, key=lambda r: len(r.times)).times

    @property
    def start(self) -> float:
        return min(r.times[0] for r in self.runs)

    @property
    def end(self) -> float:
        return max(r.times[-1] for r in self.runs)


def _run_of(raw: bytes) -> tuple[str, bytes] | None:
    """``(run, kind)`` of an ``/nn/<run>/…`` message, else ``None``."""
    end = raw.find(b"\0")
    parts = raw[:end].split(b"/", 3)
    if len(parts) < 4 or parts[0] or parts[1] != b"nn":
        return None
    return parts[2].decode("utf-8", "replace"), parts[3]


def scan_runs(path: str | Path) -> tuple[float, float, list[RunSpan]]:
    """``(first record time, last record time, runs in order of their first step)``.

    >>> import io
    >>> from trainsound.bridge.wire.osc import encode_message
    >>> buf = io.BytesIO()
    >>> w = SessionWriter(buf, start=0.0)
    >>> for t, run, k in [(0, "a", 0), (1, "a", 1), (5, "b", 0), (6, "a", 0), (7, "a", 1)]:
    ...     w.write(float(t), encode_message(f"/nn/{run}/step", [k]))
    >>> w.flush(); _ = buf.seek(0)
    >>> [(r.label, r.steps) for r in scan_runs(buf)[2]]
    [('a', [0, 1]), ('b', [0]), ('a (2)', [0, 1])]
    """
    first = last = 0.0
    spans: list[RunSpan] = []
    current: dict[str, RunSpan] = {}
    count: dict[str, int] = {}
    for i, (t, raw) in enumerate(iter_records(path)):
        if i == 0:
            first = t
        last = t
        hit = _run_of(raw)
        if hit is None or hit[1] != b"step":
            continue
        run = hit[0]
        try:
            args = decode_message(raw)[1]
            step = int(args[0])  # type: ignore[arg-type]
        except (ValueError, IndexError, TypeError):
            continue  # the pipeline counts what it cannot read; the clock needs readable steps only
        span = current.get(run)
        if span is None or (span.steps and step < span.steps[-1]):
            count[run] = count.get(run, 0) + 1
            span = current[run] = RunSpan(run, run if count[run] == 1 else f"{run} ({count[run]})")
            spans.append(span)
        span.times.append(t)
        span.steps.append(step)
    return first, last, spans


def segments(runs: list[RunSpan]) -> list[Segment]:
    """Runs in order of arrival, one segment each; runs that overlap in time share one.

    >>> a, b, c = RunSpan("a", "a", [0.0, 1.0]), RunSpan("b", "b", [0.5, 3.0]), RunSpan("c", "c", [9.0])
    >>> [s.label for s in segments([a, b, c])]
    ['a + b', 'c']
    """
    out: list[Segment] = []
    for r in sorted((r for r in runs if r.times), key=lambda r: r.times[0]):
        if out and r.times[0] <= out[-1].end:
            out[-1].runs.append(r)
        else:
            out.append(Segment([r]))
    return out


def run_names(runs: list[RunSpan]) -> list[str]:
    """The distinct run names, in order of arrival."""
    return list(dict.fromkeys(r.name for r in runs))


def _keep(raw: bytes, run: str) -> bool:
    hit = _run_of(raw)
    return hit is None or hit[0] == run


@contextlib.contextmanager
def run_session(path: str | Path, run: str, runs: list[RunSpan]) -> Iterator[Path]:
    """A temporary recording holding only ``run``'s messages (and those of no run), for ``render --run``.

    Raises:
        ConfigError: no run of that name (a usage error, exit code 2; the message lists the runs).
    """
    names = run_names(runs)
    if run not in names:
        listed = ", ".join(names) if names else "none (no step messages)"
        raise ConfigError(f"{path}: no run named {run!r}; its runs: {listed}")
    with open(path, "rb") as src:
        header = read_header(src, str(path))
    fd, tmp = tempfile.mkstemp(suffix=".tsr", prefix=f"trainsound-{run}-")
    try:
        with os.fdopen(fd, "wb") as fh:
            w = SessionWriter(fh, start=float(header.get("start", 0.0)))
            for t, raw in iter_records(path):
                if _keep(raw, run):
                    w.write(t, raw)
            w.flush()
        yield Path(tmp)
    finally:
        os.unlink(tmp)
