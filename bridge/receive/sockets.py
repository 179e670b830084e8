"""The bridge's sockets: binding (errors name the address), who may send (an allowlist), exposure checks,
and the kernel's drop counter.

>>> Allowlist(["127.0.0.0/8"]).allows("127.0.0.1"), Allowlist(["127.0.0.0/8"]).allows("10.0.0.1")
(True, False)
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
from collections.abc import Sequence

from ..errors import TrainsoundError

log = logging.getLogger(__name__)

_ALLOW_CACHE = 4096


class ListenError(TrainsoundError, OSError):
    """The bridge cannot bind its listening socket."""


class Allowlist:
    """Sender networks allowed to drive the bridge (CIDR), with a per-address cache."""

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


def is_loopback(host: str) -> bool:
    """True if every address ``host`` resolves to is a loopback address.

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except socket.gaierror:
        return False
    addrs = {ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos}
    return bool(addrs) and all(a.is_loopback for a in addrs)


def check_exposure(host: str, allow_explicit: bool) -> None:
    """Refuse to listen beyond loopback unless the sender allowlist was set on purpose.

    OSC has no authentication: anyone who can reach the port can drive the bridge.

    Raises:
        ListenError: naming the flag and the config key that allow it.
    """
    if not allow_explicit and not is_loopback(host):
        raise ListenError(
            f"refusing to listen on {host}, which is not a loopback address, without an explicit sender "
            f"allowlist: give --allow CIDR (e.g. --allow 192.168.1.0/24) or set [bridge].allow in the config"
        )


def kernel_drops(sock: socket.socket) -> int | None:
    """Datagrams the kernel dropped for this UDP socket (receive buffer full), from /proc/net/udp[6]."""
    try:
        inode = os.fstat(sock.fileno()).st_ino
    except OSError:
        return None
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as fh:
                next(fh, None)
                for line in fh:
                    f = line.split()
                    if len(f) >= 13 and f[9] == str(inode):
                        return int(f[12])
        except (OSError, ValueError):
            continue
    return None


def _bind(host: str, port: int, kind: socket.SocketKind, options: list[tuple[int, int]]) -> socket.socket:
    """Resolve ``host:port``, set socket ``options`` and bind; errors name the address."""
    scheme = "udp" if kind == socket.SOCK_DGRAM else "tcp"
    try:
        infos = socket.getaddrinfo(host, port, type=kind)
    except socket.gaierror as err:
        raise ListenError(f"cannot listen on {host}:{port}: {err.strerror}") from err
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, kind)
    try:
        for opt, value in options:
            sock.setsockopt(socket.SOL_SOCKET, opt, value)
        sock.bind(addr)
        if kind == socket.SOCK_STREAM:
            sock.listen(16)
    except OSError as err:
        sock.close()
        hint = ""
        if kind == socket.SOCK_STREAM and err.errno == errno.EADDRINUSE:
            hint = " (set [bridge].tcp = false to serve UDP only)"
        raise ListenError(f"cannot listen on {scheme}://{host}:{port}: {err.strerror}{hint}") from err
    return sock


def open_udp(host: str, port: int, rcvbuf: int) -> socket.socket:
    """Bind the UDP socket and raise its receive buffer (logging if the kernel caps it)."""
    sock = _bind(host, port, socket.SOCK_DGRAM, [(socket.SO_RCVBUF, rcvbuf)])
    got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    # Linux reports double the usable size; less than asked means net.core.rmem_max capped it.
    if got < rcvbuf:
        log.warning(
            "UDP receive buffer capped at %d bytes (asked %d): raise net.core.rmem_max for bursts", got // 2, rcvbuf
        )
    sock.setblocking(False)
    return sock


def open_tcp(host: str, port: int) -> socket.socket:
    """Bind and listen on the TCP side of the bridge's address."""
    sock = _bind(host, port, socket.SOCK_STREAM, [(socket.SO_REUSEADDR, 1)])
    sock.setblocking(False)
    return sock
