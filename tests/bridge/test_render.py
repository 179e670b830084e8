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
    assert abs(info.duration - (99 * 0.05 + 2.0)) < 0.02  # last message + the replay's 2 s tail
    x, _ = sf.read(str(tmp_path / "o.wav"))
    assert np.isfinite(x).all() and np.abs(x).max() > 0.05
    png = (tmp_path / "o.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


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
