"""``--reference SESSION.tsr`` (and ``--reference-run NAME``): a recorded run loaded as the reference.

:func:`load` plays the reference run's messages through the same mapping as the run it is compared with
(and, for a render, on the same step clock, so rate limits thin alike) and keeps every value per stream and
step (:class:`~..mapping.deviation.Reference`). :func:`with_reference` puts it in the config, where the
outputs that compare (the ``ab``/``diff`` sine presets, MIDI, OSC, the web page) find it. Bad input is one
line naming the file (a :class:`ConfigError`: exit 2): no run, several runs and no ``--reference-run``, no
step messages, no stream in common, step ranges that do not overlap.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import ConfigError, OSCDecodeError, SessionFileError
from ..mapped import Mapped
from ..mapping.deviation import Key, Reference, Series, key_of, run_index, stream_key
from ..mapping.groups import groups_rule
from ..outputs.base import BaseOutput
from ..pipeline import Pipeline
from ..wire.osc import decode_message
from ..wire.protocol import VALUE_NAMES, Event
from ..wire.session import iter_records
from .loop import TICK, StepClock

log = logging.getLogger(__name__)

#: Kinds that carry no comparable number (or only the step itself).
SKIP_KINDS = frozenset({"step", "event", "activation_spectrum", "weight_units"})


@dataclass
class RunScan:
    """What one pass over a recording learns of a run: its step messages and the streams it sends."""

    step_times: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    streams: dict[str, None] = field(default_factory=dict)
    """The address after ``/nn/<run>/`` of every value message, in first-seen order."""


@dataclass
class Scan:
    first: float
    last: float
    runs: dict[str, RunScan]


def scan(path: str | Path) -> Scan:
    """The runs of a recording, their steps and streams (one pass, decoding only the step messages)."""
    first = last = math.nan
    runs: dict[str, RunScan] = {}
    for t, raw in iter_records(path):
        if first != first:
            first = t
        last = t
        end = raw.find(b"\0")
        parts = raw[:end].decode("utf-8", "replace").split("/")
        if len(parts) < 4 or parts[0] or parts[1] != "nn":
            continue
        r = runs.get(parts[2])
        if r is None:
            r = runs[parts[2]] = RunScan()
        tail = "/".join(parts[3:])
        if tail == "step":
            try:
                _, args = decode_message(raw)
                step = int(args[0])  # type: ignore[arg-type]
            except (OSCDecodeError, IndexError, TypeError, ValueError, OverflowError):
                continue  # a malformed step message is the pipeline's to count; it aligns nothing
            r.step_times.append(t)
            r.steps.append(step)
        elif parts[3] not in SKIP_KINDS:
            r.streams[tail] = None
    return Scan(first, last, runs)


def choose_run(path: str | Path, found: Scan, run: str | None, flag: str = "--reference-run") -> str:
    """The run to compare: ``run``, or the recording's only run; one line naming the file otherwise."""
    names = list(found.runs)
    if not names:
        raise ConfigError(f"{path}: holds no training run (no /nn/<run>/ messages)")
    if run is not None and run not in found.runs:
        raise ConfigError(f"{path}: has no run {run!r}; it holds {', '.join(map(repr, names))}")
    if run is None:
        if len(names) > 1:
            raise ConfigError(f"{path}: holds {len(names)} runs ({', '.join(map(repr, names))}); "
                              f"choose one with {flag}")
        run = names[0]
    if not found.runs[run].steps:
        raise ConfigError(f"{path}: run {run!r} sends no step messages, so it cannot be aligned by step")
    return run


