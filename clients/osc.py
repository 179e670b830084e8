"""The one sender: encodes trainsound protocol messages (docs/protocol.md) and sends them over UDP.

Built for the training loop: the host is resolved once, the socket is non-blocking, every
message shape is a precomputed byte template plus one ``struct`` call (python-osc's builder
costs ~50x more), and nothing ever raises out of a send: a failed ``sendto`` is counted and
logged once, and the next send tries again.

>>> sanitize("features/0")
'features.0'
>>> sanitize("my run #3")
'my_run__3'
>>> parse_addr("10.0.0.2:9000")
('10.0.0.2', 9000)
"""

from __future__ import annotations

import errno
import functools
import logging
import math
import os
import socket
import struct
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, SupportsFloat

import numpy as np

from .bridge.slip import encode as slip_encode
from .errors import ClientArgumentError

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "ENV_ADDR",
    "EVENT_KINDS",
    "MAX_DATAGRAM",
    "Client",
    "parse_addr",
    "resolve_target",
    "sanitize",
    "send",
]

log = logging.getLogger(__name__)
wire_log = logging.getLogger("trainsound.osc.out")

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 9150
#: ``host:port`` that overrides the default target of every client (an explicit argument wins).
ENV_ADDR: Final = "TRAINSOUND_ADDR"
#: Largest datagram a client sends; a step with more data is split into several bundles.
MAX_DATAGRAM: Final = 60_000
MAX_NAME_BYTES: Final = 128
EVENT_KINDS: Final = frozenset({"start", "end", "epoch", "nan"})

_BAD_CHARS = str.maketrans({c: "_" for c in " #*,?[]{}\x00\t\n\r"} | {"/": "."})
_BUNDLE_HEAD = b"#bundle\x00" + struct.pack(">Q", 1)  # timetag 1: play on arrival
_I32 = struct.Struct(">i")
_F32 = struct.Struct(">f")
_F32X5 = struct.Struct(">5f")
_TAG_F = b",f\x00\x00"
_TAG_FFFFF = b",fffff\x00\x00"
_TAG_I = b",i\x00\x00"
_TAG_II = b",ii\x00"
_TAG_S = b",s\x00\x00"
_TAG_B = b",b\x00\x00"
_FLT_MAX = 3.4028234663852886e38


def sanitize(name: str) -> str:
    """Make ``name`` one legal address segment: ``/`` → ``.``, OSC pattern characters → ``_``, ≤ 128 bytes.

    >>> sanitize("a{b}[c]*?,d")
    'a_b__c____d'
    >>> sanitize("")
    '_'
    >>> len(sanitize("x" * 300).encode())
    128
    """
    clean = str(name).translate(_BAD_CHARS)
    raw = clean.encode("utf-8")
    if len(raw) > MAX_NAME_BYTES:
        clean = raw[:MAX_NAME_BYTES].decode("utf-8", errors="ignore")
    return clean or "_"


def _pad(raw: bytes) -> bytes:
    return raw + b"\x00" * (4 - len(raw) % 4)


def _f32(value: SupportsFloat) -> bytes:
    """float32 big-endian; values beyond float32 range become ±Inf instead of raising."""
    try:
        return _F32.pack(value)
    except (OverflowError, struct.error):
        v = float(value)
        return _F32.pack(math.copysign(math.inf, v) if abs(v) > _FLT_MAX else v)


def _f32x5(values: Sequence[SupportsFloat]) -> bytes:
    try:
        return _F32X5.pack(*values)
    except (OverflowError, struct.error):
        return b"".join(_f32(v) for v in values)


def split_transport(text: str) -> tuple[str, str]:
    """``"tcp://host:port"`` → ``("tcp", "host:port")``; no scheme means UDP.

    >>> split_transport("tcp://127.0.0.1:9150"), split_transport("localhost:9150")
    (('tcp', '127.0.0.1:9150'), ('udp', 'localhost:9150'))
    """
    scheme, sep, rest = text.strip().partition("://")
    if not sep:
        return "udp", text
    if scheme not in ("udp", "tcp"):
        raise ClientArgumentError(f"{ENV_ADDR} scheme must be udp:// or tcp://, got {text!r}")
    return scheme, rest


