"""The receive loop: the bridge's hot path.

One thread, one non-blocking UDP socket with a large receive buffer, no
per-datagram threads (python-osc's ThreadingOSCUDPServer manages ~7,000 msg/s
here), and ``select`` only when the socket is empty, so a burst is drained with
one ``recvfrom`` per datagram and nothing else between them.

OSC 1.1 over TCP (SLIP framing, for SSH tunnels) is served by the same thread:
its sockets join the idle ``select`` and are polled once per tick during a UDP
burst, so the pipeline (not thread-safe) is fed from one thread only and TCP is
never starved by a UDP flood.

Control messages (``/trainsound/status``, ``/trainsound/ping``) that come alone in
a datagram are answered here, on the transport they came by, by the ``control``
function the daemon gives; they never enter the pipeline. Over UDP, whose sender
address can be forged, a reply is never larger than its request (``control`` is
told the limit) and replies share one global rate limit, so the bridge cannot be
used as a reflection amplifier (docs/security.md).

Hostile TCP peers are bounded too: each gets at most ``TCP_TURN_BYTES`` per turn of
the loop; idle (no whole frame: trickled bytes do not count) for ``[bridge].tcp_idle`` s, or
``TCP_FIRST_FRAME`` s after connecting, a connection is closed; at the cap a newcomer evicts the
idlest if idle ``TCP_EVICT_IDLE`` s; a failed ``accept`` (EMFILE) pauses the listener. Control
replies have one budget over both transports (:mod:`.budget`).
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from ..errors import OSCDecodeError
from ..ratelog import RateLimited
from ..wire.osc import OscArg, decode_message
from ..wire.protocol import CONTROL_ADDRESSES, CONTROL_PREFIX
from ..wire.slip import SlipDecoder
from ..wire.slip import encode as slip_encode
from .budget import ReplyBudget
from .sockets import Allowlist
from .stats import Stats

log = logging.getLogger(__name__)

#: A control message's answer: ``control(address, args, limit, sender)`` → the reply datagram (at most
#: ``limit`` bytes when ``limit`` is not ``None``), ``None`` if the message is unknown, or
#: :data:`DEFERRED` when the control sends it later itself (a reply too slow to build on this thread).
Control = Callable[[str, tuple[OscArg, ...], "int | None", object], "bytes | None"]
DEFERRED = b""
Feed = Callable[[bytes, float, object], None]

MAX_DATAGRAM = 65_535
_CONTROL = CONTROL_PREFIX.encode()
_PING = CONTROL_PREFIX + "ping"
TCP_SEND_BUFFER = 1 << 20
#: Bytes read from one TCP peer per turn of the loop: no peer takes more than its share, UDP is served between.
TCP_TURN_BYTES = 16_384
#: A new connection at the cap evicts the idlest peer if that one has been silent this long.
TCP_EVICT_IDLE = 2.0
#: A connection that has not sent one whole frame this long after connecting is closed (a header timeout).
TCP_FIRST_FRAME = 10.0
#: After a failed accept (EMFILE: out of descriptors) the listener is left alone this long, doubling up to 1 s.
ACCEPT_BACKOFF = 0.05
ACCEPT_BACKOFF_MAX = 1.0
_warn = RateLimited(log)


class TcpPeer:
    """One OSC-over-TCP connection: a SLIP decoder and a bounded, non-blocking way back."""

    def __init__(self, sock: socket.socket, addr: tuple[str, int], max_frame: int, now: float = 0.0) -> None:
        self.sock = sock
        self.addr = addr
        self.decoder = SlipDecoder(max_frame)
        self.last = now
        """When it last sent something (accept time at first): what the idle timeout and eviction look at."""
        self.frames = 0
        """Frames it sent that were not control messages: a sender's, logged at INFO; a status poll stays DEBUG."""
        self.whole = 0  # whole frames of any kind: a peer that never completes one is idle however it trickles

    def __str__(self) -> str:
        return (
            f"tcp://[{self.addr[0]}]:{self.addr[1]}" if ":" in self.addr[0] else f"tcp://{self.addr[0]}:{self.addr[1]}"
        )

    def send(self, packet: bytes) -> None:
        """Send a reply; a peer not reading its replies loses them (half a frame sent ends the connection)."""
        frame = slip_encode(packet)
        try:
            sent = self.sock.send(frame)
        except OSError as err:
            log.debug("cannot reply to %s: %s", self, err)
            return
        if sent < len(frame):
            log.info("%s: not reading its replies (%d of %d bytes sent): closing", self, sent, len(frame))
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)  # its next read sees the end and the server closes it


