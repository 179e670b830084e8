"""Feed a session recording back through a pipeline (``trainsound replay``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from .pipeline import Pipeline
from .wire.session import iter_records

TICK = 0.005
#: After the last message, run the clock on so that notes and glides finish.
TAIL = 2.0


def replay(
    path: str | Path,
    pipeline: Pipeline,
    *,
    realtime: bool = False,
    speed: float = 1.0,
    progress: Callable[[float, float], None] | None = None,
    close: bool = True,
) -> int:
    """Replay every record on its recorded time; returns the number of messages fed.

    Offline (``realtime=False``) the clock jumps from record to record, ticking
    every 5 ms of recorded time in between, so outputs see exactly the timing of
    the live session, as fast as they can process it. With ``close=False`` the clock still runs
    on to the tail, but the outputs are left open for the caller to close.
    """
    n = 0
    t_first: float | None = None
    wall0 = time.monotonic()
    next_tick = -1.0
    last = 0.0
    for t, raw in iter_records(path):
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
        end = last + TAIL
        while next_tick <= end:
            pipeline.tick(next_tick)
            next_tick += TICK
    if close:
        pipeline.close(None if t_first is None else last + TAIL)
    return n
