"""``trainsound demo``: train real networks through the real bridge; write WAV, MIDI, pictures, a gallery.

Per run: a bridge subprocess on a free port (``--record``, ``--midi-file``, ``--wav`` in the default
``continuous`` preset; live audio and MIDI with ``--live``), training in this process through the real
clients, SIGTERM to the bridge (it finishes its files; exit code checked); then, offline from the
recording, the ``perone`` WAV, its spectrogram with per-layer tracks, the numbers plot and the
audio features. One bridge per run keeps every run's files separate and the renderings deterministic.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..alarms.incidents import Incident
from ..errors import TrainsoundError
from . import features as demo_features
from . import gallery as demo_gallery
from . import gpt2 as demo_gpt2
from . import models as demo_models
from . import sweep as demo_sweep
from .bridge_process import BridgeProcess
from .models import RunSpec

#: Every named run: the Perone and Keras runs and the small GPT-2.
RUNS: dict[str, RunSpec] = {**demo_models.ALL_RUNS, demo_gpt2.RUN.name: demo_gpt2.RUN}

log = logging.getLogger(__name__)

DEFAULT_OUT = "trainsound-demo"
#: After the last step, let the bridge take in the datagrams still in flight before SIGTERM.
SETTLE_S = 0.3


# -- progress --------------------------------------------------------------------------------
class Display:
    """Per run: step, loss and what is being written — one rewritten line on a terminal, else a few lines."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.quiet = quiet
        self.prefix = ""
        self.total = 0
        self._last = 0.0

    def start(self, index: int, count: int, spec: RunSpec) -> None:
        self.prefix = f"[{index}/{count}] {spec.name:<24}"
        self.total = spec.steps
        self.line(f"{spec.settings()}", final=True)

    def step(self, step: int, loss: float) -> None:
        now = time.monotonic()
        if self.tty and (now - self._last > 0.1 or step == self.total):
            self._last = now
            self.line(f"step {step:>4}/{self.total}  loss {loss:<10.4g} training")
        elif not self.tty and (step == self.total or step % 50 == 0):
            self.line(f"step {step:>4}/{self.total}  loss {loss:.4g}", final=True)

    def line(self, text: str, final: bool = False) -> None:
        if self.quiet:
            return
        if self.tty:
            self.stream.write(f"\r\x1b[K{self.prefix} {text}" + ("\n" if final else ""))
        else:
            self.stream.write(f"{self.prefix} {text}\n")
        self.stream.flush()

    def writing(self, what: str) -> None:
        self.line(f"writing {what}", final=not self.tty)


# -- one run ---------------------------------------------------------------------------------
@dataclass
class RunResult:
    spec: RunSpec
    files: dict[str, Path]
    train_s: float
    losses: list[float]
    features: demo_features.Features | None = None
    nan_step: int | None = None
    alarms: list[Incident] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def run_files(out: Path, name: str) -> dict[str, Path]:
    d = out / name
    return {
        "perone": d / f"{name}_perone.wav",
        "continuous": d / f"{name}_continuous.wav",
        "midi": d / f"{name}.mid",
        "session": d / f"{name}.tsr",
        "spectrogram": d / f"{name}_spectrogram.png",
        "numbers": d / f"{name}_numbers.png",
    }


def live_devices() -> tuple[bool, bool]:
    """``(sound card, MIDI system)``: what exists here, probed quietly; nothing is started."""
    from ..sound.jackserver import jack_server_id

    midi = os.path.exists("/dev/snd/seq") or jack_server_id() is not None or sys.platform in ("darwin", "win32")
    audio = False
    try:
        from ..sound.devices import open_portaudio, output_devices

        _, pa = open_portaudio()
        try:
            audio = bool(output_devices(pa))
        finally:
            pa.terminate()
    except Exception:  # no PyAudio, no PortAudio: no sound card to play to
        audio = False
    return audio, midi


