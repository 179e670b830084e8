"""Voice groups through the real bridge: a 148-layer GPT-2-shaped session → MIDI file and rendered WAV.

Every layer's gradient norm is sent over UDP to a bridge process that records the session and writes a MIDI
file; the WAV is rendered from the recording by ``trainsound render``. The checks read the files alone.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf
from realruns import peak_semitone
from scipy.stats import spearmanr

from trainsound.bridge.mapping.focus import bed_unit
from trainsound.bridge.mapping.groups import SPAN, aggregate
from trainsound.bridge.sound.maps import DEFAULT_OCTAVES
from trainsound.bridge.wire.osc import encode_bundle, encode_message

TS = [sys.executable, "-m", "trainsound.bridge"]
BLOCKS = 12
STEPS = 40
PER_BLOCK = [f"{m}.{p}" for m in ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj")
             for p in ("weight", "bias")]
LAYERS = (["transformer.wte.weight", "transformer.wpe.weight"]
          + [f"transformer.h.{i}.{p}" for i in range(BLOCKS) for p in PER_BLOCK]
          + ["transformer.ln_f.weight", "transformer.ln_f.bias"])
# The embeddings come first with plain names: each sounds at once as its own group; the twelve blocks share
# the eleven voices left but one (the final layer norm's), the first voice taking two blocks.
GROUPS = (["transformer.wte.weight", "transformer.wpe.weight", f"h.0{SPAN}h.1"]
          + [f"h.{i}" for i in range(2, BLOCKS)] + [f"transformer.ln_f.weight{SPAN}transformer.ln_f.bias"])


def group_of(layer: str) -> int:
    if layer.startswith("transformer.h."):
        return 2 + max(0, int(layer.split(".")[2]) - 1)
    return LAYERS.index(layer) if layer in LAYERS[:2] else len(GROUPS) - 1


def session(seed: int = 0) -> np.ndarray:
    """``norms[step, layer]``: per group a different trend (rising, falling, a bump, a dip), ±10 % per layer."""
    rng = np.random.default_rng(seed)
    s = np.arange(STEPS) / (STEPS - 1)
    trends = []
    for g in range(len(GROUPS)):
        kind = g % 4
        shape = {0: s, 1: 1 - s, 2: np.sin(np.pi * s), 3: 1 - np.sin(np.pi * s)}[kind]
        trends.append(10 ** (-3 + 0.5 * (g % 5) + 2.5 * shape))  # each group's own 2.5 decades
    scale = rng.uniform(0.7, 1.3, len(LAYERS))
    norms = np.empty((STEPS, len(LAYERS)))
    for j, layer in enumerate(LAYERS):
        norms[:, j] = trends[group_of(layer)] * scale[j] * np.exp(rng.normal(0, 0.03, STEPS))
    return norms


def group_series(norms: np.ndarray) -> np.ndarray:
    """``[group, step]``: the RMS of each group's layers (the default aggregate)."""
    out = np.empty((len(GROUPS), STEPS))
    for g in range(len(GROUPS)):
        cols = [j for j, layer in enumerate(LAYERS) if group_of(layer) == g]
        out[g] = [aggregate(list(norms[i, cols]), "rms") for i in range(STEPS)]
    return out


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    from support import BridgeProc, free_udp_port

    d = tmp_path_factory.mktemp("gpt2")
    rec, mid = d / "gpt2.tsr", d / "gpt2.mid"
    norms = session()
    b = BridgeProc(["--no-midi", "--record", str(rec), "--midi-file", str(mid)], free_udp_port())
    try:
        for i in range(STEPS):
            msgs = [encode_message("/nn/gpt2/step", [i])]
            msgs += [encode_message(f"/nn/gpt2/grad_norm/{layer}", [float(norms[i, j])])
                     for j, layer in enumerate(LAYERS)]
            msgs.append(encode_message("/nn/gpt2/loss", [3.0 / (1 + i)]))
            b.send_raw(encode_bundle(msgs))
            time.sleep(0.1)
        st = b.status()
        assert st["accepted"] == STEPS * (len(LAYERS) + 2) and st["dropped_total"] == 0, st
        # The status names each run's groups with their latest values (for status pages and detectors).
        latest = st["groups"]["gpt2"]["grad_norm_notes"]
        assert list(latest) == GROUPS
        assert latest["h.5"] == pytest.approx(group_series(norms)[GROUPS.index("h.5"), -1], rel=1e-6)
    finally:
        rc, err = b.stop()
    assert rc == 0, err
    return rec, mid, norms