def parse_addr(text: str, what: str = ENV_ADDR) -> tuple[str, int]:
    """Parse ``host:port`` (``[v6addr]:port`` for IPv6; a ``udp://`` or ``tcp://`` scheme is allowed).

    >>> parse_addr("[::1]:9150")
    ('::1', 9150)
    >>> parse_addr("nonsense")
    Traceback (most recent call last):
    ...
    trainsound.errors.ClientArgumentError: TRAINSOUND_ADDR must be host:port, got 'nonsense'
    """
    host, sep, port = split_transport(text)[1].strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClientArgumentError(f"{what} must be host:port, got {text!r}")
    return host, int(port)


def resolve_target(host: str | None, port: int | None) -> tuple[str, int]:
    """The ``(host, port)`` to send to: explicit arguments, else ``$TRAINSOUND_ADDR``, else 127.0.0.1:9150."""
    env = os.environ.get(ENV_ADDR)
    env_host, env_port = parse_addr(env) if env else (DEFAULT_HOST, DEFAULT_PORT)
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


class _Sender:
    """A resolved destination and a non-blocking UDP socket. ``sendto`` never raises."""

    def __init__(self, host: str, port: int) -> None:
        family, self.target = _resolve(host, port, socket.SOCK_DGRAM)
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        # A client the user never closes must not leak a socket (nor a ResourceWarning).
        self._finalizer = weakref.finalize(self, self.sock.close)
        self.sent = 0
        self.dropped = 0
        self._warned = False

    def sendto(self, data: bytes) -> None:
        try:
            self.sock.sendto(data, self.target)
            self.sent += 1
        except OSError as err:
            self.dropped += 1
            if not self._warned:
                self._warned = True
                log.warning(
                    "trainsound: cannot send to %s:%s (%s); training goes on, further failures are only counted",
                    self.target[0],
                    self.target[1],
                    err,
                )

    def close(self) -> None:
        self._finalizer()


class _TcpSender:
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


def make_sender(host: str, port: int, transport: str) -> _Sender | _TcpSender:
    return _TcpSender(host, port) if transport == "tcp" else _Sender(host, port)


def resolve_transport(transport: str | None) -> str:
    """``udp`` or ``tcp``: the argument, else the scheme of ``$TRAINSOUND_ADDR``, else ``udp``."""
    if transport is None:
        env = os.environ.get(ENV_ADDR)
        transport = split_transport(env)[0] if env else "udp"
    if transport not in ("udp", "tcp"):
        raise ClientArgumentError(f"transport must be 'udp' or 'tcp', got {transport!r}")
    return transport


