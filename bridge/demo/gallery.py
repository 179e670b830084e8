"""The demo's pictures and its gallery: the numbers plot and a static ``index.html``.

The numbers come from the session recording (what the bridge received), never from the training
process, so the plot shows exactly what was turned into sound. The page embeds a small script that
checks, in the browser, that every image decoded and every audio element loaded; its verdict is
written into ``#media-check`` (``data-ok="true"``) so a headless browser test can read it from the DOM.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..sound.seeds import PERONE_GAP_S, PERONE_TONE_S, perone_hz
from ..wire.session import iter_messages

FIGSIZE = (12, 5.5)
DPI = 110


@dataclass
class Numbers:
    """Per-step values of one run as the bridge recorded them."""

    run: str
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    grads: dict[str, list[float]] = field(default_factory=dict)

    @property
    def layers(self) -> list[str]:
        return list(self.grads)

    def step_seconds(self) -> float:
        """Length of one step in the ``perone`` preset: a 10 ms tone per layer and a 20 ms gap."""
        return len(self.grads) * PERONE_TONE_S + PERONE_GAP_S


def read_numbers(session: str | Path, run: str) -> Numbers:
    """Steps, loss and per-layer gradient norms of ``run`` from a session recording.

    Values are aligned to the step messages (the clients send each step as one bundle, step first);
    a value missing in a step is NaN.
    """
    nums = Numbers(run)
    prefix = f"/nn/{run}/"
    cur: dict[str, float] = {}

    def close_step() -> None:
        if not nums.steps:
            return
        nums.loss.append(cur.pop("loss", math.nan))
        for layer in nums.grads:
            nums.grads[layer].append(cur.pop("grad:" + layer, math.nan))

    for _, address, args in iter_messages(session):
        if not address.startswith(prefix):
            continue
        kind, _, name = address[len(prefix) :].partition("/")
        if kind == "step":
            close_step()
            cur.clear()
            nums.steps.append(int(args[0]))  # type: ignore[arg-type]
        elif kind == "loss" and args:
            cur["loss"] = float(args[0])  # type: ignore[arg-type]
        elif kind == "grad_norm" and args:
            if name not in nums.grads:
                nums.grads[name] = [math.nan] * max(0, len(nums.steps) - 1)
            cur["grad:" + name] = float(args[0])  # type: ignore[arg-type]
    close_step()
    return nums


def perone_tracks(nums: Numbers) -> dict[str, list[tuple[float, float]]]:
    """Each layer's expected Perone pitch over time, for the spectrogram overlay (NaN steps skipped)."""
    step_s = nums.step_seconds()
    tracks: dict[str, list[tuple[float, float]]] = {}
    for i, layer in enumerate(nums.layers):
        pts = []
        for k, g in enumerate(nums.grads[layer]):
            if math.isfinite(g):
                pts.append((k * step_s + i * PERONE_TONE_S, min(perone_hz(g), 22_050.0)))
        tracks[layer] = pts
    return tracks


def spectrogram_xlim(wav: str | Path) -> tuple[float, float]:
    """The time span the spectrogram of ``wav`` shows (its STFT columns' centres ± half a hop)."""
    import soundfile as sf

    from ..sound.spectrogram import stft_db

    x, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    t = stft_db(x.mean(axis=1), sr)[0]
    half = (t[1] - t[0]) / 2 if len(t) > 1 else 0.5
    lo, hi = float(t[0] - half), float(t[-1] + half)
    # The pitch-track lines make matplotlib add its default 5 % x margins to the spectrogram.
    pad = 0.05 * (hi - lo)
    return lo - pad, hi + pad


def step_times(nums: Numbers) -> list[tuple[float, int]]:
    """``[(seconds, step)]`` of the ``perone`` rendering, for the spectrogram's step axis."""
    step_s = nums.step_seconds()
    return [(k * step_s, s) for k, s in enumerate(nums.steps)]


