"""Seed presets: perone sample-for-sample, sonnify's loss formula, preset errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from trainsound.bridge.config import default
from trainsound.bridge.config.presets import PRESETS, apply_preset
from trainsound.bridge.errors import ConfigError
from trainsound.bridge.replay.render import render
from trainsound.bridge.sound.seeds import perone_gap, perone_hz, perone_tone, sonnify_hz
from trainsound.bridge.wire.session import SessionWriter, encode_message

LAYERS = ("conv1", "conv2", "fc1", "fc2")


def perone_session(path: Path, norms: np.ndarray) -> None:
    """201 steps × 4 layers as a client sends them: step, then each layer's grad norm."""
    with open(path, "wb") as fh:
        w = SessionWriter(fh, start=1000.0)
        for step, row in enumerate(norms):
            t = 1000.0 + step * 0.013  # wall time is irrelevant to perone: it is step-clocked
            w.write(t, encode_message("/nn/mnist/step", [step]))
            for layer, v in zip(LAYERS, row, strict=True):
                w.write(t + 0.001, encode_message(f"/nn/mnist/grad_norm/{layer}", [float(v)]))
        w.flush()


def dominant_hz_ls(tones: np.ndarray, sr: int, grid: np.ndarray) -> np.ndarray:
    """Per tone (row), the frequency on ``grid`` whose sinusoid (any phase) best explains it (least squares)."""
    n = np.arange(tones.shape[1])
    s, c = np.sin(2 * np.pi * np.outer(grid, n) / sr), np.cos(2 * np.pi * np.outer(grid, n) / sr)
    ps, pc = tones @ s.T, tones @ c.T
    ss, cc, sc = (s * s).sum(1), (c * c).sum(1), (s * c).sum(1)
    det = ss * cc - sc * sc
    explained = (ps * ps * cc - 2 * ps * pc * sc + pc * pc * ss) / det
    return grid[np.argmax(explained, axis=1)]


def test_perone_matches_the_seed_formula_sample_for_sample(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    norms = rng.uniform(0.3, 8.0, (201, 4))
    norms[180, 2] = math.nan  # the seed's LR 1.0 / batch 256 run ended in NaN
    norms = norms.astype(np.float32).astype(np.float64)  # what OSC carries: float32
    perone_session(tmp_path / "s.tsr", norms)
    summary = render(tmp_path / "s.tsr", tmp_path / "p.wav", preset="perone")
    x, sr = sf.read(str(tmp_path / "p.wav"), dtype="float32")
    assert sr == 44_100 and x.ndim == 1
    assert len(x) == 201 * (4 * 441 + 882) == 531_846  # 201 × 60 ms = 12.06 s, like the seed
    assert summary["health"]["steps"] == 201 and summary["health"]["alarms"] == 1
    expected = np.concatenate([
        np.concatenate([perone_tone(perone_hz(v)) if math.isfinite(v) else np.full(441, np.nan, np.float32)
                        for v in row] + [np.zeros(perone_gap(), np.float32)])
        for row in norms
    ])
    finite = np.isfinite(expected)
    assert np.array_equal(x[finite], expected[finite])
    # The NaN slot holds the alarm (band noise), never NaN samples.
    slot = x[~finite]
    assert np.isfinite(slot).all() and 0.05 < np.abs(slot).max() <= 0.1
    # Each tone's dominant frequency is 200 + 100·norm within 1 %.
    tones = x[: 201 * 2646].reshape(201, 2646)[:, : 4 * 441].reshape(201 * 4, 441)
    ok = np.isfinite(norms.ravel())
    got = dominant_hz_ls(tones[ok], sr, np.arange(150.0, 1100.0, 0.5))
    want = 200 + 100 * norms.ravel()[ok]
    assert np.abs(got / want - 1).max() < 0.01


def test_sonnify_loss_formula_and_clamp(tmp_path: Path) -> None:
    path = tmp_path / "l.tsr"
    losses = [2.0, 1.0, 0.5, 3.0, 8.0]
    with open(path, "wb") as fh:
        w = SessionWriter(fh, start=0.0)
        for i, v in enumerate(losses):
            w.write(10.0 + 0.5 * i, encode_message("/nn/r/loss", [v]))
        w.flush()
    render(path, tmp_path / "l.wav", preset="sonnify-loss")
    x, sr = sf.read(str(tmp_path / "l.wav"), dtype="float32")
    for i, v in enumerate(losses):
        seg = x[int((0.5 * i + 0.05) * sr) : int((0.5 * i + 0.45) * sr), 0]
        spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), 1 << 18))
        hz = np.fft.rfftfreq(1 << 18, 1 / sr)[spec.argmax()]
        assert hz == pytest.approx(sonnify_hz(v, 2.0), rel=0.005)
    # Above the first loss the pitch goes on rising (the seed stuck at 1000 Hz): 4× the first loss, +0.6 oct.
    assert sonnify_hz(3.0, 2.0) > 1000.0 and sonnify_hz(8.0, 2.0) == pytest.approx(1000 * 2 ** np.log10(4))


def test_presets_are_named_and_unknown_ones_list_the_known() -> None:
    assert PRESETS == ("continuous", "everything", "perone", "timbre", "sonnify-loss", "ab", "diff")
    assert apply_preset(default(), "continuous") == default()
    known = "continuous, everything, perone, timbre, sonnify-loss, ab, diff"
    with pytest.raises(ConfigError, match=rf"^preset must be one of {known}; got 'nope'$"):
        apply_preset(default(), "nope")


def test_timbre_hears_vanishing_gradients_as_the_upper_partials_fading(tmp_path: Path) -> None:
    """Eight blocks: the lower four keep their norm, the upper four vanish (1 → 1e-4) over 40 steps."""
    path = tmp_path / "v.tsr"
    with open(path, "wb") as fh:
        w = SessionWriter(fh, start=0.0)
        for s in range(40):
            w.write(0.1 * s, encode_message("/nn/r/step", [s]))
            for i in range(8):
                norm = 1.0 if i < 4 else 10.0 ** (-4 * s / 39)
                w.write(0.1 * s + 1e-4, encode_message(f"/nn/r/grad_norm/blocks.{i}.fc", [norm]))
        w.flush()
    render(path, tmp_path / "v.wav", preset="timbre", sample_rate=16_000)
    x, sr = sf.read(str(tmp_path / "v.wav"), dtype="float64")
    m = x.mean(axis=1)

    def level(t0: float, hz: float) -> float:
        seg = m[int(t0 * sr) : int((t0 + 0.5) * sr)]
        spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
        f = np.fft.rfftfreq(len(seg), 1 / sr)
        return float(spec[np.abs(f - hz) < 5].max())

    for k in range(1, 9):  # partial k: block k-1
        early, late = level(0.3, 110.0 * k), level(4.3, 110.0 * k)
        if k <= 4:
            assert late == pytest.approx(early, rel=0.1), k
        else:
            assert late < 0.3 * early, (k, early, late)