class Client:
    """Sends one run's telemetry; the messages of a step go out as one bundle.

    Calls between two :meth:`step` calls are collected; ``step(i)`` sends them as one bundle with
    the ``step`` message first (split into several bundles if larger than ~60 KB). :meth:`flush`
    sends what is collected without a step message. No method raises into the training loop.

    Args:
        host: bridge host; default ``$TRAINSOUND_ADDR`` or ``127.0.0.1``. Resolved once, here.
        port: bridge UDP port; default ``$TRAINSOUND_ADDR`` or ``9150``.
        run: run name (the ``<run>`` address segment); sanitised per docs/protocol.md.
        max_datagram: largest datagram to send, in bytes (512..65000).
        transport: ``"udp"`` (default) or ``"tcp"`` (OSC 1.1 SLIP framing, e.g. through an SSH tunnel);
            default: the scheme of ``$TRAINSOUND_ADDR`` (``tcp://host:port``).

    Example:
        >>> c = Client(run="demo", port=9)      # port 9 ("discard"): nothing listens, nothing raises
        >>> c.loss(0.25); c.grad_norms({"fc1": 1.5, "fc2": 0.5}); c.step(1)
        >>> c.close()
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        run: str = "run",
        *,
        max_datagram: int = MAX_DATAGRAM,
        transport: str | None = None,
    ) -> None:
        if not isinstance(run, str) or not run:
            raise ClientArgumentError(f"run must be a non-empty string, got {run!r}")
        if isinstance(max_datagram, bool) or not isinstance(max_datagram, int) or not 512 <= max_datagram <= 65000:
            raise ClientArgumentError(f"max_datagram must be an integer in 512..65000, got {max_datagram!r}")
        self.host, self.port = resolve_target(host, port)
        self.run = sanitize(run)
        self.max_datagram = max_datagram
        self.transport = resolve_transport(transport)
        self._sender = make_sender(self.host, self.port, self.transport)
        self._base = f"/nn/{self.run}/"
        self._pending: list[bytes] = []
        self._templates: dict[tuple[str, str], bytes] = {}
        self.nan_seen = False
        self._closed = False

    # -- counters -----------------------------------------------------------------------------
    @property
    def sent(self) -> int:
        """Datagrams handed to the kernel."""
        return self._sender.sent

    @property
    def dropped(self) -> int:
        """Datagrams whose ``sendto`` failed (counted, never raised)."""
        return self._sender.dropped

    # -- encoding -----------------------------------------------------------------------------
    def _prefix(self, kind: str, name: str, tag: bytes, body_len: int) -> bytes:
        """Bundle-element size + padded address + type tags, cached per (kind, name)."""
        key = (kind, name)
        prefix = self._templates.get(key)
        if prefix is None:
            address = self._base + kind if not name else f"{self._base}{kind}/{sanitize(name)}"
            head = _pad(address.encode("utf-8")) + tag
            prefix = _I32.pack(len(head) + body_len) + head
            if len(self._templates) < 100_000:
                self._templates[key] = prefix
        return prefix

    def _check(self, values: Iterable[float]) -> None:
        if not self.nan_seen and not all(map(math.isfinite, values)):
            self.nan_seen = True
            self._pending.append(self._event_element("nan"))

    def _event_element(self, kind: str) -> bytes:
        head = _pad((self._base + "event").encode()) + _TAG_S + _pad(kind.encode())
        return _I32.pack(len(head)) + head

    # -- the API ------------------------------------------------------------------------------
    def loss(self, value: SupportsFloat) -> None:
        """Collect the step's training loss (``/nn/<run>/loss f``)."""
        v = float(value)
        self._pending.append(self._prefix("loss", "", _TAG_F, 4) + _f32(v))
        self._check((v,))

    def metric(self, name: str, value: SupportsFloat) -> None:
        """Collect any other scalar (``/nn/<run>/metric/<name> f``)."""
        v = float(value)
        self._pending.append(self._prefix("metric", name, _TAG_F, 4) + _f32(v))
        self._check((v,))

    def grad_norms(self, norms: Mapping[str, SupportsFloat]) -> None:
        """Collect per-layer gradient L2 norms (``/nn/<run>/grad_norm/<layer> f``)."""
        out = self._pending
        values = [float(v) for v in norms.values()]
        for layer, v in zip(norms, values, strict=True):
            out.append(self._prefix("grad_norm", layer, _TAG_F, 4) + _f32(v))
        self._check(values)

    def weights(self, stats: Mapping[str, Sequence[SupportsFloat]]) -> None:
        """Collect per-layer weight statistics ``(mean, std, abs_max, norm, update_ratio)``."""
        out = self._pending
        for layer, five in stats.items():
            out.append(self._prefix("weight", layer, _TAG_FFFFF, 20) + _f32x5(five))
            self._check(float(v) for v in five)

    def activation_spectrum(self, layer: str, magnitudes: Any) -> None:
        """Collect a magnitude spectrum (``/nn/<run>/activation_spectrum/<layer> b``, float32 little-endian)."""
        blob = np.ascontiguousarray(magnitudes, dtype="<f4").ravel().tobytes()
        if not blob:
            return
        body = _I32.pack(len(blob)) + blob + b"\x00" * (-len(blob) % 4)
        self._pending.append(self._prefix("activation_spectrum", layer, _TAG_B, len(body)) + body)

    def event(self, kind: str) -> None:
        """Collect an event: ``start``, ``end``, ``epoch`` or ``nan`` (``nan`` is also sent automatically)."""
        if kind not in EVENT_KINDS:
            log.warning("trainsound: unknown event kind %r ignored (want one of %s)", kind, sorted(EVENT_KINDS))
            return
        if kind == "nan":
            if self.nan_seen:
                return
            self.nan_seen = True
        self._pending.append(self._event_element(kind))

    def step(self, i: int, epoch: int | None = None) -> None:
        """A step finished: send everything collected since the last step, ``step`` message first."""
        if epoch is None:
            element = self._prefix("step", "", _TAG_I, 4) + _I32.pack(int(i) & 0x7FFFFFFF)
        else:
            element = self._prefix("step", "", _TAG_II, 8) + _I32.pack(int(i) & 0x7FFFFFFF) + _I32.pack(int(epoch))
        self._pending.insert(0, element)
        self.flush()

    def flush(self) -> None:
        """Send whatever is collected now (as few bundles of at most ``max_datagram`` bytes as possible)."""
        pending = self._pending
        if not pending or self._closed:
            pending.clear()
            return
        self._pending = []
        limit = self.max_datagram
        chunk: list[bytes] = [_BUNDLE_HEAD]
        size = len(_BUNDLE_HEAD)
        for element in pending:
            if size + len(element) > limit and len(chunk) > 1:
                self._sender.sendto(b"".join(chunk))
                chunk, size = [_BUNDLE_HEAD], len(_BUNDLE_HEAD)
            chunk.append(element)
            size += len(element)
        self._sender.sendto(b"".join(chunk))
        if wire_log.isEnabledFor(logging.DEBUG):
            wire_log.debug("run %s: %d message(s) sent", self.run, len(pending))

    def close(self) -> None:
        """Flush and close the socket. Idempotent."""
        if not self._closed:
            self.flush()
            self._closed = True
            self._sender.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Client(host={self.host!r}, port={self.port}, run={self.run!r}, sent={self.sent}, dropped={self.dropped})"
        )


