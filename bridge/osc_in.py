"""The receive loop: the bridge's hot path.

One thread, one non-blocking UDP socket with a large receive buffer, no
per-datagram threads (python-osc's ThreadingOSCUDPServer manages ~7,000 msg/s
here), and ``select`` only when the socket is empty, so a burst is drained with
one ``recvfrom`` per datagram and nothing else between them.

OSC 1.1 over TCP (SLIP framing, for SSH tunnels) is served by the same thread:
its sockets join the idle ``select`` and are polled once per tick during a UDP
burst, so the pipeline (not thread-safe) is fed from one thread only and TCP is
never starved by a UDP flood.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence

from .errors import TrainsoundError
from .pipeline import Pipeline
from .slip import SlipDecoder
from .slip import encode as slip_encode
from .stats import Stats

log = logging.getLogger(__name__)

TICK_INTERVAL = 0.002
MAX_DATAGRAM = 65_535
_ALLOW_CACHE = 4096
TCP_READ = 65_536
TCP_SEND_BUFFER = 1 << 20


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


class TcpPeer:
    """One OSC-over-TCP connection: a SLIP decoder and a bounded, non-blocking way back."""

    def __init__(self, sock: socket.socket, addr: tuple[str, int], max_frame: int) -> None:
        self.sock = sock
        self.addr = addr
        self.decoder = SlipDecoder(max_frame)

    def __str__(self) -> str:
        return (
            f"tcp://[{self.addr[0]}]:{self.addr[1]}" if ":" in self.addr[0] else f"tcp://{self.addr[0]}:{self.addr[1]}"
        )

    def send(self, packet: bytes) -> None:
        """Send a reply; a peer that does not read its replies loses them rather than blocking the bridge."""
        try:
            self.sock.send(slip_encode(packet))
        except OSError as err:
            log.debug("cannot reply to %s: %s", self, err)


class TcpServer:
    """OSC 1.1 stream transport (SLIP framing) on the bridge's host and port, bounded in connections and frame size."""

    def __init__(self, sock: socket.socket, stats: Stats, allow: Allowlist, max_connections: int, max_frame: int):
        self.sock = sock
        self.stats = stats
        self.allow = allow
        self.max_connections = max_connections
        self.max_frame = max_frame
        self.peers: dict[socket.socket, TcpPeer] = {}
        self.accepted = 0
        self.refused = 0

    def sockets(self) -> list[socket.socket]:
        return [self.sock, *self.peers]

    def poll(self, pipeline: Pipeline, now: float, timeout: float = 0.0) -> None:
        """Serve whatever is readable (waiting at most ``timeout``)."""
        try:
            readable, _, _ = select.select(self.sockets(), (), (), timeout)
        except InterruptedError:
            return
        self.serve_readable(readable, pipeline, now)

    def serve_readable(self, readable: Sequence[socket.socket], pipeline: Pipeline, now: float) -> None:
        for s in readable:
            if s is self.sock:
                self._accept()
                continue
            peer = self.peers.get(s)
            if peer is None:
                continue
            try:
                data = s.recv(TCP_READ)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as err:
                log.info("%s: connection error: %s", peer, err)
                data = b""
            if not data:
                self._close(peer)
                continue
            for packet in peer.decoder.feed(data):
                pipeline.feed_datagram(packet, now, peer)
            if peer.decoder.errors:
                for e in peer.decoder.errors:
                    self.stats.datagrams += 1
                    self.stats.drop(e.reason, peer, str(e))
                peer.decoder.errors.clear()

    def _accept(self) -> None:
        try:
            conn, addr = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            # EMFILE and friends: log and go on; the listener stays up.
            log.warning("TCP accept failed: %s", err)
            return
        host = str(addr[0])
        if not self.allow.allows(host):
            self.stats.datagrams += 1
            self.stats.drop("not_allowed", (host, addr[1]), "TCP connection from outside [bridge].allow")
            conn.close()
            return
        if len(self.peers) >= self.max_connections:
            self.refused += 1
            self.stats.drop("tcp_too_many_connections", (host, addr[1]), f"{len(self.peers)} connections already (max)")
            conn.close()
            return
        conn.setblocking(False)
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, TCP_SEND_BUFFER)
        peer = TcpPeer(conn, (host, int(addr[1])), self.max_frame)
        self.peers[conn] = peer
        self.accepted += 1
        log.info("%s: connected (OSC over TCP, SLIP)", peer)

    def _close(self, peer: TcpPeer) -> None:
        self.peers.pop(peer.sock, None)
        with contextlib.suppress(OSError):
            peer.sock.close()
        log.info("%s: disconnected", peer)

    def close(self) -> None:
        for peer in list(self.peers.values()):
            self._close(peer)
        with contextlib.suppress(OSError):
            self.sock.close()

    def health(self) -> dict[str, int]:
        return {"connections": len(self.peers), "accepted": self.accepted, "refused": self.refused}


