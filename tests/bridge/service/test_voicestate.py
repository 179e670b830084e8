"""Stable, named voices: a run keeps its channels across bridge restarts; MIDI file tracks named after voices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mido
import pytest

from trainsound.bridge.service.voicestate import MAX_BYTES, MAX_RUNS, VoiceMemory
from trainsound.bridge.wire.osc import encode_message

TS = [sys.executable, "-m", "trainsound.bridge"]
BLOCKS = 4


def loss_channels(path: Path) -> dict[str, int]:
    """Run → the channel of its loss CC (74), from a MIDI file's named tracks."""
    out = {}
    for tr in mido.MidiFile(str(path)).tracks[1:]:
        ccs = [m.channel + 1 for m in tr if m.type == "control_change" and m.control == 74]
        if ccs:
            out[tr.name.split()[0]] = ccs[0]
    return out


def play_runs(bridge_proc: Any, tmp_path: Path, order: list[str], name: str) -> Path:
    midi = tmp_path / f"{name}.mid"
    b = bridge_proc(["--no-midi", "--midi-file", str(midi)])
    for run in order:
        b.send(f"/nn/{run}/loss", 2.0)
        time.sleep(0.05)
        b.send(f"/nn/{run}/loss", 1.0)
        time.sleep(0.05)
    time.sleep(0.2)
    rc, err = b.stop()
    assert rc == 0, err
    return midi


def test_a_restart_gives_every_run_the_channel_it_had(bridge_proc: Any, tmp_path: Path) -> None:
    first = loss_channels(play_runs(bridge_proc, tmp_path, ["alpha", "beta", "gamma"], "first"))
    assert first == {"alpha": 1, "beta": 2, "gamma": 3}  # first-seen order, the first time
    again = loss_channels(play_runs(bridge_proc, tmp_path, ["gamma", "alpha", "beta"], "again"))
    assert again == first, "after a restart the runs arrived in another order and moved channels"
    newcomer = loss_channels(play_runs(bridge_proc, tmp_path, ["delta", "beta"], "newcomer"))
    assert newcomer["beta"] == 2 and newcomer["delta"] not in (2,)


