"""Synthetic training sessions for the alarm tests: a healthy run, and one with each fault injected at a
known step (docs/alarms.md). Deterministic (seeded); plain lists of OSC messages per step."""

from __future__ import annotations

import math

import numpy as np

LAYERS = {"conv1": 1.0, "conv2": 0.5, "fc1": 0.2, "fc2": 0.1}
Step = list[tuple[str, list[object]]]


def healthy(run: str = "ok", steps: int = 2000, seed: int = 0, epoch_len: int = 400) -> list[Step]:
    """A healthy run: log-normal jitter around slow trends (loss σ 0.1 around a power-law decay, grad norms σ 0.25
    around slowly falling levels), epochs of ``epoch_len`` steps and a step-decay learning rate."""
    rng = np.random.default_rng(seed)
    out: list[Step] = []
    for s in range(steps):
        loss = 2.3 * (1 + s / 100) ** -0.5 * math.exp(0.1 * rng.standard_normal())
        msgs: Step = [(f"/nn/{run}/step", [s, s // epoch_len]), (f"/nn/{run}/loss", [loss])]
        for name, level in LAYERS.items():
            g = level * (1 + s / 500) ** -0.3 * math.exp(0.25 * rng.standard_normal())
            msgs.append((f"/nn/{run}/grad_norm/{name}", [g]))
        msgs.append((f"/nn/{run}/metric/lr", [0.1 * 0.5 ** (s // 800)]))
        out.append(msgs)
    return out


#: kind → (stream name, step at which the fault is fully there: the alarm is expected within ±5 steps).
EXPECTED = {
    "spike": ("loss", 300),
    "plateau": ("loss", 1000),  # flat from 700: 300 steps (the window) later
    "divergence": ("loss", 1221),  # rising 2 %/step from 1200: 1.5× its best at 1200 + ln 1.5 / ln 1.02
    "exploding": ("fc1", 1400),
    "vanishing": ("conv2", 1600),
    "dead": ("", 1802),  # every layer zero from 1800: the third round (the default) completes at 1802
    "nan": ("loss", 2000),
}
TICKS = {"epoch": 1100, "lr": 1500}
FAULTY_STEPS = 2100


def log_loss(s: int) -> float:
    """The faulty run's clean log loss: falling, a plateau at 700–999, falling, rising 2 %/step at 1200–1259."""
    if s < 400:
        return 1.0 - 0.002 * s
    if s < 700:
        return 0.2 - 0.005 * (s - 400)
    if s < 1000:
        return 0.2 - 0.005 * 299
    if s < 1200:
        return log_loss(999) - 0.003 * (s - 999)
    if s < 1260:
        return log_loss(1199) + math.log(1.02) * (s - 1199)
    return log_loss(1199) - 0.003 * (s - 1260)


def faulty(run: str = "bad", seed: int = 1) -> list[Step]:
    """One of each fault at the steps in :data:`EXPECTED`; ticks at :data:`TICKS`."""
    rng = np.random.default_rng(seed)
    out: list[Step] = []
    for s in range(FAULTY_STEPS):
        loss = math.exp(log_loss(s) + 0.003 * rng.standard_normal())
        if s == EXPECTED["spike"][1]:
            loss *= 10.0
        if s == EXPECTED["nan"][1]:
            loss = math.nan
        msgs: Step = [(f"/nn/{run}/step", [s, int(s >= TICKS["epoch"])]), (f"/nn/{run}/loss", [loss])]
        for name, level in LAYERS.items():
            g = level * math.exp(0.1 * rng.standard_normal())
            if name == "fc1" and 1400 <= s < 1410:
                g *= 100.0
            if name == "conv2" and 1600 <= s < 1610:
                g *= 1e-4
            if 1800 <= s < 1820:
                g = 0.0
            msgs.append((f"/nn/{run}/grad_norm/{name}", [g]))
        msgs.append((f"/nn/{run}/metric/lr", [0.1 if s < TICKS["lr"] else 0.01]))
        out.append(msgs)
    return out