def _encode_arg(arg: object) -> tuple[bytes, bytes]:
    if isinstance(arg, bool) or arg is None:
        raise ClientArgumentError(f"send: cannot encode argument {arg!r} (want int, float, str or bytes)")
    if isinstance(arg, (int, np.integer)):
        return b"i", _I32.pack(int(arg))
    if isinstance(arg, (float, np.floating)):
        return b"f", _f32(float(arg))
    if isinstance(arg, str):
        return b"s", _pad(arg.encode("utf-8"))
    if isinstance(arg, (bytes, bytearray, memoryview)):
        raw = bytes(arg)
        return b"b", _I32.pack(len(raw)) + raw + b"\x00" * (-len(raw) % 4)
    raise ClientArgumentError(f"send: cannot encode argument of type {type(arg).__name__}")


@functools.lru_cache(maxsize=8)
def _shared_sender(host: str, port: int, transport: str) -> _Sender | _TcpSender:
    return make_sender(host, port, transport)


def send(address: str, *args: int | float | str | bytes, host: str | None = None, port: int | None = None) -> None:
    """Send one OSC message now; the shell-like one-liner.

    ``send("/nn/myrun/loss", 0.42)``. The socket and the resolved address are reused across calls.

    Raises:
        ClientArgumentError: the address does not start with ``/`` or an argument cannot be encoded
            (sending itself never raises).
    """
    if not isinstance(address, str) or not address.startswith("/"):
        raise ClientArgumentError(f"address must be a string starting with '/', got {address!r}")
    encoded = [_encode_arg(a) for a in args]
    tags = b"," + b"".join(t for t, _ in encoded)
    data = _pad(address.encode("utf-8")) + _pad(tags) + b"".join(body for _, body in encoded)
    _shared_sender(*resolve_target(host, port), resolve_transport(None)).sendto(data)
