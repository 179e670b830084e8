"""``trainsound demo --runs keras-full``: the Keras seed's whole sweep, 96 runs, as the grid its README showed.

CNN and DNN × SGD, Adam, RMSprop, Adadelta × LR 1.0, 0.1, 0.01 × relu, linear, sigmoid, tanh, each
trained by ``model.fit`` with ``trainsound.keras.Sonify(weight_only=True)`` (the seed's kernel-only
norms) at the seed README's batch size 32. All 96 runs send to **one** bridge process (each under its
own run name; a bridge start per run would cost more than a short run), which records the session.
From the recording, per run: Perone's tones (the ``perone`` preset's sequencer, 44.1 kHz), a small
log-frequency spectrogram and the audio features. ``keras-full.html`` lays them out as the seed's
grid: a row per model, optimizer and LR, a column per activation.

For at most :data:`EAGER_MAX_STEPS` steps per run the models run eagerly (no ``tf.function`` trace:
the same numbers, and for a few steps several times faster than tracing).
"""

from __future__ import annotations

import html
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..sound.seeds import PERONE_SAMPLE_RATE, PeroneSequencer
from ..sound.spectrogram import DB_RANGE, stft_db
from ..sound.wav import WavWriter
from ..wire.protocol import ProtocolError, parse_event
from ..wire.session import iter_messages
from . import features as demo_features
from . import gallery as demo_gallery
from . import models as demo_models
from .bridge_process import BridgeProcess
from .models import RunSpec

MODELS = ("cnn", "dnn")
OPTIMIZERS = ("sgd", "adam", "rmsprop", "adadelta")
LRS = (1.0, 0.1, 0.01)
ACTIVATIONS = ("relu", "linear", "sigmoid", "tanh")
#: The seed README's ``model.fit(..., batch_size=32)``.
SWEEP_BATCH = 32
EAGER_MAX_STEPS = 20
GROUP = "keras-full"
THUMB_W, THUMB_H = 240, 120
THUMB_FMIN, THUMB_FMAX = 100.0, 12_000.0


def sweep_name(model: str, optimizer: str, lr: float, activation: str) -> str:
    """>>> sweep_name("cnn", "sgd", 0.1, "relu")
    'kf-cnn-sgd-0.1-relu'
    """
    return f"kf-{model}-{optimizer}-{lr:g}-{activation}"


KERAS_FULL_RUNS: tuple[RunSpec, ...] = tuple(
    RunSpec(sweep_name(m, o, lr, a), "keras", m, o, lr, batch=SWEEP_BATCH, activation=a,  # type: ignore[arg-type]
            listen_for="the seed's grid: activation and optimizer change the sound most")
    for m in MODELS for o in OPTIMIZERS for lr in LRS for a in ACTIVATIONS
)


@dataclass
class SweepRun:
    spec: RunSpec
    losses: list[float]
    train_s: float
    wav: Path
    png: Path
    features: demo_features.Features | None = None


def perone_wavs(session: Path, runs: list[str], folder: Path) -> dict[str, tuple[Path, np.ndarray]]:
    """Perone's tones per run from one recording: ``run → (WAV path, samples)``."""
    seqs = {run: PeroneSequencer(PERONE_SAMPLE_RATE) for run in runs}
    chunks: dict[str, list[np.ndarray]] = {run: [] for run in runs}
    for t, address, args in iter_messages(session):
        try:
            ev = parse_event(address, args, t, b"")
        except ProtocolError:  # the bridge recorded only what it accepted; control messages are not /nn
            continue
        if ev.run in seqs:
            chunks[ev.run] += seqs[ev.run].apply(ev)
    out = {}
    for run, seq in seqs.items():
        x = np.concatenate([*chunks[run], *seq.finish()]) if chunks[run] or seq.pending else np.zeros(0, np.float32)
        path = folder / f"{run}_perone.wav"
        w = WavWriter(path, PERONE_SAMPLE_RATE, channels=1, fmt="float32")
        try:
            w.write(x[:, None])
        finally:
            w.close()
        out[run] = (path, x)
    return out


