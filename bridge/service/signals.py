"""The bridge's signal handling, installed before anything heavy is imported.

``SIGHUP`` and ``SIGUSR1`` are caught from the first lines of ``trainsound`` on
(their default action would kill a bridge that is still importing numpy or
opening outputs); what arrives before the daemon serves is remembered and
acted on once it does. ``SIGINT``/``SIGTERM`` follow uvicorn's pattern once the
daemon serves: the first stops it cleanly (notes silenced, files finished), a
second hurries (waits are cut short, but notes are still silenced and files
still finished), a third exits at once. The handlers stay until every output
is closed. Standard library only: this module is imported first.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType

#: Signals caught before the daemon serves (their default action is to terminate).
EARLY = tuple(getattr(signal, n) for n in ("SIGHUP", "SIGUSR1") if hasattr(signal, n))
#: Exit status of a forced exit (third signal): 128 + SIGTERM, what a shell reports for a killed process.
FORCED_EXIT = 143

_pending: list[int] = []


def _remember(signum: int, frame: FrameType | None) -> None:
    _pending.append(signum)


def install_early() -> None:
    """Catch SIGHUP/SIGUSR1 now; :func:`take_pending` hands them to the daemon later."""
    for s in EARLY:
        if signal.getsignal(s) in (signal.SIG_DFL, None):
            signal.signal(s, _remember)


def release_early() -> None:
    """For commands other than the bridge: SIGHUP/SIGUSR1 act as by default again (a terminal hangup
    ends a ``replay``), and one that arrived meanwhile is delivered now."""
    for s in EARLY:
        if signal.getsignal(s) is _remember:
            signal.signal(s, signal.SIG_DFL)
    for s in take_pending():
        os.kill(os.getpid(), s)


def take_pending() -> list[int]:
    """Signals that arrived before the daemon took over (oldest first), forgotten once taken."""
    out, _pending[:] = list(_pending), []
    return out


class StopSignals:
    """Counts SIGINT/SIGTERM: 1 → ``on_stop``, 2 → ``on_hurry``, 3 → immediate exit.

    Python runs a handler between bytecodes, so a second signal's handler can run inside the first's.
    Each call draws its number in one step (``next`` on a C counter: no bytecode boundary between adding
    and reading), so two signals at the same instant are 1 and 2, never both 2 (which left the bridge
    serving: issue 28, item 5).
    """

    def __init__(self, on_stop: Callable[[str], None], on_hurry: Callable[[], None]) -> None:
        self.on_stop = on_stop
        self.on_hurry = on_hurry
        self._seq = itertools.count(1)
        self.count = 0
        """How many arrived (for reading; the handler decides on its own number)."""

    def __call__(self, signum: int) -> None:
        n = next(self._seq)
        self.count = max(self.count, n)
        name = signal.Signals(signum).name
        if n == 1:
            self.on_stop(name)
        elif n == 2:
            self.on_hurry()
        else:
            # Written directly: the logging lock may be held by the code this signal interrupted.
            os.write(sys.stderr.fileno(), f"trainsound bridge: third {name}: exiting now\n".encode())
            os._exit(FORCED_EXIT)
