"""Live MIDI through a real JACK server: exact bytes, start order, reconnect, no stuck notes."""

from __future__ import annotations

import signal
import subprocess
import sys
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


def channels_heard(probe: MidiProbe, since: int) -> set[int]:
    """Channels (1..16) of the note-ons and CCs that reached the probe after its first ``since`` messages."""
    return {(m[0] & 0x0F) + 1 for m in probe.wait_for(0, timeout=0)[since:] if m[0] & 0xF0 in (0x90, 0xB0)}


def play_run(b, run: str, layers: int, rounds: int = 3) -> None:  # type: ignore[no-untyped-def]
    for i in range(rounds):
        b.send(f"/nn/{run}/step", i)
        for k in range(layers):
            b.send(f"/nn/{run}/grad_norm/fc{k}", 10 ** (-2 + k / 2 + i / 10))
        b.send(f"/nn/{run}/loss", 2.0 / (1 + i))
        time.sleep(0.08)  # slower than the 20 notes/s rate limit: every round plays


def test_two_runs_on_one_port_play_on_disjoint_channels(bridge_proc, midi_probe: MidiProbe, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 24 #5: runs on one live port get channel blocks of their own while they fit in 14 channels; past
    that a newcomer shares (counted, logged once); a run that ended gives its block to the next."""
    cfg = config_file(tmp_path, f"ts{uuid.uuid4().hex[:6]}", "[alarms]\nenabled = false\n[groups]\nmax_voices = 4\n")
    b = bridge_proc(["--config", cfg, "--midi-port", midi_probe.port])
    b.wait_output_ok("midi")
    heard: dict[str, set[int]] = {}
    for run in ("a", "b", "c"):
        n = len(midi_probe.wait_for(0, timeout=0))
        play_run(b, run, layers=4)
        time.sleep(0.3)
        heard[run] = channels_heard(midi_probe, n)
    assert heard["a"] == {1, 2, 3, 4}, heard  # the loss with its first group, as the engine lays a run out
    assert heard["b"] == {5, 6, 7, 8} and heard["c"] == {9, 11, 12, 13}, heard  # 10 (drums) skipped
    assert b.status()["outputs"]["midi"]["run_channels"] == {"a": [1, 2, 3, 4], "b": [5, 6, 7, 8],
                                                             "c": [9, 11, 12, 13]}
    listed = subprocess.run([sys.executable, "-m", "trainsound.bridge", "learn", "--list", "--to",
                             f"127.0.0.1:{b.port}"], capture_output=True, text=True, timeout=30).stdout
    line = next(x for x in listed.splitlines() if x.startswith("loss_brightness/b "))
    assert "channel  5" in line, line  # learn names the channel the port plays the voice on
    # Both at once: each keeps its own channels.
    n = len(midi_probe.wait_for(0, timeout=0))
    play_run(b, "a", layers=4, rounds=1)
    play_run(b, "b", layers=4, rounds=1)
    time.sleep(0.3)
    assert channels_heard(midi_probe, n) == heard["a"] | heard["b"]
    # A fourth run finds 2 channels free: it shares (the engine's channels), counted and logged once.
    play_run(b, "d", layers=4, rounds=1)
    time.sleep(0.3)
    assert b.status()["outputs"]["midi"]["shared_runs"] == 1
    # A run ends: its block goes to the next run.
    b.send("/nn/a/event", "end")
    time.sleep(0.2)
    n = len(midi_probe.wait_for(0, timeout=0))
    play_run(b, "e", layers=4, rounds=1)
    time.sleep(0.3)
    assert channels_heard(midi_probe, n) == {1, 2, 3, 4}
    rc, err = b.stop()
    assert rc == 0
    assert err.count("run 'd' shares") == 1, err
