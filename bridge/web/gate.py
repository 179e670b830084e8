"""The web port's door: who may connect, how many at once, and one rate-limited line per refusal.

aiohttp parses a request before any middleware sees it, and keeps a connection that never finishes its
headers for its keep-alive time (an hour by default). The gate runs at ``connection_made``, before a
byte is parsed: a peer outside the allowlist is cut at once, and at :data:`MAX_CONNECTIONS` a newcomer
evicts the oldest connection that has not yet sent a whole request (else it is refused). The header
timeout itself is aiohttp's keep-alive timer, which starts at the connection and is not reset by
trickled bytes (:data:`HEADER_TIMEOUT`, passed by the server). Every refusal is counted by reason and
logged at most once per reason per 10 s (bridge/ratelog.py), as docs/security.md says.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

from ..ratelog import RateLimited
from .options import Access

log = logging.getLogger(__name__)

#: Connections to the web port at once (pages, their assets, WebSockets): far above one person's tabs.
MAX_CONNECTIONS = 64
#: Seconds a connection may take to send a whole request, and may then sit idle between requests.
HEADER_TIMEOUT = 10.0


class Gate:
    """Counts refusals and makes the protocol factory that applies the allowlist and the cap."""

    def __init__(self, access: Access, max_connections: int = MAX_CONNECTIONS) -> None:
        self.access = access
        self.max_connections = max_connections
        self.refused: Counter[str] = Counter()
        """Reason → connections or requests refused (shown in status as ``web.refused``)."""
        self._warn = RateLimited(log)
        self._open: dict[asyncio.Transport, float] = {}
        """Open connections → when they were accepted; removed when they close or send a request."""
        self._spoke: set[asyncio.Transport] = set()

    def refuse(self, reason: str, fmt: str, *args: Any) -> None:
        """Count a refusal and log it, one line per reason per 10 s."""
        self.refused[reason] += 1
        self._warn.warning(reason, "web: " + fmt, *args)

    def spoke(self, transport: Any) -> None:
        """A whole request came on ``transport`` (the middleware calls this): it is no longer a candidate
        for eviction as a connection that never finished its headers."""
        if transport is not None:
            self._spoke.add(transport)

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for ``loop.create_server`` that checks each connection before ``inner``'s
        protocol (aiohttp's request handler) is made and handed the transport."""
        gate = self

        class Door(asyncio.Protocol):
            def connection_made(self, base: asyncio.BaseTransport) -> None:
                transport = cast(asyncio.Transport, base)  # a TCP server's transports are Transports
                peer = transport.get_extra_info("peername")
                host = peer[0] if isinstance(peer, tuple) and peer else None
                if not gate.access.allows_peer(host):
                    gate.refuse("not_allowed", "refused a connection from %s (not in the web allowlist)", host)
                    transport.abort()
                    return
                if not gate.admit(host):
                    transport.abort()
                    return
                gate.track(transport)
                proto = inner()
                transport.set_protocol(proto)
                proto.connection_made(transport)

            def connection_lost(self, exc: Exception | None) -> None:
                """Only a refused connection ends here (an admitted one belongs to aiohttp's handler)."""

        return Door

    def admit(self, host: str | None) -> bool:
        """Room for one more connection: at the cap, evict the oldest that has not sent a request."""
        now = time.monotonic()
        for t in [t for t in self._open if t.is_closing()]:
            del self._open[t]
        self._spoke = {t for t in self._spoke if not t.is_closing()}
        if len(self._open) >= self.max_connections:
            silent = [t for t in self._open if t not in self._spoke]
            if not silent:
                self.refuse("too_many_connections", "refused a connection from %s (%d open, all in use)",
                            host, len(self._open))
                return False
            oldest = min(silent, key=self._open.__getitem__)
            age = now - self._open.pop(oldest)
            self.refuse("evicted", "closed a connection that sent no request for %.1f s (%d open)",
                        age, len(self._open) + 1)
            oldest.abort()
        return True

    def track(self, transport: asyncio.Transport) -> None:
        self._open[transport] = time.monotonic()

    def parse_log(self) -> logging.LoggerAdapter[logging.Logger]:
        """aiohttp's ``logger``: a request it cannot parse (no ``Host``, a bad header…) is one counted,
        rate-limited line, not a traceback per request."""
        return _ParseLog(self)

    def health(self) -> dict[str, Any]:
        return {"connections": sum(1 for t in self._open if not t.is_closing()), "refused": dict(self.refused)}


class _ParseLog(logging.LoggerAdapter[logging.Logger]):
    def __init__(self, gate: Gate) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self.gate = gate

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kw: Any) -> None:
        why = exc_info if isinstance(exc_info, BaseException) else None
        text = " ".join(str(why).split()) if why is not None else str(msg) % args
        self.gate.refuse("bad_request", "refused a request it cannot read: %s", text[:200])

    def error(self, msg: object, *args: object, **kw: Any) -> None:
        if kw.get("exc_info"):
            self.exception(msg, *args, **kw)
        else:
            self.gate.refuse("bad_request", "%s", (str(msg) % args)[:200])
