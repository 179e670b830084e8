"""Audio features from the rendered sound alone: synthetic perone-preset audio with known content."""

from __future__ import annotations

import numpy as np
import pytest

from trainsound.bridge.demo import features as df
from trainsound.bridge.sound.alarms import alarm_slot
from trainsound.bridge.sound.seeds import PERONE_SAMPLE_RATE, perone_gap, perone_hz, perone_tone

SR = PERONE_SAMPLE_RATE


def perone_audio(norms: list[list[float]]) -> np.ndarray:
    """What the perone preset plays for these per-step, per-layer norms (NaN → the alarm slot)."""
    parts: list[np.ndarray] = []
    for step in norms:
        for g in step:
            parts.append(perone_tone(perone_hz(g), SR) if np.isfinite(g) else alarm_slot(441, SR, 0.1))
        parts.append(np.zeros(perone_gap(SR), np.float32))
    return np.concatenate(parts).astype(np.float64)


def test_pitch_of_each_tone_is_recovered_within_half_a_percent() -> None:
    norms = [0.0, 1.0, 3.0, 10.0, 50.0]
    x = perone_audio([norms])
    starts = [a for a, _ in df.segments(x, SR)]
    assert len(starts) == 1
    slots = x[: 441 * len(norms)].reshape(len(norms), 441)
    hz, share = df.slot_pitches(slots, SR)
    assert np.allclose(hz, [perone_hz(g) for g in norms], rtol=0.005)
    assert (share > 0.9).all()


def test_alarm_is_noise_and_timed() -> None:
    x = perone_audio([[1.0, 1.0]] * 10 + [[np.nan, np.nan]] * 5)
    f = df.features(x, SR)
    assert f.alarms == 10
    assert f.tones == 20
    assert f.alarm_s == pytest.approx(10 * 0.04, abs=1e-3)


def test_no_alarm_in_loud_high_tones() -> None:
    # Tones in the alarm's 1.5–5 kHz band (and aliased ones above Nyquist) are still tones, not the alarm.
    x = perone_audio([[20.0, 40.0, 300.0, 5000.0]] * 5)
    assert df.features(x, SR).alarm_s is None


def test_trend_spread_and_median() -> None:
    rising = perone_audio([[k / 20, k / 20] for k in range(100)])
    flat = perone_audio([[1.0, 1.0]] * 100)
    fr, ff = df.features(rising, SR), df.features(flat, SR)
    assert fr.trend_oct_per_10s > 0.5
    assert abs(ff.trend_oct_per_10s) < 0.01
    assert ff.median_hz == pytest.approx(300, rel=0.005)
    assert ff.spread_oct < 0.01 < fr.spread_oct
    assert df.tells_apart(fr, ff) is not None
    assert df.tells_apart(ff, df.features(flat, SR)) is None


def test_silence_has_no_features() -> None:
    f = df.features(np.zeros(SR), SR)
    assert (f.tones, f.alarms, f.alarm_s) == (0, 0, None)


def test_table_has_a_row_per_run() -> None:
    f = df.Features(300.0, 0.1, 0.5, 800.0, 2.0, 1.25, 10, 2)
    table = df.format_table({"a": f, "b": f})
    assert table.count("\n") == 3
    assert "at 1.25 s" in table
