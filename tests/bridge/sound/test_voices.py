"""The voice bank: exact sines, continuous phase, click-free changes, bounded, no DC, no NaN."""

from __future__ import annotations

import numpy as np
import pytest
from support import dominant_hz

from trainsound.bridge.sound.alarms import alarm_sound
from trainsound.bridge.sound.maps import soft_limit
from trainsound.bridge.sound.resample import Upsampler
from trainsound.bridge.sound.voices import VoiceBank

SR = 48_000


def test_one_voice_is_the_promised_sine() -> None:
    bank = VoiceBank(SR)
    v = bank.add_voice(pan=0.0)
    bank.set(v, freq=440.0, gain=0.5)
    x = bank.render(200)
    assert dominant_hz(x[1000:, 0], SR) == pytest.approx(440.0, abs=1.0)
    assert np.abs(x[1000:, 0]).max() == pytest.approx(0.5 * np.sqrt(0.5), rel=1e-3)


DECIMATED = 3520.0  # max_freq of the continuous preset: voices at 12 kHz, upsampled ×4


@pytest.mark.parametrize("max_freq", [None, DECIMATED])
def test_block_by_block_equals_one_go(max_freq: float | None) -> None:
    def bank() -> VoiceBank:
        b = VoiceBank(SR, max_freq=max_freq)
        for i in range(3):
            b.add_voice(pan=i - 1.0)
            b.set(i, freq=200.0 * (i + 1), gain=0.3)
        return b

    one, many = bank(), bank()
    x = one.render(64)
    y = np.concatenate([many.render(1) for _ in range(64)])
    assert np.abs(x - y).max() < 1e-5


@pytest.mark.parametrize("max_freq", [None, DECIMATED])
@pytest.mark.parametrize("change", [{"freq": 1760.0}, {"gain": 0.0}, {"freq": 445.0, "gain": 0.1}])
def test_changes_are_ramped_not_clicked(change: dict[str, float], max_freq: float | None) -> None:
    bank = VoiceBank(SR, max_freq=max_freq)
    v = bank.add_voice()
    bank.set(v, freq=440.0, gain=0.8)
    a = bank.render(20)
    bank.set(v, **change)
    x = np.concatenate([a, bank.render(20)])[:, 0]
    # A click is a jump bigger than the steepest slope of the louder sine.
    slope = 0.8 * np.sqrt(0.5) * 2 * np.pi * 1760.0 / SR
    assert np.abs(np.diff(x)).max() <= slope * 1.05


def test_many_voices_stay_bounded_finite_and_dc_free() -> None:
    bank = VoiceBank(SR)
    rng = np.random.default_rng(2)
    for i in range(64):
        bank.add_voice(pan=rng.uniform(-1, 1))
        bank.set(i, freq=rng.uniform(100, 3000), gain=1.0)  # deliberately far too loud
    x = bank.render(400)
    assert np.isfinite(x).all() and np.abs(x).max() <= 1.0
    assert np.abs(x.mean(axis=0)).max() < 1e-2


def test_soft_limit_is_linear_below_the_knee_and_odd() -> None:
    x = np.linspace(-3, 3, 1001)
    y = soft_limit(x.copy())
    assert np.array_equal(y[np.abs(x) <= 0.9], x[np.abs(x) <= 0.9])
    assert np.allclose(y, -y[::-1]) and np.abs(y).max() <= 1.0 and np.abs(y[np.abs(x) < 1.5]).max() < 1.0


def test_alarm_is_noise_not_a_tone_and_has_no_dc() -> None:
    a = alarm_sound(SR)
    spec = np.abs(np.fft.rfft(a))
    f = np.fft.rfftfreq(len(a), 1 / SR)
    in_band = spec[(f > 1500) & (f < 5000)]
    assert np.isfinite(a).all() and abs(a.mean()) < 1e-3
    assert spec.max() < 0.05 * spec.sum() and (in_band**2).sum() > 0.99 * (spec**2).sum()


def test_decimated_voice_is_the_sine_with_no_image_above_6_khz() -> None:
    bank = VoiceBank(SR, max_freq=DECIMATED)
    assert bank.decimation == 4
    v = bank.add_voice(pan=0.0)
    bank.set(v, freq=3520.0, gain=0.5)
    x = bank.render(400)[4800:, 0].astype(np.float64)
    spec = np.abs(np.fft.rfft(x * np.blackman(len(x))))
    f = np.fft.rfftfreq(len(x), 1 / SR)
    assert f[np.argmax(spec)] == pytest.approx(3520.0, abs=2.0)
    assert np.abs(x).max() == pytest.approx(0.5 * np.sqrt(0.5), rel=2e-3)
    # The images of a 12 kHz voice rate (8.48, 15.52, 20.48 kHz …) are filtered out: nothing above 6 kHz
    # within 60 dB of the tone (measured: below -80 dB).
    assert 20 * np.log10(spec[f > 6000].max() / spec.max()) < -60


def test_decimated_equals_full_rate_rendering_delayed_by_the_filter() -> None:
    def bank(max_freq: float | None) -> VoiceBank:
        b = VoiceBank(SR, max_freq=max_freq)
        rng = np.random.default_rng(3)
        for i in range(5):
            b.add_voice(pan=i / 5 - 0.5)
            b.set(i, freq=rng.uniform(110, 3500), gain=0.1)
        return b

    full, dec = bank(None), bank(DECIMATED)
    x, y = full.render(100), dec.render(100)
    lag = Upsampler(4).delay
    assert np.abs(y[lag:] - x[:-lag]).max() < 3e-3


def test_scheduled_changes_render_like_changes_between_renders() -> None:
    rng = np.random.default_rng(7)
    plan = [(int(b), rng.uniform(110, 3500, 4), rng.uniform(0, 0.3, 4)) for b in np.cumsum(rng.integers(1, 12, 25))]

    def bank() -> VoiceBank:
        b = VoiceBank(SR, max_freq=DECIMATED)
        for i in range(4):
            b.add_voice(pan=i / 3 - 0.5)
        return b

    step, sched = bank(), bank()
    parts = []
    for at, hz, g in plan:
        parts.append(step.render(at - step.position // step.block))
        step.set_many(np.arange(4), hz, g)
        sched.schedule(at)
        sched.set_many(np.arange(4), hz, g)
    end = plan[-1][0] + 10
    parts.append(step.render(end - step.position // step.block))
    x = np.concatenate(parts)
    y = sched.render(end)
    assert np.abs(x - y).max() < 1e-5


def test_upsampler_streams_without_seams() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1000, 2)).astype(np.float32)
    one, many = Upsampler(4), Upsampler(4)
    y = np.concatenate([many(x[i:i + 100]) for i in range(0, 1000, 100)])
    assert np.abs(one(x) - y).max() < 1e-6
