"""Fixtures for the training-client tests: a plain UDP receiver and the seed CNN."""

from __future__ import annotations

import socket
import types
from collections.abc import Iterator

import pytest
from support import by_step

from trainsound.bridge.wire.osc import OscArg, iter_packet


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
        return [m for d in self.datagrams for _, m in iter_packet(d)]


def _seed_namespace() -> types.SimpleNamespace:
    """The seed experiments' MNIST-shaped CNN (Perone 2019) and generated MNIST-shaped data.

    Built inside a function so that collecting the plain-client tests never imports torch.
    """
    import torch

    from trainsound.bridge.demo.models import perone_net as SeedCNN  # the seed CNN, defined once

    def mnist_like(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Learnable 28×28 digit-shaped data: each class is a bright bar at its own row, plus noise."""
        g = torch.Generator().manual_seed(seed)
        y = torch.randint(0, 10, (n,), generator=g)
        x = 0.3 * torch.randn(n, 1, 28, 28, generator=g)
        for i in range(n):
            row = 2 + 2 * int(y[i])
            x[i, 0, row : row + 2, 4:24] += 1.0
        return x, y

    return types.SimpleNamespace(SeedCNN=SeedCNN, mnist_like=mnist_like, LAYERS=["conv1", "conv2", "fc1", "fc2"])


@pytest.fixture(scope="session")
def seed() -> types.SimpleNamespace:
    """``seed.SeedCNN``, ``seed.mnist_like(n)``, ``seed.LAYERS``."""
    pytest.importorskip("torch")
    return _seed_namespace()


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


class BridgeRecording:
    """Runs training code against a real bridge process that records the session; then reads it back."""

    def __init__(self, bridge_proc, tmp_path) -> None:  # type: ignore[no-untyped-def]
        self.bridge_proc = bridge_proc
        self.path = tmp_path / "session.tsr"
        self.status: dict = {}  # the bridge's status after the last run (its drop counters)

    def __call__(self, fn) -> list[tuple[str, tuple]]:  # type: ignore[no-untyped-def]
        """``fn(port)`` trains; returns every ``(address, args)`` the bridge recorded, in order."""
        from trainsound.bridge.wire.session import iter_messages

        bridge = self.bridge_proc(["--no-midi", "--record", str(self.path)])
        fn(bridge.port)
        self.status = bridge.status()  # the bridge answers in arrival order: everything sent before is in
        bridge.stop()
        return [(a, args) for _, a, args in iter_messages(self.path)]

    by_step = staticmethod(by_step)


@pytest.fixture
def bridge_recording(bridge_proc, tmp_path) -> BridgeRecording:  # type: ignore[no-untyped-def]
    return BridgeRecording(bridge_proc, tmp_path)
