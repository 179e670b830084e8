"""The sine output offline: the sound carries the numbers (fidelity), NaN alarms, determinism."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.stats import spearmanr

from trainsound.bridge.config import default
from trainsound.bridge.errors import OutputUnavailable
from trainsound.bridge.mapping.scales import log_scale
from trainsound.bridge.outputs.sine import SineOut
from trainsound.bridge.pipeline import Pipeline
from trainsound.bridge.sound.maps import norm_from_hz, pitch_hz
from trainsound.bridge.wire.osc import encode_message

HOLD = 0.2  # seconds each value is held
T0 = 1_700_000_000.0  # Unix-like times: the event clock must not lose precision


def render(tmp_path: Path, series: dict[str, np.ndarray], name: str = "out.wav",
           preset: str = "everything") -> tuple[np.ndarray, int]:
    """The layers' voices over the whole pitch range (``everything``: no foreground budget, docs/sound.md)."""
    cfg = default()
    out = SineOut(cfg, wav=tmp_path / name, preset=preset)
    p = Pipeline(cfg, [out])
    steps = len(next(iter(series.values())))
    for i in range(steps):
        t = T0 + i * HOLD
        p.feed_message(t, encode_message("/nn/run/step", [i]))
        for layer, values in series.items():
            p.feed_message(t, encode_message(f"/nn/run/grad_norm/{layer}", [float(values[i])]))
        for k in range(1, 40):
            p.tick(t + k * HOLD / 40)
    p.close(T0 + steps * HOLD)
    x, sr = sf.read(str(tmp_path / name), dtype="float32")
    return x, sr


def peak_hz(seg: np.ndarray, sr: int, lo: float, hi: float) -> float:
    """FFT peak of ``seg`` within ``lo..hi`` Hz (Hann window, zero-padded, parabolic interpolation)."""
    n = 1 << 17
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), n))
    f = np.fft.rfftfreq(n, 1 / sr)
    band = np.flatnonzero((f >= lo) & (f <= hi))
    k = band[np.argmax(spec[band])]
    a, b, c = np.log(spec[k - 1 : k + 2] + 1e-30)
    return float(f[k] + 0.5 * (a - c) / (a - 2 * b + c) * (f[1] - f[0]))


def track(x: np.ndarray, sr: int, steps: int, lo: float, hi: float) -> np.ndarray:
    mono = x.mean(axis=1)
    hz = []
    for i in range(steps):
        a, b = int((i * HOLD + 0.03) * sr), int(((i + 1) * HOLD - 0.01) * sr)
        hz.append(peak_hz(mono[a:b], sr, lo, hi))
    return np.array(hz)


def values_from_hz(hz: np.ndarray) -> np.ndarray:
    # Inverse of the default grad-norm rule (log over 1e-4..1e2) and the sine pitch map.
    return np.array([10 ** (norm_from_hz(h) * 6 - 4) for h in hz])


def test_four_layers_over_four_decades_are_recovered_from_the_wav_alone(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    steps = 40
    # Together the layers span 1e-3 … 10; each layer lives in its own decade, like real layers at
    # different gradient scales, so its voice can be told apart in the mix.
    series = {f"l{k}": 10.0 ** (k - 3 + rng.uniform(0.08, 0.92, steps)) for k in range(4)}
    x, sr = render(tmp_path, series)
    assert np.isfinite(x).all()
    for k, (layer, values) in enumerate(series.items()):
        lo, hi = (pitch_hz(log_scale(10.0 ** (k - 3 + e), 1e-4, 1e2)) for e in (0.0, 1.0))
        got = values_from_hz(track(x, sr, steps, lo, hi))
        rho = spearmanr(got, values).statistic
        assert rho >= 0.99, f"{layer}: Spearman ρ = {rho:.4f}"
        assert np.allclose(got, values, rtol=0.02), f"{layer}: values recovered within 2 %"


def test_one_voice_over_all_four_decades(tmp_path: Path) -> None:
    values = np.geomspace(1e-3, 10, 30)[np.random.default_rng(5).permutation(30)]
    x, sr = render(tmp_path, {"fc": values})
    got = values_from_hz(track(x, sr, len(values), 150, 2100))
    assert spearmanr(got, values).statistic >= 0.99
    assert np.allclose(got, values, rtol=0.02)


def test_nan_sounds_the_alarm_never_nan_samples(tmp_path: Path) -> None:
    vals = np.array([0.5, 0.5, math.nan, 0.5, 0.5])
    x, sr = render(tmp_path, {"fc": vals})
    assert np.isfinite(x).all() and np.abs(x).max() <= 1.0
    assert abs(float(x.mean())) < 1e-3
    seg = x[int(2.1 * HOLD * sr) : int(2.9 * HOLD * sr)].mean(axis=1)  # after the 5 ms fade
    spec = np.abs(np.fft.rfft(seg))
    f = np.fft.rfftfreq(len(seg), 1 / sr)
    # The voice falls silent; what sounds is the 1.5–5 kHz noise alarm.
    assert (spec[(f > 1500) & (f < 5000)] ** 2).sum() > 0.9 * (spec**2).sum()
    voice_hz = pitch_hz(log_scale(0.5, 1e-4, 1e2))
    assert peak_hz(x[int(3.2 * HOLD * sr) : int(3.9 * HOLD * sr)].mean(axis=1), sr, 100, 4000) == pytest.approx(
        voice_hz, rel=0.01)


def test_offline_render_is_deterministic(tmp_path: Path) -> None:
    series = {"a": np.linspace(0.01, 1, 10), "b": np.linspace(1, 0.01, 10)}
    render(tmp_path, series, "1.wav")
    render(tmp_path, series, "2.wav")
    assert (tmp_path / "1.wav").read_bytes() == (tmp_path / "2.wav").read_bytes()


def test_several_runs_are_placed_apart_in_stereo(tmp_path: Path) -> None:
    cfg = default()
    out = SineOut(cfg, wav=tmp_path / "r.wav", preset="everything")
    p = Pipeline(cfg, [out])
    for i, run in enumerate(("a", "b", "c")):
        p.feed_message(T0, encode_message(f"/nn/{run}/grad_norm/fc", [10.0 ** (i - 2)]))
    p.close(T0 + 1.0)
    x, sr = sf.read(str(tmp_path / "r.wav"), dtype="float32")
    left, right = (peak_hz(x[sr // 10 :, c], sr, 100, 4000) for c in (0, 1))
    hz = [pitch_hz(log_scale(10.0 ** (i - 2), 1e-4, 1e2)) for i in range(3)]
    # Run a is centred, b left, c right: the loudest voice differs per channel.
    assert left == pytest.approx(hz[1], rel=0.01) and right == pytest.approx(hz[2], rel=0.01)


def test_needs_a_wav_or_live(tmp_path: Path) -> None:
    with pytest.raises(OutputUnavailable, match="needs --wav FILE and/or --audio"):
        SineOut(default())
