"""Where a client's datagrams go: the target from arguments or ``$TRAINSOUND_ADDR``, resolved once, and two
senders that never block and never raise into the training loop — UDP, and OSC 1.1 over TCP (SLIP) for SSH
tunnels.

>>> parse_addr("10.0.0.2:9000")
('10.0.0.2', 9000)
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import time
import weakref
from collections.abc import Iterator
from typing import Any, Final

from .bridge.errors import AddressError
from .bridge.wire import address
from .bridge.wire.slip import encode as slip_encode
from .errors import ClientArgumentError

__all__ = ["ENV_ADDR", "TO_HELP", "TcpSender", "UdpSender", "choose_bridge", "make_sender", "parse_addr",
           "resolve_target",
           "resolve_transport", "split_transport"]

log = logging.getLogger("trainsound.osc")

#: ``host:port`` that overrides the default target of every client (an explicit argument wins).
ENV_ADDR: Final = address.ENV_ADDR
#: ``--to``'s help in every command that talks to a running bridge (``send``, ``status``).
TO_HELP: Final = address.TO_HELP


@contextlib.contextmanager
def _argument_error() -> Iterator[None]:
    """The address rule's errors as the clients' own: a wrong argument, named."""
    try:
        yield
    except AddressError as err:
        raise ClientArgumentError(str(err)) from None


def split_transport(text: str, what: str = ENV_ADDR) -> tuple[str, str]:
    """``"tcp://host:port"`` → ``("tcp", "host:port")``; no scheme means UDP.

    >>> split_transport("tcp://127.0.0.1:9150"), split_transport("localhost:9150")
    (('tcp', '127.0.0.1:9150'), ('udp', 'localhost:9150'))
    """
    with _argument_error():
        return address.split_transport(text, what)


def parse_addr(text: str, what: str = ENV_ADDR) -> tuple[str, int]:
    """Parse ``host:port`` (``[v6addr]:port`` for IPv6; a ``udp://`` or ``tcp://`` scheme is allowed).

    >>> parse_addr("[::1]:9150")
    ('::1', 9150)
    >>> parse_addr("nonsense")
    Traceback (most recent call last):
    ...
    trainsound.errors.ClientArgumentError: TRAINSOUND_ADDR must be host:port, got 'nonsense'
    """
    with _argument_error():
        return address.parse_addr(text, what)


def choose_bridge(to: str | None = None, what: str = "--to") -> tuple[str, str, int]:
    """Which bridge to talk to (:func:`trainsound.bridge.wire.address.choose_bridge`) → ``(transport, host, port)``.

    >>> choose_bridge("10.0.0.2", "--to")
    Traceback (most recent call last):
    ...
    trainsound.errors.ClientArgumentError: --to must be host:port, got '10.0.0.2'
    """
    with _argument_error():
        return address.choose_bridge(to, what)


def resolve_target(host: str | None, port: int | None) -> tuple[str, int]:
    """The ``(host, port)`` to send to: explicit arguments, else ``$TRAINSOUND_ADDR``, else 127.0.0.1:9150."""
    _, env_host, env_port = choose_bridge(None)
    host = env_host if host is None else host
    port = env_port if port is None else port
    if not isinstance(host, str) or not host:
        raise ClientArgumentError(f"host must be a non-empty string, got {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ClientArgumentError(f"port must be an integer in 1..65535, got {port!r}")
    return host, port


def _resolve(host: str, port: int, kind: socket.SocketKind) -> tuple[socket.AddressFamily, tuple[Any, ...]]:
    """Resolve once, at construction: a name lookup per send would cost more than the send."""
    try:
        infos = socket.getaddrinfo(host, port, type=kind)
    except OSError as err:
        raise ClientArgumentError(f"host {host!r} cannot be resolved: {err}") from err
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


class UdpSender:
    """A resolved destination and a non-blocking, *connected* UDP socket. ``sendto`` never raises.

    Connected, because only a connected UDP socket hears the kernel's ICMP "port unreachable": with no
    bridge listening, the send after the first fails with ECONNREFUSED, which is logged once (logger
    ``trainsound.osc``) and counted in ``dropped`` — the README's "one warning". Nothing is buffered:
    once a bridge listens on the port, the next send arrives.
    """

    def __init__(self, host: str, port: int) -> None:
        family, self.target = _resolve(host, port, socket.SOCK_DGRAM)
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        # A client the user never closes must not leak a socket (nor a ResourceWarning).
        self._finalizer = weakref.finalize(self, self.sock.close)
        try:
            self.sock.connect(self.target)  # UDP connect sends nothing; it only fixes the peer
            self._connected = True
        except OSError:  # e.g. no route yet: fall back to sendto, whose errors are counted the same way
            self._connected = False
        self.sent = 0
        self.dropped = 0
        self._warned = False

    def sendto(self, data: bytes) -> None:
        try:
            if self._connected:
                self.sock.send(data)
            else:
                self.sock.sendto(data, self.target)
            self.sent += 1
        except OSError as err:
            self.dropped += 1
            if not self._warned:
                self._warned = True
                hint = " (is the bridge running?)" if isinstance(err, ConnectionRefusedError) else ""
                log.warning(
                    "trainsound: cannot send to %s:%s: %s%s; training goes on, further failures are only counted",
                    self.target[0],
                    self.target[1],
                    err.strerror or err,
                    hint,
                )

    def close(self) -> None:
        self._finalizer()


class TcpSender:
    """OSC 1.1 over TCP (SLIP framing), for SSH tunnels; never blocks, never raises.

    The socket is non-blocking: frames go into a bounded buffer that is written as far as
    the kernel takes it on every send. While the bridge is unreachable the buffer keeps up
    to ``MAX_BUFFER`` bytes (sent on reconnect, tried at most once a second); beyond it new
    datagrams are dropped and counted. A frame cut by a lost connection is resynchronised by
    SLIP's END bytes on the bridge side.
    """

    RETRY = 1.0
    MAX_BUFFER = 1 << 20

    def __init__(self, host: str, port: int) -> None:
        self.family, self.target = _resolve(host, port, socket.SOCK_STREAM)
        self.sock: socket.socket | None = None
        self._buf = bytearray()
        self._next_try = 0.0
        self.sent = 0
        self.dropped = 0
        self._warned = False
        self._finalizer = weakref.finalize(self, self._close_sock)

    def _warn(self, why: object) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "trainsound: cannot send to tcp://%s:%s (%s); training goes on, data is buffered up to %d bytes",
                self.target[0], self.target[1], why, self.MAX_BUFFER,
            )

    def _close_sock(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _pump(self) -> None:
        if self.sock is None:
            now = time.monotonic()
            if now < self._next_try:
                return
            self._next_try = now + self.RETRY
            sock = socket.socket(self.family, socket.SOCK_STREAM)
            sock.setblocking(False)
            err = sock.connect_ex(self.target)
            if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
                sock.close()
                self._warn(os.strerror(err))
                return
            self.sock = sock
        try:
            n = self.sock.send(self._buf)
        except (BlockingIOError, InterruptedError):
            return  # still connecting, or the kernel's buffer is full: later
        except OSError as err:
            self._close_sock()
            self._warn(err)
            return
        del self._buf[:n]

    def sendto(self, data: bytes) -> None:
        frame = slip_encode(data)
        if len(self._buf) + len(frame) > self.MAX_BUFFER:
            self.dropped += 1
            self._warn("buffer full")
        else:
            self._buf += frame
            self.sent += 1
        self._pump()

    def close(self) -> None:
        self._pump()
        self._finalizer()


def make_sender(host: str, port: int, transport: str) -> UdpSender | TcpSender:
    return TcpSender(host, port) if transport == "tcp" else UdpSender(host, port)


def resolve_transport(transport: str | None) -> str:
    """``udp`` or ``tcp``: the argument, else the scheme of ``$TRAINSOUND_ADDR``, else ``udp``."""
    if transport is None:
        transport = choose_bridge(None)[0]
    if transport not in ("udp", "tcp"):
        raise ClientArgumentError(f"transport must be 'udp' or 'tcp', got {transport!r}")
    return transport
