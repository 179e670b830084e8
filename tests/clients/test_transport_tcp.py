"""The clients over TCP (OSC 1.1, SLIP framing): what an SSH tunnel carries to a remote bridge."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support import free_udp_port

from trainsound import Client
from trainsound.bridge.wire.session import iter_messages
from trainsound.errors import ClientArgumentError


def test_steps_arrive_over_tcp(bridge_proc, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rec = tmp_path / "s.tsr"
    b = bridge_proc(["--no-midi", "--record", str(rec)])
    with Client(port=b.port, run="tunnel", transport="tcp") as c:
        for i in range(50):
            c.loss(1.0 / (i + 1))
            c.grad_norms({"conv1": 0.5, "fc1": float(i)})
            c.step(i)
    time.sleep(0.5)
    b.stop()
    msgs = [(a, v) for _, a, v in iter_messages(rec)]
    assert len(msgs) == 200
    assert msgs[:4] == [("/nn/tunnel/step", (0,)), ("/nn/tunnel/loss", (1.0,)),
                        ("/nn/tunnel/grad_norm/conv1", (0.5,)), ("/nn/tunnel/grad_norm/fc1", (0.0,))]


def test_data_sent_before_the_bridge_starts_is_delivered_when_it_comes(bridge_proc, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = free_udp_port()
    c = Client(port=port, run="early", transport="tcp")
    t0 = time.perf_counter()
    for i in range(5):
        c.loss(float(i))
        c.step(i)
    assert time.perf_counter() - t0 < 0.5  # nothing blocks while no bridge listens
    rec = tmp_path / "s.tsr"
    b = bridge_proc(["--no-midi", "--record", str(rec)], port=port)
    time.sleep(1.2)  # the client retries its connection once a second, on its next send
    c.loss(99.0)
    c.step(5)
    c.close()
    time.sleep(0.5)
    b.stop()
    steps = [v[0] for _, a, v in iter_messages(rec) if a == "/nn/early/step"]
    assert steps == [0, 1, 2, 3, 4, 5]


def test_transport_from_the_environment_and_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINSOUND_ADDR", "tcp://127.0.0.1:9")
    c = Client(run="x")
    assert (c.transport, c.host, c.port) == ("tcp", "127.0.0.1", 9)
    c.close()
    monkeypatch.setenv("TRAINSOUND_ADDR", "sctp://127.0.0.1:9")
    with pytest.raises(ClientArgumentError, match=r"TRAINSOUND_ADDR scheme must be udp:// or tcp://"):
        Client(run="x")
    monkeypatch.delenv("TRAINSOUND_ADDR")
    with pytest.raises(ClientArgumentError, match=r"^transport must be 'udp' or 'tcp', got 'quic'$"):
        Client(run="x", transport="quic")
