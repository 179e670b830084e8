"""Activation spectra → sound: where the energy goes, no clicks, no DC, no NaN."""

from __future__ import annotations

import numpy as np
import pytest

from trainsound.bridge.sound.spectrum import decode_blob, render_layer, spectrum_sound

SR = 48_000


def test_a_single_bin_becomes_a_steady_sine_at_its_log_position() -> None:
    mags = np.zeros(32, np.float32)
    mags[31] = 1.0  # top bin → fmax
    x = spectrum_sound(mags, SR, seconds=0.5, fmax=4000.0)
    spec = np.abs(np.fft.rfft(x))
    assert np.fft.rfftfreq(len(x), 1 / SR)[spec.argmax()] == pytest.approx(4000.0, rel=0.02)
    assert np.abs(x).max() == pytest.approx(0.25)


def test_no_clicks_no_dc_and_silence_stays_silent() -> None:
    rng = np.random.default_rng(3)
    x = spectrum_sound(rng.uniform(0, 1, 64).astype(np.float32), SR)
    assert np.isfinite(x).all() and abs(float(x.mean())) < 1e-6
    assert abs(x[0]) < 1e-3 and abs(x[-1]) < 1e-3  # fades in and out
    # Frames join smoothly: no sample-to-sample jump far beyond the signal's own slope.
    d = np.abs(np.diff(x))
    assert d.max() < 4 * np.percentile(d, 99)
    assert not spectrum_sound(np.zeros(16, np.float32), SR).any()


def test_bad_magnitudes_are_zero_and_layers_concatenate() -> None:
    blob = np.array([1.0, np.inf, -1.0, np.nan], "<f4").tobytes()
    assert decode_blob(blob).tolist() == [1.0, 0.0, 0.0, 0.0]
    y = render_layer([np.ones(8), np.ones(8)], SR, seconds=0.2)
    assert len(y) == int(0.3 * SR) and np.isfinite(y).all()
