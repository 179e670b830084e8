"""The one control client: how ``status``, ``top`` and ``learn`` talk to a running bridge.

A control message (``/trainsound/status``, ``/trainsound/snapshot``, ``/trainsound/targets``,
``/trainsound/learn``) gets one JSON reply at ``<address>.reply`` (docs/protocol.md). It goes over TCP
(SLIP) first: the TCP side is served every tick, so the answer does not queue behind a UDP flood; UDP
is the fallback when TCP is off, its request padded to :data:`UDP_REQUEST_SIZE` (the bridge never
answers UDP with more bytes than it was sent). Built and read with the wire codec, like the bridge.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from typing import Any

from ..errors import OSCDecodeError, TrainsoundError
from ..wire.osc import OscArg, decode_message, encode_message
from ..wire.slip import SlipDecoder
from ..wire.slip import encode as slip_encode

#: Over UDP a reply is never larger than its request (no reflection amplifier, docs/security.md): the UDP
#: fallback pads its request with a blob so the whole reply fits.
UDP_REQUEST_SIZE = 60_000
#: The largest reply frame taken over TCP.
MAX_REPLY = 1 << 22
#: One UDP attempt's wait: UDP may lose a datagram during a flood, so the request is sent again.
UDP_RETRY = 0.25


def reply_json(packet: bytes, reply: str) -> Any:
    """The JSON in a ``reply`` datagram, or ``None`` if it is something else.

    >>> reply_json(encode_message("/trainsound/status.reply", ['{"ok": true}']), "/trainsound/status.reply")
    {'ok': True}
    >>> reply_json(b"junk", "/trainsound/status.reply") is None
    True
    """
    try:
        address, args = decode_message(packet)
    except OSCDecodeError:
        return None
    if address != reply or not args or not isinstance(args[0], str):
        return None
    return json.loads(args[0])


class ControlClient:
    """Asks one bridge control questions: TCP (SLIP) first, the connection kept open between questions
    (``trainsound top`` asks every second); UDP when TCP is refused."""

    def __init__(self, host: str, port: int, timeout: float = 2.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.conn: socket.socket | None = None
        self.decoder = SlipDecoder(MAX_REPLY)

    def ask(self, address: str, args: tuple[OscArg, ...] = ()) -> Any:
        """The JSON of ``address``'s reply; ``None`` if no bridge answered within the timeout.

        Raises:
            TrainsoundError: the bridge's address cannot be reached at all (no route, bad host).
        """
        result = self.tcp(address, args)
        return result if result is not None else self.udp(address, args)

    def tcp(self, address: str, args: tuple[OscArg, ...] = ()) -> Any:
        """Over OSC-over-TCP only; ``None`` if nothing answers on TCP."""
        if self.conn is None:
            try:
                self.conn = socket.create_connection((self.host, self.port), timeout=self.timeout)
            except OSError:
                return None
            self.decoder = SlipDecoder(MAX_REPLY)
        conn, reply = self.conn, f"{address}.reply"
        try:
            conn.settimeout(self.timeout)
            conn.sendall(slip_encode(encode_message(address, args)))
            deadline = time.monotonic() + self.timeout
            while time.monotonic() < deadline:
                data = conn.recv(1 << 16)
                if not data:
                    break
                for packet in self.decoder.feed(data):
                    result = reply_json(packet, reply)
                    if result is not None:
                        return result
        except OSError:
            pass
        self.close()
        return None

    def udp(self, address: str, args: tuple[OscArg, ...] = ()) -> Any:
        """Over UDP, the request padded and sent again every :data:`UDP_RETRY` s; ``None`` on no answer."""
        padded, reply = encode_message(address, (*args, bytes(UDP_REQUEST_SIZE))), f"{address}.reply"
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(min(UDP_RETRY, self.timeout))
            deadline = time.monotonic() + self.timeout
            while time.monotonic() < deadline:
                try:
                    s.sendto(padded, (self.host, self.port))
                    while True:
                        data, _ = s.recvfrom(1 << 17)
                        result = reply_json(data, reply)
                        if result is not None:
                            return result
                except (TimeoutError, ConnectionRefusedError, ValueError):
                    continue  # retry: UDP may lose a datagram during a flood
                except OSError as err:
                    raise TrainsoundError(f"cannot reach the bridge at {self.host}:{self.port}: "
                                          f"{err.strerror}") from err
        return None

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.close()
            self.conn = None

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ask(host: str, port: int, address: str, args: tuple[OscArg, ...] = (), timeout: float = 2.0) -> Any:
    """Send control message ``address`` (TCP first, then UDP) and return the JSON of its ``.reply``.

    Raises:
        TrainsoundError: no reply within ``timeout`` (the bridge is not running there).
    """
    with ControlClient(host, port, timeout) as client:
        result = client.ask(address, args)
    if result is None:
        raise TrainsoundError(f"no answer from a bridge at {host}:{port} within {timeout:g} s (is it running?)")
    return result