def bridge_args(files: dict[str, Path], audio: bool, midi: bool) -> list[str]:
    """The bridge's built-in default plus the files, and live audio / MIDI where they exist. No live ``--wav``:
    the continuous WAV is rendered from the recording on the step clock afterwards (a 200-step run trained in
    a second would otherwise last a second)."""
    args = ["--record", str(files["session"]), "--midi-file", str(files["midi"])]
    return [*args, *(["--audio"] if audio else []), *([] if midi else ["--no-midi"])]


def render_outputs(spec: RunSpec, files: dict[str, Path]) -> tuple[demo_gallery.Numbers, list[Incident]]:
    """Everything derived offline from the recording: perone WAV, spectrogram, numbers plot (with the alarms
    the bridge's detectors raise on it, docs/alarms.md)."""
    from ..config import default
    from ..replay.alarms import detect
    from ..replay.render import render

    nums = demo_gallery.read_numbers(files["session"], spec.name)
    alarms = [a for a in detect(files["session"], default()) if a.run == spec.name]
    render(files["session"], files["perone"], preset="perone")
    # The continuous preset on the step clock, as `trainsound render` does: a step lasts as long in every run.
    if spec.model == "gpt2":
        # Many layers: the picture is the grouped voices.
        s = render(files["session"], files["continuous"], png=files["spectrogram"], clock="steps")
        step_s = 1.0 / s["steps_per_second"]
        demo_gallery.plot_numbers(nums, files["numbers"], title=f"{spec.name} — the numbers the bridge received",
                                  xlim=demo_gallery.spectrogram_xlim(files["continuous"]), step_s=step_s,
                                  clock="the continuous rendering (step clock)",
                                  alarms=[(a.step, a.name, a.kind) for a in alarms])
        return nums, alarms
    render(files["session"], files["continuous"], clock="steps")
    from ..sound.spectrogram import write_spectrogram

    write_spectrogram(
        files["perone"],
        files["spectrogram"],
        title=f"{spec.name} — perone preset (lines: each layer's expected pitch 200 + 100·‖grad‖ Hz)",
        step_times=demo_gallery.step_times(nums),
        tracks=demo_gallery.perone_tracks(nums),
    )
    demo_gallery.plot_numbers(
        nums,
        files["numbers"],
        title=f"{spec.name} — the numbers the bridge received",
        xlim=demo_gallery.spectrogram_xlim(files["perone"]),
        alarms=[(a.step, a.name, a.kind) for a in alarms],
    )
    return nums, alarms


def run_one(
    spec: RunSpec, data: demo_models.Data, out: Path, display: Display, live: tuple[bool, bool]
) -> RunResult:
    files = run_files(out, spec.name)
    files["session"].parent.mkdir(parents=True, exist_ok=True)
    display.writing("bridge start")
    bridge = BridgeProcess(bridge_args(files, *live), files["session"].parent / "bridge.log")
    t0 = time.perf_counter()
    try:
        train = demo_gpt2.train if spec.model == "gpt2" else demo_models.train
        losses = train(spec, data, display.step, port=bridge.port)
        train_s = time.perf_counter() - t0
        time.sleep(SETTLE_S)
        display.writing(f"{files['midi'].name}, {files['session'].name} (bridge stop)")
        bridge.stop()
    except BaseException:
        bridge.kill()
        raise
    display.writing(f"{files['perone'].name}, {files['continuous'].name}, {files['spectrogram'].name}, "
                    f"{files['numbers'].name}")
    _, alarms = render_outputs(spec, files)
    result = RunResult(spec, files, train_s, losses, alarms=alarms)
    result.nan_step = next((i + 1 for i, v in enumerate(losses) if v != v), None)
    display.writing("audio features")
    result.features = demo_features.wav_features(files["perone"])
    f = result.features
    display.line(
        f"done: {len(losses)} steps in {train_s:.1f} s, final loss {losses[-1]:.4g}"
        + (f", NaN from step {result.nan_step}" if result.nan_step else "")
        + f"; median pitch {f.median_hz:.0f} Hz"
        + (f", alarm at {f.alarm_s:.2f} s" if f.alarm_s is not None else ""),
        final=True,
    )
    return result


