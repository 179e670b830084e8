"""The sine output live: a real bridge process plays through PyAudio into a private jackd.

A JACK recorder captures what PortAudio played; we assert the pitch and level the mapping promises,
silence after shutdown, and a valid WAV of what was heard after SIGTERM.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from support import dominant_hz, rms

from trainsound.bridge.mapping.scales import log_scale
from trainsound.bridge.sound.maps import pitch_hz

pytestmark = pytest.mark.jack


def test_live_pitch_level_silence_after_shutdown_and_wav(bridge_proc, recorder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    wav = tmp_path / "live.wav"
    # One voice over the whole pitch range at the note rule's level: no foreground budget (docs/sound.md).
    b = bridge_proc(["--no-midi", "--audio", "--wav", str(wav), "--preset", "everything"])
    recorder.connect_when_present("PortAudio:out_0")
    b.send("/nn/run/grad_norm/fc1", 0.5)
    time.sleep(0.8)
    st = b.status()["outputs"]["sine"]
    b.send("/nn/run/grad_norm/fc1", 20.0)
    time.sleep(0.8)
    rc, err = b.stop()
    time.sleep(0.3)
    x = recorder.stop()
    sr = recorder.sr
    assert rc == 0, err
    # Underruns are counted and reported; their absence under load is bench/bench_render.py's job
    # (a non-realtime jackd on a shared 2-core machine may xrun on its own).
    assert st["voices"] == 1 and isinstance(st["underruns"], int) and st["device"] == "system"
    loud = np.flatnonzero(np.abs(x) > 1e-3)
    assert loud.size, "nothing was played"
    # Two held values: the first then the second pitch, each at the promised level.
    level = 0.5 * 96 / 127 * np.sqrt(0.5)  # note-rule gain × velocity, centre pan, one voice
    segs = np.split(x[loud[0] : loud[-1] + 1], [int(0.8 * sr)])
    for seg, value in zip(segs, (0.5, 20.0), strict=True):
        mid = seg[int(0.1 * sr) : -int(0.1 * sr)]
        assert dominant_hz(mid, sr) == pytest.approx(pitch_hz(log_scale(value, 1e-4, 1e2)), rel=0.01)
        assert np.abs(mid).max() == pytest.approx(level, rel=0.02)
        assert rms(mid) == pytest.approx(level / np.sqrt(2), rel=0.02)
    # After shutdown: silence (the voice faded out; no click at the end).
    assert np.abs(x[loud[-1] + 1 :]).max(initial=0.0) < 1e-3
    slope = level * 2 * np.pi * pitch_hz(log_scale(20.0, 1e-4, 1e2)) / sr  # steepest slope of the last sine
    assert np.abs(np.diff(x[loud[-1] - 600 : loud[-1] + 2])).max() <= slope * 1.05
    # The WAV holds what was heard, with a valid header after SIGTERM.
    info = sf.info(str(wav))
    assert info.subtype == "FLOAT" and info.samplerate == sr and info.channels == 2
    y, _ = sf.read(str(wav), dtype="float32")
    assert np.isfinite(y).all() and info.frames > 1.4 * sr
    assert dominant_hz(y[int(0.2 * sr) : int(0.6 * sr), 0][np.abs(y[int(0.2 * sr) : int(0.6 * sr), 0]) > 0], sr) > 0


def test_no_audio_device_is_one_line_and_the_bridge_goes_on(bridge_proc, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    b = bridge_proc(["--no-midi", "--audio", "--audio-device", "no-such-card", "--record", str(tmp_path / "s.tsr")])
    b.send("/nn/run/loss", 0.5)
    time.sleep(0.2)
    assert b.status()["accepted"] == 1
    rc, err = b.stop()
    assert rc == 0
    lines = [ln for ln in err.splitlines() if "output sine unavailable" in ln]
    assert len(lines) == 1 and "no audio output device matching 'no-such-card'" in lines[0]
    assert "Traceback" not in err


def test_live_perone_plays_every_step_from_the_engine_process(bridge_proc, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    wav = tmp_path / "perone.wav"
    b = bridge_proc(["--no-midi", "--audio", "--preset", "perone", "--wav", str(wav)])
    for step in range(5):
        for layer, value in (("a", 1.0), ("b", 3.0)):
            b.send(f"/nn/run/grad_norm/{layer}", value)
        b.send("/nn/run/step", step)
    time.sleep(0.8)
    st = b.status()["outputs"]["sine"]
    rc, err = b.stop()
    assert rc == 0, err
    assert st["steps"] == 5 and st["dropped_steps"] == 0 and isinstance(st["underruns"], int)
    y, sr = sf.read(str(wav), dtype="float32")
    assert y.ndim == 1 and np.isfinite(y).all()
    # Ten 10 ms tones (300 and 500 Hz, amplitude 0.1), each step followed by 20 ms of silence.
    loud = np.flatnonzero(np.abs(y) > 1e-3)
    assert loud.size > 0.8 * 10 * 0.010 * sr and np.abs(y).max() == pytest.approx(0.1, rel=0.01)
    tones = y[loud[0] : loud[0] + int(0.020 * sr)]
    assert dominant_hz(tones[: int(0.010 * sr)], sr) == pytest.approx(300, abs=60)
    assert dominant_hz(tones[int(0.010 * sr) :], sr) == pytest.approx(500, abs=60)


def test_bridge_killed_the_engine_still_finishes_the_wav(bridge_proc, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    wav = tmp_path / "killed.wav"
    b = bridge_proc(["--no-midi", "--audio", "--wav", str(wav)])
    b.send("/nn/run/grad_norm/fc1", 0.5)
    time.sleep(0.6)
    b.stop(signal.SIGKILL)
    deadline = time.time() + 10
    size = -1
    while time.time() < deadline and wav.stat().st_size != size:  # the engine fades out and closes the file
        size = wav.stat().st_size
        time.sleep(0.5)
    info = sf.info(str(wav))
    y, sr = sf.read(str(wav), dtype="float32")
    assert info.frames == len(y) and len(y) > 0.4 * sr  # the header covers every sample written
    assert np.isfinite(y).all() and np.abs(y[-64:]).max() < 1e-3  # faded out, not cut


def test_live_a_group_brought_forward_is_played_about_15_db_louder(bridge_proc, jack_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from trainsound.bridge.service.control import ask

    wav = tmp_path / "forward.wav"
    b = bridge_proc(["--no-midi", "--audio", "--wav", str(wav)])  # the foreground budget (docs/sound.md)

    def feed(seconds: float) -> None:
        t_end = time.time() + seconds
        while time.time() < t_end:  # steady norms a decade apart: each group's bed voice holds one pitch
            b.send("/nn/r/loss", 0.5)
            for k in range(6):
                b.send(f"/nn/r/grad_norm/l{k}", 10.0 ** (k - 3))
            time.sleep(0.05)

    feed(2.0)
    reply = ask("127.0.0.1", b.port, "/trainsound/forward", ("r", "l3"))
    assert reply["forward"] == [{"run": "r", "group": "l3", "left": None}]
    feed(2.0)
    rc, err = b.stop()
    assert rc == 0, err
    y, sr = sf.read(str(wav), dtype="float32")
    mono = y.mean(axis=1)
    loud = np.flatnonzero(np.abs(mono) > 1e-3)
    n = sr  # equal windows before and after: the same bins, the same scalloping
    a, z = loud[0] + int(0.8 * sr), loud[-1] - int(0.3 * sr)
    spec = [np.abs(np.fft.rfft(mono[s : s + n] * np.hanning(n))) for s in (a, z - n)]
    f = np.fft.rfftfreq(n, 1 / sr)
    bed = np.flatnonzero((f > 290) & (f < 835))
    # The bed's six voices: the strongest bin of each, lowest first (group g sounds in slice g).
    peaks = sorted(bed[np.argsort(spec[0][bed])[-60:]])
    voices: list[list[int]] = []
    for k in peaks:
        if voices and k - voices[-1][-1] <= 3:
            voices[-1].append(k)
        else:
            voices.append([k])
    assert len(voices) == 6, [f[v[0]] for v in voices]
    at = [max(v, key=lambda k: spec[0][k]) for v in voices]
    step = [20 * np.log10(spec[1][k] / spec[0][k]) for k in at]
    # l3 (the fourth slice) 15.1 dB over the others (13.5 dB up, the rest 1.6 dB down with the master gain).
    assert 12.0 < step[3] < 15.5, step
    assert all(-2.5 < s < 0.0 for i, s in enumerate(step) if i != 3), step
    assert abs(step[3] - np.mean([s for i, s in enumerate(step) if i != 3]) - 15.1) < 0.6, step
