"""Issue 27's checks on real training runs (HF GPT-2, Lightning MLP, plain PyTorch CNN) through a real bridge.

- the loss voice moves with the loss: Spearman ≥ 0.9 between the loss and the bridge's mapped value (its OSC
  output), its voice following the loss by thirds of the run;
- each voice group's series is recovered from the rendered WAV alone (its bed band): ρ ≥ 0.95, every group;
- a tenfold gradient (the CNN's loss scaled ×10 for 25 steps) leaps the spotlight by ≥ 4 semitones, while the
  healthy run's wobble around its median is a third of that or less;
- at most 4 voices in front by default (within 10 dB of the loudest); ``--preset everything`` keeps them all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from realruns import FAULT, Run, Sound, bed_track, loud_voices, record_run, region_track, render
from scipy.stats import spearmanr

pytest.importorskip("transformers")
pytest.importorskip("lightning")

NAMES = ("gpt2", "mlp", "cnn")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Run, Sound]]:
    d = tmp_path_factory.mktemp("realruns")
    out = {}
    for name in NAMES:
        run = record_run(name, d)
        out[name] = (run, render(run, d / f"{name}.wav"))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_the_loss_voice_moves_with_the_loss(runs: dict[str, tuple[Run, Sound]], name: str) -> None:
    run, _ = runs[name]
    raw = np.array([r for r, _ in run.loss])
    norm = np.array([n for _, n in run.loss])
    assert len(raw) >= 20, len(raw)  # the values whose 7-bit code changed (unchanged ones are not resent)
    rho = spearmanr(raw, norm).statistic
    assert rho >= 0.9, rho
    # Lower medians are values that were sent: by thirds, the voice goes the way the loss goes.
    thirds = [np.array_split(a, 3) for a in (raw, norm)]
    loss3 = [float(np.percentile(t, 50, method="lower")) for t in thirds[0]]
    voice3 = [float(np.percentile(t, 50, method="lower")) for t in thirds[1]]
    assert loss3[0] > loss3[2] and voice3[0] > voice3[2], (loss3, voice3)  # the loss fell, and its voice
    for i in (0, 1):
        assert (loss3[i] - loss3[i + 1]) * (voice3[i] - voice3[i + 1]) > 0, (loss3, voice3)


@pytest.mark.parametrize("name", NAMES)
def test_each_group_is_recovered_from_the_rendered_wav(runs: dict[str, tuple[Run, Sound]], name: str) -> None:
    _, sound = runs[name]
    expected = {"gpt2": 7, "mlp": 3, "cnn": 4}[name]
    assert sound.count == expected and len(sound.groups) == expected, sorted(sound.groups)
    if name == "gpt2":
        assert {"transformer.wte", "transformer.wpe"} <= set(sound.groups)  # the embeddings too
    for group in sound.groups:
        steps, truth, semitones = bed_track(sound, group)
        assert len(steps) >= 100
        rho = spearmanr(truth, semitones).statistic
        assert rho >= 0.95, (group, rho)


def test_a_tenfold_gradient_leaps_the_spotlight(runs: dict[str, tuple[Run, Sound]]) -> None:
    _, sound = runs["cnn"]
    a, b = FAULT
    before, during = list(range(a - 12, a)), list(range(a + 3, b))
    ratios = [np.median([sound.groups[g][s] for s in during]) / np.median([sound.groups[g][s] for s in before])
              for g in sound.groups]
    assert min(ratios) >= 8.0, ratios  # the gradients really went up tenfold (Adam moved on meanwhile)
    spot = region_track(sound, "spotlight", before + during)
    leap = float(np.median(spot[len(before):]) - np.median(spot[: len(before)]))
    assert leap >= 4.0, leap
    healthy = region_track(sound, "spotlight", list(range(60, a - 1)))
    wobble = float(np.median(np.abs(healthy - np.median(healthy))))
    assert leap >= 3 * wobble, (leap, wobble)  # a healthy run's wobble: small beside the fault's leap


@pytest.mark.parametrize("name", NAMES)
def test_at_most_four_voices_in_front(runs: dict[str, tuple[Run, Sound]], name: str) -> None:
    _, sound = runs[name]
    steps = sorted(sound.step_times)[2:-2:5]
    counts = [loud_voices(sound, s) for s in steps]
    assert max(counts) <= 4, counts


def test_the_everything_preset_keeps_all_voices_at_once(runs: dict[str, tuple[Run, Sound]], tmp_path: Path) -> None:
    run, _ = runs["gpt2"]
    sound = render(run, tmp_path / "everything.wav", preset="everything")
    steps = sorted(sound.step_times)[10:-2:10]
    assert np.median([loud_voices(sound, s) for s in steps]) >= 8  # twice the budget, and more