def alarm_summary(alarms: list[Incident], most: int = 6) -> str:
    """``"loss spike at step 12, conv1 vanishing at step 40 …"`` for a gallery card."""
    words = [f"{a.name} at step {a.step}" for a in alarms[:most]]
    return ", ".join(words) + (f" and {len(alarms) - most} more" if len(alarms) > most else "")


# -- the command -----------------------------------------------------------------------------
def select_runs(text: str | None, keras: bool) -> list[RunSpec]:
    """``--runs`` (comma-separated names, or ``perone``, ``keras``, ``all``) → run specs.

    >>> [r.name for r in select_runs("sgd-0.1,perone", False)][:2]
    ['sgd-0.1', 'sgd-0.01']
    >>> len(select_runs(None, True))
    13
    """
    if not text:
        return list(demo_models.PERONE_RUNS) + (list(demo_models.KERAS_RUNS) if keras else [])
    chosen: dict[str, RunSpec] = {}
    for word in (w.strip() for w in text.split(",") if w.strip()):
        group = {
            "perone": demo_models.PERONE_RUNS,
            "keras": demo_models.KERAS_RUNS,
            "all": tuple(RUNS.values()),
            demo_sweep.GROUP: demo_sweep.KERAS_FULL_RUNS,
        }.get(word)
        if group is None:
            named = {**RUNS, **{r.name: r for r in demo_sweep.KERAS_FULL_RUNS}}
            if word not in named:
                known = ", ".join(["perone", "keras", demo_sweep.GROUP, "all", *RUNS])
                raise TrainsoundError(f"--runs: unknown run {word!r}; known: {known}, or a sweep run kf-…")
            group = (named[word],)
        for spec in group:
            chosen.setdefault(spec.name, spec)
    return list(chosen.values())


def summary_rows(results: list[RunResult]) -> dict[str, demo_features.Features]:
    return {r.spec.name: r.features for r in results if r.features is not None}


def write_summary(out: Path, results: list[RunResult], total_s: float, data: demo_models.Data) -> Path:
    path = out / "summary.json"
    doc = {
        "data": data.source,
        "seed": demo_models.SEED,
        "perone_seed": demo_models.PERONE_SEED,
        "total_seconds": round(total_s, 2),
        "runs": [
            {
                "name": r.spec.name,
                "settings": r.spec.settings(),
                "steps": len(r.losses),
                "train_seconds": round(r.train_s, 2),
                "final_loss": None if r.losses[-1] != r.losses[-1] else r.losses[-1],
                "nan_step": r.nan_step,
                "features": r.features.as_dict() if r.features else None,
                "alarms": [a.as_dict() for a in r.alarms],
                "files": {k: os.path.relpath(v, out) for k, v in r.files.items()},
            }
            for r in results
        ],
    }
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return path


#: What each kind of run imports, and the extra that installs it (``./bootstrap demo`` installs torch only).
NEEDS = {"torch": ("torch", "torch"), "keras": ("keras", "keras"), "gpt2": ("transformers", "transformers")}


def check_frameworks(specs: list[RunSpec]) -> None:
    """One line before anything trains when a chosen run's framework is not installed."""
    import importlib.util

    for spec in specs:
        module, extra = NEEDS["gpt2" if spec.model == "gpt2" else spec.framework]
        if importlib.util.find_spec(module) is None:
            raise TrainsoundError(f"run {spec.name} needs {module}, which is not installed: ./bootstrap setup "
                                  f"installs every framework (or pip install '.[{extra}]')")


