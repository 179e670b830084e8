"""A bridge left running: SIGHUP reload, kill -9 and SIGTERM during recording, status, exposure, no bridge at all."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mido
import pytest
from service_helpers import write_config

from trainsound.bridge.wire.session import iter_messages

TRAINSOUND = [sys.executable, "-m", "trainsound.bridge"]
CC_RULE = """
[[mappings]]
name = "loss_cc"
match = "/nn/{run}/loss"
target = "cc"
cc = %d
scale = "linear"
range = [0.0, 1.0]
"""


def _cc_numbers(path: Path) -> list[int]:
    return [m.control for t in mido.MidiFile(str(path)).tracks for m in t if m.type == "control_change"]


def test_sighup_applies_a_valid_config_and_refuses_an_invalid_one(bridge_proc: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "bridge.toml"
    cfg.write_text(CC_RULE % 20)
    session, midi = tmp_path / "s.tsr", tmp_path / "s.mid"
    b = bridge_proc(["--no-midi", "--config", str(cfg), "--record", str(session), "--midi-file", str(midi)])
    b.send("/nn/r/loss", 0.25)
    time.sleep(0.1)

    cfg.write_text(CC_RULE % 21)
    b.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    b.send("/nn/r/loss", 0.5)
    time.sleep(0.1)

    cfg.write_text(CC_RULE.replace("cc = %d", "cc = 300"))
    b.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    b.send("/nn/r/loss", 0.75)
    time.sleep(0.1)
    st = b.status()
    rc, err = b.stop()
    assert rc == 0
    assert (st["reloads"], st["reload_errors"]) == (1, 1)
    # One clear line naming the file and the key; the old rule (cc 21) stays in force.
    assert f"reload refused, keeping the running config ({cfg}): {cfg}: mappings[0].cc must be in 0..127" in err
    assert [c for c in _cc_numbers(midi) if c in (20, 21)] == [20, 21, 21]
    # The recording went on across both reloads.
    assert [args for _, _, args in iter_messages(session)] == [(0.25,), (0.5,), (0.75,)]


def test_sighup_keeps_sounding_notes_and_ends_them_on_sigterm(bridge_proc: Any, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "bridge.toml", stats_interval=0)
    midi = tmp_path / "n.mid"
    b = bridge_proc(["--no-midi", "--config", str(cfg), "--midi-file", str(midi)])
    b.send("/nn/r/grad_norm/a", 1.0)
    b.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    b.send("/nn/r/grad_norm/b", 2.0)
    rc, _ = b.stop(signal.SIGTERM)
    assert rc == 0
    msgs = [m for t in mido.MidiFile(str(midi)).tracks for m in t if not m.is_meta]
    on = [(m.channel, m.note) for m in msgs if m.type == "note_on" and m.velocity]
    off = [(m.channel, m.note) for m in msgs if m.type == "note_off" or (m.type == "note_on" and not m.velocity)]
    assert len(on) == 2 and sorted(on) == sorted(off)
    assert any(m.type == "control_change" and m.control == 123 for m in msgs)  # all notes off


@pytest.mark.slow
def test_kill_9_loses_at_most_the_last_100_ms(bridge_proc: Any, tmp_path: Path) -> None:
    session, midi = tmp_path / "k.tsr", tmp_path / "k.mid"
    b = bridge_proc(["--no-midi", "--record", str(session), "--midi-file", str(midi)])
    sent: list[tuple[float, int]] = []
    t_end = time.time() + 3.0
    i = 0
    while time.time() < t_end:
        b.send("/nn/k/step", i)
        sent.append((time.time(), i))
        i += 1
        time.sleep(0.002)
    t_kill = time.time()
    b.stop(signal.SIGKILL)
    steps = [int(args[0]) for _, address, args in iter_messages(session) if address == "/nn/k/step"]  # type: ignore[arg-type]
    assert steps == list(range(len(steps))), "records are in order with no gaps"
    last_recorded_at = sent[steps[-1]][0]
    lost_window = sent[-1][0] - last_recorded_at
    assert lost_window <= 0.1, f"lost the last {lost_window * 1000:.0f} ms ({len(sent) - len(steps)} messages)"
    assert t_kill - sent[-1][0] < 0.5
    mido.MidiFile(str(midi))  # valid up to its last flush


def test_status_command_reports_counters(bridge_proc: Any) -> None:
    b = bridge_proc(["--no-midi"])
    b.send("/nn/s1/loss", 0.5)
    b.send_raw(b"garbage")
    time.sleep(0.1)
    r = subprocess.run([*TRAINSOUND, "status", "--to", f"127.0.0.1:{b.port}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "runs 1: s1" in r.stdout and "dropped not_osc: 1" in r.stdout and "up 00:00:" in r.stdout
    r = subprocess.run([*TRAINSOUND, "status", "--json", "--to", f"127.0.0.1:{b.port}"], capture_output=True, text=True)
    st = json.loads(r.stdout)
    assert st["dropped"] == {"not_osc": 1} and st["runs"] == ["s1"]
    assert st["tcp"]["connections"] <= 1  # at most the query itself (TCP)
    b.stop()
    r = subprocess.run(
        [*TRAINSOUND, "status", "--to", f"127.0.0.1:{b.port}", "--timeout", "0.5"], capture_output=True, text=True
    )
    assert r.returncode == 1
    assert "no answer from a bridge at 127.0.0.1" in r.stderr


def test_listening_beyond_loopback_needs_an_allowlist(tmp_path: Path) -> None:
    r = subprocess.run([*TRAINSOUND, "bridge", "--no-midi", "--listen", "0.0.0.0:9"], capture_output=True, text=True)
    assert r.returncode == 1
    assert "without an explicit sender allowlist: give --allow CIDR" in r.stderr
    assert "[bridge].allow" in r.stderr
    r = subprocess.run([*TRAINSOUND, "bridge", "--allow", "10.0.0.0/33"], capture_output=True, text=True)
    assert r.returncode == 2 and "--allow must be a network in CIDR form, got '10.0.0.0/33'" in r.stderr


def test_senders_outside_the_allowlist_are_dropped_and_counted(bridge_proc: Any, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "b.toml", allow=["127.0.0.1/32"])
    b = bridge_proc(["--no-midi", "--config", str(cfg)])
    # The test's socket is 127.0.0.1; the bridge's allowlist here is 127.0.0.1 only, and ::1 is not listened on —
    # so check with a narrower allowlist by reloading to a foreign network.
    write_config(cfg, allow=["10.0.0.0/8"])
    b.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    for _ in range(5):
        b.send("/nn/x/loss", 1.0)
    time.sleep(0.1)
    _rc, err = b.stop()
    assert "dropped: not_allowed=5" in err
    assert "sender not in [bridge].allow" in err


def test_training_is_unaffected_without_a_bridge() -> None:
    from trainsound import Client

    c = Client(port=9, run="nobridge")  # nothing listens there
    t0 = time.perf_counter()
    for step in range(2000):
        c.loss(1.0 / (step + 1))
        c.grad_norms({"fc1": 0.5, "fc2": 0.25})
    per_step = (time.perf_counter() - t0) / 2000
    assert per_step < 0.001, f"{per_step * 1e6:.0f} µs per step with no bridge"
