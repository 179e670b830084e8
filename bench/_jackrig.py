"""A private jackd for benchmarks: the suite's one launcher (``tests/support.py``'s :class:`JackServer`),
realtime when the machine allows it.

Benchmarks measure the bridge, not the scheduler: a non-realtime jackd on a loaded 2-core VM misses its
own deadlines, so this asks for SCHED_FIFO first and falls back to ``--no-realtime``; ``.realtime`` says
which it got. A benchmark without jackd ends with one line, not a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent / "tests")]
from support import JackServer  # noqa: E402


def start_jackd(rate: int = 48_000, period: int = 256) -> JackServer:
    """Start a private jackd and make it the one this process and its children find."""
    try:
        jack = JackServer("bench", rate, period, realtime=True).start()
    except RuntimeError as err:
        sys.exit(str(err))
    jack.use()
    return jack