def cmd_demo(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    specs = [demo_models.with_steps(s, args.steps) for s in select_runs(args.runs, args.keras)]
    check_frameworks(specs)
    display = Display(quiet=args.quiet)
    data = demo_models.load_data(args.mnist)
    display.prefix = ""
    display.line(f"data: {data.source}, {len(data.x)} images; seed {demo_models.PERONE_SEED} (torch), "
                 f"{demo_models.SEED} (Keras); output: {out}", final=True)
    live = (True, True) if args.live is True else (False, False) if args.live is False else live_devices()
    if any(live):
        display.line(f"live: {'sound card' if live[0] else ''}{' and ' if all(live) else ''}"
                     f"{'MIDI port trainsound:out' if live[1] else ''}", final=True)
    sweep_names = {r.name for r in demo_sweep.KERAS_FULL_RUNS}
    sweep_specs = [s for s in specs if s.name in sweep_names]
    specs = [s for s in specs if s not in sweep_specs]
    results = []
    for i, spec in enumerate(specs, 1):
        display.start(i, len(specs), spec)
        results.append(run_one(spec, data, out, display, live))
    grid = None
    if sweep_specs:  # one bridge for the whole sweep; its own grid page
        t_sweep = time.perf_counter()
        sweep = demo_sweep.run_sweep(sweep_specs, data, out, display)
        grid = demo_sweep.write_grid(out, sweep, time.perf_counter() - t_sweep)
    table = demo_features.format_table(summary_rows(results))
    facts = {
        r.spec.name: f"{len(r.losses)} steps, trained in {r.train_s:.1f} s, final loss {r.losses[-1]:.4g}"
        + (f", NaN from step {r.nan_step}" if r.nan_step else "")
        + (f"; alarms: {alarm_summary(r.alarms)}" if r.alarms else "; no alarms")
        for r in results
    }
    index = demo_gallery.write_index(
        out,
        [
            {
                "name": r.spec.name,
                "settings": r.spec.settings(),
                "listen_for": r.spec.listen_for,
                "facts": facts[r.spec.name],
                "files": r.files,
            }
            for r in results
        ],
        table_md=table,
        intro=f"Real networks trained through the real trainsound bridge. Data: {data.source}; seed "
        f"{demo_models.PERONE_SEED} (PyTorch), {demo_models.SEED} (Keras). Each run was heard live by a bridge "
        "process (MIDI file, session recording); both WAVs (on the step clock) and the pictures were rendered "
        "from the recording."
        + (f" The Keras seed's sweep ({len(sweep_specs)} runs) is laid out as a grid in {grid.name}." if grid else ""),
        link=grid.name if grid else None,
    )
    total = time.perf_counter() - t0
    write_summary(out, results, total, data)
    if results:
        print(table)
    if grid is not None:
        print(demo_features.format_table({r.spec.name: r.features for r in sweep if r.features is not None}))
    count = len(results) + len(sweep_specs)
    print(f"\n{count} run(s) in {total:.0f} s. Open the gallery: {grid if grid and not results else index}")
    return 0


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="train real networks through the bridge; write WAV, MIDI, spectrograms and a gallery",
        description="Reproduce Perone's five runs (and, with --keras, a slice of the Keras seed's sweep): "
        "each trains through a real bridge process and gets two WAVs (perone, continuous), a MIDI file, a "
        "session recording, a spectrogram, a numbers plot and a card in OUT/index.html.",
    )
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output folder (default ./{DEFAULT_OUT})")
    p.add_argument(
        "--runs", metavar="LIST",
        help="comma-separated run names, or perone / keras / keras-full (the seed's 96-run sweep) / all "
        "(default: perone)"
    )
    p.add_argument("--keras", action="store_true", help="add the Keras sweep: {DNN,CNN}×{SGD,Adam}×{relu,sigmoid}")
    p.add_argument(
        "--steps", type=int, metavar="N", help="fewer steps per run (small mode; the NaN run keeps at least 40)"
    )
    lv = p.add_mutually_exclusive_group()
    lv.add_argument("--live", action="store_true", default=None,
                    help="play to the sound card and the live MIDI port (default: when they exist)")
    lv.add_argument("--no-live", dest="live", action="store_false", help="files only, even when devices exist")
    p.add_argument("--mnist", metavar="DIR", help=f"MNIST files to use (default ${demo_models.ENV_MNIST})")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=cmd_demo)
