"""Pictures and figures for docs/sound.md ("What you hear") and docs/mapping.md ("Auto range"), from real runs.

Trains the three small real runs of ``tests/realruns.py`` (HF GPT-2, Lightning MLP, PyTorch CNN with a tenfold
gradient window) against a real bridge, renders each recording as ``trainsound render --steps-per-second 4``
does, and writes ``docs/img/focus-*.png`` plus the measured figures (printed). About a minute on two cores::

    .venv/bin/python docs/img/make_sound_figures.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
import realruns as rr  # noqa: E402

from trainsound.bridge.mapping.focus import REGION_SEMITONES, REGIONS  # noqa: E402

OUT = Path(__file__).resolve().parent


def spectrogram(ax: plt.Axes, s: rr.Sound, title: str) -> None:
    """Log-frequency spectrogram (dB) with the focus regions named on the right."""
    n = int(s.sr / rr.STEPS_PER_SECOND)
    frames = [s.x[i : i + n] * np.hanning(n) for i in range(0, len(s.x) - n, n // 2)]
    spec = 20 * np.log10(np.abs(np.fft.rfft(np.array(frames), axis=1)).T + 1e-9)
    f = np.fft.rfftfreq(n, 1 / s.sr)
    t = np.arange(len(frames)) * (n // 2) / s.sr * rr.STEPS_PER_SECOND  # seconds → steps
    keep = (f >= 100) & (f <= 3800)
    ax.pcolormesh(t, f[keep], spec[keep], shading="auto", cmap="magma", vmin=spec.max() - 70, vmax=spec.max())
    ax.set_yscale("log")
    ax.set_ylabel("Hz")
    ax.set_title(title, fontsize=10)
    for name, (lo, hi) in REGIONS.items():
        mid = 110 * 2 ** ((lo + hi) / 2 / 12 * rr.SEMITONES / REGION_SEMITONES)
        ax.text(1.01, mid, name, transform=ax.get_yaxis_transform(), fontsize=8, va="center")


def main() -> None:
    figures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        runs = {name: rr.record_run(name, d) for name in ("gpt2", "mlp", "cnn")}
        sounds = {name: rr.render(run, d / f"{name}.wav") for name, run in runs.items()}

        fig, axes = plt.subplots(2, 3, figsize=(13, 6.5), gridspec_kw={"height_ratios": [1, 1.4]})
        for col, (name, run) in enumerate(runs.items()):
            s = sounds[name]
            raw = np.array([r for r, _ in run.loss])
            norm = np.array([n for _, n in run.loss])
            rho = spearmanr(raw, norm).statistic
            ax = axes[0, col]
            ax.plot(raw, color="tab:blue")
            ax.set_yscale("log")
            ax.set_ylabel("loss", color="tab:blue")
            ax2 = ax.twinx()
            ax2.plot(norm * (REGIONS["loss"][1] - REGIONS["loss"][0]), color="tab:red")
            ax2.set_ylabel("loss voice, semitones", color="tab:red")
            ax.set_title(f"{name}: Spearman(loss, voice) = {rho:.3f}", fontsize=10)
            ax.set_xlabel("mapped loss values, in order")
            thirds = [float(np.median(t)) for t in np.array_split(norm, 3)]
            figures.append(f"{name}: loss {raw[0]:.3g} → {raw[-1]:.3g}; Spearman(loss, loss voice) {rho:.3f}; "
                           f"voice by thirds {thirds[0]:.2f} > {thirds[1]:.2f} > {thirds[2]:.2f}")
            spectrogram(axes[1, col], s, f"{name}: the rendered WAV")
            axes[1, col].set_xlabel("step")
            rhos = {g: spearmanr(*rr.bed_track(s, g)[1:]).statistic for g in s.groups}
            figures.append(f"{name}: groups recovered from the WAV, ρ " +
                           ", ".join(f"{g} {r:.3f}" for g, r in rhos.items()))
            steps = sorted(s.step_times)[2:-2:5]
            figures.append(f"{name}: voices within 10 dB of the loudest, max over steps "
                           f"{max(rr.loud_voices(s, k) for k in steps)}")
        fig.tight_layout()
        fig.savefig(OUT / "focus-runs.png", dpi=90)
        plt.close(fig)

        s = sounds["cnn"]
        a, b = rr.FAULT
        steps = list(range(100, 200))
        fig, axes = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
        for g in s.groups:
            axes[0].plot(steps, [s.groups[g].get(k, np.nan) for k in steps], label=g)
        axes[0].set_yscale("log")
        axes[0].set_ylabel("group grad norm")
        axes[0].axvspan(a, b, color="0.9")
        axes[0].legend(fontsize=8, ncol=4)
        spot = rr.region_track(s, "spotlight", steps)
        glob = rr.region_track(s, "global", steps)
        axes[1].plot(steps, spot, label="spotlight (most changing group)")
        axes[1].plot(steps, glob, label="global grad norm")
        axes[1].axvspan(a, b, color="0.9")
        axes[1].set_ylabel("pitch from the WAV, semitones above 110 Hz")
        axes[1].set_xlabel("step")
        axes[1].legend(fontsize=8)
        before, during = spot[: a - 100], spot[a + 3 - 100 : b - 100]
        leap = float(np.median(during) - np.median(before))
        axes[0].set_title(f"CNN, every gradient ×10 at steps {a}–{b - 1}: the spotlight leaps {leap:.1f} semitones",
                          fontsize=10)
        fig.tight_layout()
        fig.savefig(OUT / "focus-fault.png", dpi=90)
        plt.close(fig)
        ratio = np.median([np.median([s.groups[g][k] for k in range(a + 3, b)])
                           / np.median([s.groups[g][k] for k in range(a - 12, a)]) for g in s.groups])
        figures.append(f"cnn: gradients ×{ratio:.1f} → spotlight leap {leap:.2f} semitones "
                       f"({leap / np.log10(ratio):.2f} per decade)")
    print("\n".join(figures))


if __name__ == "__main__":
    main()
