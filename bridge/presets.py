"""Seed presets: a named mapping plus a renderer mode for the ``sine`` output.

- ``continuous`` (default): the config's mapping as it is; every (rule, stream)
  is a sustained voice on a log-frequency pitch map.
- ``perone``: C. Perone's sequenced tones, exactly: per training step, each
  layer's 10 ms sine at ``200 + 100·norm`` Hz, amplitude 0.1, in layer order,
  then 20 ms of silence, at 44.1 kHz; clocked by steps, not by wall time.
- ``sonnify-loss``: soNNify's loss sine, ``200 + loss/first_loss·800`` Hz,
  clamped at 1000 Hz (val_loss instead of loss once a run reports one).

>>> [p for p in PRESETS]
['continuous', 'perone', 'sonnify-loss']
>>> perone_hz(2.5)
450.0
>>> sonnify_hz(0.5, 2.0), sonnify_hz(9.0, 2.0)
(400.0, 1000.0)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from .config import Config, Rule
from .errors import ConfigError

Mode = Literal["continuous", "perone", "sonnify"]

PERONE_SAMPLE_RATE = 44_100
PERONE_TONE_S = 0.010
PERONE_GAP_S = 0.020
PERONE_AMPLITUDE = 0.1
PERONE_BASE_HZ = 200.0
PERONE_HZ_PER_NORM = 100.0

SONNIFY_BASE_HZ = 200.0
SONNIFY_MAX_HZ = 1000.0
SONNIFY_AMPLITUDE = 0.3


def perone_hz(norm: float) -> float:
    """Perone's tone frequency for a gradient norm."""
    return PERONE_BASE_HZ + PERONE_HZ_PER_NORM * norm


def perone_tone(freq: float, sample_rate: int = PERONE_SAMPLE_RATE) -> np.ndarray:
    """One 10 ms tone exactly as the seed computed it: ``0.1·sin(2π·f·n/fs)``, ``n < fs·0.01``.

    >>> t = perone_tone(300.0)
    >>> len(t), float(t[0]), round(float(t.max()), 3)
    (441, 0.0, 0.1)
    """
    n = np.arange(int(sample_rate * PERONE_TONE_S))
    return (PERONE_AMPLITUDE * np.sin(2 * np.pi * n * freq / sample_rate)).astype(np.float32)


def perone_gap(sample_rate: int = PERONE_SAMPLE_RATE) -> int:
    """Samples of silence after each step (20 ms).

    >>> perone_gap()
    882
    """
    return int(sample_rate * PERONE_GAP_S)


def sonnify_hz(loss: float, first_loss: float) -> float:
    """soNNify's loss pitch; a non-positive first loss counts as 1; never below 200 Hz (negative losses)."""
    ratio = loss / first_loss if first_loss > 0 else loss
    return min(SONNIFY_MAX_HZ, max(SONNIFY_BASE_HZ, SONNIFY_BASE_HZ + ratio * (SONNIFY_MAX_HZ - SONNIFY_BASE_HZ)))


@dataclass(frozen=True)
class Preset:
    """A named mapping + renderer mode."""

    name: str
    mode: Mode
    description: str
    rules: tuple[Rule, ...] | None = None
    """Replacement mapping rules (also what MIDI outputs play); ``None`` keeps the config's."""
    sample_rate: int | None = None
    """A rate the preset insists on (perone: 44.1 kHz, as the seed)."""


_PRESETS: dict[str, Preset] = {
    "continuous": Preset(
        "continuous", "continuous",
        "every mapped stream a sustained sine voice, pitch on a log-frequency map (default)",
    ),
    "perone": Preset(
        "perone", "perone",
        "Perone's sequenced tones: 10 ms per layer at 200+100·norm Hz, 20 ms gap per step, 44.1 kHz",
        rules=(
            Rule(name="perone_grad_norm", match="/nn/{run}/grad_norm/{layer}", target="note", scale="linear",
                 range=(0.0, 8.0), notes=(55, 83), musical_scale="chromatic", rate_limit=0.0, length=0.05),
        ),
        sample_rate=PERONE_SAMPLE_RATE,
    ),
    "sonnify-loss": Preset(
        "sonnify-loss", "sonnify",
        "soNNify's loss sine: 200 + loss/first_loss·800 Hz, clamped at 1000 Hz",
        rules=(
            Rule(name="sonnify_loss", match="/nn/{run}/loss", target="note", scale="auto", notes=(55, 83),
                 musical_scale="chromatic", rate_limit=0.0, length=0.1),
            Rule(name="sonnify_val_loss", match="/nn/{run}/metric/val_loss", target="note", scale="auto",
                 notes=(55, 83), musical_scale="chromatic", rate_limit=0.0, length=0.1, voice_by=("run",)),
        ),
    ),
}
PRESETS: tuple[str, ...] = tuple(_PRESETS)
DEFAULT_PRESET = "continuous"


def get(name: str) -> Preset:
    """The preset called ``name``; an unknown name is a :class:`ConfigError` listing the known ones."""
    try:
        return _PRESETS[name]
    except KeyError:
        raise ConfigError(f"preset must be one of {', '.join(PRESETS)}; got {name!r}") from None


def apply_preset(config: Config, name: str) -> Config:
    """``config`` with the preset's mapping rules (unchanged for ``continuous``).

    >>> from trainsound.bridge.config import default
    >>> [r.name for r in apply_preset(default(), "perone").mappings]
    ['perone_grad_norm']
    """
    p = get(name)
    if p.rules is None:
        return config
    return replace(config, mappings=p.rules, source=f"{config.source} + preset {name}")
