"""A stream that turned non-finite is silent until it is finite again, on every output (outputs/nonfinite.py).

A deep model's layers are voice groups; one NaN used to leave each group droning on its pre-NaN aggregate.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf

from trainsound.bridge.config import default
from trainsound.bridge.pipeline import Pipeline
from trainsound.bridge.replay.loop import replay
from trainsound.bridge.web.feed import Feed
from trainsound.bridge.web.snapshot import build
from trainsound.bridge.wire.session import SessionWriter, encode_message

TS = [sys.executable, "-m", "trainsound.bridge"]
LAYERS = [f"h.{i}.mlp" for i in range(20)]  # indexed names: the run's layers become voice groups
BAD = range(40, 80)  # steps whose values are all NaN
STEPS = 120
DT = 0.05


def nan_session(path: Path, layers: list[str] = LAYERS) -> None:
    """A run whose loss and every layer's norm are NaN for steps 40–79, finite before and after."""
    with open(path, "wb") as fh:
        w = SessionWriter(fh, start=0.0)
        for s in range(STEPS):
            t = DT * s
            bad = s in BAD
            w.write(t, encode_message("/nn/r/step", [s]))
            w.write(t, encode_message("/nn/r/loss", [math.nan if bad else 2.0 / (1 + s)]))
            for i, layer in enumerate(layers):
                norm = math.nan if bad else 10.0 ** (i / 10 - 1) * (1 + 0.5 * math.sin(s / 9))
                w.write(t, encode_message(f"/nn/r/grad_norm/{layer}", [norm]))
        w.flush()


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))


@pytest.mark.parametrize("preset", ["continuous", "everything", "timbre"])
def test_the_render_is_silent_while_the_values_are_nan_and_sounds_again_after(tmp_path: Path, preset: str) -> None:
    nan_session(tmp_path / "s.tsr")
    r = subprocess.run([*TS, "render", str(tmp_path / "s.tsr"), "--wav", str(tmp_path / "o.wav"), "--preset", preset],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    x, sr = sf.read(str(tmp_path / "o.wav"))
    x = x.mean(axis=1)
    sps = 8.0  # the step clock: step k at k/8 s
    before = x[int(20 / sps * sr):int(38 / sps * sr)]
    # The NaN alarm (a short noise burst) sounds at step 40; from 1.5 s on, the run has nothing to say.
    during = x[int((40 / sps + 1.5) * sr):int(79 / sps * sr)]
    after = x[int(90 / sps * sr):int(118 / sps * sr)]
    assert rms(before) > 0.05 and rms(after) > 0.05, (rms(before), rms(after))
    assert rms(during) < 1e-4, rms(during)


def test_the_web_feed_marks_the_groups_rows_nan_with_no_voice_until_finite(tmp_path: Path) -> None:
    cfg = default()
    feed = Feed(cfg)
    nan_session(tmp_path / "s.tsr")
    # The recording up to step 60 (20 steps into the NaN), then all of it.
    with open(tmp_path / "part.tsr", "wb") as fh:
        w = SessionWriter(fh, start=0.0)
        from trainsound.bridge.wire.session import iter_records

        for t, raw in iter_records(tmp_path / "s.tsr"):
            if t <= 60 * DT + 1e-9:
                w.write(t, raw)
        w.flush()
    replay(tmp_path / "part.tsr", Pipeline(cfg, [feed]))
    [run] = build(feed.copy(), cfg)["runs"]
    groups = [row for row in run["rows"] if row["id"].startswith("group:")]
    assert len(groups) >= 4
    assert all(row["value"] == "NaN" and row["voices"] == [] for row in groups), groups
    feed = Feed(cfg)
    replay(tmp_path / "s.tsr", Pipeline(cfg, [feed]))
    [run] = build(feed.copy(), cfg)["runs"]
    groups = [row for row in run["rows"] if row["id"].startswith("group:")]
    assert all(isinstance(row["value"], float) and len(row["voices"]) == 1 for row in groups), groups


def test_the_midi_file_holds_no_group_note_while_its_layers_are_nan(tmp_path: Path) -> None:
    nan_session(tmp_path / "s.tsr")
    r = subprocess.run([*TS, "render", str(tmp_path / "s.tsr"), "--midi-file", str(tmp_path / "o.mid"),
                        "--bpm", "120", "--steps-per-beat", "4"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    mf = mido.MidiFile(str(tmp_path / "o.mid"))
    alarm_channel = default().alarm.channel - 1
    starts: list[float] = []
    for track in mf.tracks:
        t = 0
        for msg in track:
            t += msg.time
            if msg.type == "note_on" and msg.velocity > 0 and msg.channel != alarm_channel:
                starts.append(t / mf.ticks_per_beat * 4)  # in steps: 4 a beat
    assert any(s < 40 for s in starts) and any(s >= 80 for s in starts)
    assert not [s for s in starts if 41 <= s < 80], sorted(s for s in starts if 41 <= s < 80)[:10]


@pytest.mark.pyo
@pytest.mark.parametrize(("patch", "layers"), [("grad_chord", ["fc1", "fc2"]), ("loss_sine", ["fc1"])])
def test_pyo_patches_silence_a_stream_while_it_is_nan(tmp_path: Path, patch: str, layers: list[str]) -> None:
    pytest.importorskip("pyo")
    nan_session(tmp_path / "s.tsr", layers)
    r = subprocess.run([*TS, "render", str(tmp_path / "s.tsr"), "--wav", str(tmp_path / "o.wav"),
                        "--pyo-patch", patch], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    x, sr = sf.read(str(tmp_path / "o.wav"))
    x = x.mean(axis=1) if x.ndim > 1 else x
    info = sf.info(str(tmp_path / "o.wav"))
    # Both renders are on the step clock: step k at k/8 s.
    assert info.duration >= STEPS / 8
    before = x[int(32 / 8 * sr):int(40 / 8 * sr)]  # the last second before the NaN: the pitch it would hold
    f_before = np.fft.rfftfreq(len(before), 1 / sr)[np.abs(np.fft.rfft(before * np.hanning(len(before)))).argmax()]
    during = x[int((40 / 8 + 3.0) * sr):int(79 / 8 * sr)]  # after the alarm's siren
    spec = np.abs(np.fft.rfft(during * np.hanning(len(during))))
    freqs = np.fft.rfftfreq(len(during), 1 / sr)
    near = spec[np.abs(freqs - f_before) < 15].max() if len(during) else 0.0
    # The voice heard before the NaN is gone (at most the siren's leakage at its frequency).
    assert near < 0.01 * np.abs(np.fft.rfft(before * np.hanning(len(before)))).max() * len(during) / len(before)
