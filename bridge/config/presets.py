"""Seed presets: a named mapping plus a renderer mode for the ``sine`` output.

- ``continuous`` (default): the config's mapping as it is, under the foreground budget: per run the
  loss, the global gradient norm and a spotlight on the most changing group in front, every group a
  quiet voice in a band of its own (docs/sound.md, "What you hear").
- ``everything``: every (rule, stream) a sustained voice over the whole log-frequency pitch map, all
  at once (the ``continuous`` of before the budget).
- ``perone``: C. Perone's sequenced tones, exactly: per training step, each
  layer's 10 ms sine at ``200 + 100·norm`` Hz, amplitude 0.1, in layer order,
  then 20 ms of silence, at 44.1 kHz; clocked by steps, not by wall time.
- ``timbre``: the whole network as one timbre: voice group *g* (depth) is partial *g+1* of 110 Hz, its
  norm the partial's level, so vanishing gradients are heard as the upper partials fading.
- ``sonnify-loss``: soNNify's loss sine, ``200 + loss/first_loss·800`` Hz up to the
  first loss; above it one octave per tenfold rise, up to 4000 Hz, where the seed
  clamped at 1000 Hz (val_loss instead of loss once a run reports one).
- ``ab`` (with ``--reference``): the reference's voices in the left channel, the run's in the right, same
  mapping and budget: identical runs sound centred, a run that parts splits in space (docs/compare.md).
- ``diff`` (with ``--reference``): each voice sounds the run's deviation from the reference (its log-ratio):
  silent while they agree, rising or falling with the deviation, louder with its size.

The seeds' formulas themselves are in :mod:`.sound.seeds`.

>>> [p for p in PRESETS]
['continuous', 'everything', 'perone', 'timbre', 'sonnify-loss', 'ab', 'diff']
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from ..errors import ConfigError
from ..mapping.rules import Rule
from ..sound.seeds import PERONE_SAMPLE_RATE
from . import Config

Mode = Literal["continuous", "perone", "sonnify", "timbre", "ab", "diff"]

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
    focus: bool = True
    """The sine output's foreground budget (docs/sound.md); ``False``: every stream a voice, all at once."""


_PRESETS: dict[str, Preset] = {
    "continuous": Preset(
        "continuous", "continuous",
        "every mapped stream a sustained sine voice, pitch on a log-frequency map (default)",
    ),
    "everything": Preset(
        "everything", "continuous",
        "every mapped stream its own voice over the whole range, all at once (no foreground budget)",
        focus=False,
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
    "timbre": Preset(
        "timbre", "timbre",
        "the network as one timbre: group g (depth) is partial g+1 of 110 Hz, its norm the partial's level",
    ),
    "sonnify-loss": Preset(
        "sonnify-loss", "sonnify",
        "soNNify's loss sine: 200 + loss/first_loss·800 Hz; above the first loss rising an octave per decade",
        rules=(
            Rule(name="sonnify_loss", match="/nn/{run}/loss", target="note", scale="auto", notes=(55, 83),
                 musical_scale="chromatic", rate_limit=0.0, length=0.1),
            Rule(name="sonnify_val_loss", match="/nn/{run}/metric/val_loss", target="note", scale="auto",
                 notes=(55, 83), musical_scale="chromatic", rate_limit=0.0, length=0.1, voice_by=("run",)),
        ),
    ),
    "ab": Preset(
        "ab", "ab",
        "with --reference: the reference's voices on the left, the run's on the right (docs/compare.md)",
    ),
    "diff": Preset(
        "diff", "diff",
        "with --reference: each voice the run's log-ratio to the reference, silent while they agree",
        focus=False,
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
