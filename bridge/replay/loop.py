"""Feed a session recording back through a pipeline (``trainsound replay``)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..pipeline import Pipeline
from ..wire.session import iter_records

TICK = 0.005
#: After the last message, run the clock on so that notes and glides finish.
TAIL = 2.0
#: Renders keep at most this much time before the first step and after the last message.
TRIM = 1.0
#: A step-clocked render is made to last at most this long (``--steps-per-second`` is raised to fit).
MAX_RENDER_SECONDS = 300.0


class StepClock:
    """Recorded time → render time on the step clock: each segment's step ``k`` at ``its start + k/sps``.

    ``segments`` are the step times of each span in order (one per run, :func:`.runs.segments`). Messages
    between two steps keep their place between them (linearly); the time before the first step is squeezed
    into at most :data:`TRIM` s, each segment's last step gets one step's time, the time between two
    segments (a run's end, the next one's start) and after the last at most :data:`TRIM` s each. Pure:
    built from the step messages' times.

    >>> c = StepClock(first=0.0, last=12.0, segments=[[8.0, 9.0, 10.0, 11.0]], steps_per_second=2.0)
    >>> [round(c(t), 3) for t in (0.0, 8.0, 8.5, 11.0, 12.0)]
    [0.0, 1.0, 1.25, 2.5, 3.0]
    >>> two = StepClock(0.0, 30.0, [[0.0, 1.0, 2.0], [20.0, 21.0, 22.0]], 2.0)  # two runs, 18 s apart
    >>> [round(two(t), 3) for t in (0.0, 2.0, 20.0, 22.0, 30.0)], two.starts
    ([0.0, 1.0, 2.5, 3.5, 5.0], [0.0, 2.5])
    """

    def __init__(
        self, first: float, last: float, segments: Sequence[Sequence[float]], steps_per_second: float, *,
        grid: bool = False,
    ) -> None:
        # ``grid``: a musical grid (a MIDI file at a chosen tempo): no lead-in or pause, the rate never raised.
        segs = [_increasing(s) for s in segments if s]
        n = sum(len(s) for s in segs)
        fitted = max(steps_per_second, n / MAX_RENDER_SECONDS)
        self.steps_per_second = sps = steps_per_second if grid else fitted
        xs = [first] if first < segs[0][0] else []
        ys = [0.0] if first < segs[0][0] else []
        y0 = 0.0 if grid else min(TRIM, segs[0][0] - first)
        self.starts: list[float] = []
        """Render time of each segment's first step."""
        for i, st in enumerate(segs):
            self.starts.append(y0)
            xs += st
            ys += [y0 + k / sps for k in range(len(st))]
            gap = float(np.median(np.diff(st))) if len(st) > 1 else 1.0 / sps
            end_x, end_y = st[-1] + gap, ys[-1] + 1.0 / sps
            nxt = segs[i + 1][0] if i + 1 < len(segs) else math.inf
            if end_x >= nxt:  # the next run starts within this one's last step: it follows at once
                y0 = end_y
                continue
            xs.append(end_x)
            ys.append(end_y)
            y0 = end_y + (0.0 if grid else min(TRIM, nxt - end_x))
        if last > xs[-1]:
            xs.append(last)
            ys.append(ys[-1] + min(TRIM, last - xs[-2]))
        self.xs, self.ys = np.asarray(xs), np.asarray(ys)
        self.steps = n

    def __call__(self, t: float) -> float:
        return float(np.interp(t, self.xs, self.ys))


def _increasing(times: Sequence[float]) -> list[float]:
    """Step times with repeats dropped (two steps at one recorded time are one knot)."""
    st = [times[0]]
    for t in times[1:]:
        if t > st[-1]:
            st.append(t)
    return st


def replay(
    path: str | Path,
    pipeline: Pipeline,
    *,
    realtime: bool = False,
    speed: float = 1.0,
    progress: Callable[[float, float], None] | None = None,
    close: bool = True,
    clock: Callable[[float], float] | None = None,
    tail: float = TAIL,
) -> int:
    """Replay every record on its recorded time; returns the number of messages fed.

    Offline (``realtime=False``) the clock jumps from record to record, ticking
    every 5 ms of recorded time in between, so outputs see exactly the timing of
    the live session, as fast as they can process it. With ``close=False`` the clock still runs
    on to the tail, but the outputs are left open for the caller to close. ``clock`` maps recorded
    times to playback times (renders: :class:`StepClock`); ``tail`` is the time run on after the last message.
    """
    n = 0
    t_first: float | None = None
    wall0 = time.monotonic()
    next_tick = -1.0
    last = 0.0
    for t, raw in iter_records(path):
        if clock is not None:
            t = clock(t)
        if t_first is None:
            t_first = t
            next_tick = t
        while next_tick <= t:
            pipeline.tick(next_tick)
            next_tick += TICK
        if realtime:
            delay = (t - t_first) / speed - (time.monotonic() - wall0)
            if delay > 0:
                time.sleep(delay)
        pipeline.feed_message(t, raw)
        n += 1
        last = t
        if progress is not None and n % 256 == 0:
            progress(t - t_first, n)
    if t_first is not None:
        end = last + tail
        while next_tick <= end:
            pipeline.tick(next_tick)
            next_tick += TICK
    if close:
        pipeline.close(None if t_first is None else last + tail)
    return n
