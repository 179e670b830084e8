"""A plain UDP receiver for what ``follow`` sends (decoded with the bridge's codec)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support import wait_until

from trainsound.bridge.wire.osc import iter_packet


class Receiver:
    """A real UDP socket on a free port; what arrives is decoded with the bridge's codec."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self.got: list[Any] = []

    def messages(self) -> list[Any]:
        while True:
            try:
                data, _ = self.sock.recvfrom(65536)
            except TimeoutError:
                return self.got
            self.got.extend(m for _, m in iter_packet(data))

    def wait_for(self, pred: Callable[[list[Any]], bool], timeout: float = 2.0) -> list[Any]:
        """The messages once ``pred`` holds of them."""
        got: list[Any] = []

        def check() -> bool:
            got[:] = self.messages()
            return bool(pred(got))

        wait_until(check, timeout, lambda: f"messages as expected (got {got[-6:]})", every=0.0)
        return got


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.sock.close()
