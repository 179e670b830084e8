"""MIDI files: valid SMF, real-time positions, a track per run, rendered by a real FluidSynth."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf
from support import SF2, dominant_hz, rms

A4_NORM = 10**-0.7


def notes(path: Path) -> dict[str, list[tuple[float, int, int]]]:
    """Per track name: (seconds, status, note) of note on/off events."""
    mf = mido.MidiFile(str(path))
    out: dict[str, list[tuple[float, int, int]]] = {}
    for tr in mf.tracks[1:]:
        t = 0
        name = ""
        evs = []
        for msg in tr:
            t += msg.time
            if msg.type == "track_name":
                name = msg.name
            elif msg.type in ("note_on", "note_off"):
                on = msg.type == "note_on" and msg.velocity > 0
                evs.append((mido.tick2second(t, mf.ticks_per_beat, 500_000), 0x90 if on else 0x80, msg.note))
        out[name] = evs
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_midi_file_real_time_positions_and_named_tracks(bridge_proc, tmp_path: Path, sig: int) -> None:  # type: ignore[no-untyped-def]
    mid = tmp_path / "out.mid"
    b = bridge_proc(["--no-midi", "--midi-file", str(mid)])
    b.send("/nn/alpha/grad_norm/fc1", A4_NORM)
    time.sleep(0.5)
    b.send("/nn/beta/grad_norm/fc1", 1.0)
    time.sleep(0.5)
    b.send("/nn/alpha/grad_norm/fc1", A4_NORM)
    time.sleep(0.1)
    rc, err = b.stop(sig)
    assert rc == 0, err
    tracks = notes(mid)
    # A track per run and channel, named after the voice that plays on it (docs/ableton.md).
    assert set(tracks) == {"alpha fc1 grad", "beta fc1 grad"}
    a = tracks["alpha fc1 grad"]
    assert [(s, n) for _, s, n in a] == [(0x90, 69), (0x80, 69), (0x90, 69), (0x80, 69)]
    assert a[0][0] == pytest.approx(0.0, abs=0.01)
    assert a[1][0] == pytest.approx(0.15, abs=0.01)  # note length 150 ms
    assert a[2][0] == pytest.approx(1.0, abs=0.1)  # real time between the sends
    assert tracks["beta fc1 grad"][0][0] == pytest.approx(0.5, abs=0.1)


def test_midi_file_is_valid_while_running(bridge_proc, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mid = tmp_path / "live.mid"
    b = bridge_proc(["--no-midi", "--midi-file", str(mid)])
    for i in range(10):
        b.send("/nn/r/grad_norm/fc1", 10 ** (-3 + i / 3))
        time.sleep(0.06)  # slower than the default rule's 20 notes/s limit
    time.sleep(2.5)  # one periodic flush
    on_disk = notes(mid)  # parses while the bridge still runs
    assert sum(1 for _, s, _ in on_disk["r fc1 grad"] if s == 0x90) == 10
    b.stop(signal.SIGKILL)
    assert notes(mid) == on_disk  # a crash keeps what was flushed


@pytest.mark.fluidsynth
def test_fluidsynth_renders_the_midi_file_at_the_right_pitch(bridge_proc, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    if not shutil.which("fluidsynth"):
        pytest.fail("fluidsynth is not installed: run the README's test command")
    cfg = tmp_path / "long.toml"
    cfg.write_text('[[mappings]]\nmatch = "/nn/{run}/grad_norm/{layer}"\nlength_ms = 800\n')
    mid, wav = tmp_path / "a4.mid", tmp_path / "a4.wav"
    b = bridge_proc(["--no-midi", "--config", str(cfg), "--midi-file", str(mid)])
    b.send("/nn/r/grad_norm/fc1", A4_NORM)
    time.sleep(0.2)
    b.stop()
    subprocess.run(["fluidsynth", "-ni", "-g", "1.0", "-r", "48000", "-F", str(wav), SF2, str(mid)],
                   check=True, capture_output=True, timeout=60)
    x, sr = sf.read(str(wav))
    x = x.mean(axis=1) if x.ndim == 2 else x
    assert rms(x) > 0.01
    assert dominant_hz(x[: int(0.8 * sr)], sr) == pytest.approx(440, abs=5)


@pytest.mark.jack
@pytest.mark.fluidsynth
def test_fluidsynth_plays_the_live_midi(bridge_proc, recorder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fs = subprocess.Popen(
        ["fluidsynth", "-m", "jack", "-a", "jack", "-r", "48000", "-g", "1.0",
         "-o", "midi.jack.id=fsynth", "-o", "audio.jack.id=fsynth", SF2],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        recorder.connect_when_present("fsynth:left", timeout=20)
        cfg = tmp_path / "long.toml"
        cfg.write_text('[[mappings]]\nmatch = "/nn/{run}/grad_norm/{layer}"\nlength_ms = 600\n')
        b = bridge_proc(["--midi-api", "jack", "--midi-port", "fsynth", "--config", str(cfg)])
        b.wait_output_ok("midi")
        n0 = len(recorder.chunks)
        b.send("/nn/r/grad_norm/fc1", A4_NORM)
        time.sleep(0.9)
        b.stop()
        x = np.concatenate(recorder.chunks[n0:])
        assert rms(x) > 0.005
        assert dominant_hz(x, recorder.sr) == pytest.approx(440, abs=5)
    finally:
        assert fs.stdin is not None
        fs.stdin.write("quit\n")
        fs.stdin.flush()
        try:
            fs.wait(10)
        except subprocess.TimeoutExpired:
            fs.kill()
            fs.wait()
        fs.stdin.close()


def test_a_long_session_goes_on_in_numbered_files(tmp_path: Path) -> None:
    from trainsound.bridge.config import from_dict
    from trainsound.bridge.outputs.midifile import MidiFileOut
    from trainsound.bridge.pipeline import Pipeline
    from trainsound.bridge.wire.osc import encode_message

    cfg = from_dict({"alarms": {"enabled": False}})  # a 1000× sawtooth of grad norms would be "exploding"
    out = MidiFileOut(cfg, path=tmp_path / "long.mid", max_events=100)
    pipe = Pipeline(cfg, [out])
    for i in range(150):  # a note-on and its note-off per message: 300 events, 100 per file
        pipe.feed_message(i * 0.2, encode_message("/nn/r/grad_norm/fc1", [10 ** (-3 + (i % 7) / 2)]))
        pipe.tick(i * 0.2 + 0.1)
    pipe.close(40.0)
    parts = [tmp_path / "long.mid", tmp_path / "long.1.mid", tmp_path / "long.2.mid"]
    counts = [sum(1 for _, s, _ in notes(p)["r fc1 grad"] if s == 0x90) for p in parts]
    assert sum(counts) == 150 and all(c > 0 for c in counts)
    for p in parts:  # every part is complete: every note that starts there ends there
        evs = notes(p)["r fc1 grad"]
        assert sum(1 for _, s, _ in evs if s == 0x90) == sum(1 for _, s, _ in evs if s == 0x80)


def test_a_rendered_track_named_after_a_voice_holds_only_that_voice(tmp_path: Path) -> None:
    """Issue 26 #2: ``run1 loss`` holds the loss's CC 74 and no note of layer 0 (they share channel 1 on the
    live port, as the engine lays a run out); each layer's track holds its notes and its weight CCs only."""
    import sys

    from trainsound.bridge.wire.osc import encode_message
    from trainsound.bridge.wire.session import SessionWriter

    session = tmp_path / "s.tsr"
    with open(session, "wb") as fh:
        w = SessionWriter(fh, start=10.0)
        for step in range(20):
            t = 10.0 + step * 0.25
            w.write(t, encode_message("/nn/run1/step", [step]))
            for k, layer in enumerate(("fc1", "fc2")):
                w.write(t, encode_message(f"/nn/run1/grad_norm/{layer}", [10 ** (-2 + k + step / 10)]))
                w.write(t, encode_message(f"/nn/run1/weight/{layer}", [0.0, 0.1 * (1 + k), 1.0, 3.0, 1e-3]))
            w.write(t, encode_message("/nn/run1/loss", [3.0 / (1 + step)]))
            w.write(t, encode_message("/nn/run1/metric/accuracy", [step / 20]))
        w.flush()
    mid = tmp_path / "s.mid"
    r = subprocess.run([sys.executable, "-m", "trainsound.bridge", "render", str(session), "--midi-file", str(mid)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    tracks = {t.name: [m for m in t if not m.is_meta] for t in mido.MidiFile(str(mid)).tracks[1:]}
    assert {"run1 loss", "run1 fc1 grad", "run1 fc2 grad"} <= set(tracks), list(tracks)
    loss = tracks["run1 loss"]
    # The run-wide voice: the loss (CC 74) and the accuracy (CC 11), nothing of a layer.
    assert {m.control for m in loss if m.type == "control_change"} == {74, 11}
    assert not [m for m in loss if m.type in ("note_on", "note_off")]
    for layer in ("fc1", "fc2"):
        msgs = tracks[f"run1 {layer} grad"]
        assert sum(1 for m in msgs if m.type == "note_on" and m.velocity) >= 15
        assert {m.control for m in msgs if m.type == "control_change"} <= {1, 71, 120, 123}  # weight CCs, the end
        assert len({m.channel for m in msgs}) == 1
    # On the live port's channels: the loss with the run's first voice, the second layer on the next.
    ch = {name: {m.channel + 1 for m in msgs} for name, msgs in tracks.items()}
    assert ch["run1 loss"] == ch["run1 fc1 grad"] == {1} and ch["run1 fc2 grad"] == {2}