def thumbnail(x: np.ndarray, sr: int, path: Path) -> None:
    """A small log-frequency dB spectrogram (magma), written with Pillow: 96 of them in seconds."""
    from matplotlib import colormaps
    from PIL import Image

    if len(x) < 2:
        x = np.zeros(1024, np.float32)
    _, freqs, db = stft_db(x.astype(np.float64), sr, nfft=1024, max_columns=THUMB_W)
    rows = np.searchsorted(freqs, np.geomspace(THUMB_FMIN, THUMB_FMAX, THUMB_H)).clip(0, len(freqs) - 1)
    cols = np.linspace(0, db.shape[1] - 1, THUMB_W).round().astype(int)
    img = (db[rows][:, cols][::-1] + DB_RANGE) / DB_RANGE
    lut = (colormaps["magma"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    Image.fromarray(lut[(img.clip(0, 1) * 255).astype(np.uint8)], mode="RGB").save(path)


def bridge_config(folder: Path, runs: int) -> Path:
    path = folder / "bridge.toml"
    path.write_text(f"[bridge]\nmax_runs = {max(runs, 64)}\n", encoding="utf-8")
    return path


def run_sweep(specs: list[RunSpec], data: demo_models.Data, out: Path, display: object) -> list[SweepRun]:
    """Train every sweep run through one bridge; render, picture and measure each from the recording."""
    folder = out / GROUP
    folder.mkdir(parents=True, exist_ok=True)
    session = folder / f"{GROUP}.tsr"
    args = ["--no-midi", "--record", str(session), "--config", str(bridge_config(folder, len(specs)))]
    bridge = BridgeProcess(args, folder / "bridge.log")
    results: list[SweepRun] = []
    try:
        for i, spec in enumerate(specs, 1):
            display.start(i, len(specs), spec)  # type: ignore[attr-defined]
            t0 = time.perf_counter()
            losses = demo_models.train_keras(spec, data, display.step, port=bridge.port,  # type: ignore[attr-defined]
                                             eager=spec.steps <= EAGER_MAX_STEPS, kernel_only=True)
            results.append(SweepRun(spec, losses, time.perf_counter() - t0, Path(), Path()))
        time.sleep(0.3)
        bridge.stop()
    except BaseException:
        bridge.kill()
        raise
    wavs = perone_wavs(session, [r.spec.name for r in results], folder)
    for r in results:
        r.wav, x = wavs[r.spec.name]
        r.png = r.wav.with_name(f"{r.spec.name}_spectrogram.png")
        thumbnail(x, PERONE_SAMPLE_RATE, r.png)
        r.features = demo_features.features(x.astype(np.float64), PERONE_SAMPLE_RATE) if len(x) else None
    return results


def _cell(r: SweepRun, base: Path) -> str:
    f = r.features
    nan = next((i + 1 for i, v in enumerate(r.losses) if not math.isfinite(v)), None)
    facts = "no sound" if f is None else f"{f.median_hz:.0f} Hz median, peak {f.peak_hz:.0f} Hz"
    if nan:
        facts += f"; NaN from step {nan}"
    return (
        f'<td id="{html.escape(r.spec.name)}"><img src="{demo_gallery._rel(r.png, base)}" '
        f'alt="spectrogram of {html.escape(r.spec.name)}"><audio controls preload="metadata" '
        f'src="{demo_gallery._rel(r.wav, base)}"></audio><small>{html.escape(facts)}</small></td>'
    )


def write_grid(out: Path, results: list[SweepRun], total_s: float) -> Path:
    """``keras-full.html``: rows model × optimizer × LR, columns activations; the features table below."""
    by: dict[tuple[str, str, float, str], SweepRun] = {
        (r.spec.model, r.spec.optimizer, r.spec.lr, r.spec.activation): r for r in results
    }
    acts = [a for a in ACTIVATIONS if any(k[3] == a for k in by)]
    rows = []
    for m in MODELS:
        for o in OPTIMIZERS:
            for lr in LRS:
                cells = [by.get((m, o, lr, a)) for a in acts]
                if not any(cells):
                    continue
                head = f"<th>{m.upper()} · {demo_models.OPT_NAMES[o]} · LR {lr:g}</th>"
                rows.append("<tr>" + head + "".join(_cell(c, out) if c else "<td></td>" for c in cells) + "</tr>")
    grid = (
        '<table class="grid">\n<tr><th></th>' + "".join(f"<th>{a}</th>" for a in acts) + "</tr>\n"
        + "\n".join(rows) + "\n</table>"
    )
    table = demo_features.format_table({r.spec.name: r.features for r in results if r.features is not None})
    steps = max((len(r.losses) for r in results), default=0)
    intro = (
        f"The Keras seed's sweep: {len(results)} runs of {steps} steps (batch {SWEEP_BATCH}, kernel-only gradient "
        f"norms as the seed), all through one trainsound bridge, in {total_s:.0f} s. Each cell: Perone's tones "
        "rendered from the bridge's recording (10 ms per layer at 200 + 100·‖grad‖ Hz), its log-frequency "
        "spectrogram (100 Hz–12 kHz) and what the audio features say."
    )
    below = f"<h2>The audio features, run by run</h2>\n{demo_gallery.markdown_to_html_table(table)}"
    page = demo_gallery.PAGE.format(intro=html.escape(intro), table="", cards=f"{grid}\n{below}")
    page = page.replace("<h2>What the sound alone tells apart</h2>",
                        "<h2>The seed's grid: a row per model, optimizer and LR, a column per activation</h2>")
    page = page.replace("<title>trainsound demo</title>", "<title>trainsound demo: the Keras seed's sweep</title>")
    page = page.replace("</style>", ".grid td { vertical-align: top; text-align: center; width: 22%; }\n"
                        ".grid audio { width: 100%; }\n.grid small { display: block; color: #555; }\n</style>")
    path = out / f"{GROUP}.html"
    path.write_text(page, encoding="utf-8")
    runs = [{"name": r.spec.name, "settings": r.spec.settings(), "train_seconds": round(r.train_s, 2),
             "losses": [x if math.isfinite(x) else None for x in r.losses],
             "features": r.features.as_dict() if r.features else None} for r in results]
    summary = {"total_seconds": round(total_s, 2), "runs": runs}
    (out / GROUP / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return path
