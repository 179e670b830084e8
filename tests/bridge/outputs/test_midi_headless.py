"""Live MIDI on a machine with no JACK server yet (issue 16, items 14 and 19): quiet while waiting,
a line when it connects, and an honest status when the server goes away (no messages counted as sent)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from support import JackServer, free_udp_port, wait_until

from trainsound.bridge.service.status import query_tcp
from trainsound.bridge.wire.osc import encode_message

pytestmark = pytest.mark.jack


def status(port: int) -> dict[str, Any]:
    """The full status over TCP, as ``trainsound status`` asks (UDP replies are bounded by the request)."""
    st = query_tcp("127.0.0.1", port, 5.0)
    assert st is not None, "no status over TCP"
    return st


def reclaim(name: str) -> None:
    """A jackd killed with SIGKILL keeps its slot in JACK's shared server registry (8 slots for the whole
    machine, reclaimed only by a server of the same name): start one under that name and stop it cleanly."""
    JackServer(name=name).start().stop(10)


def test_waiting_for_jack_is_quiet_then_connects_then_says_why_when_jack_dies(tmp_path: Path) -> None:
    name = f"ts_{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, JACK_DEFAULT_SERVER=name, JACK_NO_AUDIO_RESERVATION="1")
    env.pop("JACK_NO_START_SERVER", None)  # the bridge must never start jackd by itself
    port = free_udp_port()
    log = tmp_path / "bridge.log"
    with open(log, "w") as fh:
        bridge = subprocess.Popen(
            [sys.executable, "-m", "trainsound.bridge", "bridge", "--listen", f"127.0.0.1:{port}",
             "--midi-api", "jack"],
            stdout=fh, stderr=subprocess.STDOUT, env=env,
        )
    jackd = None
    try:
        wait_until(lambda: "listening on" in log.read_text())
        time.sleep(4.0)  # eight reconnect attempts
        waiting = log.read_text().splitlines()
        assert len(waiting) <= 3, "\n".join(waiting)  # was ~10 libjack lines a second
        assert "MIDI: waiting for JACK server (none running); will connect when it appears (logged once)" in waiting[0]
        st = status(port)["outputs"]["midi"]
        assert st["ok"] is False and st["why"] == "waiting for JACK server (none running)"
        assert not Path(f"/dev/shm/jack_{name}_{os.getuid()}_0").exists()  # no jackd was started for us

        jackd = JackServer(name=name).start(wait=False)
        wait_until(lambda: "MIDI: connected to virtual port trainsound:out (jack)" in log.read_text())
        wait_until(lambda: status(port)["outputs"]["midi"]["ok"])

        jackd.kill()  # leaves its socket file behind
        wait_until(lambda: not status(port)["outputs"]["midi"]["ok"], timeout=3)
        before = status(port)["outputs"]["midi"]
        assert before["why"].startswith("waiting for JACK server")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(5):
                s.sendto(encode_message("/nn/r/grad_norm/l", [0.01 * (i + 1)]), ("127.0.0.1", port))
        after = wait_until(lambda: (a := status(port)["outputs"]["midi"])["dropped"] > before["dropped"] and a,
                           what="the values dropped while JACK is gone")
        assert after["sent"] == before["sent"]
    finally:
        bridge.send_signal(signal.SIGTERM)
        bridge.wait(20)
        if jackd is not None:
            killed = jackd.proc is not None and jackd.proc.returncode == -signal.SIGKILL
            jackd.stop(10)
            if killed:
                reclaim(name)
    assert bridge.returncode == 0
    assert len(log.read_text().splitlines()) <= 12, log.read_text()


def test_pyo_waits_for_jack_quietly_and_starts_when_it_appears(tmp_path: Path) -> None:
    from trainsound.bridge.outputs.pyo import builtin_patches

    name = f"ts_{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, JACK_DEFAULT_SERVER=name, JACK_NO_AUDIO_RESERVATION="1")
    env.pop("JACK_NO_START_SERVER", None)  # pyo must not start a jackd by itself either
    port = free_udp_port()
    log = tmp_path / "bridge.log"
    patch = next(iter(builtin_patches()))
    with open(log, "w") as fh:
        bridge = subprocess.Popen(
            [sys.executable, "-m", "trainsound.bridge", "bridge", "--listen", f"127.0.0.1:{port}", "--no-midi",
             "--pyo-patch", patch, "--pyo-audio", "jack"],
            stdout=fh, stderr=subprocess.STDOUT, env=env,
        )
    jackd = None
    try:
        wait_until(lambda: "listening on" in log.read_text(), timeout=20)
        time.sleep(3.0)
        assert not Path(f"/dev/shm/jack_{name}_{os.getuid()}_0").exists()  # no jackd started behind our back
        st = status(port)["outputs"]["pyo"]
        assert st["ok"] is False and st["why"] == "waiting for JACK server (none running)"
        assert len(log.read_text().splitlines()) <= 3, log.read_text()
        assert "pyo: waiting for JACK server (none running); the patch starts when it appears" in log.read_text()

        jackd = JackServer(name=name).start(wait=False)
        wait_until(lambda: f"pyo output: patch {patch!r} on jack audio" in log.read_text(), timeout=20)
        wait_until(lambda: status(port)["outputs"]["pyo"]["ok"])
    finally:
        bridge.send_signal(signal.SIGTERM)
        bridge.wait(30)
        if jackd is not None:
            jackd.stop(10)
    assert bridge.returncode == 0, log.read_text()
