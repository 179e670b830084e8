"""``trainsound render`` and the spectrogram PNG, through the real CLI."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from trainsound.bridge.sound.spectrogram import write_spectrogram
from trainsound.bridge.wire.session import SessionWriter, encode_message

TS = [sys.executable, "-m", "trainsound.bridge"]


def session(path: Path, steps: int = 100) -> None:
    with open(path, "wb") as fh:
        w = SessionWriter(fh, start=1.7e9)
        for s in range(steps):
            t = 1.7e9 + 0.05 * s
            w.write(t, encode_message("/nn/r/step", [s]))
            w.write(t, encode_message("/nn/r/loss", [1.0 / (1 + s)]))
            for i in range(3):
                w.write(t, encode_message(f"/nn/r/grad_norm/l{i}", [10.0 ** (i - 2) * (1 + 0.5 * math.sin(s / 9))]))
            w.write(t, encode_message("/nn/r/activation_spectrum/l0", [np.linspace(1, 0, 16, dtype="<f4").tobytes()]))
        w.flush()


def test_render_cli_writes_wav_and_png_faster_than_real_time(tmp_path: Path) -> None:
    session(tmp_path / "s.tsr")
    r = subprocess.run([*TS, "render", str(tmp_path / "s.tsr"), "--wav", str(tmp_path / "o.wav"), "--format", "int16",
                        "--png", str(tmp_path / "o.png")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "rendered 600 messages" in r.stderr and "× real time" in r.stderr
    info = sf.info(str(tmp_path / "o.wav"))
    assert (info.subtype, info.samplerate, info.channels) == ("PCM_16", 48_000, 2)
    # The step clock: 100 steps at 8 steps/s, the last step's slot and at most 1 s after it.
    assert 100 / 8 <= info.duration <= 100 / 8 + 1.0
    assert "step clock: 100 steps at 8 steps/s" in r.stderr
    x, _ = sf.read(str(tmp_path / "o.wav"))
    assert np.isfinite(x).all() and np.abs(x).max() > 0.05
    png = (tmp_path / "o.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def idle_then_steps(path: Path, steps: int = 40, idle: float = 8.0, rate: float = 34.0) -> None:
    """A run that idles ``idle`` s after its start event, then trains ``steps`` steps at ``rate`` steps/s."""
    with open(path, "wb") as fh:
        w = SessionWriter(fh, start=1.7e9)
        w.write(1.7e9, encode_message("/nn/r/event/start", []))
        for s in range(steps):
            t = 1.7e9 + idle + s / rate
            w.write(t, encode_message("/nn/r/step", [s]))
            w.write(t + 0.001, encode_message("/nn/r/loss", [3.0 / (1 + s)]))
            for i in range(3):
                w.write(t + 0.002, encode_message(f"/nn/r/grad_norm/l{i}", [10.0 ** (i - 2 - s / 40)]))
        w.flush()


def test_render_on_the_step_clock_trims_the_idle_start_and_shows_exactly_the_real_steps(tmp_path: Path) -> None:
    from PIL import Image

    idle_then_steps(tmp_path / "s.tsr")
    r = subprocess.run([*TS, "render", str(tmp_path / "s.tsr"), "--wav", str(tmp_path / "o.wav"),
                        "--png", str(tmp_path / "o.png")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    duration = sf.info(str(tmp_path / "o.wav")).duration
    assert 40 / 8 <= duration <= 40 / 8 + 2.0, duration
    meta = Image.open(tmp_path / "o.png").text  # type: ignore[attr-defined]
    # 3 layers (each a quiet bed voice) + the loss + the spotlight on the most changing layer (docs/sound.md)
    assert meta["Steps"] == "0-39" and meta["Voices"] == "5", meta
    wall = subprocess.run([*TS, "render", str(tmp_path / "s.tsr"), "--wav", str(tmp_path / "w.wav"),
                           "--clock", "wall"], capture_output=True, text=True, timeout=120)
    assert wall.returncode == 0 and "step clock" not in wall.stderr
    # On the wall clock the same run is a blip of 39/34 s (the idle start is trimmed there too).
    assert 39 / 34 <= sf.info(str(tmp_path / "w.wav")).duration <= 39 / 34 + 1.0


def test_a_long_run_raises_the_step_rate_to_fit_five_minutes_and_says_so(tmp_path: Path) -> None:
    with open(tmp_path / "long.tsr", "wb") as fh:
        w = SessionWriter(fh, start=0.0)
        for s in range(3000):
            w.write(s * 0.01, encode_message("/nn/r/step", [s]))
            w.write(s * 0.01, encode_message("/nn/r/loss", [3.0 / (1 + s)]))
        w.flush()
    r = subprocess.run([*TS, "render", str(tmp_path / "long.tsr"), "--wav", str(tmp_path / "o.wav"),
                        "--sample-rate", "8000"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "3000 steps at 10 steps/s (raised from 8 so that the render lasts at most 5 min)" in r.stderr
    assert 299 <= sf.info(str(tmp_path / "o.wav")).duration <= 301.5


def two_runs(path: Path, names: tuple[str, str] = ("a", "b"), steps: int = 100) -> None:
    """Two runs one after the other, each from step 0 (a service recording weeks holds many)."""
    with open(path, "wb") as fh:
        w = SessionWriter(fh, start=0.0)
        t = 0.0
        for run in names:
            for s in range(steps):
                w.write(t, encode_message(f"/nn/{run}/step", [s]))
                w.write(t, encode_message(f"/nn/{run}/loss", [2.0 / (1 + s)]))
                for i in range(3):
                    w.write(t, encode_message(f"/nn/{run}/grad_norm/l{i}", [10.0 ** (i - 2 - s / 80)]))
                t += 0.05
        w.flush()


@pytest.mark.parametrize("names", [("a", "b"), ("r", "r")])
def test_each_run_of_a_recording_gets_its_own_span_and_axis(tmp_path: Path, names: tuple[str, str]) -> None:
    from PIL import Image

    two_runs(tmp_path / "s.tsr", names)
    r = subprocess.run([*TS, "render", str(tmp_path / "s.tsr"), "--wav", str(tmp_path / "o.wav"),
                        "--png", str(tmp_path / "o.png")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    # 2 × 100 steps at 8 steps/s: each run its 12.5 s (not the second squeezed into the last second).
    duration = sf.info(str(tmp_path / "o.wav")).duration
    assert 25.0 <= duration <= 25.0 + 2.5, duration
    labels = f"{names[0]}, {names[1]}" if names[0] != names[1] else "r, r (2)"
    assert f"200 steps at 8 steps/s, 2 runs one after another ({labels}; --run NAME renders one)" in r.stderr
    meta = Image.open(tmp_path / "o.png").text  # type: ignore[attr-defined]
    assert meta["Steps"] == "0-99,0-99" and meta["Runs"] == "; ".join(f"{x} 0-99" for x in labels.split(", "))
    # Each half of the audio sounds: the second run is heard over its own 12.5 s.
    x, sr = sf.read(str(tmp_path / "o.wav"))
    second = x[int(14 * sr):int(24 * sr)]
    assert np.sqrt(np.mean(second ** 2)) > 0.05


def test_render_run_picks_one_run_and_an_unknown_name_lists_them(tmp_path: Path) -> None:
    two_runs(tmp_path / "s.tsr")
    r = subprocess.run([*TS, "render", str(tmp_path / "s.tsr"), "--wav", str(tmp_path / "b.wav"), "--run", "b"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "rendered 500 messages" in r.stderr and "step clock: 100 steps at 8 steps/s" in r.stderr
    assert 100 / 8 <= sf.info(str(tmp_path / "b.wav")).duration <= 100 / 8 + 1.0
    bad = subprocess.run([*TS, "render", str(tmp_path / "s.tsr"), "--wav", str(tmp_path / "c.wav"), "--run", "c"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"trainsound: error: {tmp_path / 's.tsr'}: no run named 'c'; its runs: a, b"
    assert not (tmp_path / "c.wav").exists()


def test_render_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.tsr").write_bytes(b"not a session")
    r = subprocess.run([*TS, "render", str(tmp_path / "bad.tsr"), "--wav", str(tmp_path / "o.wav")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    bad = tmp_path / "bad.tsr"
    assert r.stderr.strip() == f"trainsound: error: {bad}: not a trainsound session recording (bad header)"


def test_spectrogram_of_a_plain_wav(tmp_path: Path) -> None:
    sr = 22_050
    t = np.arange(sr) / sr
    sf.write(str(tmp_path / "a.wav"), 0.3 * np.sin(2 * np.pi * 440 * t), sr)
    write_spectrogram(tmp_path / "a.wav", tmp_path / "a.png", title="A4", step_times=[(0.0, 0), (1.0, 10)],
                      tracks={"fc1": [(0.0, 440.0)]})
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.pyo
def test_render_cli_through_a_pyo_patch(tmp_path: Path) -> None:
    """`trainsound render SESSION --pyo-patch loss_sine --wav out.wav`: no sound card; higher loss, higher pitch."""
    rec = tmp_path / "s.tsr"
    with open(rec, "wb") as fh:
        w = SessionWriter(fh, 0.0)
        for i in range(40):  # loss high for 1 s, then low for 1 s
            w.write(i * 0.05, encode_message("/nn/r/loss", [2.0 if i < 20 else 0.5]))
        w.flush()
    wav = tmp_path / "pyo.wav"
    r = subprocess.run([sys.executable, "-m", "trainsound.bridge", "render", str(rec), "--pyo-patch", "loss_sine",
                        "--wav", str(wav)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    x, sr = sf.read(str(wav))
    x = x.mean(axis=1) if x.ndim == 2 else x
    assert np.isfinite(x).all() and np.sqrt(np.mean(x**2)) > 0.01

    def peak(seg: np.ndarray) -> float:
        return float(np.fft.rfftfreq(len(seg), 1 / sr)[np.argmax(np.abs(np.fft.rfft(seg * np.hanning(len(seg)))))])

    high, low = peak(x[int(0.6 * sr) : int(0.95 * sr)]), peak(x[int(1.6 * sr) : int(1.95 * sr)])
    assert high > low * 1.5


@pytest.mark.pyo
def test_the_pyo_render_is_on_the_step_clock_like_the_sine_render(tmp_path: Path) -> None:
    pytest.importorskip("pyo")
    idle_then_steps(tmp_path / "s.tsr")  # 40 steps in 1.2 s of recorded time, after 8 s of idle
    lengths = {}
    for name, extra in (("sine", []), ("pyo", ["--pyo-patch", "loss_sine"])):
        r = subprocess.run([*TS, "render", str(tmp_path / "s.tsr"), "--wav", str(tmp_path / f"{name}.wav"), *extra],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "step clock: 40 steps at 8 steps/s" in r.stderr
        lengths[name] = sf.info(str(tmp_path / f"{name}.wav")).duration
    assert 40 / 8 <= lengths["pyo"] <= 40 / 8 + 2.5 and abs(lengths["pyo"] - lengths["sine"]) <= 1.0, lengths
