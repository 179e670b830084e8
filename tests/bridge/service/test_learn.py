"""``trainsound learn`` against the real bridge: one target alone at the JACK MIDI probe, then everything again."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support import MidiProbe, wait_until

pytestmark = pytest.mark.jack
TS = [sys.executable, "-m", "trainsound.bridge"]


def stream(bridge: Any, stop: threading.Event) -> None:
    i = 0
    while not stop.is_set():
        for layer in range(4):
            bridge.send(f"/nn/run1/grad_norm/l{layer}", 10 ** (-3 + (i % 9) / 3 + layer / 5))
        bridge.send("/nn/run1/loss", 3.0 / (1 + i) + 0.1 * (i % 3))
        i += 1
        time.sleep(0.03)


def resumed(probe: MidiProbe, since: float) -> bool:
    """Both a note and the loss CC reached the probe after ``since``: every output plays again."""
    with probe._lock:
        after = [m for t, m in probe.messages if t > since]
    return any(m[0] & 0xF0 == 0x90 for m in after) and any(m[0] & 0xF0 == 0xB0 and m[1] == 74 for m in after)


def learn(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TS, "learn", "--to", f"127.0.0.1:{port}", *args], capture_output=True, text=True,
                          timeout=30)


def test_learn_solos_the_loss_cc_then_everything_resumes(
    bridge_proc: Any, midi_probe: MidiProbe, tmp_path: Path
) -> None:
    cfg = tmp_path / "b.toml"
    # The fault detectors off: these made-up norms jump by decades, and alarms are not what is learned here.
    cfg.write_text('[midi]\napi = "jack"\n[alarms]\nenabled = false\n')
    b = bridge_proc(["--config", str(cfg), "--midi-port", midi_probe.port])
    b.wait_output_ok("midi")
    stop = threading.Event()
    feeder = threading.Thread(target=stream, args=(b, stop), daemon=True)
    feeder.start()
    try:
        listed = wait_until(lambda: (r := learn(b.port, "--list")).returncode == 0
                            and "grad_norm_notes/run1/l3" in r.stdout and r, what="run1's targets listed")
        assert "loss_brightness/run1" in listed.stdout and "cc 74" in listed.stdout
        assert "grad_norm_notes/run1/l0" in listed.stdout and "notes" in listed.stdout
        r = learn(b.port, "loss_brightness/run1", "--seconds", "2")
        assert r.returncode == 0, r.stderr
        t_start = time.perf_counter()
        wait_until(lambda: "learn" not in b.status(), 5.0, "the 2 s solo's end", every=0.05)
        t_end = time.perf_counter()
        wait_until(lambda: resumed(midi_probe, t_end), 3.0, "notes and the loss CC after the solo")
    finally:
        stop.set()
        feeder.join()
    with midi_probe._lock:
        msgs = list(midi_probe.messages)
    assert t_end - t_start >= 1.9, "the solo ended early"
    # Skip the first 50 ms (messages already in flight) and the last 450 ms (the solo's end, seen by polling).
    during = [m for t, m in msgs if t_start + 0.05 < t < t_end - 0.45]
    after = [m for t, m in msgs if t > t_end]
    others = [m for m in during if not (m[0] & 0xF0 == 0x80 or (m[0] & 0xF0 == 0xB0 and m[1] == 74))]
    assert len(during) > 10 and not others, f"during the solo: {others[:5]}"
    assert {m[0] for m in during if m[0] & 0xF0 == 0xB0} == {0xB0}  # run1's loss CC is on channel 1
    assert any(m[0] & 0xF0 == 0x90 for m in after), "notes did not resume after the solo"
    assert any(m[0] & 0xF0 == 0xB0 and m[1] == 74 for m in after)
    b.stop()


def test_unknown_target_lists_the_valid_ones(bridge_proc: Any) -> None:
    b = bridge_proc(["--no-midi"])
    b.send("/nn/r/loss", 1.0)
    wait_until(lambda: b.status()["accepted"] >= 1, 5.0, "the loss accepted")
    r = learn(b.port, "nope")
    assert r.returncode == 1
    assert "unknown learn target 'nope'" in r.stderr and "loss_brightness/r" in r.stderr
    assert "Traceback" not in r.stderr
    b.stop()


def test_sweep_when_no_data_moves_the_target(bridge_proc: Any, midi_probe: MidiProbe, tmp_path: Path) -> None:
    cfg = tmp_path / "b.toml"
    cfg.write_text('[midi]\napi = "jack"\n')
    b = bridge_proc(["--config", str(cfg), "--midi-port", midi_probe.port])
    b.wait_output_ok("midi")
    b.send("/nn/r/loss", 1.0)
    wait_until(lambda: b.status()["accepted"] >= 1, 5.0, "the loss accepted")
    assert learn(b.port, "loss_brightness/r", "--seconds", "3").returncode == 0
    wait_until(lambda: "learn" not in b.status(), 6.0, "the 3 s solo's end", every=0.05)
    values = [m[2] for m in midi_probe.wait_for(0, timeout=0) if m[0] == 0xB0 and m[1] == 74]
    assert len(set(values)) >= 10 and max(values) - min(values) >= 60, values
    b.stop()


def test_learn_before_any_data_and_after_the_run_ended(bridge_proc: Any, midi_probe: MidiProbe, tmp_path: Path) -> None:
    """Issues 24 #3, 26 #7: before any run spoke, ``--list`` names each rule's target "any run" (its CC or note
    range, the channel the first run takes) and ``learn`` sweeps it; after a run ended the list is not empty."""
    cfg = tmp_path / "b.toml"
    cfg.write_text('[midi]\napi = "jack"\n')
    b = bridge_proc(["--config", str(cfg), "--midi-port", midi_probe.port])
    b.wait_output_ok("midi")
    r = learn(b.port, "--list")
    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines()}
    assert "cc 74" in lines["loss_brightness"] and "channel  1" in lines["loss_brightness"]
    assert "any run" in lines["loss_brightness"] and "notes 36-96" in lines["grad_norm_notes"]
    assert learn(b.port, "loss_brightness", "--seconds", "2").returncode == 0
    wait_until(lambda: "learn" not in b.status(), 5.0, "the 2 s solo's end", every=0.05)
    swept = [m for m in midi_probe.wait_for(0, timeout=0) if m[0] == 0xB0 and m[1] == 74]
    assert len({m[2] for m in swept}) >= 5, swept  # a sweep on channel 1, CC 74, with no run present
    assert b.status()["accepted"] == 0
    # A run speaks, is listed by name, ends: its voices are freed, and the rules are "any run" again.
    b.send("/nn/r1/loss", 1.0)
    wait_until(lambda: "loss_brightness/r1" in learn(b.port, "--list").stdout, 5.0, "r1's loss listed")
    b.send("/nn/r1/event", "end")
    wait_until(lambda: "loss_brightness/r1" not in (out := learn(b.port, "--list").stdout) and "any run" in out,
               5.0, "the rules listed again after the run ended")
    assert "no targets" not in learn(b.port, "--list").stdout
    b.stop()
