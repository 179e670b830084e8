"""Fixtures for the training-client tests: a plain UDP receiver and the seed CNN."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from trainsound.bridge.osc_codec import OscArg, iter_packet


class Receiver:
    """A real UDP socket on a free port that decodes what arrives with the bridge's codec."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.3)
        self.port: int = self.sock.getsockname()[1]
        self.datagrams: list[bytes] = []

    def messages(self) -> list[tuple[str, tuple[OscArg, ...]]]:
        """Everything received so far, bundles unpacked, in order."""
        while True:
            try:
                data, _ = self.sock.recvfrom(65536)
            except TimeoutError:
                break
            self.datagrams.append(data)
        return [m for d in self.datagrams for _, m in iter_packet(d, None)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.sock.close()


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port
