"""``trainsound demo --runs keras-full``: the Keras seed's whole sweep, 96 runs through one real bridge."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from trainsound.bridge.demo.command import select_runs
from trainsound.bridge.demo.sweep import KERAS_FULL_RUNS, sweep_name
from trainsound.bridge.sound.seeds import PERONE_GAP_S, PERONE_TONE_S
from trainsound.bridge.wire.session import iter_messages


def test_the_sweep_is_the_seeds_grid() -> None:
    runs = select_runs("keras-full", False)
    assert len(runs) == len({r.name for r in runs}) == 96
    assert {(r.model, r.optimizer, r.lr, r.activation) for r in runs} == {
        (m, o, lr, a)
        for m in ("cnn", "dnn")
        for o in ("sgd", "adam", "rmsprop", "adadelta")
        for lr in (1.0, 0.1, 0.01)
        for a in ("relu", "linear", "sigmoid", "tanh")
    }
    assert all(r.framework == "keras" and r.batch == 32 for r in runs)
    assert [r.name for r in select_runs("kf-cnn-sgd-0.1-relu", False)] == ["kf-cnn-sgd-0.1-relu"]
    assert sweep_name("dnn", "adadelta", 1.0, "tanh") in {r.name for r in KERAS_FULL_RUNS}


@pytest.mark.keras
@pytest.mark.slow
@pytest.mark.timeout(900)  # the shared fixture runs all 96 runs (151 s measured on a loaded 2-core machine)
def test_all_96_runs_end_to_end_with_three_steps(keras_full_demo: tuple[Path, str, float]) -> None:
    import soundfile as sf
    from PIL import Image

    out, stdout, seconds = keras_full_demo
    print(f"demo --runs keras-full --steps 3: {seconds:.0f} s")
    assert "96 run(s) in" in stdout and f"Open the gallery: {out / 'keras-full.html'}" in stdout
    # the bridge received every run's three steps, kernel-only norms per layer
    steps: dict[str, set[int]] = {}
    layers: dict[str, set[str]] = {}
    for _, address, args in iter_messages(out / "keras-full" / "keras-full.tsr"):
        parts = address.split("/")
        if parts[3] == "step":
            steps.setdefault(parts[2], set()).add(int(args[0]))
        elif parts[3] == "grad_norm":
            layers.setdefault(parts[2], set()).add(parts[4])
    assert set(steps) == {r.name for r in KERAS_FULL_RUNS}
    assert all(s == {0, 1, 2} for s in steps.values())
    page = (out / "keras-full.html").read_text()
    for spec in KERAS_FULL_RUNS:
        n_layers = len(layers[spec.name])
        assert n_layers == (4 if spec.model == "cnn" else 3), (spec.name, layers[spec.name])
        wav = out / "keras-full" / f"{spec.name}_perone.wav"
        x, sr = sf.read(wav)
        # Perone's clock: per step a 10 ms tone per layer and 20 ms of silence
        assert len(x) == round(3 * (n_layers * PERONE_TONE_S + PERONE_GAP_S) * sr), spec.name
        assert np.isfinite(x).all()
        with Image.open(wav.with_name(f"{spec.name}_spectrogram.png")) as im:
            assert im.size == (240, 120)
        assert f'id="{spec.name}"' in page and f'{spec.name}_perone.wav"' in page
    # the grid: a row per model × optimizer × LR, a column per activation; the features table below
    assert len(re.findall(r"<tr><th>(CNN|DNN) · ", page)) == 24
    assert len(re.findall(r"<tr><td>kf-", page)) == 96
