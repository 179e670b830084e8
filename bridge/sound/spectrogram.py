"""A readable spectrogram PNG of a rendered WAV (what the Keras seed's ``plot=True`` meant to be).

Log-frequency axis, dB colour scale, time in seconds below and in training
steps above, and each voice's expected pitch overlaid as a labelled line.
matplotlib is imported lazily, with the non-interactive Agg backend.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

FMIN = 50.0
NFFT = 4096
MAX_COLUMNS = 2400
DB_RANGE = 90.0


def stft_db(x: np.ndarray, sr: int, nfft: int = NFFT, max_columns: int = MAX_COLUMNS
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(times_s, freqs_hz, dB)`` of mono ``x``; dB relative to the loudest bin, floored at -90.

    >>> t, f, s = stft_db(np.sin(2 * np.pi * 1000 * np.arange(48_000) / 48_000), 48_000)
    >>> round(float(f[s.max(axis=1).argmax()]))
    996
    """
    nfft = min(nfft, max(256, 1 << int(np.log2(max(len(x), 2)))))
    hop = max(nfft // 4, int(np.ceil(max(len(x) - nfft, 1) / max_columns)))
    n = max(1, 1 + (len(x) - nfft) // hop) if len(x) >= nfft else 1
    xp = np.pad(x, (0, max(0, nfft - len(x))))
    idx = np.arange(nfft)[None, :] + hop * np.arange(n)[:, None]
    frames = xp[idx] * np.hanning(nfft)
    mag = np.abs(np.fft.rfft(frames, axis=1)).T
    db = 20 * np.log10(np.maximum(mag, 1e-12))
    db -= db.max()
    np.maximum(db, -DB_RANGE, out=db)
    return (np.arange(n) * hop + nfft / 2) / sr, np.fft.rfftfreq(nfft, 1 / sr), db


def write_spectrogram(wav_path: str | os.PathLike[str], png_path: str | os.PathLike[str], *, title: str = "",
                      step_times: Sequence[tuple[float, int]] | None = None,
                      tracks: Mapping[str, Sequence[tuple[float, float]]] | None = None,
                      max_tracks: int = 12) -> None:
    """Write ``png_path``: the spectrogram of ``wav_path`` with steps and per-voice tracks.

    Args:
        wav_path: the WAV to show (mixed to mono).
        png_path: where the PNG goes.
        title: plot title.
        step_times: ``[(seconds, step)]``; adds a top axis in steps.
        tracks: ``label → [(seconds, Hz)]``, each drawn as a stepped line with a legend entry.
        max_tracks: draw at most this many tracks (the legend stays readable).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile as sf

    x, sr = sf.read(str(wav_path), dtype="float32", always_2d=True)
    t, f, db = stft_db(x.mean(axis=1), sr)
    keep = f >= FMIN
    fig, ax = plt.subplots(figsize=(12, 5.5), dpi=110)
    mesh = ax.pcolormesh(t, f[keep], db[keep], shading="nearest", cmap="magma", vmin=-DB_RANGE, vmax=0,
                         rasterized=True)
    ax.set_yscale("log")
    ax.set_ylim(FMIN, sr / 2)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz, log)")
    ax.set_title(title or os.path.basename(str(wav_path)))
    fig.colorbar(mesh, ax=ax, label="dB (re. loudest)", pad=0.01)
    if tracks:
        cmap = plt.get_cmap("tab10")
        for i, (label, pts) in enumerate(list(tracks.items())[:max_tracks]):
            if not pts:
                continue
            arr = np.asarray(pts, float)
            tt = np.append(arr[:, 0], t[-1] if len(t) else arr[-1, 0])
            ff = np.append(arr[:, 1], arr[-1, 1])
            ax.step(tt, ff, where="post", lw=0.9, alpha=0.85, color=cmap(i % 10), label=label)
        ax.legend(loc="upper left", fontsize=7, ncol=2, framealpha=0.6, title="voices (expected pitch)")
    if step_times and len(step_times) >= 2:
        st = np.asarray(step_times, float)
        sec, first = np.unique(st[:, 0], return_index=True)  # steps within one block share a time
        steps = st[first, 1]
        if len(sec) >= 2 and np.all(np.diff(steps) > 0):
            # Extend both ends linearly: a clamped map is not invertible and confuses the tick locator.
            rate = (steps[-1] - steps[0]) / (sec[-1] - sec[0])
            big = 1e9
            sec = np.concatenate([[sec[0] - big], sec, [sec[-1] + big]])
            steps = np.concatenate([[steps[0] - big * rate], steps, [steps[-1] + big * rate]])
            top = ax.secondary_xaxis("top", functions=(lambda s: np.interp(np.asarray(s, float), sec, steps),
                                                       lambda k: np.interp(np.asarray(k, float), steps, sec)))
            top.set_xlabel("training step")
    fig.tight_layout()
    fig.savefig(str(png_path))
    plt.close(fig)
