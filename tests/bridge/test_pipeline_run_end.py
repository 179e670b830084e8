"""Voices end with their run: ``event end`` (or the idle timeout) releases them on every output."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import mido
import numpy as np
import soundfile as sf
from support import BridgeProc, free_udp_port, rms, run_messages

from trainsound.bridge.config import from_dict, with_bridge
from trainsound.bridge.outputs.midifile import MidiFileOut
from trainsound.bridge.pipeline import Pipeline
from trainsound.bridge.wire.osc import encode_message
from trainsound.bridge.wire.session import SessionWriter

TS = [sys.executable, "-m", "trainsound.bridge"]
LONG_NOTES = """
[[mappings]]
match = "/nn/{run}/grad_norm/{layer}"
target = "note"
length_ms = 30000
"""


def test_end_event_sends_the_runs_note_offs_at_once_through_the_bridge(tmp_path: Path) -> None:
    cfg, mid = tmp_path / "long.toml", tmp_path / "end.mid"
    cfg.write_text(LONG_NOTES)
    b = BridgeProc(["--no-midi", "--config", str(cfg), "--midi-file", str(mid)], free_udp_port())
    try:
        b.send("/nn/a/grad_norm/fc1", 1.0)
        b.send("/nn/b/grad_norm/fc1", 0.01)
        b.send("/nn/a/loss", 2.0)  # the layers' groups settle
        time.sleep(0.5)
        b.send("/nn/a/event", "end")
        time.sleep(0.3)
        st = b.status()
    finally:
        rc, err = b.stop()
    assert rc == 0, err
    assert st["accepted"] == 4
    mf = mido.MidiFile(str(mid))

    def events(run: str) -> list[tuple[float, str]]:
        return [(t, "off" if m.type == "note_off" or m.velocity == 0 else "on")
                for t, m in run_messages(mf, run) if m.type in ("note_on", "note_off")]

    a = events("a")
    assert [k for _, k in a] == ["on", "off"] and 0.4 <= a[1][0] - a[0][0] <= 2.0  # at the end event, not 30 s later
    # Run b goes on: its note is released at shutdown, not by a's end.
    b_events = events("b")
    assert [k for _, k in b_events] == ["on", "off"] and b_events[1][0] > a[1][0]


def test_an_idle_run_is_released_after_its_timeout(tmp_path: Path) -> None:
    cfg = with_bridge(from_dict({"mappings": [{"match": "/nn/{run}/grad_norm/{layer}", "length_ms": 30000}],
                                 "groups": {"mode": "none"}}), run_idle=5.0)
    out = MidiFileOut(cfg, path=tmp_path / "idle.mid")
    p = Pipeline(cfg, [out])
    p.feed_message(100.0, encode_message("/nn/r/grad_norm/fc1", [1.0]))
    for t in np.arange(100.0, 104.0, 0.5):
        p.tick(float(t))
    assert out.sched.sounding == 1 and "r" in p.runs
    for t in np.arange(104.0, 107.0, 0.5):
        p.tick(float(t))
    assert out.sched.sounding == 0 and "r" not in p.runs and p.engine.voices()["run,layer"] == []
    p.close()


def test_sine_voices_fade_when_their_run_ends(tmp_path: Path) -> None:
    rec, wav = tmp_path / "s.tsr", tmp_path / "s.wav"
    with open(rec, "wb") as fh:
        w = SessionWriter(fh, start=0.0)
        for i in range(20):  # run a for 2 s, then it ends; run b starts at 4 s
            w.write(0.1 * i, encode_message("/nn/a/grad_norm/fc1", [0.5 + 0.01 * i]))
            w.write(0.1 * i, encode_message("/nn/a/loss", [1.0]))
        w.write(2.0, encode_message("/nn/a/event", ["end"]))
        for i in range(10):
            w.write(4.0 + 0.1 * i, encode_message("/nn/b/grad_norm/fc1", [0.5]))
        w.flush()
    r = subprocess.run([*TS, "render", str(rec), "--wav", str(wav), "--clock", "wall"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    x, sr = sf.read(str(wav), dtype="float64")
    m = x.mean(axis=1)
    assert rms(m[int(1.0 * sr) : int(1.9 * sr)]) > 0.01  # a sounds
    assert rms(m[int(2.5 * sr) : int(3.9 * sr)]) < 1e-4  # faded within 0.5 s of its end
    assert rms(m[int(4.2 * sr) : int(4.9 * sr)]) > 0.01  # b sounds