class TcpServer:
    """OSC 1.1 stream transport (SLIP framing) on the bridge's host and port, bounded in connections and frame size."""

    def __init__(self, sock: socket.socket, stats: Stats, allow: Allowlist, max_connections: int, max_frame: int,
                 idle: float = 300.0):
        self.sock = sock
        self.stats = stats
        self.allow = allow
        self.max_connections = max_connections
        self.max_frame = max_frame
        self.idle = idle
        """Seconds a connection may stay silent before it is closed (0: never)."""
        self.peers: dict[socket.socket, TcpPeer] = {}
        self.accepted = 0
        self.refused = 0
        self.evicted = 0
        self.timed_out = 0
        self.accept_failed = 0
        self._next_sweep = 0.0
        self._paused_until = 0.0
        self._backoff = ACCEPT_BACKOFF

    def sockets(self) -> list[socket.socket]:
        """The peers, and the listener unless paused (after a failed accept it stays readable: a spin)."""
        if self._paused_until and time.time() < self._paused_until:
            return list(self.peers)
        return [self.sock, *self.peers]

    def poll(self, feed: Feed, now: float, timeout: float = 0.0) -> None:
        """Serve whatever is readable (waiting at most ``timeout``)."""
        try:
            readable, _, _ = select.select(self.sockets(), (), (), timeout)
        except InterruptedError:
            return
        self.serve_readable(readable, feed, now)

    def serve_readable(self, readable: Sequence[socket.socket], feed: Feed, now: float) -> None:
        if now >= self._next_sweep:
            self.sweep(now)
        for s in readable:
            if s is self.sock:
                self._accept(now)
                continue
            peer = self.peers.get(s)
            if peer is None:
                continue
            try:
                data = s.recv(TCP_TURN_BYTES)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as err:
                log.info("%s: connection error: %s", peer, err)
                data = b""
            if not data:
                self._close(peer)
                continue
            packets = peer.decoder.feed(data)
            if packets:  # activity is whole frames: bytes trickled without one keep a peer idle (issue 28, item 9)
                peer.last = now
                peer.whole += len(packets)
            for packet in packets:
                if not packet.startswith(_CONTROL):
                    if not peer.frames:
                        log.info("%s: sending (OSC over TCP, SLIP)", peer)
                    peer.frames += 1
                feed(packet, now, peer)
            if peer.decoder.errors:
                for e in peer.decoder.errors:
                    self.stats.datagrams += 1
                    self.stats.drop(e.reason, peer, str(e))
                peer.decoder.errors.clear()

    def sweep(self, now: float) -> None:
        """Close connections idle ``idle`` s, or frameless :data:`TCP_FIRST_FRAME` s (at most once a second)."""
        self._next_sweep = now + 1.0
        for peer in list(self.peers.values()):
            if not peer.whole and now - peer.last > TCP_FIRST_FRAME:
                self.timed_out += 1
                self.stats.note("tcp_no_frame", peer, f"no whole frame {TCP_FIRST_FRAME:g} s after connecting")
                self._close(peer)
            elif self.idle and now - peer.last > self.idle:
                self.timed_out += 1
                self.stats.note("tcp_idle_closed", peer, f"no frame for {now - peer.last:.0f} s ([bridge].tcp_idle)")
                self._close(peer)

    def _make_room(self, now: float) -> bool:
        """At the cap: evict the idlest connection if it has been silent ``TCP_EVICT_IDLE`` s; True if room."""
        if len(self.peers) < self.max_connections:
            return True
        idlest = min(self.peers.values(), key=lambda p: p.last, default=None)
        if idlest is None or now - idlest.last < TCP_EVICT_IDLE:
            return False
        self.evicted += 1
        self.stats.note("tcp_evicted", idlest, f"idlest connection (silent {now - idlest.last:.1f} s) made room")
        self._close(idlest)
        return True

    def _accept(self, now: float) -> None:
        try:
            conn, addr = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            # EMFILE: the connection stays queued, the listener readable: pause it (doubling), count, log rate-limited.
            self.accept_failed += 1
            self._paused_until = now + self._backoff
            self._backoff = min(ACCEPT_BACKOFF_MAX, self._backoff * 2)
            self.stats.note("tcp_accept_failed", self.sock.getsockname(), f"TCP accept failed: {err.strerror or err} "
                            f"(listener paused {self._paused_until - now:.2f} s)")
            return
        self._backoff = ACCEPT_BACKOFF
        host = str(addr[0])
        if not self.allow.allows(host):
            self.stats.datagrams += 1
            self.stats.drop("not_allowed", (host, addr[1]), "TCP connection from outside [bridge].allow")
            conn.close()
            return
        if not self._make_room(now):
            self.refused += 1
            self.stats.drop("tcp_too_many_connections", (host, addr[1]), f"{len(self.peers)} connections already (max)")
            conn.close()
            return
        conn.setblocking(False)
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, TCP_SEND_BUFFER)
        peer = TcpPeer(conn, (host, int(addr[1])), self.max_frame, now)
        self.peers[conn] = peer
        self.accepted += 1
        # DEBUG: `trainsound status` connects for every query; a sender is logged at its first frame.
        log.debug("%s: connected (OSC over TCP, SLIP)", peer)

    def _close(self, peer: TcpPeer) -> None:
        self.peers.pop(peer.sock, None)
        with contextlib.suppress(OSError):
            peer.sock.close()
        log.log(logging.INFO if peer.frames else logging.DEBUG, "%s: disconnected (%d frames)", peer, peer.frames)

    def close(self) -> None:
        for peer in list(self.peers.values()):
            self._close(peer)
        with contextlib.suppress(OSError):
            self.sock.close()

    def health(self) -> dict[str, int]:
        return {"connections": len(self.peers), "accepted": self.accepted, "refused": self.refused,
                "evicted": self.evicted, "idle_closed": self.timed_out, "accept_failed": self.accept_failed}


