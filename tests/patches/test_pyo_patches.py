"""Every pyo patch rendered offline from a recorded session: real pyo, no sound card.

Each test checks what its patch's docstring promises a listener.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from patchkit import NAN, SR, band_energy, seg
from support import dominant_hz, rms

pytestmark = pytest.mark.pyo

ALARM_BANDS = (880.0, 1175.0)


def alarm_share(x: np.ndarray) -> float:
    return sum(band_energy(x, SR, f, 20.0) for f in ALARM_BANDS)


def sane(x: np.ndarray, seconds: float) -> None:
    assert np.isfinite(x).all(), "NaN/Inf samples in the WAV"
    assert len(x) >= int(seconds * SR)
    assert rms(x) > 0.01, "silent render"
    assert np.abs(x).max() <= 1.0


def steps(n: int, dt: float, t0: float = 0.0) -> list[float]:
    return [t0 + i * dt for i in range(n)]


# -- loss_sine -------------------------------------------------------------------
def test_loss_sine_lower_loss_is_lower_pitch(render) -> None:
    msgs = [(t, "/nn/r/loss", [2.0]) for t in steps(20, 0.05)]
    msgs += [(t, "/nn/r/loss", [0.5]) for t in steps(20, 0.05, 1.0)]
    x = render("loss_sine", msgs)
    sane(x, 2.0)
    # soNNify: 200 + (loss / first_loss) · 800 → first loss 1000 Hz, a quarter of it 400 Hz.
    assert dominant_hz(seg(x, 0.2, 0.9), SR) == pytest.approx(1000, abs=5)
    assert dominant_hz(seg(x, 1.3, 1.9), SR) == pytest.approx(400, abs=5)


def test_loss_sine_follows_val_loss_when_present(render) -> None:
    msgs = [(t, "/nn/r/loss", [1.0]) for t in steps(40, 0.05)]
    msgs += [(0.0, "/nn/r/metric/val_loss", [4.0]), (1.0, "/nn/r/metric/val_loss", [1.0])]
    x = render("loss_sine", msgs)
    assert dominant_hz(seg(x, 1.3, 1.9), SR) == pytest.approx(400, abs=5)


# -- weight_ensemble ---------------------------------------------------------------
def weights(t: float, layer: str, mean: float) -> tuple[float, str, list[float]]:
    return (t, f"/nn/r/weight/{layer}", [mean, 0.1, 0.5, 3.0, 1e-3])


def test_weight_ensemble_chord_in_tune_then_detuned_by_weight_change(render) -> None:
    layers = ["l0", "l1", "l2", "l3"]
    msgs = []
    for i, t in enumerate(steps(60, 0.05)):
        # 0..1.5 s: weights still → in tune; 1.5..3 s: every mean rises 0.005 per report → +50 Hz shift.
        mean = 0.01 if t < 1.5 else 0.01 + 0.005 * (i - 29)
        msgs += [weights(t, layer, mean) for layer in layers]
    x = render("weight_ensemble", msgs)
    sane(x, 3.0)
    still, moving = seg(x, 0.5, 1.4), seg(x, 2.1, 2.9)
    chord = (100.0, 400.0, 500.0, 600.0)
    in_tune = sum(band_energy(still, SR, f, 10) for f in chord)
    shifted = sum(band_energy(moving, SR, f + 50, 10) for f in chord)
    assert in_tune > 0.8, in_tune
    assert shifted > 0.8, shifted
    assert sum(band_energy(moving, SR, f, 10) for f in chord) < 0.1


def test_weight_ensemble_thousands_of_layers(render) -> None:
    msgs = [weights(0.01 * (i % 100), f"layer{i}", 0.01) for i in range(5000)]
    x = render("weight_ensemble", msgs)
    sane(x, 1.0)


def units(t: float, layer: str, means: np.ndarray) -> tuple[float, str, list[bytes]]:
    return (t, f"/nn/r/weight_units/{layer}", [np.asarray(means, "<f4").tobytes()])


def spectral_peaks(x: np.ndarray, floor: float = 0.05, cluster_hz: float = 30.0) -> list[float]:
    """Frequencies of the spectrum's peaks above ``floor`` × the strongest, on a 1 Hz grid.

    Maxima closer than ``cluster_hz`` count once (the strongest): the swept band-pass modulates each
    partial's level at a few Hz, which puts small sidebands a few Hz either side of it.
    """
    spec = np.abs(np.fft.rfft(x[:SR] * np.hanning(SR)))
    top = spec.max()
    i = np.flatnonzero((spec[1:-1] > spec[:-2]) & (spec[1:-1] >= spec[2:]) & (spec[1:-1] > floor * top)) + 1
    peaks: list[int] = []
    for k in i:  # bin k of a 1 s window is k Hz
        if peaks and k - peaks[-1] < cluster_hz:
            peaks[-1] = max(peaks[-1], int(k), key=lambda j: spec[j])
        else:
            peaks.append(int(k))
    return [float(k) for k in peaks]


def test_weight_ensemble_one_partial_per_unit_at_the_chords_ratios(render) -> None:
    # 8 units of one layer, weights still: soNNify's WeightsDense, one sine per neuron.
    means = np.array([0.02, -0.02, 0.01, 0.05, -0.02, 0.02, 0.02, -0.02])
    x = render("weight_ensemble", [units(t, "fc2", means) for t in steps(40, 0.05)])
    sane(x, 2.0)
    peaks = spectral_peaks(seg(x, 0.6, 1.6))
    # major 1:4:5:6 over 100 Hz, then an octave up: 100, 400, 500, 600, 200, 800, 1000, 1200
    want = [100.0, 200.0, 400.0, 500.0, 600.0, 800.0, 1000.0, 1200.0]
    assert len(peaks) == 8, peaks
    assert np.allclose(peaks, want, atol=2.0), peaks
    # the strongest unit (|0.05|, 600 Hz) rings louder than the weakest (|0.01|, 500 Hz): levels 1 and 0.6
    s = seg(x, 0.6, 1.6)
    assert band_energy(s, SR, 600, 5) > 1.5 * band_energy(s, SR, 500, 5)


def test_weight_ensemble_units_detune_when_their_mean_moves(render) -> None:
    base = np.linspace(-0.05, 0.05, 8)
    msgs = [units(t, "fc2", base + (0.0 if t < 1.5 else 0.005 * (i - 29))) for i, t in enumerate(steps(60, 0.05))]
    x = render("weight_ensemble", msgs)
    moving = seg(x, 2.1, 2.9)
    chord = (100.0, 200.0, 400.0, 500.0, 600.0, 800.0, 1000.0, 1200.0)
    # Δmean = 0.005 per report → +50 Hz on every partial: no longer harmonic
    assert sum(band_energy(moving, SR, f + 50, 10) for f in chord) > 0.8
    assert sum(band_energy(moving, SR, f, 10) for f in chord) < 0.1


def test_weight_ensemble_five_thousand_units(render) -> None:
    rng = np.random.default_rng(0)
    msgs = [units(t, "wide", rng.normal(0, 0.05, 5000)) for t in steps(20, 0.05)]
    x = render("weight_ensemble", msgs)
    sane(x, 1.0)
    assert np.abs(x).max() < 0.9  # bounded with headroom, whatever the number of units


def test_weight_units_with_nan_sound_the_alarm(render) -> None:
    msgs = [units(t, "fc2", np.full(8, 0.01)) for t in steps(10, 0.05)]
    msgs.append(units(0.6, "fc2", np.array([0.01] * 7 + [NAN])))
    x = render("weight_ensemble", msgs)
    assert alarm_share(seg(x, 0.65, 1.0)) > 0.3


# -- grad_chord ----------------------------------------------------------------------
def test_grad_chord_pitch_rises_with_grad_norm_on_a_log_scale(render) -> None:
    msgs = [(t, "/nn/r/grad_norm/fc1", [1e-2 if t < 1.0 else 10.0]) for t in steps(40, 0.05)]
    x = render("grad_chord", msgs)
    sane(x, 2.0)
    # 110 · 2^(4·u), u = log position of the norm in 1e-4..1e2: 1e-2 → u = 1/3, 10 → u = 5/6.
    assert dominant_hz(seg(x, 0.3, 0.9), SR) == pytest.approx(110 * 2 ** (4 / 3), rel=0.01)
    assert dominant_hz(seg(x, 1.3, 1.9), SR) == pytest.approx(110 * 2 ** (20 / 6), rel=0.01)


def test_grad_chord_level_follows_update_ratio(render) -> None:
    msgs = [(t, "/nn/r/grad_norm/fc1", [0.1]) for t in steps(40, 0.05)]
    msgs += [(t, "/nn/r/weight/fc1", [0.0, 0.1, 0.5, 3.0, 1e-6 if t < 1.0 else 1e-2]) for t in steps(40, 0.05)]
    x = render("grad_chord", msgs)
    quiet, loud = rms(seg(x, 0.3, 0.9)), rms(seg(x, 1.3, 1.9))
    assert loud > 3 * quiet > 0.0


def test_grad_chord_one_voice_per_layer(render) -> None:
    msgs = [(t, "/nn/r/grad_norm/a", [1e-2]) for t in steps(20, 0.05)]
    msgs += [(t, "/nn/r/grad_norm/b", [10.0]) for t in steps(20, 0.05)]
    x = seg(render("grad_chord", msgs), 0.3, 0.9)
    assert band_energy(x, SR, 110 * 2 ** (4 / 3), 10) > 0.3
    assert band_energy(x, SR, 110 * 2 ** (20 / 6), 10) > 0.3


# -- activation_spectra ------------------------------------------------------------------
def blob(peak_bin: int, bins: int = 64) -> bytes:
    m = np.exp(-0.5 * ((np.arange(bins) - peak_bin) / 1.5) ** 2).astype("<f4")
    return m.tobytes()


def test_activation_spectra_low_bins_sound_low_high_bins_high(render) -> None:
    msgs = [(t, "/nn/r/activation_spectrum/conv1", [blob(8 if t < 1.0 else 56)]) for t in steps(20, 0.1)]
    x = render("activation_spectra", msgs)
    sane(x, 2.0)
    low, high = dominant_hz(seg(x, 0.3, 0.9), SR), dominant_hz(seg(x, 1.3, 1.9), SR)
    # Bin 8 of 64 → band ≈ 8/63 of the way up 110..3520 Hz on a log scale (≈ 170 Hz); bin 56 ≈ 2300 Hz.
    assert 140 < low < 220, low
    assert 1900 < high < 2800, high


def test_activation_spectra_layered_mixes_layers(render) -> None:
    msgs = [(0.0, "/nn/r/activation_spectrum/a", [blob(8)]), (0.05, "/nn/r/activation_spectrum/b", [blob(56)])]
    x = seg(render("activation_spectra", msgs, mode="layered"), 0.3, 0.9)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    assert spec[f < 500].sum() > 0.2 * spec.sum() and spec[f > 1500].sum() > 0.2 * spec.sum()


# -- NaN alarm, every patch --------------------------------------------------------------
NAN_CASES = {
    "loss_sine": ("/nn/r/loss", [1.0], [NAN]),
    "weight_ensemble": ("/nn/r/weight/l0", [0.01, 0.1, 0.5, 3.0, 1e-3], [NAN, 0.1, 0.5, 3.0, 1e-3]),
    "grad_chord": ("/nn/r/grad_norm/fc1", [0.1], [float("inf")]),
    "activation_spectra": ("/nn/r/activation_spectrum/c", [blob(8)], [np.full(64, np.nan, "<f4").tobytes()]),
}


@pytest.mark.parametrize("patch", sorted(NAN_CASES))
def test_alarm_sounds_on_nan(render, patch: str) -> None:
    address, good, bad = NAN_CASES[patch]
    msgs = [(t, address, good) for t in steps(20, 0.05)] + [(1.0, address, bad)]
    x = render(patch, msgs)
    sane(x, 2.0)
    before, after = alarm_share(seg(x, 0.3, 0.95)), alarm_share(seg(x, 1.02, 1.5))
    assert before < 0.05, before
    assert after > 0.3, after


def test_nan_event_sounds_the_alarm(render) -> None:
    msgs = [(t, "/nn/r/loss", [1.0]) for t in steps(20, 0.05)] + [(1.0, "/nn/r/event", ["nan"])]
    x = render("loss_sine", msgs)
    assert alarm_share(seg(x, 1.02, 1.5)) > 0.3


# -- user patches and failures -----------------------------------------------------------
USER_PATCH = '''
from trainsound.patches.pyo.base import Patch


class Beep(Patch):
    """A sine at 300 Hz, then at 600 Hz once the loss is under 1."""

    def __init__(self, server, **options):
        super().__init__(server, **options)
        from pyo import Sig, Sine
        self.freq = Sig(300.0)
        self.osc = self.out(Sine(self.freq, mul=0.3))

    def on_loss(self, run, loss):
        {body}
'''


def test_user_patch_from_a_file(render, tmp_path: Path) -> None:
    path = tmp_path / "beep.py"
    path.write_text(USER_PATCH.format(body="self.freq.value = 600.0 if loss < 1 else 300.0"))
    x = render(str(path), [(0.0, "/nn/r/loss", [2.0]), (1.0, "/nn/r/loss", [0.5])])
    assert dominant_hz(seg(x, 0.2, 0.9), SR) == pytest.approx(300, abs=3)
    assert dominant_hz(seg(x, 1.2, 1.9), SR) == pytest.approx(600, abs=3)


def test_patch_that_raises_is_logged_once_and_silenced(render, tmp_path: Path, caplog) -> None:
    path = tmp_path / "broken.py"
    path.write_text(USER_PATCH.format(body="if loss < 1: raise RuntimeError('boom')"))
    msgs = [(t, "/nn/r/loss", [2.0 if t < 1.0 else 0.5]) for t in steps(40, 0.05)]
    with caplog.at_level(logging.ERROR, logger="trainsound.bridge.outputs.pyo"):
        x = render(str(path), msgs)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "broken.py" in errors[0].getMessage() and "on_loss" in errors[0].getMessage()
    assert rms(seg(x, 0.2, 0.9)) > 0.1
    assert rms(seg(x, 1.2, 1.9)) < 1e-4


def test_unknown_patch_is_one_clear_error(tmp_path: Path) -> None:
    pytest.importorskip("pyo")
    from trainsound.bridge.config import default
    from trainsound.bridge.errors import OutputUnavailable
    from trainsound.bridge.outputs.pyo import PyoOut

    with pytest.raises(OutputUnavailable, match="unknown pyo patch 'nope'; built-in: loss_sine, weight_ensemble"):
        PyoOut(default(), patch="nope", audio="offline", wav=tmp_path / "x.wav")


@pytest.mark.parametrize("patch", ["loss_sine", "weight_ensemble", "grad_chord", "activation_spectra"])
def test_fast_wild_input_renders_finite_audio(render, patch: str) -> None:
    # Values jumping over decades at 50 steps/s × 32 layers: pyo 1.1.0's SineLoop segfaulted on this.
    rnd = np.random.default_rng(0)
    msgs = []
    for t in steps(100, 0.02):
        msgs.append((t, "/nn/r/loss", [float(rnd.uniform(0.0, 10.0))]))
        for i in range(32):
            msgs.append((t, f"/nn/r/grad_norm/l{i}", [float(10 ** rnd.uniform(-6, 4))]))
            msgs.append((t, f"/nn/r/weight/l{i}", [float(rnd.uniform(-0.1, 0.1)), 0.1, 1.0, 1.0, 1e-3]))
        spectrum = rnd.random(int(rnd.integers(1, 300))).astype("<f4").tobytes()
        msgs.append((t, "/nn/r/activation_spectrum/l0", [spectrum]))
    x = render(patch, msgs)
    sane(x, 2.0)


@pytest.mark.parametrize("patch", ["grad_chord", "weight_ensemble", "activation_spectra", "loss_sine"])
def test_a_run_that_ends_falls_silent_and_another_run_keeps_sounding(render, patch: str) -> None:
    """Issue 11: ``event end`` releases the run's voices on every output; the other runs go on."""

    def run_msgs(run: str, n: int, peak: int, hz_norm: float) -> list[tuple[float, str, list[object]]]:
        out: list[tuple[float, str, list[object]]] = []
        for t in steps(n, 0.05):
            out += [(t, f"/nn/{run}/grad_norm/fc1", [hz_norm]), (t, f"/nn/{run}/loss", [2.0]),
                    (t, f"/nn/{run}/weight/fc1", [0.1 * t, 0.1, 0.5, 3.0, 1e-3]),
                    (t, f"/nn/{run}/activation_spectrum/conv1", [blob(peak)])]
        return out

    ended = [*run_msgs("a", 20, 8, 0.01), (1.0, "/nn/a/event", ["end"])]
    alone = render(patch, [*ended, (2.0, "/nn/a/step", [99])])
    assert rms(seg(alone, 0.3, 0.9)) > 0.01
    assert rms(seg(alone, 1.4, 1.9)) < 0.1 * rms(seg(alone, 0.3, 0.9)), "the ended run still sounds"
    both = render(patch, ended + run_msgs("b", 40, 40, 10.0))
    assert rms(seg(both, 1.4, 1.9)) > 0.2 * rms(seg(both, 0.3, 0.9)), "the other run fell silent too"
