"""Counters and rate-limited logging of bad input: never silent, never a flood of log lines."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..ratelog import escape

log = logging.getLogger("trainsound.bridge.input")

#: At most one log line per reason per this many seconds (the rest are counted).
LOG_INTERVAL = 10.0


def fmt_sender(sender: object) -> str:
    if isinstance(sender, tuple) and len(sender) >= 2:
        host = sender[0]
        return f"[{host}]:{sender[1]}" if ":" in str(host) else f"{host}:{sender[1]}"
    return escape(sender)


@dataclass
class Stats:
    """What the bridge has seen: datagrams, messages, accepted, dropped by reason."""

    started: float = field(default_factory=time.time)
    datagrams: int = 0
    received: int = 0
    accepted: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    noted: Counter[str] = field(default_factory=Counter)
    """Accepted, but worth counting: bundles played early, non-finite values."""
    output_errors: Counter[str] = field(default_factory=Counter)
    _last_log: dict[str, tuple[float, int]] = field(default_factory=dict)

    def drop(self, reason: str, sender: object, detail: str) -> None:
        """Count a dropped datagram or message and log it, rate-limited per reason."""
        self.dropped[reason] += 1
        self._log(reason, self.dropped[reason], f"dropped from {fmt_sender(sender)}: {detail}")

    def note(self, reason: str, sender: object, detail: str) -> None:
        """Count something accepted but unusual (e.g. a bundle played early) and log it, rate-limited."""
        self.noted[reason] += 1
        self._log(reason, self.noted[reason], f"from {fmt_sender(sender)}: {detail}")

    def _log(self, reason: str, total: int, line: str) -> None:
        now = time.monotonic()
        last, total_then = self._last_log.get(reason, (-LOG_INTERVAL, 0))
        if now - last >= LOG_INTERVAL:
            suppressed = total - total_then - 1
            more = f" (+{suppressed} more since last report)" if suppressed > 0 else ""
            log.warning("%s%s", escape(line), more)
            self._last_log[reason] = (now, total)

    def snapshot(self) -> dict[str, Any]:
        return {
            "uptime": round(time.time() - self.started, 3),
            "datagrams": self.datagrams,
            "received": self.received,
            "accepted": self.accepted,
            "dropped": dict(self.dropped),
            "dropped_total": sum(self.dropped.values()),
            "noted": dict(self.noted),
            "output_errors": dict(self.output_errors),
        }
