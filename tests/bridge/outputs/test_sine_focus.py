"""A voice group brought forward in the sine output's foreground budget: heard ~15 dB over its bed, in the WAV."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile as sf

from trainsound.bridge.config import default
from trainsound.bridge.mapping.solo import find_target
from trainsound.bridge.outputs.sine import SineOut
from trainsound.bridge.outputs.sine_focus import MAX_FORWARD
from trainsound.bridge.pipeline import Pipeline
from trainsound.bridge.wire.osc import encode_message

HOLD = 0.2
T0 = 1_700_000_000.0
STEPS = 60
LAYERS = 6


def feed(p: Pipeline, i: int) -> None:
    t = T0 + i * HOLD
    p.feed_message(t, encode_message("/nn/run/step", [i]))
    p.feed_message(t, encode_message("/nn/run/loss", [2.0 / (1 + i)]))
    for k in range(LAYERS):  # steady norms a decade apart: each group's bed voice holds one pitch
        p.feed_message(t, encode_message(f"/nn/run/grad_norm/l{k}", [10.0 ** (k - 3)]))
    for k in range(1, 10):
        p.tick(t + k * HOLD / 10)


def amplitude(x: np.ndarray, sr: int, t0: float, t1: float, hz: float) -> float:
    """The amplitude of the sine at exactly ``hz`` over ``t0..t1`` seconds (Hann-windowed projection: no FFT
    bin's scalloping; the neighbouring groups sound 3 semitones away)."""
    seg = x[int(t0 * sr) : int(t1 * sr)].mean(axis=1)
    w = np.hanning(len(seg))
    ph = np.exp(-2j * np.pi * hz * np.arange(len(seg)) / sr)
    return float(np.abs(np.sum(seg * w * ph)) * 2 / w.sum())


def test_a_group_brought_forward_is_about_15_db_over_its_bed_at_the_same_pitch(tmp_path: Path) -> None:
    cfg = default()
    out = SineOut(cfg, wav=tmp_path / "f.wav", keep_tracks=True)
    p = Pipeline(cfg, [out])
    for i in range(STEPS):
        if i == STEPS // 2:
            out.bring_forward("run", "l3", math.inf)
        feed(p, i)
    p.close(T0 + STEPS * HOLD)
    assert out.forwarded() == [{"run": "run", "group": "l3", "left": None}]
    x, sr = sf.read(str(tmp_path / "f.wav"), dtype="float32")
    bed, front = out.tracks["run/l3 (bed)"], out.tracks["run/l3 (forward)"]
    hz = front[-1][1]
    assert abs(bed[-1][1] - hz) < 1e-6  # the same pitch: the listener's own voice, louder
    half = STEPS // 2 * HOLD
    before = amplitude(x, sr, half - 2.5, half - 0.1, hz)
    after = amplitude(x, sr, half + 0.3, STEPS * HOLD - 0.2, hz)
    gain_db = 20 * math.log10(after / before)
    # Another group stays in the bed: it only follows the master gain (1/√voices counts the new voice).
    other = out.tracks["run/l1 (bed)"][-1][1]
    master_db = 20 * math.log10(amplitude(x, sr, half + 0.3, STEPS * HOLD - 0.2, other)
                                / amplitude(x, sr, half - 2.5, half - 0.1, other))
    # 20·log10(0.8/0.14) = 15.1 dB over the bed it left, less the master gain's step (measured 13.5 and −1.6).
    assert 12.5 <= gain_db <= 15.5, gain_db
    assert -2.5 < master_db < 0.0, master_db
    assert abs((gain_db - master_db) - 20 * math.log10(0.8 / 0.14)) < 0.3, (gain_db, master_db)


def test_at_most_two_forward_the_oldest_goes_back_and_time_runs_out(tmp_path: Path) -> None:
    cfg = default()
    out = SineOut(cfg, wav=tmp_path / "f.wav", keep_tracks=True)
    p = Pipeline(cfg, [out])
    for i in range(10):
        feed(p, i)
    now = T0 + 10 * HOLD
    out.bring_forward("run", "l0", now + 1.0)
    out.bring_forward("run", "l1", math.inf)
    out.bring_forward("run", "l2", math.inf)
    assert [f["group"] for f in out.forwarded()] == ["l1", "l2"][:MAX_FORWARD]
    out.bring_forward("run", "l1", -math.inf)  # until in the past: sent back
    assert [f["group"] for f in out.forwarded()] == ["l2"]
    out.bring_forward("run", "l4", now + 1.0)
    p.tick(now + 0.5)
    assert [f["group"] for f in out.forwarded()] == ["l2", "l4"]
    p.tick(now + 1.01)  # l4's second is up
    assert [f["group"] for f in out.forwarded()] == ["l2"]
    out.bring_forward("", None, now)  # every group back
    assert out.forwarded() == []
    feed(p, 11)
    p.close(T0 + 12 * HOLD)
    # Sent back, l0, l1 and l4 sound in their bed voices again from where they were.
    tr = out.tracks
    assert tr["run/l1 (bed)"][-1][0] > tr["run/l1 (forward)"][-1][0]


def test_learning_a_groups_notes_brings_it_forward_for_the_learn(tmp_path: Path) -> None:
    cfg = default()
    out = SineOut(cfg, wav=tmp_path / "f.wav")
    p = Pipeline(cfg, [out])
    for i in range(10):
        feed(p, i)
    now = T0 + 10 * HOLD
    target = find_target(p.engine, "grad_norm_notes/run/l2")
    assert target is not None and target.kind == "notes"
    p.learn(target, now, 3.0)
    p.tick(now + 1.0)
    assert out.forwarded() == [{"run": "run", "group": "l2", "left": 2.0}]
    p.tick(now + 3.0)
    assert out.forwarded() == []
    p.close(now + 3.0)
