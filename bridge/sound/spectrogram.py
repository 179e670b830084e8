"""A readable spectrogram PNG of a rendered WAV (what the Keras seed's ``plot=True`` meant to be).

Log-frequency axis, dB colour scale, time in seconds below and in training
steps above, and each voice's expected pitch overlaid as a labelled line.
matplotlib is imported lazily, with the non-interactive Agg backend.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

FMIN = 50.0
NFFT = 4096
MAX_COLUMNS = 2400
DB_RANGE = 90.0
MAX_TRACKS = 48
STEP_TICKS = 10


def voice_colours(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` colours, none repeated: tab20's for up to 20 voices, evenly spaced hues beyond.

    >>> len(set(voice_colours(20))), len(set(voice_colours(40)))
    (20, 40)
    """
    import matplotlib

    if n <= 20:
        cmap = matplotlib.colormaps["tab20"]
        # Dark shades first, then the light ones: neighbouring voices get clearly different colours.
        return [cmap((2 * i) % 20 + (2 * i) // 20) for i in range(n)]
    hsv = matplotlib.colormaps["hsv"]
    return [hsv(i / n) for i in range(n)]


def step_ticks(step_times: Sequence[tuple[float, int]], most: int = STEP_TICKS) -> list[tuple[float, int]]:
    """Step-axis ticks ``[(seconds, step)]``: the first and last rendered steps and round steps between,
    never beyond them (no extrapolated or negative steps).

    >>> ticks = step_ticks([(0.5 + k / 8, k) for k in range(40)])
    >>> [k for _, k in ticks], ticks[0][0], ticks[-1][0]
    ([0, 5, 10, 15, 20, 25, 30, 35, 39], 0.5, 5.375)
    """
    if not step_times:
        return []
    st = sorted(step_times, key=lambda p: p[1])
    first, last = st[0][1], st[-1][1]
    span = max(last - first, 1)
    raw = span / max(most - 1, 1)
    mag = 10 ** int(np.floor(np.log10(raw))) if raw >= 1 else 1
    every = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    want = {first, last} | {k for k in range(first - first % every, last + 1, every) if first <= k <= last}
    # Ticks too close to the first or last step would overlap their labels.
    want = {k for k in want if k in (first, last) or (k - first >= every / 2 and last - k >= every / 2)}
    when = {k: sec for sec, k in st}
    return [(when[k], k) for k in sorted(want) if k in when]


def run_ticks(step_times: Sequence[tuple[float, int]], runs: Sequence[tuple[str, float, float]], total: float
              ) -> list[tuple[str, list[tuple[float, int]]]]:
    """Per run, its step-axis ticks: each run's own steps (they start again at 0), ticks in proportion to
    its share of the audio, so labels of neighbouring runs do not overprint.

    >>> st = [(k / 8, k) for k in range(100)] + [(13.5 + k / 8, k) for k in range(100)]
    >>> [(label, [k for _, k in ticks]) for label, ticks in run_ticks(st, [("a", 0, 13.5), ("b", 13.5, 30)], 27)]
    [('a', [0, 50, 99]), ('b', [0, 50, 99])]
    """
    out = []
    for label, a, b in runs:
        mine = [(sec, k) for sec, k in step_times if a <= sec < b]
        share = (min(b, total) - a) / total if total > 0 else 1.0
        out.append((label, step_ticks(mine, most=max(2, round(STEP_TICKS * share)))))
    return out


def _run_axis(ax: Any, step_times: Sequence[tuple[float, int]], runs: Sequence[tuple[str, float, float]],
              total: float, meta: dict[str, str]) -> None:
    """The step axis of several runs: each run's own ticks, a line where a run begins, its name above."""
    per_run = run_ticks(step_times, runs, total)
    top = ax.twiny()
    top.set_xlim(ax.get_xlim())
    ticks = [tk for _, tks in per_run for tk in tks]
    top.set_xticks([sec for sec, _ in ticks], [str(k) for _, k in ticks], fontsize=7)
    top.set_xlabel("training step, per run")
    for label, a, _ in runs:
        ax.axvline(a, color="white", lw=0.8, ls="--", alpha=0.8)
        ax.text(a, 1.0, f" {label}", transform=ax.get_xaxis_transform(), va="top", ha="left", fontsize=8,
                color="white")
    meta["Steps"] = ",".join(f"{t[0][1]}-{t[-1][1]}" if t else "" for _, t in per_run)
    meta["Runs"] = "; ".join(f"{label} {t[0][1]}-{t[-1][1]}" if t else label for label, t in per_run)


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
                      max_tracks: int = MAX_TRACKS, runs: Sequence[tuple[str, float, float]] | None = None) -> None:
    """Write ``png_path``: the spectrogram of ``wav_path`` with steps and per-voice tracks.

    Args:
        wav_path: the WAV to show (mixed to mono).
        png_path: where the PNG goes.
        title: plot title.
        step_times: ``[(seconds, step)]``; adds a top axis in steps.
        tracks: ``label → [(seconds, Hz)]``, each drawn as a stepped line with a legend entry.
        max_tracks: draw at most this many tracks (groups keep a run's voices far below it).
        runs: ``[(label, first second, end second)]`` of a recording's runs, one after another: the step
            axis gets its ticks per run, each run's span is marked and labelled.

    The PNG's text metadata says what it shows: ``Steps`` (``first-last``; per run, comma-separated),
    ``Runs`` (``label first-last; …``, with ``runs``) and ``Voices``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile as sf

    meta: dict[str, str] = {}
    x, sr = sf.read(str(wav_path), dtype="float32", always_2d=True)
    t, f, db = stft_db(x.mean(axis=1), sr)
    keep = f >= FMIN
    fig, ax = plt.subplots(figsize=(14, 5.5), dpi=110)
    mesh = ax.pcolormesh(t, f[keep], db[keep], shading="nearest", cmap="magma", vmin=-DB_RANGE, vmax=0,
                         rasterized=True)
    ax.set_yscale("log")
    ax.set_ylim(FMIN, sr / 2)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz, log)")
    ax.set_title(title or os.path.basename(str(wav_path)))
    fig.colorbar(mesh, ax=ax, label="dB (re. loudest)", pad=0.01)
    if tracks:
        items = [(label, pts) for label, pts in tracks.items() if pts][:max_tracks]
        colours = voice_colours(len(items))
        for (label, pts), colour in zip(items, colours, strict=True):
            arr = np.asarray(pts, float)
            tt = np.append(arr[:, 0], t[-1] if len(t) else arr[-1, 0])
            ff = np.append(arr[:, 1], arr[-1, 1])
            ax.step(tt, ff, where="post", lw=0.9, alpha=0.9, color=colour, label=label)
        ncol = 1 + len(items) // 12
        ax.legend(loc="upper left", bbox_to_anchor=(1.16, 1.0), fontsize=7, ncol=ncol, framealpha=0.8,
                  title=f"{len(items)} voices (expected pitch)")
    if runs:
        _run_axis(ax, step_times or [], runs, t[-1] if len(t) else 0.0, meta)
    elif ticks := step_ticks(step_times or []):
        # The step axis spans exactly the steps that were rendered: ticks only where a step was.
        top = ax.twiny()
        top.set_xlim(ax.get_xlim())
        top.set_xticks([sec for sec, _ in ticks], [str(k) for _, k in ticks])
        top.set_xlabel(f"training step ({ticks[0][1]}–{ticks[-1][1]})")
        meta["Steps"] = f"{ticks[0][1]}-{ticks[-1][1]}"
    meta["Voices"] = str(len(tracks or {}))
    fig.tight_layout()
    fig.savefig(str(png_path), metadata=meta, bbox_inches="tight")  # the legend sits right of the colour bar
    plt.close(fig)
