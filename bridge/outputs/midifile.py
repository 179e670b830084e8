"""Standard MIDI File output: real-time positions, one track per voice, on the live port's channels.

A track holds one voice's events only (a layer group's notes and its CCs, or a run's loss and metric
CCs), named after it (``gpt h.0–h.3 grad``, ``gpt loss``); alarms and ticks have a track per run and
channel. Channels are the ones the live port gives the voice (:mod:`.channels`: runs apart).

Events are encoded into each track's bytes as they are saved (:mod:`..wire.smf`),
and the file is rewritten atomically (temp file + rename) every few seconds from
a background thread, and once more on close — so the file on disk is always a
complete, valid SMF up to its last save, even after kill -9. A save costs one
write of bytes already encoded, not a re-encoding of every event: at 470,000
events it takes milliseconds (``bench/bench_midifile.py``). A failed save (disk
full) is counted and retried at the next interval; nothing encoded is lost.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import Config, output_options
from ..errors import OutputUnavailable, write_failure
from ..mapped import Mapped
from ..mapping.deviation import DeviationCcs, Reference
from ..wire import midi as mb
from ..wire.protocol import Event
from ..wire.smf import TEMPO, TICKS_PER_BEAT, TICKS_PER_SECOND, TrackBytes, smf_bytes
from .base import BaseOutput, NoteScheduler, fresh_path
from .channels import RunChannels

log = logging.getLogger(__name__)

__all__ = ["FLUSH_INTERVAL", "MAX_EVENTS", "TEMPO", "TICKS_PER_BEAT", "TICKS_PER_SECOND", "MidiFileOut"]

FLUSH_INTERVAL = 2.0
#: Events per file before it is finished and the next one begun (``out.1.mid``, ``out.2.mid``, …):
#: a bridge left running for weeks must not keep every event in memory.
MAX_EVENTS = 500_000

Batch = dict[str, list[tuple[float, bytes]]]


def track_label(m: Mapped) -> str:
    """A track's name from the first value on it: run, voice (the stream past the run), the rule's first word.

    >>> from trainsound.bridge.mapped import Mapped
    >>> track_label(Mapped(0.0, "gpt", 0, "grad_norm_notes", "note", ("gpt", "h.0–h.3"), 0, 1.0, 0.5, 1, (), (), 0.1))
    'gpt h.0–h.3 grad'
    """
    voice = " ".join(s for s in m.stream[1:] if s) if m.stream[:1] == (m.run,) else " ".join(m.stream)
    word = (m.rule_name or m.target).split("_")[0]
    return " ".join(x for x in (m.run, voice, word) if x)


class MidiFileOut(BaseOutput):
    """The ``midi_file`` output (``--midi-file out.mid``)."""

    name = "midi_file"
    silences = True

    def __init__(
        self,
        config: Config,
        *,
        path: str | os.PathLike[str],
        flush_interval: float = FLUSH_INTERVAL,
        max_events: int = MAX_EVENTS,
        never_overwrite: bool = False,
        bpm: float | None = None,
    ) -> None:
        # The file's tempo: 120 BPM by default (times are seconds anyway); a render on a musical grid sets it.
        self.tempo = round(60_000_000 / bpm) if bpm else TEMPO
        self.ticks_per_second = TICKS_PER_BEAT * 1_000_000 / self.tempo
        self.path = self.first_path = fresh_path(path, "MIDI file") if never_overwrite else Path(path)
        self.max_events = max_events
        self.never_overwrite = never_overwrite
        self.part = 0
        self._in_file = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab"):
                pass
        except OSError as err:
            raise OutputUnavailable(f"{self.path}: cannot write MIDI file: {err.strerror}") from err
        self.flush_interval = flush_interval
        self.sched = NoteScheduler()
        self.origin: float | None = None
        self._pending: Batch = {}
        """Events since the last save (receive thread); the saver encodes them into ``_tracks``."""
        self.plan = RunChannels(config.mappings, config.alarm.channel, config.groups)
        self._track_keys = {}
        """A voice (or, for alarms and ticks, run and channel) → its track's name: ``gpt h.0–h.3 grad``,
        ``gpt loss`` (named after the first value of the voice)."""
        self._note_tracks: dict[tuple[str, int], str] = {}
        """(run, channel) → the track of the last note started there: where its note-off goes."""
        self._last_track: dict[int, tuple[str, str]] = {}
        """Channel → (run, track) of its last note (else its first value): where the closing all-notes-off goes."""
        self._tracks: dict[str, TrackBytes] = {}
        """This file's tracks, encoded (only the saver touches them, under ``_save_lock``)."""
        self._runs: set[str] = set()
        self._last_run = ""
        self._last_t = -math.inf
        self._dirty = False
        self._retry = False
        self._next_flush = 0.0
        self._saver: threading.Thread | None = None
        self._save_lock = threading.Lock()
        self.events = 0
        self.saves = 0
        self.errors = 0
        self.error: str | None = None
        """Why the last save failed (``disk full: …``); ``None`` once a save succeeds again."""
        ref: Reference | None = output_options(config, "reference", None)
        self.deviations = DeviationCcs(ref, config.mappings) if ref is not None else None
        """``--reference``: each voice's deviation as a CC (docs/compare.md)."""
        self._save({}, self.path, None, reset=False)  # an empty but valid file from the start

    _track_keys: dict[tuple[Any, ...], str]

    def _track_of(self, m: Mapped) -> str:
        """The track a value belongs to: its voice's (one instrument in a DAW), named on first sight."""
        placed = self.plan.voice(m)
        key: tuple[Any, ...] = (placed[0], placed[1]) if placed is not None else (m.run, m.channel)
        name = self._track_keys.get(key)
        if name is None:
            name = self._track_keys[key] = self._unique(track_label(m))
        return name

    def _unique(self, label: str) -> str:
        """``label``, or ``label 2``, ``label 3`` … when another voice has that name already."""
        taken = set(self._track_keys.values())
        name, n = label, 1
        while name in taken:
            n += 1
            name = f"{label} {n}"
        return name

    def _add(self, run: str, t: float, msg: bytes, track: str | None = None) -> None:
        key = track if track is not None else self._note_tracks.get((run, mb.channel_of(msg)), run)
        tr = self._pending.get(key)
        if tr is None:
            tr = self._pending[key] = []
        tr.append((t, msg))
        self._runs.add(run)
        self._in_file += 1
        self._last_t = max(self._last_t, t)
        self._dirty = True

    def _handle(self, event: Event | None, mapped: Sequence[Mapped]) -> None:
        for m in mapped:
            if not m.midi:
                continue
            if self._in_file >= self.max_events:
                self._rotate()
            if self.origin is None:
                self.origin = m.t
            self._flush_due(m.t)
            self._last_run = m.run
            m = self.plan.route(m)
            track = self._track_of(m)
            if m.later:
                self._note_tracks[(m.run, m.channel)] = track
            if m.later or m.channel not in self._last_track:  # all-notes-off belongs with the channel's notes
                self._last_track[m.channel] = (m.run, track)
            for msg in self.sched.start(m.t, m.midi, m.later, m.length, m.run):
                # A retrigger's note-off belongs to the note it ends (the same run and channel's last note).
                self._add(m.run, m.t, msg, None if mb.is_note_off(msg) else track)
            self.events += 1
        if self.deviations is not None and self.origin is not None:
            for m, msg in self.deviations.messages(event, mapped):
                self._add(m.run, m.t, msg)

    def reconfigure(self, config: Config) -> None:
        """A reload's rules: voices are placed afresh, as the live port does."""
        self.plan.reconfigure(config.mappings, config.groups)

    def _take(self) -> Batch:
        batch, self._pending, self._dirty, self._retry = self._pending, {}, False, False
        return batch

    def _start_save(self, batch: Batch, reset: bool) -> None:
        self._saver = threading.Thread(
            target=self._save, args=(batch, self.path, self.origin), kwargs={"reset": reset}, daemon=True
        )
        self._saver.start()

    def _release_run(self, run: str, now: float) -> None:
        for msg in self.sched.release(run):
            self._add(run, now, msg)
        self.plan.release(run)

    def _rotate(self) -> None:
        """Finish this file (in the background) and go on in the next part."""
        if self._saver is not None:
            self._saver.join()
        self._finish_tracks()
        self._start_save(self._take(), reset=True)
        self.part += 1
        self.path = self.first_path.with_name(f"{self.first_path.stem}.{self.part}{self.first_path.suffix}")
        if self.never_overwrite:
            self.path = fresh_path(self.path, "MIDI file part")
        log.info("MIDI file: %d events written, going on in %s", self._in_file, self.path)
        self.origin, self._in_file, self._last_t = None, 0, -math.inf

    def _flush_due(self, now: float) -> None:
        for when, msg, run in self.sched.due(now):
            self._add(run, when, msg)

    def _tick(self, now: float) -> None:
        self._flush_due(now)
        wall = time.monotonic()
        if (self._dirty or self._retry) and wall >= self._next_flush and (
            self._saver is None or not self._saver.is_alive()
        ):
            self._start_save(self._take(), reset=False)
            self._next_flush = wall + self.flush_interval

    def _save(self, batch: Batch, path: Path, origin: float | None, *, reset: bool) -> None:
        """Encode ``batch`` into the tracks, write the whole file to a temp file, rename it over ``path``."""
        with self._save_lock:
            for run, events in batch.items():
                tr = self._tracks.get(run)
                if tr is None:
                    tr = self._tracks[run] = TrackBytes(run)
                tr.append(events, origin or 0.0, self.ticks_per_second)
            tmp = path.with_name(f".{path.name}.tmp")
            try:
                with open(tmp, "wb") as fh:
                    fh.write(smf_bytes(self._tracks.values(), self.tempo))
                os.replace(tmp, path)
            except OSError as err:
                self.errors += 1
                self._retry = True  # nothing is lost: the events are encoded, the next save tries again
                if self.error is None:
                    log.error("MIDI file %s; retrying every %.0f s (the file keeps its last save)",
                              write_failure(err, path), self.flush_interval)
                self.error = write_failure(err, path)
                with contextlib.suppress(OSError):
                    tmp.unlink()
            else:
                if self.error is not None:
                    log.warning("MIDI file %s: saved again after %d failed save(s)", path, self.errors)
                self.error = None
                self.saves += 1
            if reset:
                self._tracks = {}

    def _finish_tracks(self) -> None:
        """Pending note-offs at their own times, then all-notes-off just after the last event."""
        self._flush_due(math.inf)
        last = self._last_t if math.isfinite(self._last_t) else (self.origin or 0.0)
        for msg in self.sched.release_all():
            if mb.is_control_change(msg):
                run, track = self._last_track.get(mb.channel_of(msg), (self._last_run or "trainsound", None))
                self._add(run, last, msg, track)

    def _close(self) -> None:
        if self._saver is not None:
            self._saver.join()
        self._finish_tracks()
        self._save(self._take(), self.path, self.origin, reset=False)
        log.info("MIDI file %s: %d events in %d track(s)", self.path, self.events, len(self._tracks))

    def health(self) -> dict[str, Any]:
        h: dict[str, Any] = {
            "ok": self.error is None,
            "path": str(self.path),
            "events": self.events,
            "saves": self.saves,
            "errors": self.errors,
        }
        if self.error is not None:
            h["why"] = self.error
        return h

    def describe(self) -> str:
        return f"MIDI file {self.path}"
