"""Port loss: the JACK MIDI peer and jackd itself die mid-run; the bridge logs it, keeps recording, reconnects.

Uses its OWN jackd (killing the session's shared one would break other tests).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import JackServer, MidiProbe, wait_until

from trainsound.bridge.wire.session import iter_messages

pytestmark = [pytest.mark.jack, pytest.mark.slow]


@pytest.fixture
def private_jack() -> Iterator[JackServer]:
    j = JackServer("tsloss").start()
    saved = os.environ.get("JACK_DEFAULT_SERVER")
    # MidiProbe (in this process) finds the private server through the environment.
    os.environ["JACK_DEFAULT_SERVER"] = j.name
    yield j
    if saved is None:
        os.environ.pop("JACK_DEFAULT_SERVER", None)
    else:
        os.environ["JACK_DEFAULT_SERVER"] = saved
    j.stop()


def _midi_down(b: Any) -> bool:
    return b.status()["outputs"]["midi"]["ok"] is False


def _probe(name: str) -> MidiProbe:
    for _ in range(50):
        try:
            return MidiProbe(name)
        except Exception:  # rtmidi raises SystemError while jackd is still coming up
            time.sleep(0.1)
    raise RuntimeError("cannot open the MIDI probe")


def _notes_arrive(b: Any, probe: MidiProbe, layer: str, within: float) -> float:
    """Send notes until the probe hears one; seconds it took."""
    t0 = time.time()
    n0 = len(probe.messages)
    i = 0
    while time.time() - t0 < within:
        b.send(f"/nn/loss_run/grad_norm/{layer}{i}", 1.0)
        i += 1
        time.sleep(0.05)
        if any(m[1][0] & 0xF0 == 0x90 for m in probe.messages[n0:]):
            return time.time() - t0
    raise AssertionError(f"no note reached the probe within {within} s")


def test_bridge_survives_the_peer_and_jackd_dying_and_reconnects(
    private_jack: JackServer, bridge_proc: Any, tmp_path: Path
) -> None:
    session = tmp_path / "loss.tsr"
    probe_name = f"peer_{uuid.uuid4().hex[:6]}"
    probe = _probe(probe_name)
    b = bridge_proc(
        ["--midi-api", "jack", "--midi-port", f"{probe_name}:in", "--record", str(session)], env=private_jack.env
    )
    _notes_arrive(b, probe, "a", 5.0)

    # 1. The synth (peer) goes away: the bridge notices, keeps recording, reconnects when it is back.
    probe.close()
    wait_until(lambda: _midi_down(b), 5.0, "the bridge noticing its peer gone")
    b.send("/nn/loss_run/loss", 0.5)
    probe = _probe(probe_name)
    took = _notes_arrive(b, probe, "b", 5.0)
    assert took < 2.5, f"reconnected after {took:.1f} s"

    # 2. jackd itself dies and comes back.
    probe.close()
    private_jack.kill()
    wait_until(lambda: _midi_down(b), 5.0, "the bridge noticing jackd gone")
    b.send("/nn/loss_run/loss", 0.25)
    private_jack.start()
    probe = _probe(probe_name)
    took = _notes_arrive(b, probe, "c", 8.0)
    st = b.status()
    probe.close()
    rc, err = b.stop()
    assert rc == 0
    assert st["outputs"]["midi"]["ok"] is True and st["outputs"]["midi"]["reconnects"] >= 2
    assert "MIDI: lost" in err and "MIDI: connected to" in err
    losses = [args for _, address, args in iter_messages(session) if address == "/nn/loss_run/loss"]
    assert losses == [(0.5,), (0.25,)], "recording went on while MIDI was down"
