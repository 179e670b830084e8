"""Shared fixtures: a private jackd (dummy backend), a JACK recorder and MIDI probe, the bridge as a
real subprocess. Helpers live in ``support.py``.

Tests that need a real server are marked (``jack``, ``fluidsynth``, ``supercollider``, ``pyo``);
the README's test command installs and starts what they need, so in CI they run rather than skip.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from support import BridgeProc, JackServer, MidiProbe, Recorder, free_udp_port


@pytest.fixture(autouse=True)
def _private_state(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's bridges remember voices in their own state folder, never in the user's (or another test's)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


@pytest.fixture
def udp_port() -> int:
    return free_udp_port()


@pytest.fixture(scope="session")
def jack_server() -> Iterator[str]:
    """Private jackd (dummy backend, 48 kHz, 256 frames) for the test session.

    Every JACK client in this process and its children finds it through JACK_DEFAULT_SERVER.
    """
    try:
        jack = JackServer("ts").start()
    except RuntimeError as err:
        pytest.fail(str(err))
    jack.use()
    yield jack.name
    jack.stop()
    os.environ.pop("JACK_DEFAULT_SERVER", None)


@pytest.fixture
def recorder(jack_server: str) -> Iterator[Recorder]:
    r = Recorder(f"rec_{uuid.uuid4().hex[:6]}")
    yield r
    r.stop()


@pytest.fixture
def midi_probe(jack_server: str) -> Iterator[MidiProbe]:
    p = MidiProbe(f"probe_{uuid.uuid4().hex[:6]}")
    yield p
    p.close()


@pytest.fixture
def bridge_proc() -> Iterator[Any]:
    """Factory: ``bridge_proc(["--no-midi", "--record", path])`` → a running :class:`BridgeProc`."""
    procs: list[BridgeProc] = []

    def start(args: list[str], port: int | None = None, env: dict[str, str] | None = None) -> BridgeProc:
        b = BridgeProc(args, port or free_udp_port(), env=env)
        procs.append(b)
        return b

    yield start
    for b in procs:
        if b.proc.poll() is None:
            b.stop(signal.SIGKILL)


@pytest.fixture(scope="session")
def keras_full_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, str, float]:
    """``trainsound demo --runs keras-full --steps 3`` once per test session: ``(out_dir, stdout, seconds)``.

    Shared by the demo's sweep test and the browser check of its grid page (96 runs are run once).
    """
    import sys
    import time

    out = tmp_path_factory.mktemp("keras_full")
    cmd = [sys.executable, "-m", "trainsound.bridge", "demo", "--no-live", "--quiet", "--out", str(out),
           "--runs", "keras-full", "--steps", "3"]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r.stdout, time.monotonic() - t0