def plot_numbers(nums: Numbers, png: str | Path, *, title: str, xlim: tuple[float, float],
                 step_s: float | None = None, clock: str = "the perone rendering",
                 alarms: Sequence[tuple[int, str, str]] = ()) -> None:
    """Gradient norms per voice group (log; the groups the bridge sounds, :mod:`..groups`) and loss over
    time, on the spectrogram's time axis and frame.

    ``xlim`` is the spectrogram's time span (see :func:`spectrogram_xlim`); ``step_s`` its seconds per
    step (default: the perone rendering's). ``alarms``: ``(step, name, kind)`` of the bridge's alarms, each
    marked by a labelled vertical line.

    Same figure size and the same colour-bar gap as the spectrogram, so the two images line up when
    shown one above the other. NaN steps are marked with a red band.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable

    from ..mapping.groups import GroupOptions, aggregate, plan
    from ..sound.spectrogram import voice_colours

    step_s = step_s or nums.step_seconds()
    t = np.arange(len(nums.steps)) * step_s
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    # An invisible colour bar takes the same room as the spectrogram's, so the time axes line up.
    cbar = fig.colorbar(ScalarMappable(cmap="magma"), ax=ax, label="dB (re. loudest)", pad=0.01)
    cbar.ax.set_visible(False)
    layout = plan(nums.layers, GroupOptions())
    for name, members, colour in zip(layout.names, layout.members, voice_colours(len(layout.names)), strict=True):
        rows = np.asarray([nums.grads[x] for x in members], float)
        g = np.asarray([aggregate(list(col), "rms") if np.isfinite(col).all() else math.nan for col in rows.T])
        g = np.where(np.isfinite(g) & (g > 0), g, np.nan)
        ax.step(t, g, where="post", color=colour, lw=1.0,
                label=f"‖grad‖ {name}" + (f" (rms of {len(members)})" if len(members) > 1 else ""))
    ax.set_yscale("log")
    ax.set_xlim(*xlim)
    ax.set_xlabel(f"time (s) in {clock}")
    ax.set_ylabel("gradient L2 norm, loss (log)")
    ax.set_title(title)
    loss = np.asarray(nums.loss, float)
    bad = ~np.isfinite(loss)
    for k in np.flatnonzero(bad):
        ax.axvspan(t[k], t[k] + step_s, color="red", alpha=0.15, lw=0)
    # Loss on the same log axis: a second y-axis would take room the spectrogram does not have.
    ax.plot(t, np.where(bad | (loss <= 0), np.nan, loss), color="black", lw=1.4, ls="--", label="loss")
    mark_alarms(ax, nums, alarms, step_s)
    handles, labels = ax.get_legend_handles_labels()
    if bad.any():
        from matplotlib.patches import Patch

        handles.append(Patch(color="red", alpha=0.3))
        labels.append("NaN (alarm)")
    ax.legend(handles, labels, loc="upper right", fontsize=7, framealpha=0.7, ncol=1 + len(labels) // 10)
    fig.tight_layout()
    fig.savefig(str(png))
    plt.close(fig)


def mark_alarms(ax: Any, nums: Numbers, alarms: Sequence[tuple[int, str, str]], step_s: float) -> None:
    """A dotted line per alarm at its step, labelled ``kind (stream)`` along the top of the plot."""
    index = {s: k for k, s in enumerate(nums.steps)}
    for i, (step, name, kind) in enumerate(alarms):
        k = index.get(step)
        if k is None:
            continue
        t = k * step_s
        ax.axvline(t, color="crimson", ls=":", lw=1.3, label="alarm" if i == 0 else None)
        ax.text(t, 0.98 - 0.06 * (i % 4), f" {kind} ({name or 'run'})", transform=ax.get_xaxis_transform(),
                color="crimson", fontsize=7, va="top", ha="left")


# -- the page ----------------------------------------------------------------------------------
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>trainsound demo</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; padding: 0 1em;
       color: #222; background: #fafafa; }}
h1 {{ margin-bottom: 0.2em; }}
.card {{ background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: 1em 1.2em; margin: 1.2em 0; }}
.card h2 {{ margin: 0 0 0.2em; font-size: 1.25em; }}
.settings {{ color: #555; margin: 0 0 0.5em; }}
.listen {{ background: #fff7e0; padding: 0.4em 0.6em; border-radius: 4px; }}
.players {{ display: flex; gap: 2em; flex-wrap: wrap; margin: 0.6em 0; }}
.players label {{ display: block; font-size: 0.9em; color: #555; }}
img {{ width: 100%; height: auto; display: block; margin: 0.3em 0; }}
table {{ border-collapse: collapse; margin: 0.8em 0; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
#media-check {{ font-family: monospace; }}
#media-check[data-ok="true"] {{ color: #070; }}
#media-check[data-ok="false"] {{ color: #b00; }}
</style>
</head>
<body>
<h1>trainsound demo</h1>
<p>{intro}</p>
<h2>What the sound alone tells apart</h2>
<p>Measured from the <em>perone</em> WAVs only (not from the numbers): median pitch, pitch trend
(slope of log-pitch over time), pitch spread (interquartile range), highest pitch, full range, and when the
NaN alarm (noise, not a tone) first sounds.</p>
{table}
<p id="media-check" data-ok="pending">media check: pending</p>
{cards}
<script>
// Every image must decode and every audio element must load its metadata, without error.
(function () {{
  const out = document.getElementById("media-check");
  const imgs = Array.from(document.images);
  const audios = Array.from(document.querySelectorAll("audio"));
  function imgDone(i) {{ return i.complete; }}
  function audioDone(a) {{ return a.error !== null || a.readyState >= 1; }}
  function verdict(final) {{
    const badImgs = imgs.filter(i => i.complete && i.naturalWidth === 0).map(i => i.getAttribute("src"));
    const badAudio = audios.filter(a => a.error !== null).map(a => a.getAttribute("src"));
    const waiting = imgs.filter(i => !imgDone(i)).length + audios.filter(a => !audioDone(a)).length;
    if (waiting && !final) return false;
    const ok = !waiting && badImgs.length === 0 && badAudio.length === 0;
    out.dataset.ok = String(ok);
    out.textContent = "media check: " + (ok ? "ok" : "FAILED") + " (" + imgs.length + " images, " +
      audios.length + " audio" + (badImgs.length ? "; broken images: " + badImgs.join(", ") : "") +
      (badAudio.length ? "; broken audio: " + badAudio.join(", ") : "") +
      (waiting ? "; still loading: " + waiting : "") + ")";
    return true;
  }}
  audios.forEach(a => a.load());
  let tries = 0;
  const timer = setInterval(function () {{
    tries += 1;
    if (verdict(tries > 100)) clearInterval(timer);
  }}, 50);
}})();
</script>
</body>
</html>
"""

