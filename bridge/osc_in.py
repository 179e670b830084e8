"""The receive loop: the bridge's hot path.

One thread, one non-blocking UDP socket with a large receive buffer, no
per-datagram threads (python-osc's ThreadingOSCUDPServer manages ~7,000 msg/s
here), and ``select`` only when the socket is empty, so a burst is drained with
one ``recvfrom`` per datagram and nothing else between them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence

from .errors import TrainsoundError
from .pipeline import Pipeline

log = logging.getLogger(__name__)

TICK_INTERVAL = 0.002
MAX_DATAGRAM = 65_535
_ALLOW_CACHE = 4096


class ListenError(TrainsoundError, OSError):
    """The bridge cannot bind its listening socket."""


class Allowlist:
    """Sender networks allowed to drive the bridge (CIDR), with a per-address cache.

    >>> Allowlist(["127.0.0.0/8"]).allows("127.0.0.1"), Allowlist(["127.0.0.0/8"]).allows("10.0.0.1")
    (True, False)
    """

    def __init__(self, networks: Sequence[str]) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]
        self._cache: dict[str, bool] = {}

    def allows(self, host: str) -> bool:
        ok = self._cache.get(host)
        if ok is None:
            try:
                addr = ipaddress.ip_address(host.split("%")[0])
            except ValueError:
                ok = False
            else:
                if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
                    addr = addr.ipv4_mapped
                ok = any(addr in n for n in self.networks)
            if len(self._cache) >= _ALLOW_CACHE:
                self._cache.clear()
            self._cache[host] = ok
        return ok


def open_udp(host: str, port: int, rcvbuf: int) -> socket.socket:
    """Bind the UDP socket and raise its receive buffer (logging if the kernel caps it)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as err:
        raise ListenError(f"cannot listen on {host}:{port}: {err.strerror}") from err
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind(addr)
    except OSError as err:
        sock.close()
        raise ListenError(f"cannot listen on udp://{host}:{port}: {err.strerror}") from err
    got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    # Linux reports double the usable size; less than asked means net.core.rmem_max capped it.
    if got < rcvbuf:
        log.warning(
            "UDP receive buffer capped at %d bytes (asked %d): raise net.core.rmem_max for bursts", got // 2, rcvbuf
        )
    sock.setblocking(False)
    return sock


class UdpReceiver:
    """Feeds datagrams from one UDP socket into a :class:`Pipeline` until stopped."""

    def __init__(self, sock: socket.socket, pipeline: Pipeline, allow: Allowlist) -> None:
        self.sock = sock
        self.pipeline = pipeline
        self.allow = allow
        self.stop_event = threading.Event()
        self.address = sock.getsockname()

    def reply(self, data: bytes, to: object) -> None:
        if not isinstance(to, tuple):
            return
        try:
            self.sock.sendto(data, to)
        except OSError as err:
            log.warning("cannot reply to %s: %s", to, err)

    def serve(self, periodic: Callable[[float], None] | None = None) -> None:
        """Receive until :meth:`stop`; ``periodic(now)`` runs every tick (signals, stats)."""
        sock, pipe, allow = self.sock, self.pipeline, self.allow
        recv = sock.recvfrom
        clock = time.time
        stats = pipe.stats
        next_tick = 0.0
        stop = self.stop_event
        while not stop.is_set():
            try:
                data, sender = recv(MAX_DATAGRAM)
            except BlockingIOError:
                now = clock()
                if now >= next_tick:
                    pipe.tick(now)
                    if periodic is not None:
                        periodic(now)
                    next_tick = now + TICK_INTERVAL
                wait = max(0.0, next_tick - clock())
                with contextlib.suppress(InterruptedError):
                    select.select((sock,), (), (), wait)
                continue
            except OSError as err:  # e.g. ICMP errors surfaced on some platforms
                log.debug("recvfrom: %s", err)
                continue
            now = clock()
            if not allow.allows(sender[0]):
                stats.datagrams += 1
                stats.drop("not_allowed", sender, "sender not in [bridge].allow")
            else:
                pipe.feed_datagram(data, now, sender)
            if now >= next_tick:
                pipe.tick(now)
                if periodic is not None:
                    periodic(now)
                next_tick = now + TICK_INTERVAL

    def stop(self) -> None:
        self.stop_event.set()
