"""``trainsound render``: a recorded session → WAV (and a spectrogram PNG), far faster than real time.

Uses the same pipeline and outputs as the live bridge (the ``sine`` voices, or a
pyo patch on pyo's offline server), on the recorded clock (:func:`.replay.replay`),
so the file is what the bridge would have written live — deterministic, with no
per-sample Python.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from ...patches.pyo.host import DEFAULT_SAMPLE_RATE as PYO_SAMPLE_RATE
from ..config import Config, presets
from ..config import default as default_config
from ..config import load as load_config
from ..errors import TrainsoundError
from ..pipeline import Pipeline
from ..sound.wav import FORMATS
from ..wire.session import iter_records
from .alarms import add_alarm_args, detect, report_alarms
from .loop import MAX_RENDER_SECONDS, StepClock, replay
from .reference import add_reference_args, check_args, check_session, unmatched_lines, with_reference
from .reference import load as load_reference
from .runs import Segment, run_session, scan_runs, segments

BAR_WIDTH = 30
DEFAULT_STEPS_PER_SECOND = 8.0
#: Renders run on this long after the last message (notes and glides finish; no long silent tail).
RENDER_TAIL = 0.5

DEFAULT_BPM = 120.0
DEFAULT_STEPS_PER_BEAT = 4.0


def session_span(path: str | Path) -> tuple[float, int]:
    """``(seconds from first to last record, records)`` of a session file."""
    first = last = None
    n = 0
    for t, _ in iter_records(path):
        if first is None:
            first = t
        last = t
        n += 1
    return ((last - first) if first is not None and last is not None else 0.0), n


class Progress:
    """A one-line progress bar on a terminal (nothing when not a TTY)."""

    def __init__(self, total_s: float, stream: TextIO | None = None, force: bool = False) -> None:
        self.total = max(total_s, 1e-9)
        self.stream = stream or sys.stderr
        self.on = force or self.stream.isatty()
        self.t0 = time.monotonic()

    def __call__(self, done_s: float, messages: float) -> None:
        if not self.on:
            return
        frac = min(1.0, done_s / self.total)
        fill = int(frac * BAR_WIDTH)
        rate = done_s / max(time.monotonic() - self.t0, 1e-9)
        self.stream.write(f"\r[{'#' * fill}{'.' * (BAR_WIDTH - fill)}] {frac:4.0%} {done_s:8.1f} s "
                          f"{int(messages):>9,d} msgs {rate:7.0f}× real time")
        self.stream.flush()

    def done(self) -> None:
        if self.on:
            self.stream.write("\n")
            self.stream.flush()


def render(session: str | Path, wav: str | Path, *, config: Config | None = None,
           preset: str = presets.DEFAULT_PRESET, fmt: str = "float32", sample_rate: int | None = None,
           png: str | Path | None = None, progress: Progress | None = None, clock: str | None = None,
           steps_per_second: float = DEFAULT_STEPS_PER_SECOND,
           reference: tuple[str | Path, str | None] | None = None) -> dict[str, Any]:
    """Render ``session`` to ``wav`` (and ``png``); returns a summary dict (``"when"``: recorded time → seconds
    into the audio).

    ``reference``: ``(recording, run or None)`` to compare with (docs/compare.md), loaded on the render's clock.

    ``clock``: ``"steps"`` (step ``k`` at ``k/steps_per_second`` s, raised so that the render lasts at most
    five minutes), ``"wall"`` (the recorded times), ``None``: steps when the session has step messages.
    Either way at most :data:`.replay.TRIM` s are kept before the first step and after the last message.
    """
    from ..outputs.sine import SineOut

    cfg = presets.apply_preset(config or default_config(), preset)
    step_clock, when, segs = clock_and_runs(session, clock, steps_per_second, preset)
    ref = None
    if reference is not None:
        ref = load_reference(reference[0], cfg, reference[1],
                             steps_per_second=step_clock.steps_per_second if step_clock is not None else None)
        check_session(session, ref)
        cfg = with_reference(cfg, ref)
    out = SineOut(cfg, wav=wav, live=False, preset=preset, sample_rate=sample_rate, fmt=fmt, keep_tracks=True)
    pipeline = Pipeline(cfg, [out])
    t0 = time.perf_counter()
    n = replay(session, pipeline, realtime=False, progress=progress, clock=step_clock, tail=RENDER_TAIL)
    elapsed = time.perf_counter() - t0
    if progress is not None:
        progress.done()
    assert out.wav is not None
    audio_s = out.wav.seconds
    summary: dict[str, Any] = {
        "messages": n, "audio_seconds": audio_s, "elapsed": elapsed,
        "realtime_factor": audio_s / elapsed if elapsed > 0 else float("inf"),
        "sample_rate": out.sr, "format": fmt, "health": out.health(),
        "alarm_times": out.bank_sink.alarm_times if out.bank_sink is not None else [],
        "clock": "steps" if step_clock is not None else "wall", "when": when,
        "unmatched": unmatched_lines(ref, session) if ref is not None else [],
    }
    if step_clock is not None:
        summary["steps"] = step_clock.steps
        summary["steps_per_second"] = step_clock.steps_per_second
        summary["raised"] = step_clock.steps_per_second > steps_per_second
        summary["runs"] = [s.label for s in segs]
    if png is not None:
        from ..sound.spectrogram import write_spectrogram

        spans = run_spans(step_clock, segs) if step_clock is not None and len(segs) > 1 else None
        write_spectrogram(wav, png, title=f"{Path(str(session)).name} — preset {preset}",
                          step_times=out.step_times, tracks=out.tracks, runs=spans)
        summary["png"] = str(png)
    return summary


def audio_clock(session: str | Path, clock: str | None, steps_per_second: float,
                preset: str) -> tuple[StepClock | None, Callable[[float], float]]:
    """The render's clock: ``(the step clock or None, recorded time → seconds into the audio)``."""
    step_clock, when, _ = clock_and_runs(session, clock, steps_per_second, preset)
    return step_clock, when