class Pipeline(Protocol):
    """What the receive loop feeds: :class:`trainsound.bridge.pipeline.Pipeline` (or anything alike)."""

    stats: Stats
    tick_interval: float
    """Seconds between two ticks (2 ms when an output sounds, 50 ms when only files and the feed listen)."""

    def feed_datagram(self, data: bytes, now: float, sender: object = None) -> None: ...
    def tick(self, now: float) -> None: ...


class UdpReceiver:
    """Feeds datagrams from one UDP socket (and optionally a :class:`TcpServer`) into a :class:`Pipeline`,
    answering control messages with ``control``."""

    def __init__(self, sock: socket.socket, pipeline: Pipeline, allow: Allowlist, tcp: TcpServer | None = None,
                 control: Control | None = None) -> None:
        self.sock = sock
        self.pipeline = pipeline
        self.allow = allow
        self.tcp = tcp
        self.control = control
        self.stop_event = threading.Event()
        self.address = sock.getsockname()
        self.replies = {"UDP": ReplyBudget("UDP"), "TCP": ReplyBudget("TCP")}  # global and per peer each

    def feed(self, data: bytes, now: float, sender: object) -> None:
        """One datagram (or TCP frame) from an allowed sender: a control message, or the pipeline's."""
        if data.startswith(_CONTROL):
            self._control(data, sender)
        else:
            self.pipeline.feed_datagram(data, now, sender)

    def _control(self, data: bytes, sender: object) -> None:
        stats = self.pipeline.stats
        stats.datagrams += 1
        try:
            address, args = decode_message(data)
        except OSCDecodeError as err:
            stats.drop(err.reason, sender, f"{err} ({len(data)} bytes)")
            return
        stats.received += 1
        if address not in CONTROL_ADDRESSES:  # spends no budget: counted for what it is (issue 28, item 12)
            stats.drop("unknown_control", sender, f"{address}: unknown control message")
            return
        udp = not isinstance(sender, TcpPeer)
        # Budget first (a flood costs no status building), as over UDP so over TCP; UDP: no larger than asked.
        budget = self.replies["UDP" if udp else "TCP"]
        spent = budget.take(sender.addr if isinstance(sender, TcpPeer) else sender, address == _PING)
        if spent:
            stats.note("reply_rate_limited", sender, f"{address}: {budget.why(spent)}")
            return
        limit = len(data) if udp else None
        reply = self.control(address, args, limit, sender) if self.control is not None else None
        if reply is None:
            stats.drop("unknown_control", sender, f"{address}: unknown control message")
            return
        if reply is DEFERRED or not reply:  # the control sends it when it is built
            return
        if limit is not None and len(reply) > limit:
            stats.note("reply_too_large", sender, f"{address}: no reply fits a {limit}-byte request")
            return
        self.reply(reply, sender)

    def reply(self, data: bytes, to: object) -> None:
        if isinstance(to, TcpPeer):
            to.send(data)
            return
        if not isinstance(to, tuple):
            return
        try:
            self.sock.sendto(data, to)
        except OSError as err:
            _warn.warning("reply", "cannot reply to %s: %s", to, err)

    def serve(self, periodic: Callable[[float], None] | None = None) -> None:
        """Receive until :meth:`stop`; ``periodic(now)`` runs every tick (signals, stats)."""
        sock = self.sock
        recv = sock.recvfrom
        clock = time.time
        next_tick = 0.0
        stop = self.stop_event
        tcp = self.tcp
        feed = self.feed
        control = _CONTROL
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
                    next_tick = now + pipe.tick_interval
                wait = max(0.0, next_tick - clock())
                watched = (sock, *tcp.sockets()) if tcp is not None else (sock,)
                try:
                    readable, _, _ = select.select(watched, (), (), wait)
                except InterruptedError:
                    continue
                if tcp is not None:  # even with nothing readable: its idle sweep runs from here
                    tcp.serve_readable([r for r in readable if r is not sock], feed, clock())
                continue
            except OSError as err:  # e.g. ICMP errors surfaced on some platforms
                log.debug("recvfrom: %s", err)
                continue
            now = clock()
            if not allow.allows(sender[0]):
                pipe.stats.datagrams += 1
                pipe.stats.drop("not_allowed", sender, "sender not in [bridge].allow")
            elif data.startswith(control):  # self.feed(), inlined: one call less per datagram here
                self._control(data, sender)
            else:
                pipe.feed_datagram(data, now, sender)
            if now >= next_tick:
                pipe.tick(now)
                if tcp is not None:
                    tcp.poll(feed, now)  # during a UDP burst TCP still gets a turn every tick
                if periodic is not None:
                    periodic(now)
                next_tick = now + pipe.tick_interval

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
                self.feed(data, time.time(), sender)
            else:
                self.pipeline.stats.datagrams += 1
                self.pipeline.stats.drop("not_allowed", sender, "sender not in [bridge].allow")
        if self.tcp is not None:
            self.tcp.poll(self.feed, time.time())
        return n

    def stop(self) -> None:
        self.stop_event.set()
