"""Ableton Link: follow a Link session's tempo and phase, and place note starts on its grid.

The session runs in its own thread with its own asyncio loop (aalink is built on asyncio,
the receive loop is not); the receive thread only reads tempo and beat, which Link allows
from any thread. :func:`grid_delay` is the pure part: how long a note start waits for the
next grid point.

>>> round(grid_delay(beat=3.10, tempo=120.0, grid=0.25), 3)   # next sixteenth is beat 3.25
0.075
>>> grid_delay(beat=3.25, tempo=120.0, grid=0.25)             # already on the grid
0.0
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
from dataclasses import dataclass, replace
from typing import Any

from ..config import Config, output_options
from ..errors import OutputUnavailable
from ..table import Table

log = logging.getLogger(__name__)

#: ``[link] quantize`` → grid in beats (a bar is 4 beats: Link's default quantum for 4/4).
QUANTIZE: dict[str, float] = {"off": 0.0, "1/16": 0.25, "1/8": 0.5, "1/4": 1.0, "bar": 4.0}
DEFAULT_TEMPO = 120.0
#: A start this close after a grid point counts as on it (the tick's own jitter, 2 ms at 120 BPM).
ON_GRID = 1e-3


@dataclass(frozen=True)
class LinkOptions:
    """The ``[link]`` table."""

    enabled: bool = False
    quantize: str = "1/16"
    """Grid for note starts: a key of :data:`QUANTIZE`."""
    tempo: float = DEFAULT_TEMPO
    """Tempo the bridge proposes when it is alone in the session (a joined session's tempo wins)."""
    quantum: float = 4.0


def section(t: Table) -> LinkOptions:
    """Validate ``[link]``: ``enabled``, ``quantize`` ("off", "1/16", "1/8", "1/4", "bar"), ``tempo``, ``quantum``."""
    d = LinkOptions()
    opts = LinkOptions(
        enabled=t.boolean("enabled", d.enabled),
        quantize=t.string("quantize", d.quantize, tuple(QUANTIZE)),
        tempo=t.number("tempo", d.tempo, 20.0, 999.0),
        quantum=t.number("quantum", d.quantum, 1.0, 16.0),
    )
    t.finish()
    return opts


def with_link(config: Config, enable: bool, quantize: str | None) -> Config:
    """``--link`` / ``--quantize`` over the file's ``[link]`` table."""
    opts: LinkOptions = output_options(config, "link", LinkOptions())
    opts = replace(opts, enabled=opts.enabled or enable, quantize=quantize or opts.quantize)
    return replace(config, outputs={**config.outputs, "link": opts})


def grid_delay(beat: float, tempo: float, grid: float) -> float:
    """Seconds from ``beat`` to the next multiple of ``grid`` beats at ``tempo`` BPM (0: on the grid)."""
    if grid <= 0.0 or tempo <= 0.0 or not math.isfinite(beat):
        return 0.0
    frac = (beat / grid) % 1.0
    if frac < ON_GRID / grid or frac > 1.0 - ON_GRID / grid:
        return 0.0
    return (1.0 - frac) * grid * 60.0 / tempo


class LinkClock:
    """A member of the local Link session, with its tempo, beat and number of peers."""

    def __init__(self, tempo: float = DEFAULT_TEMPO, quantum: float = 4.0) -> None:
        try:
            import aalink
        except ImportError as err:
            raise OutputUnavailable("Ableton Link needs aalink: pip install 'trainsound[link]'") from err
        self._aalink = aalink
        self._tempo, self._quantum = tempo, quantum
        self._link: Any = None
        self._peers_logged: int = -1
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="trainsound-link", daemon=True)
        self._thread.start()
        ready.wait(5.0)
        if self._link is None:
            raise OutputUnavailable("Ableton Link: could not join the session (aalink did not start)")

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            link = self._aalink.Link(self._tempo)
            link.quantum = self._quantum
            link.enabled = True
            self._link = link

        try:
            self._loop.run_until_complete(start())
        finally:
            ready.set()
        self._loop.run_forever()

    @property
    def tempo(self) -> float:
        return float(self._link.tempo)

    @property
    def beat(self) -> float:
        return float(self._link.beat)

    @property
    def peers(self) -> int:
        return int(self._link.num_peers)

    def delay(self, grid: float) -> float:
        """Seconds until the next grid point of the session (0 with no grid)."""
        return grid_delay(self.beat, self.tempo, grid) if grid > 0.0 else 0.0

    def check_peers(self) -> None:
        """Log when the number of Link peers changes (called from a periodic hook)."""
        n = self.peers
        if n != self._peers_logged:
            if self._peers_logged >= 0 or n:
                log.info("Link: %d peer(s), %.1f BPM", n, self.tempo)
            self._peers_logged = n

    def health(self) -> dict[str, Any]:
        return {"tempo": round(self.tempo, 2), "beat": round(self.beat, 2), "peers": self.peers}

    def close(self) -> None:
        link = self._link

        async def stop() -> None:
            if link is not None:
                link.enabled = False

        if self._loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(stop(), self._loop)
            with contextlib.suppress(Exception):  # closing must not fail the shutdown
                fut.result(2.0)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(2.0)
        if not self._thread.is_alive():
            self._loop.close()
