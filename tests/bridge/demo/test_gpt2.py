"""``trainsound demo --runs gpt2-small``: a real small GPT-2 (transformers, random init) through the real bridge."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.torch


def test_a_small_gpt2_is_heard_as_voice_groups(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    import mido
    import soundfile as sf
    from PIL import Image
    from support import run_messages

    cmd = [sys.executable, "-m", "trainsound.bridge", "demo", "--no-live", "--out", str(tmp_path),
           "--runs", "gpt2-small", "--steps", "4"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    [run] = json.loads((tmp_path / "summary.json").read_text())["runs"]
    files = {k: tmp_path / v for k, v in run["files"].items()}
    for key in ("perone", "continuous"):
        x, _ = sf.read(files[key], dtype="float32")
        assert np.isfinite(x).all() and np.abs(x).max() > 0.01, key
    msgs = run_messages(mido.MidiFile(str(files["midi"])), "gpt2-small")
    # Channel 16 is the alarm's (the detectors may name a random-init run's faults).
    channels = {m.channel + 1 for _, m in msgs if m.type == "note_on" and m.velocity and m.channel != 15}
    # 28 modules with parameters → wte, wpe, one group per block (4), ln_f–lm_head: 7 note channels.
    assert len(channels) == 7 and 10 not in channels, channels
    meta = Image.open(files["spectrogram"]).text  # type: ignore[attr-defined]
    assert int(meta["Voices"]) >= 8 and meta["Steps"].split("-")[0] in ("0", "1"), meta