class _Tap(BaseOutput):
    """Keeps the reference run's values per step: raw from the events, mapped from the engine."""

    name = "reference"

    def __init__(self, config: Config, path: str, run: str) -> None:
        self.path, self.run = path, run
        self.rules = config.mappings
        self.runs_at = tuple(run_index(r) for r in config.mappings)
        self.grouped = frozenset(i for i, r in enumerate(config.mappings)
                                 if groups_rule(r.voice_key, r.voices, config.groups))
        self.step: int | None = None
        self.streams: dict[str, Series] = {}
        self.mapped: dict[Key, Series] = {}
        self.labels: dict[Key, str] = {}

    def _handle(self, event: Event | None, mapped: Sequence[Mapped]) -> None:
        if event is not None:
            if event.kind == "step" and event.values:
                self.step = int(event.values[0])
            elif event.kind not in SKIP_KINDS and self.step is not None:
                names = VALUE_NAMES.get(event.kind, ())
                base = f"{event.kind}/{event.name}" if event.name else event.kind
                for i, v in enumerate(event.values):
                    tail = base if i == 0 else f"{base}.{names[i] if i < len(names) else i}"
                    self.streams.setdefault(tail, Series()).put(self.step, v)
        if self.step is None:
            return
        if event is not None and event.values:
            self._raw(event)
        for m in mapped:
            if m.rule < 0 or m.norm != m.norm or m.target in ("alarm", "tick"):
                continue
            key = stream_key(m, self.runs_at)
            s = self.mapped.get(key)
            if s is None:
                s = self.mapped[key] = Series()
                self.labels[key] = f"{'/'.join(key[1])} ({m.rule_name or m.rule})"
            s.put(self.step, m.value, m.norm)

    def _raw(self, event: Event) -> None:
        """The raw value of every plain rule that matches, in every step: a comparison must not depend on a
        CC's code having changed (the engine sends a CC only then)."""
        assert self.step is not None
        for i, rule in enumerate(self.rules):
            if i in self.grouped or rule.index >= len(event.values):
                continue
            hit = rule.pattern.fullmatch(event.address)
            if hit is None:
                continue
            caps = hit.groupdict()
            names = rule.voice_by if rule.voice_by is not None else tuple(caps)
            key = key_of(i, tuple(caps[n] for n in names), self.runs_at)
            s = self.mapped.get(key)
            if s is None:
                s = self.mapped[key] = Series()
                self.labels[key] = f"{'/'.join(key[1])} ({rule.name or i})"
            s.put_raw(self.step, event.values[rule.index])

    def reference(self, first: int, last: int) -> Reference:
        return Reference(self.path, self.run, first, last, self.streams, self.mapped, self.labels,
                         frozenset(k for k in self.mapped if k[0] in self.grouped))


def load(path: str | Path, config: Config, run: str | None = None, *, steps_per_second: float | None = None,
         flag: str = "--reference-run", found: Scan | None = None, grid: bool = False) -> Reference:
    """The reference run of ``path`` through ``config``'s mapping; ``steps_per_second``: on the step clock a
    render uses (else on the recorded times, as live); ``grid``: exactly that many steps a second."""
    try:
        found = found or scan(path)
    except SessionFileError as err:  # the reference is an argument: a usage error (exit 2), naming the file
        raise ConfigError(str(err)) from None
    run = choose_run(path, found, run, flag)
    rs = found.runs[run]
    clock = None
    if steps_per_second:
        clock = StepClock(found.first, found.last, [rs.step_times], steps_per_second, grid=grid)
    # Every step of the reference is kept: no rate limit (the run's thinning, on its own clock, decides which
    # steps are compared). The detectors' alarms are not compared: they cost time here and change no value.
    cfg = replace(config, mappings=tuple(replace(r, rate_limit=0.0) for r in config.mappings),
                  alarms=replace(config.alarms, enabled=False))
    tap = _Tap(cfg, str(path), run)
    pipeline = Pipeline(cfg, [tap])
    pipeline.engine.every_value = True  # a value clamped to the code of the last is still the step's value
    prefix = f"/nn/{run}/".encode()
    next_tick = math.nan
    last = 0.0
    for t, raw in iter_records(path):
        if not raw.startswith(prefix):
            continue
        if clock is not None:
            t = clock(t)
        if next_tick != next_tick:
            next_tick = t
        while next_tick <= t:
            pipeline.tick(next_tick)
            next_tick += TICK
        pipeline.feed_message(t, raw)
        last = t
    pipeline.close(last + 1.0)
    return tap.reference(min(rs.steps), max(rs.steps))


