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
from support import free_udp_port

from trainsound.bridge.service.status import query_tcp
from trainsound.bridge.wire.osc import encode_message

pytestmark = pytest.mark.jack


def status(port: int) -> dict[str, Any]:
    """The full status over TCP, as ``trainsound status`` asks (UDP replies are bounded by the request)."""
    st = query_tcp("127.0.0.1", port, 5.0)
    assert st is not None, "no status over TCP"
    return st


def wait_until(pred: Any, timeout: float = 10.0) -> None:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("condition not met")
        time.sleep(0.05)


def start_jackd(name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["jackd", "--no-realtime", "-n", name, "-d", "dummy", "-r", "48000", "-p", "256"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def reclaim(name: str, env: dict[str, str]) -> None:
    """A jackd killed with SIGKILL keeps its slot in JACK's shared server registry (8 slots for the whole
    machine, reclaimed only by a server of the same name): start one under that name and stop it cleanly."""
    j = start_jackd(name, env)
    subprocess.run(["jack_wait", "-w", "-t", "10"], env=env, capture_output=True)
    j.terminate()
    j.wait(10)


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

        jackd = start_jackd(name, env)
        wait_until(lambda: "MIDI: connected to virtual port trainsound:out (jack)" in log.read_text())
        wait_until(lambda: status(port)["outputs"]["midi"]["ok"])

        jackd.send_signal(signal.SIGKILL)  # leaves its socket file behind
        jackd.wait()
        wait_until(lambda: not status(port)["outputs"]["midi"]["ok"], timeout=3)
        before = status(port)["outputs"]["midi"]
        assert before["why"].startswith("waiting for JACK server")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(5):
                s.sendto(encode_message("/nn/r/grad_norm/l", [0.01 * (i + 1)]), ("127.0.0.1", port))
        time.sleep(0.3)
        after = status(port)["outputs"]["midi"]
        assert after["sent"] == before["sent"] and after["dropped"] > before["dropped"]
    finally:
        bridge.send_signal(signal.SIGTERM)
        bridge.wait(20)
        if jackd is not None:
            if jackd.poll() is None:
                jackd.terminate()
                jackd.wait(10)
            if jackd.returncode == -signal.SIGKILL:
                reclaim(name, env)
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

        jackd = start_jackd(name, env)
        wait_until(lambda: f"pyo output: patch {patch!r} on jack audio" in log.read_text(), timeout=20)
        wait_until(lambda: status(port)["outputs"]["pyo"]["ok"])
    finally:
        bridge.send_signal(signal.SIGTERM)
        bridge.wait(30)
        if jackd is not None:
            jackd.terminate()
            jackd.wait(10)
    assert bridge.returncode == 0, log.read_text()
