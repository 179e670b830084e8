"""Standard MIDI File output: real-time positions, one track per run.

Events are kept in memory and the file is rewritten atomically (temp file +
rename) every few seconds from a background thread, and once more on close —
so the file on disk is always a complete, valid SMF up to its last flush, even
after a crash.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import OutputUnavailable
from ..mapping import Mapped
from ..wire import midi as mb
from ..wire.protocol import Event
from .base import BaseOutput, NoteScheduler, fresh_path

log = logging.getLogger(__name__)

TICKS_PER_BEAT = 480
TEMPO = 500_000  # µs per beat (120 BPM): 960 ticks per second
TICKS_PER_SECOND = TICKS_PER_BEAT * 1_000_000 / TEMPO
FLUSH_INTERVAL = 2.0
#: Events per file before it is finished and the next one begun (``out.1.mid``, ``out.2.mid``, …):
#: a bridge left running for weeks must not keep every event in memory.
MAX_EVENTS = 500_000


class MidiFileOut(BaseOutput):
    """The ``midi_file`` output (``--midi-file out.mid``)."""

    name = "midi_file"

    def __init__(
        self,
        config: Config,
        *,
        path: str | os.PathLike[str],
        flush_interval: float = FLUSH_INTERVAL,
        max_events: int = MAX_EVENTS,
        never_overwrite: bool = False,
    ) -> None:
        try:
            import mido
        except ImportError as err:
            raise OutputUnavailable("MIDI files need mido: pip install 'trainsound[bridge]'") from err
        self._mido = mido
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
        self.tracks: dict[str, list[tuple[float, bytes]]] = {}
        self._last_run = ""
        self._dirty = False
        self._next_flush = 0.0
        self._saver: threading.Thread | None = None
        self._save_lock = threading.Lock()
        self.events = 0
        self.saves = 0
        self.errors = 0
        self._write([], self.path, None)  # an empty but valid file from the start

    def _track(self, run: str) -> list[tuple[float, bytes]]:
        tr = self.tracks.get(run)
        if tr is None:
            tr = self.tracks[run] = []
        return tr

    def _handle(self, event: Event | None, mapped: Sequence[Mapped]) -> None:
        for m in mapped:
            if not m.midi:
                continue
            if self._in_file >= self.max_events:
                self._rotate()
            if self.origin is None:
                self.origin = m.t
            self._flush_due(m.t)
            tr = self._track(m.run)
            self._last_run = m.run
            for msg in self.sched.start(m.t, m.midi, m.later, m.length, m.run):
                tr.append((m.t, msg))
                self._in_file += 1
            self.events += 1
            self._dirty = True

    def _rotate(self) -> None:
        """Finish this file (in the background) and go on in the next part."""
        if self._saver is not None:
            self._saver.join()
        self._finish_tracks()
        snapshot = {run: list(tr) for run, tr in self.tracks.items()}
        self._saver = threading.Thread(target=self._write, args=(snapshot, self.path, self.origin), daemon=True)
        self._saver.start()
        self.part += 1
        self.path = self.first_path.with_name(f"{self.first_path.stem}.{self.part}{self.first_path.suffix}")
        if self.never_overwrite:
            self.path = fresh_path(self.path, "MIDI file part")
        log.info("MIDI file: %d events written, going on in %s", self._in_file, self.path)
        self.tracks, self.origin, self._in_file, self._dirty = {}, None, 0, False

    def _flush_due(self, now: float) -> None:
        for when, msg, run in self.sched.due(now):
            self._track(run).append((when, msg))
            self._in_file += 1
            self._dirty = True

    def _tick(self, now: float) -> None:
        self._flush_due(now)
        wall = time.monotonic()
        if self._dirty and wall >= self._next_flush and (self._saver is None or not self._saver.is_alive()):
            snapshot = {run: list(tr) for run, tr in self.tracks.items()}
            self._dirty = False
            self._saver = threading.Thread(target=self._write, args=(snapshot, self.path, self.origin), daemon=True)
            self._saver.start()
            self._next_flush = wall + self.flush_interval

    def _build(self, tracks: dict[str, list[tuple[float, bytes]]] | list[Any], origin: float | None) -> Any:
        mido = self._mido
        mf = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
        meta = mido.MidiTrack()
        meta.append(mido.MetaMessage("track_name", name="trainsound", time=0))
        meta.append(mido.MetaMessage("set_tempo", tempo=TEMPO, time=0))
        meta.append(mido.MetaMessage("end_of_track", time=0))
        mf.tracks.append(meta)
        origin = origin or 0.0
        for run, events in tracks.items() if isinstance(tracks, dict) else []:
            tr = mido.MidiTrack()
            # SMF text is Latin-1 in mido: a run name outside it must not make every later save fail.
            name = run.encode("latin-1", "replace").decode("latin-1")
            tr.append(mido.MetaMessage("track_name", name=name, time=0))
            last = 0
            for t, msg in sorted(events, key=lambda e: e[0]):
                tick = max(0, round((t - origin) * TICKS_PER_SECOND))
                tr.append(mido.Message.from_bytes(msg, time=tick - last))
                last = tick
            tr.append(mido.MetaMessage("end_of_track", time=0))
            mf.tracks.append(tr)
        return mf

    def _write(
        self, tracks: dict[str, list[tuple[float, bytes]]] | list[Any], path: Path, origin: float | None
    ) -> None:
        with self._save_lock:
            tmp = path.with_name(f".{path.name}.tmp")
            try:
                self._build(tracks, origin).save(str(tmp))
                os.replace(tmp, path)
                self.saves += 1
            except (OSError, ValueError) as err:
                self.errors += 1
                log.error("%s: cannot write MIDI file: %s", path, err)

    def _finish_tracks(self) -> None:
        """Pending note-offs at their own times, then all-notes-off just after the last event."""
        self._flush_due(math.inf)
        last = max((t for tr in self.tracks.values() for t, _ in tr), default=self.origin or 0.0)
        for msg in self.sched.release_all():
            if mb.is_control_change(msg):
                self._track(self._last_run or "trainsound").append((last, msg))

    def _close(self) -> None:
        if self._saver is not None:
            self._saver.join()
        self._finish_tracks()
        self._write({run: list(tr) for run, tr in self.tracks.items()}, self.path, self.origin)
        log.info("MIDI file %s: %d events in %d track(s)", self.path, self.events, len(self.tracks))

    def health(self) -> dict[str, Any]:
        return {
            "ok": self.errors == 0,
            "path": str(self.path),
            "events": self.events,
            "saves": self.saves,
            "errors": self.errors,
        }

    def describe(self) -> str:
        return f"MIDI file {self.path}"
