"""The ``osc`` output: mapped values, alarms and ticks forwarded to any OSC target.

Default target: SuperCollider's language port, ``127.0.0.1:57120``
(``patches/supercollider/trainsound.scd`` plays it). One datagram per message,
sent from a non-blocking UDP socket whose target address is resolved once at
start; a send that fails (peer gone, buffer full) is counted, logged
rate-limited and never raised into the receive loop.

Addresses (``prefix`` defaults to ``/trainsound``; docs/patches.md has the table):

- ``/trainsound/value s:run s:name i:voice f:norm f:raw s:kind s:rule`` — one
  mapped value: ``name`` is the layer or metric (``""`` for loss), ``voice`` the
  stream's first-seen index, ``norm`` 0..1, ``raw`` the telemetry value, ``kind``
  the event kind (``grad_norm``, ``loss``, ``weight`` …), ``rule`` the mapping
  rule's name.
- ``/trainsound/alarm s:run s:name s:kind i:step`` — an alarm: ``kind`` is the
  fault (``spike``, ``plateau``, ``divergence``, ``exploding``, ``vanishing``,
  ``dead``, ``nan``; docs/alarms.md), ``name`` the stream (``loss``, a layer,
  ``""`` for the whole run), ``step`` the run's step (−1 unknown).
- ``/trainsound/tick s:run s:kind i:step`` — a context tick: ``epoch`` or ``lr``.
- ``/trainsound/step s:run i:step i:epoch`` — a training step (epoch −1 when not sent).
- ``/trainsound/spectrum s:run s:layer b:magnitudes`` — an activation spectrum,
  float32 little-endian, lowest bin first (as received).
- ``/trainsound/deviation s:run s:name i:voice f:deviation f:value f:reference i:step s:rule`` — with
  ``--reference`` (docs/compare.md), after each mapped value that has one: the run's deviation from the
  reference in decades (``log10(value/reference)``), both raw values, the run's step; ``name`` is the
  stream without its run (a layer, a voice group, ``""`` for the loss).

Wide numbers are forwarded, not clamped and not counted as errors: a step or epoch outside int32 goes
as ``h`` (int64), a ``raw`` value outside float32's normal range (beyond ±3.4e38, or nonzero below
1.2e-38) as ``d`` (float64); every other message keeps the narrow tags above.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..config import Config, output_options
from ..errors import ConfigError, OutputUnavailable
from ..mapped import Mapped
from ..mapping.deviation import Aligner, Reference, stream_key
from ..table import Table, parse_hostport
from ..wire.osc import I32, encode_message, pack_f32, pad
from ..wire.protocol import Event
from .base import BaseOutput
from .flags import DEFAULT_OSC_OUT_PORT

log = logging.getLogger(__name__)

DEFAULT_TARGET = ("127.0.0.1", DEFAULT_OSC_OUT_PORT)
DEFAULT_PREFIX = "/trainsound"
#: Large enough for a burst of a few thousand small datagrams when the peer is slow to read.
SNDBUF = 1 << 20
_I64 = struct.Struct(">q")
_F64 = struct.Struct(">d")
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
FLT_MAX = 3.4028234663852886e38
FLT_MIN = 1.1754943508222875e-38
"""float32's largest and smallest normal magnitudes: outside them a value goes as float64."""


def int_arg(v: int) -> tuple[str, bytes]:
    """An integer as ``i`` when it fits int32, else ``h`` (clamped to int64, the widest OSC integer).

    >>> int_arg(7), int_arg(2**31)[0], int_arg(2**70) == int_arg(INT64_MAX)
    (('i', b'\\x00\\x00\\x00\\x07'), 'h', True)
    """
    if INT32_MIN <= v <= INT32_MAX:
        return "i", I32.pack(v)
    return "h", _I64.pack(min(max(v, INT64_MIN), INT64_MAX))


def real_arg(v: float) -> tuple[str, bytes]:
    """A real as ``f`` when float32 holds it, else ``d``: 1e39 or 1e-40 keep their value, not ±Inf or 0.

    >>> real_arg(0.5)[0], real_arg(1e39)[0], real_arg(-1e-40)[0], real_arg(0.0)[0]
    ('f', 'd', 'd', 'f')
    """
    a = abs(v)
    if a > FLT_MAX or 0.0 < a < FLT_MIN:
        return "d", _F64.pack(v)
    return "f", pack_f32(v)


def typed_arg(a: str | int | float) -> tuple[str, bytes]:
    """One argument in the narrowest OSC type that keeps its value: ``s``, ``i``/``h``, ``f``/``d``."""
    if isinstance(a, str):
        return "s", pad(a.encode("utf-8"))
    if isinstance(a, int):
        return int_arg(a)
    return real_arg(a)


def encode_typed(address: str, args: Sequence[str | int | float]) -> bytes:
    """An OSC message whose numbers widen to ``h``/``d`` where ``i``/``f`` would lose them.

    >>> encode_typed("/s", ["r", 2**31, -1])[:12]
    b'/s\\x00\\x00,shi\\x00\\x00\\x00\\x00'
    """
    pairs = [typed_arg(a) for a in args]
    tags = "," + "".join(tag for tag, _ in pairs)
    return pad(address.encode("utf-8")) + pad(tags.encode()) + b"".join(data for _, data in pairs)


@dataclass(frozen=True)
class OscOutOptions:
    """The ``[osc_out]`` config table."""

    target: tuple[str, int] = DEFAULT_TARGET
    prefix: str = DEFAULT_PREFIX
    spectra: bool = True
    """Forward activation spectra (blobs can be large; a peer that ignores them may turn this off)."""
    steps: bool = True