CARD = """<section class="card" id="{anchor}">
<h2>{name}</h2>
<p class="settings">{settings}</p>
<p class="listen"><strong>Listen for:</strong> {listen}</p>
<div class="players">
<div><label>perone preset (Perone's tones, step-clocked)</label>
<audio controls preload="metadata" src="{perone}"></audio></div>
<div><label>continuous preset (the bridge's default, step-clocked)</label>
<audio controls preload="metadata" src="{continuous}"></audio></div>
</div>
<p>{facts} · <a href="{midi}">MIDI file</a> · <a href="{session}">session recording</a></p>
<img src="{spectrogram}" alt="spectrogram of {name} (perone preset) with per-layer expected pitch">
<img src="{numbers}" alt="gradient norms per layer and loss of {name}, same time axis">
</section>"""


def _rel(path: str | os.PathLike[str], base: Path) -> str:
    return html.escape(Path(os.path.relpath(path, base)).as_posix(), quote=True)


def markdown_to_html_table(md: str) -> str:
    """A Markdown pipe table (as :func:`..demo_features.format_table` writes) as an HTML table.

    >>> markdown_to_html_table("| a | b |\\n|---|---|\\n| 1 | 2 |")
    '<table>\\n<tr><th>a</th><th>b</th></tr>\\n<tr><td>1</td><td>2</td></tr>\\n</table>'
    """
    rows = [r.strip().strip("|").split("|") for r in md.strip().splitlines()]
    head, body = rows[0], rows[2:]
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(c.strip())}</th>" for c in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in r) + "</tr>" for r in body]
    out.append("</table>")
    return "\n".join(out)


def write_index(out_dir: Path, runs: Sequence[dict[str, Any]], *, table_md: str, intro: str,
                link: str | None = None) -> Path:
    """Write ``out_dir/index.html``: the features table and one card per run (links are relative).

    Each entry of ``runs`` has ``name``, ``settings``, ``listen_for``, ``facts`` and ``files``
    (``perone``, ``continuous``, ``midi``, ``session``, ``spectrogram``, ``numbers`` → paths).
    """
    cards = []
    for r in runs:
        files = {k: _rel(v, out_dir) for k, v in r["files"].items()}
        cards.append(
            CARD.format(
                anchor=html.escape(r["name"], quote=True),
                name=html.escape(r["name"]),
                settings=html.escape(r["settings"]),
                listen=html.escape(r["listen_for"]),
                facts=html.escape(r["facts"]),
                **files,
            )
        )
    if link:  # another page of the same demo (the sweep's grid)
        cards.insert(0, f'<p><a href="{html.escape(link, quote=True)}">{html.escape(link)}</a></p>')
    table = markdown_to_html_table(table_md) if table_md.strip() else ""
    page = PAGE.format(intro=html.escape(intro), table=table, cards="\n".join(cards))
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