def clock_and_runs(session: str | Path, clock: str | None, steps_per_second: float, preset: str
                   ) -> tuple[StepClock | None, Callable[[float], float], list[Segment]]:
    """:func:`audio_clock` and the recording's runs, one segment each on the step clock (in order of arrival)."""
    first, last, runs = scan_runs(session)
    segs = segments(runs)
    if clock == "steps" and not segs:
        raise TrainsoundError(f"{session}: --clock steps, but the session holds no step messages")
    if clock != "wall" and segs and preset != "perone":  # perone is clocked by steps already
        step_clock = StepClock(first, last, [s.times for s in segs], steps_per_second)
        return step_clock, step_clock, segs  # it maps the first record to 0
    return None, lambda t: t - first, segs


def run_spans(clock: StepClock, segs: list[Segment]) -> list[tuple[str, float, float]]:
    """``[(run label, first second, end second)]`` of each segment in the audio (the PNG's run axis)."""
    ends = [*clock.starts[1:], float("inf")]
    return [(s.label, a, b) for s, a, b in zip(segs, clock.starts, ends, strict=True)]


def render_midi(session: str | Path, midi_file: str | Path, *, config: Config | None = None,
                bpm: float = DEFAULT_BPM, steps_per_beat: float = DEFAULT_STEPS_PER_BEAT) -> dict[str, Any]:
    """Write ``session`` as a MIDI file on a musical grid: step ``k`` on ``k / steps_per_beat`` beats at ``bpm``.

    The file's tempo is ``bpm``, so it drops onto a DAW set in time (docs/ableton.md).
    """
    from ..outputs.midifile import MidiFileOut

    cfg = config or default_config()
    first, last, runs = scan_runs(session)
    segs = segments(runs)
    if not segs:
        raise TrainsoundError(f"{session}: --bpm lays the steps on a grid, but the session holds no step messages")
    clock = StepClock(first, last, [s.times for s in segs], bpm / 60.0 * steps_per_beat, grid=True)
    out = MidiFileOut(cfg, path=midi_file, bpm=bpm)
    n = replay(session, Pipeline(cfg, [out]), realtime=False, clock=clock, tail=RENDER_TAIL)
    return {"messages": n, "steps": clock.steps, "events": out.events, "path": str(out.path)}