def section(t: Table) -> OscOutOptions:
    """Validate the ``[osc_out]`` table: ``target = "HOST:PORT"``, ``prefix``, ``spectra``, ``steps``."""
    target = parse_hostport(t.string("target", f"{DEFAULT_TARGET[0]}:{DEFAULT_TARGET[1]}"), t.key("target"))
    prefix = t.string("prefix", DEFAULT_PREFIX)
    if not prefix.startswith("/") or prefix.endswith("/") or any(c in prefix for c in " #*,?[]{}"):
        raise ConfigError(f"{t.key('prefix')} must be an OSC address like /trainsound, got {prefix!r}")
    opts = OscOutOptions(
        target=target, prefix=prefix, spectra=t.boolean("spectra", True), steps=t.boolean("steps", True)
    )
    t.finish()
    return opts


class OscOut(BaseOutput):
    """Forwards mapped values, alarms, steps and spectra to one OSC peer over UDP.

    Args:
        config: the bridge config; its ``[osc_out]`` table gives the defaults.
        target: ``(host, port)``; overrides ``[osc_out].target``.
        prefix: address prefix; overrides ``[osc_out].prefix``.

    Raises:
        OutputUnavailable: the host name does not resolve.
    """

    name = "osc"
    silences = True

    def __init__(self, config: Config, target: tuple[str, int] | None = None, prefix: str | None = None) -> None:
        opts: OscOutOptions = output_options(config, "osc_out", OscOutOptions())
        self.opts = opts
        host, port = target or opts.target
        self.target = (host, int(port))
        try:
            # Resolve once: a name lookup per send costs 3× the send (docs/architecture.md).
            family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        except (socket.gaierror, UnicodeError) as err:
            raise OutputUnavailable(f"OSC out target {host}:{port} does not resolve: {err}") from err
        self.addr = addr
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        with contextlib.suppress(OSError):  # a capped buffer only means more counted send errors in bursts
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
        p = prefix or opts.prefix
        self._value, self._alarm = f"{p}/value", f"{p}/alarm"
        self._step, self._spectrum, self._ticks = f"{p}/step", f"{p}/spectrum", f"{p}/tick"
        self._rule_kind = [r.kind for r in config.mappings]
        self._deviation = f"{p}/deviation"
        ref: Reference | None = output_options(config, "reference", None)
        self.aligner = Aligner(ref, config.mappings) if ref is not None else None
        self.sent = 0
        self.send_errors = 0
        self.last_error = ""

    # Encoded with the bridge's struct codec, not python-osc: this runs on the receive thread for every
    # mapped value, and python-osc's builder took 11.8 µs for a value message against 2.1 µs here
    # (bench/bench_codec.py, 2026-11-30).
    def _send(self, data: bytes) -> None:
        try:
            self.sock.sendto(data, self.addr)
            self.sent += 1
        except OSError as err:  # BlockingIOError (buffer full), ECONNREFUSED (no peer yet) …
            self.send_errors += 1
            self.last_error = f"{type(err).__name__}: {err}"
            n = self.send_errors
            if n & (n - 1) == 0:  # 1, 2, 4, 8 …: rate-limited without a clock
                log.warning("OSC out to %s:%d: send failed (%d so far): %s", *self.target, n, self.last_error)

    def _handle(self, event: Event | None, mapped: Sequence[Mapped]) -> None:
        """Encode and send; never blocks, never raises for network trouble."""
        for m in mapped:
            if event is not None:
                kind, name = event.kind, event.name
            else:  # released late by a rate limit: rebuild what the event would have said
                kind = self._rule_kind[m.rule] if 0 <= m.rule < len(self._rule_kind) else ""
                name = m.stream[-1] if len(m.stream) > 1 else ""
            if m.alarm:
                if m.midi:  # the alarms' hold-off and rate limit: only "loud" alarms carry MIDI bytes
                    # Rare, and the step may be int64: the typed encoder.
                    self._send(encode_typed(self._alarm, [m.run, m.rule_name, m.kind, m.step]))
            elif m.tick:
                self._send(encode_typed(self._ticks, [m.run, m.kind, m.step]))
            else:
                raw = m.value if math.isfinite(m.value) else 0.0
                args: list[str | int | float] = [m.run, name, m.voice, m.norm, raw, kind, m.rule_name]
                a = abs(raw)
                # Rare: the fast encoder's float32 would turn such a value into ±Inf or 0.
                wide = a > FLT_MAX or 0.0 < a < FLT_MIN
                self._send(encode_typed(self._value, args) if wide else encode_message(self._value, args))
        if self.aligner is not None:
            for x in self.aligner.apply(event, mapped):
                m = x.m
                key = stream_key(m, self.aligner.runs_at)[1]
                self._send(encode_typed(self._deviation, [m.run, "/".join(key), m.voice, x.deviation, m.value,
                                                          x.ref_value, x.step, m.rule_name]))
        if event is None:
            return
        if event.kind == "step" and self.opts.steps:
            epoch = int(event.values[1]) if len(event.values) > 1 else -1
            # int64 steps arrive (``h``): sent as ``h`` where ``i`` would overflow.
            self._send(encode_typed(self._step, [event.run, int(event.values[0]), epoch]))
        elif event.kind == "activation_spectrum" and self.opts.spectra and event.blob is not None:
            self._send(encode_message(self._spectrum, [event.run, event.name, event.blob]))

    def _close(self) -> None:
        self.sock.close()

    def health(self) -> dict[str, Any]:
        return {
            "ok": self.send_errors == 0 or self.sent > 0,
            "target": f"{self.target[0]}:{self.target[1]}",
            "sent": self.sent,
            "send_errors": self.send_errors,
            "last_error": self.last_error,
        }