def open_tcp(host: str, port: int) -> socket.socket:
    """Bind and listen on the TCP side of the bridge's address."""
    sock = _bind(host, port, socket.SOCK_STREAM, [(socket.SO_REUSEADDR, 1)])
    sock.setblocking(False)
    return sock


class UdpReceiver:
    """Feeds datagrams from one UDP socket (and optionally a :class:`TcpServer`) into a :class:`Pipeline`."""

    def __init__(self, sock: socket.socket, pipeline: Pipeline, allow: Allowlist, tcp: TcpServer | None = None) -> None:
        self.sock = sock
        self.pipeline = pipeline
        self.allow = allow
        self.tcp = tcp
        self.stop_event = threading.Event()
        self.address = sock.getsockname()

    def reply(self, data: bytes, to: object) -> None:
        if isinstance(to, TcpPeer):
            to.send(data)
            return
        if not isinstance(to, tuple):
            return
        try:
            self.sock.sendto(data, to)
        except OSError as err:
            log.warning("cannot reply to %s: %s", to, err)

    def serve(self, periodic: Callable[[float], None] | None = None) -> None:
        """Receive until :meth:`stop`; ``periodic(now)`` runs every tick (signals, stats)."""
        sock = self.sock
        recv = sock.recvfrom
        clock = time.time
        next_tick = 0.0
        stop = self.stop_event
        tcp = self.tcp
        while not stop.is_set():
            # Re-read each turn (two attribute loads): a config reload replaces the allowlist.
            pipe, allow = self.pipeline, self.allow
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
                watched = (sock, *tcp.sockets()) if tcp is not None else (sock,)
                try:
                    readable, _, _ = select.select(watched, (), (), wait)
                except InterruptedError:
                    continue
                if tcp is not None and (len(readable) > 1 or (readable and readable[0] is not sock)):
                    tcp.serve_readable([r for r in readable if r is not sock], pipe, clock())
                continue
            except OSError as err:  # e.g. ICMP errors surfaced on some platforms
                log.debug("recvfrom: %s", err)
                continue
            now = clock()
            if not allow.allows(sender[0]):
                pipe.stats.datagrams += 1
                pipe.stats.drop("not_allowed", sender, "sender not in [bridge].allow")
            else:
                pipe.feed_datagram(data, now, sender)
            if now >= next_tick:
                pipe.tick(now)
                if tcp is not None:
                    tcp.poll(pipe, now)  # during a UDP burst TCP still gets a turn every tick
                if periodic is not None:
                    periodic(now)
                next_tick = now + TICK_INTERVAL

    def drain(self, limit: int = 100_000, seconds: float = 0.5) -> int:
        """Feed what already sits in the socket buffers (called on shutdown: a client's last words count)."""
        n = 0
        deadline = time.monotonic() + seconds
        while n < limit and time.monotonic() < deadline:
            try:
                data, sender = self.sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue
            n += 1
            if self.allow.allows(sender[0]):
                self.pipeline.feed_datagram(data, time.time(), sender)
            else:
                self.pipeline.stats.datagrams += 1
                self.pipeline.stats.drop("not_allowed", sender, "sender not in [bridge].allow")
        if self.tcp is not None:
            self.tcp.poll(self.pipeline, time.time())
        return n

    def stop(self) -> None:
        self.stop_event.set()