def render_pyo_session(
    session_path: str | os.PathLike[str],
    patch: str,
    wav_path: str | os.PathLike[str],
    *,
    sample_rate: int = PYO_SAMPLE_RATE,
    config: Config | None = None,
    options: dict[str, Any] | None = None,
    clock: str | None = None,
    steps_per_second: float = DEFAULT_STEPS_PER_SECOND,
) -> StepClock | None:
    """Render a session recording through a pyo patch into a WAV (no sound card), on the same clock as
    :func:`render`: the step clock when the session has step messages (``clock="wall"``: recorded time).

    The recording is replayed (:func:`.replay.replay`) through the same pipeline as live traffic, so
    the patch sees what it would have seen in the bridge. Returns the step clock used, if any.

    Args:
        session_path: a session recording (``trainsound bridge --record``).
        patch: built-in patch name or ``.py`` path.
        wav_path: the WAV to write (24-bit PCM, ``channels`` of the ``[pyo]`` table, default 2).
        sample_rate: of the WAV.
        config: the bridge config (mapping rules, ``[pyo]`` table); default: built-in.
        options: patch options, overriding ``[pyo.options]``.
        clock: ``"steps"``, ``"wall"`` or ``None`` (steps when the session has step messages).
        steps_per_second: the step clock's speed (raised so that a render lasts at most five minutes).

    Raises:
        OutputUnavailable: pyo missing or unknown patch.
        SessionFileError: the recording cannot be read.
    """
    from ..outputs.pyo import PyoOut

    cfg = config or default_config()
    extra: dict[str, Any] = {"sample_rate": sample_rate}
    if options is not None:
        extra["options"] = options
    step_clock, _, _ = clock_and_runs(Path(session_path), clock, steps_per_second, presets.DEFAULT_PRESET)
    out = PyoOut(cfg, patch=patch, audio="offline", wav=wav_path, **extra)
    replay(Path(session_path), Pipeline(cfg, [out]), close=False, clock=step_clock)
    # Rendering happens in close(); called here so its errors reach the caller
    # (Pipeline.close logs an output's errors and goes on: right for live, wrong here).
    out.close()
    return step_clock


def cmd_render(args: argparse.Namespace) -> int:
    if args.session.startswith("mlflow:"):  # an MLflow run: rendered as a session of its steps (bridge/tb)
        from ..tb.session import mlflow_session

        with mlflow_session(args.session[len("mlflow:"):], args.run, args.experiment) as session:
            return cmd_render(argparse.Namespace(**{**vars(args), "session": str(session), "run": None}))
    if Path(args.session).is_dir():  # a TensorBoard logdir: rendered as a session of its steps (bridge/tb)
        from ..tb.session import logdir_session

        with logdir_session(args.session) as session:
            return cmd_render(argparse.Namespace(**{**vars(args), "session": str(session)}))
    check_args(args, args.preset)
    if args.run is not None:  # one run of a recording that holds several: rendered alone
        with run_session(args.session, args.run, scan_runs(args.session)[2]) as session:
            return cmd_render(argparse.Namespace(**{**vars(args), "session": str(session), "run": None}))
    cfg = load_config(args.config) if args.config else default_config()
    if args.speak:
        cfg = replace(cfg, alarms=replace(cfg.alarms, speak=True))
    span, records = session_span(args.session)
    if records == 0:
        raise TrainsoundError(f"{args.session}: the session holds no messages")
    if args.midi_file:
        m = render_midi(args.session, args.midi_file, config=cfg, bpm=args.bpm, steps_per_beat=args.steps_per_beat)
        print(f"rendered {m['messages']} messages → {m['path']}: {m['steps']} steps, {args.steps_per_beat:g} a beat "
              f"at {args.bpm:g} BPM ({m['events']} MIDI events)", file=sys.stderr)
    want_alarms = args.alarms or args.alarms_json
    # One recording, one answer: the incidents come from the recorded clock, whatever is rendered.
    found = detect(args.session, presets.apply_preset(cfg, args.preset)) if want_alarms else []
    if not args.wav:
        if not want_alarms and not args.midi_file:
            raise TrainsoundError("render needs --wav FILE, --midi-file FILE, or --alarms / --alarms-json FILE")
        if want_alarms:
            report_alarms(args, found)
        return 0
    if args.pyo_patch:
        step_clock = render_pyo(args, cfg)
        if want_alarms:
            report_alarms(args, found, when=step_clock)  # where each lies in the WAV (None: on the wall clock)
        return 0
    bar = Progress(span, force=args.progress)
    s = render(args.session, args.wav, config=cfg, preset=args.preset, fmt=args.format,
               sample_rate=args.sample_rate, png=args.png, progress=bar, clock=args.clock,
               steps_per_second=args.steps_per_second,
               reference=(args.reference, args.reference_run) if args.reference else None)
    for line in s["unmatched"]:
        print(line, file=sys.stderr)
    if want_alarms:
        report_alarms(args, found, when=s["when"])  # the printed times are where each lies in the WAV
    extra = f", spectrogram {s['png']}" if "png" in s else ""
    if s["clock"] == "steps":
        extra += f"; step clock: {s['steps']} steps at {s['steps_per_second']:g} steps/s"
        if len(s["runs"]) > 1:
            extra += f", {len(s['runs'])} runs one after another ({', '.join(s['runs'])}; --run NAME renders one)"
        if s["raised"]:
            extra += (f" (raised from {args.steps_per_second:g} so that the render lasts at most "
                      f"{MAX_RENDER_SECONDS / 60:g} min)")
    print(f"rendered {s['messages']} messages → {args.wav}: {s['audio_seconds']:.2f} s of {s['format']} audio at "
          f"{s['sample_rate']} Hz in {s['elapsed']:.2f} s ({s['realtime_factor']:.0f}× real time){extra}",
          file=sys.stderr)
    return 0


