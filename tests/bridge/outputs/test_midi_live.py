"""Live MIDI through a real JACK server: exact bytes, start order, reconnect, no stuck notes."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import pytest
from support import MidiProbe

pytestmark = pytest.mark.jack

A4_NORM = 10**-0.7  # log-scaled over 1e-4..1e2 onto notes 36..96 → exactly MIDI 69 (A4)


def config_file(tmp_path: Path, client: str, extra: str = "") -> str:
    p = tmp_path / "bridge.toml"
    p.write_text(f'[midi]\napi = "jack"\nclient_name = "{client}"\n{extra}')
    return str(p)


def test_exact_bytes_to_a_named_port(bridge_proc, midi_probe: MidiProbe) -> None:  # type: ignore[no-untyped-def]
    b = bridge_proc(["--midi-api", "jack", "--midi-port", midi_probe.port])
    b.wait_output_ok("midi")
    b.send("/nn/run1/grad_norm/fc1", A4_NORM)
    b.send("/nn/run1/loss", 2.3)
    got = midi_probe.wait_for(3, timeout=3)
    assert got == [[0x90, 69, 96], [0xB0, 74, 114], [0x80, 69, 0]]  # a first loss sits high (auto_start 0.9)
    st = b.status()
    assert st["outputs"]["midi"]["ok"] and st["outputs"]["midi"]["api"] == "jack"
    rc, _ = b.stop()
    assert rc == 0


def test_virtual_port_named_after_the_client(bridge_proc, midi_probe: MidiProbe, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import jack

    name = f"ts{uuid.uuid4().hex[:6]}"
    b = bridge_proc(["--config", config_file(tmp_path, name)])
    c = jack.Client(f"wire{uuid.uuid4().hex[:4]}", no_start_server=True)
    try:
        t0 = time.time()
        while not c.get_ports(f"{name}:out") and time.time() - t0 < 5:
            time.sleep(0.02)
        c.connect(f"{name}:out", midi_probe.port)
        time.sleep(0.2)
        b.send("/nn/r/grad_norm/conv1", A4_NORM)
        assert midi_probe.wait_for(1)[0] == [0x90, 69, 96]
    finally:
        c.close()
    b.stop()


def test_bridge_started_before_the_synth_connects_when_it_appears(bridge_proc) -> None:  # type: ignore[no-untyped-def]
    name = f"late_{uuid.uuid4().hex[:6]}"
    b = bridge_proc(["--midi-api", "jack", "--midi-port", f"{name}:in"])
    assert not b.status()["outputs"]["midi"]["ok"]
    probe = MidiProbe(name)
    try:
        t0 = time.time()
        while not b.status()["outputs"]["midi"]["ok"]:
            assert time.time() - t0 < 2.0, "bridge did not connect within 2 s of the port appearing"
            time.sleep(0.05)
        time.sleep(0.1)
        b.send("/nn/r/grad_norm/fc1", A4_NORM)
        assert probe.wait_for(1)[:1] == [[0x90, 69, 96]]
        # The synth goes away and comes back: the bridge keeps running and reconnects.
        probe.close()
        time.sleep(1.2)
        assert not b.status()["outputs"]["midi"]["ok"]
        probe = MidiProbe(name)
        t0 = time.time()
        while not b.status()["outputs"]["midi"]["ok"]:
            assert time.time() - t0 < 2.0, "bridge did not reconnect within 2 s"
            time.sleep(0.05)
        time.sleep(0.1)
        b.send("/nn/r/grad_norm/fc1", A4_NORM)
        assert [0x90, 69, 96] in probe.wait_for(1)
        assert b.status()["outputs"]["midi"]["reconnects"] >= 1
    finally:
        probe.close()
    b.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_shutdown_leaves_no_stuck_notes(bridge_proc, midi_probe: MidiProbe, tmp_path: Path, sig: int) -> None:  # type: ignore[no-untyped-def]
    cfg = config_file(
        tmp_path,
        f"ts{uuid.uuid4().hex[:6]}",
        '[[mappings]]\nmatch = "/nn/{run}/grad_norm/{layer}"\nlength_ms = 30000\nmusical_scale = "chromatic"\n',
    )
    b = bridge_proc(["--config", cfg, "--midi-port", midi_probe.port])
    b.wait_output_ok("midi")
    for i in range(12):
        b.send(f"/nn/run{i % 2}/grad_norm/layer{i}", 10 ** (-4 + i / 2))
    b.send("/nn/run0/loss", float("nan"))  # the alarm note too
    midi_probe.wait_for(13, timeout=3)
    rc, _ = b.stop(sig)
    assert rc == 0
    msgs = midi_probe.wait_for(10_000, timeout=1.0)
    sounding: set[tuple[int, int]] = set()
    for m in msgs:
        if m[0] & 0xF0 == 0x90 and m[2] > 0:
            sounding.add((m[0] & 0x0F, m[1]))
        elif m[0] & 0xF0 == 0x80 or (m[0] & 0xF0 == 0x90 and m[2] == 0):
            sounding.discard((m[0] & 0x0F, m[1]))
    assert sounding == set(), f"stuck notes: {sorted(sounding)}"
    used = {m[0] & 0x0F for m in msgs if m[0] & 0xF0 == 0x90}
    all_off = {m[0] & 0x0F for m in msgs if m[0] & 0xF0 == 0xB0 and m[1] == 123}
    assert used <= all_off and 15 in used  # the alarm's channel 16 too