def check_session(session: str | Path, ref: Reference, found: Scan | None = None) -> None:
    """A recording to compare with ``ref``: it has steps, streams in common and steps that overlap."""
    found = found or scan(session)
    stepped = {n: r for n, r in found.runs.items() if r.steps}
    if not stepped:
        raise ConfigError(f"{session}: no step messages, so it cannot be aligned with the reference by step")
    mine = {s for r in stepped.values() for s in r.streams}
    if not mine & set(ref.streams):
        raise ConfigError(f"{session}: no stream in common with the reference {ref.path} (run {ref.run!r})")
    lo = min(min(r.steps) for r in stepped.values())
    hi = max(max(r.steps) for r in stepped.values())
    if hi < ref.first_step or lo > ref.last_step:
        raise ConfigError(f"{session}: steps {lo}–{hi} do not overlap the reference's "
                          f"{ref.first_step}–{ref.last_step} ({ref.path})")
    if (lo, hi) != (ref.first_step, ref.last_step):
        log.warning("%s: steps %d–%d, the reference %s steps %d–%d: compared where both have steps",
                    session, lo, hi, ref.path, ref.first_step, ref.last_step)


def session_config(args: Any, config: Config, session: str | Path) -> Config:
    """``replay``'s ``--reference``: checked, loaded on the recorded times and put in ``config``."""
    check_args(args, args.preset)
    if not args.reference:
        return config
    ref = load(args.reference, config, args.reference_run)
    check_session(session, ref)
    return with_reference(config, ref)


def with_reference(config: Config, ref: Reference) -> Config:
    """``config`` with the reference where the outputs look for it (``output_options(config, "reference")``)."""
    return replace(config, outputs={**config.outputs, "reference": ref})


def reference_override(path: str, run: str | None) -> Callable[[Config], Config]:
    """The bridge's config override for ``--reference`` (re-applied on every reload, so the reference is
    mapped with the new mapping; loaded again only when the mapping changed)."""
    cache: dict[str, Any] = {}

    def override(config: Config) -> Config:
        if cache.get("rules") != (config.mappings, config.groups):
            cache["ref"] = load(path, config, run)
            cache["rules"] = (config.mappings, config.groups)
        log.info("reference: %s, run %s (steps %d–%d)", path, cache["ref"].run, cache["ref"].first_step,
                 cache["ref"].last_step)
        return with_reference(config, cache["ref"])

    return override


def unmatched_lines(ref: Reference, session: str | Path) -> list[str]:
    """One line each for the streams only one side has (after a render or replay)."""
    out = []
    if ref.unmatched:
        out.append(f"streams only in {session}: {', '.join(sorted(ref.unmatched))}")
    only_ref = [ref.labels[k] for k in ref.mapped if k not in ref.matched]
    if only_ref:
        out.append(f"streams only in the reference {ref.path}: {', '.join(only_ref)}")
    return out


def add_reference_args(p: argparse.ArgumentParser) -> None:
    """``--reference`` and ``--reference-run`` (render, replay, bridge)."""
    g = p.add_argument_group("reference (docs/compare.md)")
    g.add_argument("--reference", metavar="SESSION.tsr",
                   help="compare with this recorded run, step by step (presets ab and diff sound it; MIDI CCs, "
                   "OSC /trainsound/deviation and the web page carry it)")
    g.add_argument("--reference-run", metavar="NAME", help="the reference's run, when the recording holds several")


def check_args(args: Any, preset: str | None) -> None:
    """``--preset ab``/``diff`` need ``--reference``; ``--reference-run`` needs it too."""
    if preset in ("ab", "diff") and not args.reference:
        raise ConfigError(f"--preset {preset} compares with a reference: add --reference SESSION.tsr")
    if args.reference_run and not args.reference:
        raise ConfigError("--reference-run needs --reference SESSION.tsr")