def render_pyo(args: argparse.Namespace, cfg: Any) -> StepClock | None:
    """``--pyo-patch``: the recording through a pyo patch, on pyo's offline server (no sound card)."""
    t0 = time.perf_counter()
    step_clock = render_pyo_session(args.session, args.pyo_patch, args.wav,
                                    sample_rate=args.sample_rate or PYO_SAMPLE_RATE, config=cfg, clock=args.clock,
                                    steps_per_second=args.steps_per_second)
    extra = "" if step_clock is None else \
        f"; step clock: {step_clock.steps} steps at {step_clock.steps_per_second:g} steps/s"
    print(f"rendered {args.session} through pyo patch {args.pyo_patch} → {args.wav} in "
          f"{time.perf_counter() - t0:.2f} s{extra}", file=sys.stderr)
    if args.png:
        from ..sound.spectrogram import write_spectrogram

        write_spectrogram(args.wav, args.png, title=f"{Path(str(args.session)).name} — pyo patch {args.pyo_patch}")
    return step_clock


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return v


def add_parser(subparsers: Any) -> None:
    """Register ``trainsound render``."""
    p = subparsers.add_parser(
        "render", help="render a recorded session to WAV (and a spectrogram PNG), faster than real time",
        description="Render a session recorded with 'trainsound bridge --record' through the internal sine "
        "voices to a WAV file, on the recorded clock.")
    p.add_argument("session", help="session recording (.tsr), a TensorBoard log directory, or mlflow:URI")
    p.add_argument("--run", metavar="NAME|ID", help="render only this run of a recording that holds several (each "
                   "gets its own span otherwise); mlflow:URI: the run to render (its name or ID)")
    p.add_argument("--experiment", metavar="NAME", help="mlflow:URI: the experiment (without --run: all its runs)")
    p.add_argument("--wav", metavar="FILE", help="WAV file to write (required unless --midi-file or --alarms)")
    p.add_argument("--midi-file", metavar="FILE",
                   help="write a MIDI file on a musical grid (--bpm, --steps-per-beat) that drops onto a DAW set")
    p.add_argument("--bpm", type=_positive, default=DEFAULT_BPM, help=f"--midi-file's tempo (default {DEFAULT_BPM:g})")
    p.add_argument("--steps-per-beat", type=_positive, default=DEFAULT_STEPS_PER_BEAT, metavar="N",
                   help=f"training steps per beat in --midi-file (default {DEFAULT_STEPS_PER_BEAT:g}: one a sixteenth)")
    p.add_argument("--preset", default=presets.DEFAULT_PRESET, choices=presets.PRESETS,
                   help="mapping + renderer mode (default: continuous)")
    p.add_argument("--config", metavar="FILE", help="TOML config (default: built-in mapping)")
    p.add_argument("--format", default="float32", choices=FORMATS, help="sample format (default float32)")
    p.add_argument("--sample-rate", type=int, metavar="HZ", help="override the sample rate")
    p.add_argument("--png", metavar="FILE", help="also write a spectrogram PNG")
    p.add_argument("--clock", choices=("steps", "wall"),
                   help="steps: one training step every 1/N s (default when the session has step messages); "
                   "wall: the recorded times")
    p.add_argument("--steps-per-second", type=_positive, default=DEFAULT_STEPS_PER_SECOND, metavar="N",
                   help=f"step clock speed (default {DEFAULT_STEPS_PER_SECOND:g}; raised so a render lasts at most "
                   f"{MAX_RENDER_SECONDS / 60:g} min)")
    p.add_argument("--progress", action="store_true", help="show the progress bar even when not on a terminal")
    p.add_argument("--pyo-patch", metavar="NAME|FILE",
                   help="render through a pyo patch (patches/pyo) instead of the sine voices, on the same clock; "
                   "--preset is ignored")
    add_alarm_args(p)
    add_reference_args(p)
    p.set_defaults(func=cmd_render)