def test_gpt2_session_groups_into_fourteen_channels_each_following_one_group(
        recorded: tuple[Path, Path, np.ndarray]) -> None:
    _, mid, norms = recorded
    truth = group_series(norms)
    mf = mido.MidiFile(str(mid))
    tracks = [t for t in mf.tracks if t.name.startswith("gpt2 ")]  # one per channel, named after its group
    pitches: dict[int, list[int]] = {}
    for track in tracks:
        for m in track:
            # Channel 16 is the alarm's: the detectors may name the synthetic trends' 2.5-decade moves.
            if m.type == "note_on" and m.velocity > 0 and m.channel + 1 != 16:
                pitches.setdefault(m.channel + 1, []).append(m.note)
    assert len(pitches) == len(GROUPS) <= 14
    assert 10 not in pitches  # the drum channel stays free
    for g, ch in enumerate(sorted(pitches, key=lambda c: (c - 1) % 16)):
        notes = pitches[ch]
        assert len(notes) == STEPS, (ch, len(notes))  # one note per step: one group per channel
        rhos = [spearmanr(notes, truth[k]).statistic for k in range(len(GROUPS))]
        assert rhos[g] >= 0.9, (ch, GROUPS[g], rhos[g])
        # The channel follows its own group, not a mix: the other groups' trends differ from it.
        assert int(np.nanargmax(rhos)) == g or rhos[g] >= max(rhos) - 1e-9


def band_peaks(x: np.ndarray, sr: int, starts: list[float], length: float, groups: int) -> np.ndarray:
    """``[group, step]``: the strongest pitch (semitones above fmin, interpolated between FFT bins) in each group's
    slice of the bed, per step (the WAV alone): each group's quiet bed voice (docs/sound.md, "What you hear")."""
    out = np.empty((groups, len(starts)))
    for g in range(groups):
        lo, hi = (12 * DEFAULT_OCTAVES * bed_unit(n, g, groups) for n in (0.0, 1.0))
        out[g] = [peak_semitone(x, sr, t0, t0 + length, lo - 0.02, hi + 0.02) for t0 in starts]
    return out


def test_each_group_is_recovered_from_the_rendered_wav_alone(
        recorded: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    rec, _, norms = recorded
    wav = tmp_path / "gpt2.wav"
    sps = 2.0  # half a second per step: a pitch tracker's window fits in one step
    r = subprocess.run([*TS, "render", str(rec), "--wav", str(wav), "--png", str(tmp_path / "gpt2.png"),
                        "--steps-per-second", str(sps)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"step clock: {STEPS} steps at 2 steps/s" in r.stderr
    x, sr = sf.read(str(wav), dtype="float64")
    mono = x.mean(axis=1)
    truth = group_series(norms)
    # On the step clock step k starts at k/sps (the session starts with its first step): skip the glide.
    starts = [i / sps + 0.05 for i in range(STEPS)]
    hz = band_peaks(mono, sr, starts, 0.9 / sps, len(GROUPS))
    for g in range(len(GROUPS)):
        norm_in_band = list(hz[g])  # the bed's map only grows: its order is the value's
        # From step 1: in step 0 the two embeddings sound before the layout is known (plain names sound at
        # once, over the whole range); their band is theirs from step 1 on.
        rho = spearmanr(norm_in_band[1:], truth[g][1:]).statistic
        assert rho >= 0.95, (GROUPS[g], rho)