def test_gpt_groups_are_named_tracks_in_model_order(tmp_path: Path) -> None:
    layers = ["transformer.wte.weight"] + [f"transformer.h.{i}.mlp.c_fc.weight" for i in range(BLOCKS)]
    session = tmp_path / "gpt.tsr"
    from trainsound.bridge.wire.session import SessionWriter

    with open(session, "wb") as fh:
        w = SessionWriter(fh, start=100.0)
        for step in range(16):
            t = 100.0 + step * 0.7
            msgs = [encode_message("/nn/gpt/step", [step])]
            msgs += [encode_message(f"/nn/gpt/grad_norm/{name}", [10 ** (-2 + step / 8 + i / 4)])
                     for i, name in enumerate(layers)]
            msgs.append(encode_message("/nn/gpt/loss", [3.0 / (1 + step)]))
            for m in msgs:
                w.write(t, m)
        w.flush()
    midi = tmp_path / "gpt.mid"
    r = subprocess.run([*TS, "render", str(session), "--midi-file", str(midi), "--bpm", "97",
                        "--steps-per-beat", "4"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    mf = mido.MidiFile(str(midi))
    names = [t.name for t in mf.tracks[1:]]
    assert "gpt transformer.wte.weight grad" in names and "gpt h.0 grad" in names, names
    tempo = next(m.tempo for m in mf.tracks[0] if m.type == "set_tempo")
    assert mido.tempo2bpm(tempo) == 97.0 or abs(mido.tempo2bpm(tempo) - 97.0) < 0.01
    sixteenth = mf.ticks_per_beat // 4
    for tr in mf.tracks[1:]:
        tick = 0
        for m in tr:
            tick += m.time
            if m.type == "note_on" and m.velocity > 0:
                assert tick % sixteenth == 0, f"{tr.name}: a note at tick {tick}, off the sixteenth grid"
    # 16 steps at 4 a beat: the last note starts on beat 3.75.
    last = max(sum(m.time for m in tr[: i + 1]) for tr in mf.tracks[1:] for i, m in enumerate(tr)
               if m.type == "note_on")
    assert last == 15 * sixteenth


def test_memory_file_is_bounded_and_survives_garbage(tmp_path: Path) -> None:
    p = tmp_path / "voices.json"
    p.write_text("{not json")
    mem = VoiceMemory(p)  # one warning, an empty memory
    for i in range(MAX_RUNS + 50):
        mem.put(f"run{i}", ("run",), (f"run{i}",), i % 14)
    mem.save(force=True)
    data = json.loads(p.read_text())
    assert len(data["runs"]) == MAX_RUNS and "run0" not in data["runs"]
    assert VoiceMemory(p).get(f"run{MAX_RUNS + 49}", ("run",), (f"run{MAX_RUNS + 49}",)) == (MAX_RUNS + 49) % 14


def _state_config(tmp_path: Path, state: Path, name: str = "b.toml") -> Path:
    cfg = tmp_path / name
    cfg.write_text(f'[voices]\nstate = "{state}"\n')
    return cfg


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "oversized"])
def test_a_state_path_that_is_no_small_file_does_not_stop_the_start(
    bridge_proc: Any, tmp_path: Path, kind: str
) -> None:
    """Issue 28, item 11: a FIFO at the state path hung the start; a link to /dev/zero grew the bridge to
    6.2 GB. Now each is one warning naming the file, and the bridge serves at once with its usual memory."""
    state = tmp_path / "voices.json"
    if kind == "fifo":
        os.mkfifo(state)  # nobody will ever write to it
    elif kind == "dev-zero":
        state.symlink_to("/dev/zero")
    else:
        with open(state, "wb") as fh:  # sparse: 17 MiB claimed, nothing written
            fh.truncate(MAX_BYTES + (1 << 20))
    t0 = time.monotonic()
    b = bridge_proc(["--no-midi", "--config", str(_state_config(tmp_path, state))])
    started = time.monotonic() - t0
    b.send("/nn/run1/loss", 0.5)
    rss_mb = int(next(x for x in Path(f"/proc/{b.proc.pid}/status").read_text().splitlines()
                      if x.startswith("VmHWM:")).split()[1]) / 1024
    assert b.status()["accepted"] == 1
    rc, err = b.stop()
    assert rc == 0 and started < 10, err
    assert rss_mb < 300, f"{rss_mb:.0f} MB"
    why = "more than" if kind == "oversized" else "not a regular file"
    assert err.count(f"voice memory {state} unreadable") == 1 and why in err, err
    # Its save at shutdown replaced the entry with a real voice file.
    assert json.loads(state.read_text())["runs"].keys() == {"run1"}


def test_two_bridges_sharing_the_state_file_keep_each_others_runs(bridge_proc: Any, tmp_path: Path) -> None:
    """Issue 28, item 11: two bridges with one state file; before, the last writer won (645 of A's runs
    lost). Now every save merges under a lock: all 60 runs of both are in the file."""
    state = tmp_path / "voices.json"
    a = bridge_proc(["--no-midi", "--config", str(_state_config(tmp_path, state, "a.toml"))])
    b = bridge_proc(["--no-midi", "--config", str(_state_config(tmp_path, state, "b.toml"))])
    for i in range(30):
        a.send(f"/nn/a{i}/loss", 0.5)
        b.send(f"/nn/b{i}/loss", 0.5)
        time.sleep(0.1)  # 3 s: both save meanwhile (every 2 s), then again at shutdown
    for br in (a, b):
        rc, err = br.stop()
        assert rc == 0, err
    runs = set(json.loads(state.read_text())["runs"])
    assert runs == {f"a{i}" for i in range(30)} | {f"b{i}" for i in range(30)}
    assert not list(tmp_path.glob(".voices.json.*"))  # no temp file left behind
