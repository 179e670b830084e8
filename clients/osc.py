"""The one sender: encodes trainsound protocol messages (docs/protocol.md) and sends them over UDP.

Built for the training loop: the host is resolved once, the socket is non-blocking, every
message shape is a precomputed byte template (:func:`~trainsound.bridge.wire.osc.element_prefix`)
plus one ``struct`` call (python-osc's builder costs ~50x more), and nothing ever raises out of
a send: a failed ``sendto`` is counted and logged once, and the next send tries again.
The encoder, the protocol's names and limits and the transports are shared with the bridge
(:mod:`trainsound.bridge.wire`, :mod:`.transport`).

>>> sanitize("features/0")
'features.0'
"""

from __future__ import annotations

import functools
import logging
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, SupportsFloat

import numpy as np

from .bridge.wire.osc import I32, bundle_head, element_prefix, encode_message, pack_blob, pack_f32, pad
from .bridge.wire.protocol import DEFAULT_HOST, DEFAULT_PORT, EVENT_KINDS, MAX_UNITS, sanitize
from .errors import ClientArgumentError, Failures
from .transport import (
    ENV_ADDR,
    TcpSender,
    UdpSender,
    make_sender,
    parse_addr,
    resolve_target,
    resolve_transport,
)

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

#: Largest datagram a client sends; a step with more data is split into several bundles.
MAX_DATAGRAM: Final = 60_000
#: Address templates kept per client (a model with more named streams builds the rest each time).
MAX_TEMPLATES: Final = 100_000

_BUNDLE_HEAD = bundle_head()  # timetag 1: play on arrival
_F32X5 = struct.Struct(">5f")


