"""``trainsound demo`` end to end through the real bridge process.

Small mode (few steps) checks that every file is there and valid; the full five runs (slow) check
that the sound alone tells Perone's runs apart.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trainsound.bridge.demo import features as df
from trainsound.bridge.demo.command import select_runs
from trainsound.bridge.errors import TrainsoundError
from trainsound.bridge.wire.session import iter_messages

ARTEFACTS = ("perone", "continuous", "midi", "session", "spectrogram", "numbers")


def run_demo(out: Path, *args: str, timeout: float = 850) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "trainsound.bridge", "demo", "--no-live", "--out", str(out), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"Open the gallery: {out / 'index.html'}" in r.stdout
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return summary


def check_files(out: Path, run: dict[str, Any]) -> None:
    import matplotlib.image
    import mido
    import soundfile as sf

    files = {k: out / v for k, v in run["files"].items()}
    assert sorted(files) == sorted(ARTEFACTS)
    for key in ("perone", "continuous"):
        x, sr = sf.read(files[key], dtype="float32")
        assert len(x) > sr // 10, key
        assert np.isfinite(x).all(), key
        assert np.abs(x).max() > 0.01, key
    assert sf.info(files["perone"]).samplerate == 44_100
    # The continuous WAV on the step clock (8 steps/s), not the training's wall clock (issue 24 #7).
    assert sf.info(files["continuous"]).duration >= 0.95 * run["steps"] / 8.0
    midi = mido.MidiFile(files["midi"])
    assert any(m.type == "note_on" for track in midi.tracks for m in track)
    for key in ("spectrogram", "numbers"):
        img = matplotlib.image.imread(files[key])
        assert img.shape[0] > 100 and img.shape[1] > 100, key
    steps = [a for _, a, _ in iter_messages(files["session"]) if a == f"/nn/{run['name']}/step"]
    assert len(steps) == run["steps"]


@pytest.mark.torch
@pytest.mark.slow
def test_small_mode_writes_every_file(tmp_path: Path) -> None:
    summary = run_demo(tmp_path, "--steps", "12", "--runs", "sgd-0.01,sgd-1.0-b256", "--quiet")
    runs = {r["name"]: r for r in summary["runs"]}
    assert list(runs) == ["sgd-0.01", "sgd-1.0-b256"]
    for run in runs.values():
        check_files(tmp_path, run)
    assert runs["sgd-0.01"]["steps"] == 12
    # The NaN run keeps enough steps to really reach NaN, and only it sounds the alarm.
    assert runs["sgd-1.0-b256"]["nan_step"] is not None
    assert runs["sgd-1.0-b256"]["features"]["alarm_s"] is not None
    assert runs["sgd-0.01"]["nan_step"] is None
    assert runs["sgd-0.01"]["features"]["alarm_s"] is None
    # The bridge's detectors on each recording: the healthy run raises none, the NaN run names its NaN.
    assert runs["sgd-0.01"]["alarms"] == []
    assert "nan" in {a["kind"] for a in runs["sgd-1.0-b256"]["alarms"]}
    page = (tmp_path / "index.html").read_text()
    for run in runs.values():
        for rel in run["files"].values():
            assert f'"{rel}"' in page or rel.endswith(".tsr"), rel
    assert page.count('class="card"') == 2


def features_of(summary: dict[str, Any]) -> dict[str, df.Features]:
    return {r["name"]: df.Features(**r["features"]) for r in summary["runs"]}


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.timeout(900)  # five 200-step runs: 456 s measured at load average 10-12 on 2 cores
def test_the_sound_tells_perones_five_runs_apart(tmp_path: Path) -> None:
    summary = run_demo(tmp_path, "--quiet")
    f = features_of(summary)
    assert list(f) == ["sgd-0.01", "sgd-0.1", "sgd-1.0", "sgd-1.0-b256", "adam-0.01"]
    for run in summary["runs"]:
        assert run["steps"] == 200
    # LR 1.0 is higher and wilder than LR 0.01: its explosion reaches far higher pitches and leaps
    # over a wider range (its median is lower: the network dies after the explosion, see docs/demo.md).
    assert f["sgd-1.0"].peak_hz > 2 * f["sgd-0.01"].peak_hz
    assert f["sgd-1.0"].range_oct > f["sgd-0.01"].range_oct + 1
    # The NaN run really reached NaN, contains the alarm, and no other run does.
    nan_run = next(r for r in summary["runs"] if r["name"] == "sgd-1.0-b256")
    assert nan_run["nan_step"] is not None and nan_run["final_loss"] is None
    assert f["sgd-1.0-b256"].alarm_s is not None
    assert [n for n, x in f.items() if x.alarm_s is not None] == ["sgd-1.0-b256"]
    # The detectors' defaults raise nothing on a run that learned (docs/alarms.md) and name the ones that did not.
    alarms = {r["name"]: {a["kind"] for a in r["alarms"]} for r in summary["runs"]}
    learned = {r["name"] for r in summary["runs"] if r["final_loss"] is not None and r["final_loss"] < 1.0}
    assert "sgd-0.01" in learned
    assert all(alarms[n] == set() for n in learned), alarms
    assert "nan" in alarms["sgd-1.0-b256"] and "vanishing" in alarms["sgd-1.0"]
    # Pairwise distinguishable by the audio features.
    names = list(f)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert df.tells_apart(f[a], f[b]) is not None, (a, b, f[a], f[b])
    assert all(math.isfinite(x.median_hz) for x in f.values())


def test_runs_selection() -> None:
    assert [r.name for r in select_runs("keras", False)][:2] == ["keras-dnn-sgd-relu", "keras-dnn-sgd-sigmoid"]
    assert len(select_runs("all", False)) == 14  # Perone 5, Keras 8, the small GPT-2
    with pytest.raises(TrainsoundError, match="unknown run 'nope'"):
        select_runs("nope", False)


def test_a_run_whose_framework_is_missing_is_named_in_one_line_before_anything_trains(tmp_path: Path) -> None:
    """``./bootstrap demo`` installs torch only: ``--keras`` then says what to install (exit 1, no traceback)."""
    code = ("import importlib.util, sys\n"
            "real = importlib.util.find_spec\n"
            "importlib.util.find_spec = lambda name, *a: None if name == 'keras' else real(name, *a)\n"
            "from trainsound.bridge.cli import main\n"
            f"sys.exit(main(['demo', '--runs', 'keras-dnn-sgd-relu', '--out', {str(tmp_path)!r}, '--no-live']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip() == ("trainsound: error: run keras-dnn-sgd-relu needs keras, which is not installed: "
                                "./bootstrap setup installs every framework (or pip install '.[keras]')")
    assert not list(tmp_path.iterdir())  # nothing trained, nothing written


@pytest.mark.keras
@pytest.mark.slow
def test_keras_runs_send_through_sonify(tmp_path: Path) -> None:
    summary = run_demo(tmp_path, "--steps", "10", "--runs", "keras-dnn-sgd-relu,keras-cnn-adam-sigmoid", "--quiet")
    assert [r["name"] for r in summary["runs"]] == ["keras-dnn-sgd-relu", "keras-cnn-adam-sigmoid"]
    for run in summary["runs"]:
        assert run["steps"] == 10
        check_files(tmp_path, run)
