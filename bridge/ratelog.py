"""Logging what the wire says without letting the wire write the log: escaped text, rate-limited lines.

:func:`escape` makes any text one printable line (control characters become ``\\n``-style escapes),
so an OSC address holding a newline cannot forge a second log line. :class:`RateLimited` logs a
repeated warning at most once per interval per key and says how many were suppressed; use one per
repeated warning site (reply failures, output errors, refused connections…).

>>> escape("/nn/a\\n2026-01-01 CRITICAL x\\x1b[31m")
'/nn/a\\\\n2026-01-01 CRITICAL x\\\\x1b[31m'
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _esc(m: re.Match[str]) -> str:
    c = m.group()
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def escape(text: object) -> str:
    """``str(text)`` with every control character (C0, DEL, C1, line/paragraph separators) escaped."""
    s = str(text)
    return _CONTROL.sub(_esc, s) if _CONTROL.search(s) else s


#: ``log.error(..., extra=MULTILINE)``: the message holds no wire data and may keep its newlines (a traceback).
MULTILINE = {"multiline": True}


class EscapingFormatter(logging.Formatter):
    """A formatter whose message part is :func:`escape`-d: whatever a log call interpolates from the
    wire stays on its own line. Tracebacks (``exc_info``) are appended unescaped, as they are ours, and
    so is a message logged with ``extra=MULTILINE``."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        if not getattr(record, "multiline", False):
            record.message = escape(record.message)
        return super().formatMessage(record)


class RateLimited:
    """At most one log line per ``key`` per ``interval`` seconds; the suppressed count rides on the next line.

    >>> rl = RateLimited(logging.getLogger("doctest"), interval=60.0)
    >>> rl.allow("k"), rl.allow("k"), rl.suppressed("k")
    (True, False, 1)
    """

    def __init__(
        self, logger: logging.Logger, interval: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._state: dict[str, tuple[float, int]] = {}
        """key → (time of the last line, lines suppressed since)."""
        self._pending = 0

    def allow(self, key: str) -> bool:
        """True if a line for ``key`` may be logged now (the caller logs it); else it is counted as suppressed."""
        now = self.clock()
        last, n = self._state.get(key, (-1e18, 0))
        if now - last >= self.interval:
            if len(self._state) >= 1024:  # keys are call sites, not wire data; bound them anyway
                self._state.clear()
            self._state[key] = (now, 0)
            self._pending = n
            return True
        self._state[key] = (last, n + 1)
        return False

    def suppressed(self, key: str) -> int:
        return self._state.get(key, (0.0, 0))[1]

    def log(self, level: int, key: str, msg: str, *args: object) -> bool:
        """Log ``msg % args`` at ``level`` unless ``key`` logged within the interval; True if logged."""
        if not self.allow(key):
            return False
        more = f" (+{self._pending} more like this suppressed)" if self._pending else ""
        self.logger.log(level, "%s%s", escape(msg % args if args else msg), more)
        return True

    def warning(self, key: str, msg: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, msg, *args)

    def error(self, key: str, msg: str, *args: object) -> bool:
        return self.log(logging.ERROR, key, msg, *args)


class TokenBucket:
    """A global rate limit: ``rate`` tokens a second, at most ``burst`` saved up.

    >>> b = TokenBucket(rate=1.0, burst=2.0, clock=lambda: 0.0)
    >>> b.take(), b.take(), b.take()
    (True, True, False)
    """

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = burst
        self._last = clock()

    def take(self, n: float = 1.0, now: float | None = None) -> bool:
        """Spend ``n`` tokens if there are that many; False (nothing spent) otherwise."""
        t = self.clock() if now is None else now
        self.tokens = min(self.burst, self.tokens + max(0.0, t - self._last) * self.rate)
        self._last = t
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False