def _f32x5(values: Sequence[SupportsFloat]) -> bytes:
    try:
        return _F32X5.pack(*values)
    except (OverflowError, struct.error):
        return b"".join(pack_f32(v) for v in values)


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
        # Keyed by everything the prefix holds: one address takes several shapes (``step`` with and
        # without its epoch; blobs of different sizes), and a wrong cached size corrupts the bundle.
        self._templates: dict[tuple[str, str, str, int], bytes] = {}
        self.nan_seen = False
        #: What failed inside the training steps of the adapter sending with this client (logged once, counted).
        self.failures = Failures(logging.getLogger("trainsound.adapters"))
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
    def _prefix(self, kind: str, name: str, tags: str, body_len: int) -> bytes:
        """Bundle-element size + padded address + type tags, cached per (kind, name, tags, size)."""
        key = (kind, name, tags, body_len)
        prefix = self._templates.get(key)
        if prefix is None:
            address = self._base + kind if not name else f"{self._base}{kind}/{sanitize(name)}"
            prefix = element_prefix(address, tags, body_len)
            if len(self._templates) < MAX_TEMPLATES:
                self._templates[key] = prefix
        return prefix

    def _check(self, values: Iterable[float]) -> None:
        if not self.nan_seen and not all(map(math.isfinite, values)):
            self.nan_seen = True
            self._pending.append(self._event_element("nan"))

    def _event_element(self, kind: str) -> bytes:
        body = pad(kind.encode())
        return element_prefix(self._base + "event", ",s", len(body)) + body

    # -- the API ------------------------------------------------------------------------------
    def loss(self, value: SupportsFloat) -> None:
        """Collect the step's training loss (``/nn/<run>/loss f``)."""
        v = float(value)
        self._pending.append(self._prefix("loss", "", ",f", 4) + pack_f32(v))
        self._check((v,))

    def metric(self, name: str, value: SupportsFloat) -> None:
        """Collect any other scalar (``/nn/<run>/metric/<name> f``)."""
        v = float(value)
        self._pending.append(self._prefix("metric", name, ",f", 4) + pack_f32(v))
        self._check((v,))

    def grad_norms(self, norms: Mapping[str, SupportsFloat]) -> None:
        """Collect per-layer gradient L2 norms (``/nn/<run>/grad_norm/<layer> f``)."""
        out = self._pending
        values = [float(v) for v in norms.values()]
        for layer, v in zip(norms, values, strict=True):
            out.append(self._prefix("grad_norm", layer, ",f", 4) + pack_f32(v))
        self._check(values)

    def weights(self, stats: Mapping[str, Sequence[SupportsFloat]]) -> None:
        """Collect per-layer weight statistics ``(mean, std, abs_max, norm, update_ratio)``."""
        out = self._pending
        for layer, five in stats.items():
            out.append(self._prefix("weight", layer, ",fffff", 20) + _f32x5(five))
            self._check(float(v) for v in five)

    def activation_spectrum(self, layer: str, magnitudes: Any) -> None:
        """Collect a magnitude spectrum (``/nn/<run>/activation_spectrum/<layer> b``, float32 little-endian)."""
        blob = np.ascontiguousarray(magnitudes, dtype="<f4").ravel().tobytes()
        if not blob:
            return
        body = pack_blob(blob)
        self._pending.append(self._prefix("activation_spectrum", layer, ",b", len(body)) + body)

    def weight_units(self, layer: str, means: Any) -> None:
        """Collect one mean weight per output unit (``/nn/<run>/weight_units/<layer> b``, float32 LE).

        More than :data:`~trainsound.bridge.wire.protocol.MAX_UNITS` units are averaged in contiguous
        groups down to that many (:func:`pool_units`), so the message always fits the protocol.
        """
        units = pool_units(np.asarray(means, dtype=np.float64).ravel())
        if not units.size:
            return
        body = pack_blob(units.astype("<f4").tobytes())
        self._pending.append(self._prefix("weight_units", layer, ",b", len(body)) + body)
        self._check(units.tolist())

    def event(self, kind: str) -> None:
        """Collect an event: ``start``, ``end``, ``epoch``, ``nan`` (also sent automatically) or ``skip``."""
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
            element = self._prefix("step", "", ",i", 4) + I32.pack(int(i) & 0x7FFFFFFF)
        else:
            element = self._prefix("step", "", ",ii", 8) + I32.pack(int(i) & 0x7FFFFFFF) + I32.pack(int(epoch))
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
        """Flush and close the socket (logging how often the adapter failed, if it did). Idempotent."""
        if not self._closed:
            summary = self.failures.summary()
            if summary is not None:  # the repeats were only counted: say how many, once, at the end
                log.warning("trainsound: run %s: %s", self.run, summary)
            self.flush()
            self._closed = True
            self._sender.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Client(host={self.host!r}, port={self.port}, run={self.run!r}, sent={self.sent}, dropped={self.dropped}, "
            f"failures={self.failures.count})"
        )


def pool_units(means: np.ndarray, cap: int = MAX_UNITS) -> np.ndarray:
    """At most ``cap`` values: wider layers averaged over contiguous, near-equal groups of units.

    >>> pool_units(np.arange(10.0), 4).tolist()
    [0.5, 3.0, 5.5, 8.0]
    >>> pool_units(np.arange(3.0), 4).tolist()
    [0.0, 1.0, 2.0]
    """
    n = means.size
    if n <= cap:
        return means
    edges = (np.arange(cap + 1) * n) // cap
    return np.add.reduceat(means, edges[:-1]) / np.diff(edges)


@functools.lru_cache(maxsize=8)
def _shared_sender(host: str, port: int, transport: str) -> UdpSender | TcpSender:
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
    for a in args:
        if isinstance(a, bool) or a is None:
            raise ClientArgumentError(f"send: cannot encode argument {a!r} (want int, float, str or bytes)")
    try:
        data = encode_message(address, args)
    except (TypeError, struct.error) as err:
        raise ClientArgumentError(f"send: {err}") from None
    _shared_sender(*resolve_target(host, port), resolve_transport(None)).sendto(data)
