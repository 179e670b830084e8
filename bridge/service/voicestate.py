"""Voices remembered across restarts: the same run name gets the same channels, so a saved DAW set keeps working.

The engine asks :class:`VoiceMemory` for a stream's voice before it allocates one in first-seen
order, and tells it every voice it allocates. The daemon loads the file at start and saves it
(atomically: a temp file renamed over it) when it changed, at most every few seconds and at
shutdown. The file is small JSON, bounded: at most :data:`MAX_RUNS` run names, the least
recently used forgotten first. A missing, unreadable or foreign file is one log line and an empty
memory — never a failed start.

Default place: ``$XDG_STATE_HOME/trainsound/voices.json`` (``~/.local/state/trainsound/voices.json``);
``[voices] state`` in the config chooses another, ``state = ""`` turns remembering off.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config, output_options
from ..errors import ConfigError
from ..table import Table

log = logging.getLogger(__name__)

MAX_RUNS = 1000
SAVE_INTERVAL = 2.0
FORMAT = 1


def default_state_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "trainsound" / "voices.json"


@dataclass(frozen=True)
class VoiceOptions:
    """The ``[voices]`` table."""

    state: str | None = None
    """The memory file; ``None``: the default place; ``""``: do not remember."""


def section(t: Table) -> VoiceOptions:
    """Validate ``[voices]``: ``state`` (a file path, ``~`` expanded; ``""`` turns remembering off)."""
    state = t.string("state", "")
    if state and os.path.isdir(os.path.expanduser(state)):
        raise ConfigError(f"{t.key('state')} must be a file, {state!r} is a directory")
    opts = VoiceOptions(state=os.path.expanduser(state) if "state" in t.data else None)
    t.finish()
    return opts


def open_memory(config: Config) -> VoiceMemory | None:
    """The daemon's voice memory as ``[voices] state`` says (``None`` when turned off)."""
    opts: VoiceOptions = output_options(config, "voices", VoiceOptions())
    if opts.state == "":
        return None
    return VoiceMemory(Path(opts.state) if opts.state else default_state_path())


class VoiceMemory:
    """``(voice table, stream) → voice``, per run name, with a last-used time for the bound."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._runs: dict[str, dict[str, Any]] = {}
        self.dirty = False
        self._next_save = 0.0
        self._warned = False
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as err:
            log.warning("voice memory %s unreadable (%s): starting afresh", path, err)
            return
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("runs"), dict):
            log.warning("voice memory %s is not a trainsound voice file: starting afresh", path)
            return
        for run, entry in data["runs"].items():
            if isinstance(entry, dict) and isinstance(entry.get("voices"), dict):
                self._runs[str(run)] = {"used": float(entry.get("used", 0.0)), "voices": entry["voices"]}

    @staticmethod
    def _key(table: tuple[str, ...], stream: tuple[str, ...]) -> str:
        return f"{','.join(table)}|{'/'.join(stream)}"

    def get(self, run: str, table: tuple[str, ...], stream: tuple[str, ...]) -> int | None:
        entry = self._runs.get(run)
        if entry is None:
            return None
        v = entry["voices"].get(self._key(table, stream))
        return v if isinstance(v, int) and v >= 0 else None

    def put(self, run: str, table: tuple[str, ...], stream: tuple[str, ...], voice: int) -> None:
        entry = self._runs.get(run)
        if entry is None:
            if len(self._runs) >= MAX_RUNS:
                del self._runs[min(self._runs, key=lambda r: self._runs[r]["used"])]
            entry = self._runs[run] = {"used": 0.0, "voices": {}}
        entry["used"] = time.time()
        key = self._key(table, stream)
        if entry["voices"].get(key) != voice:
            entry["voices"][key] = voice
            self.dirty = True

    def save(self, now: float | None = None, force: bool = False) -> None:
        """Write the file if it changed (at most every :data:`SAVE_INTERVAL` s unless ``force``)."""
        if self.path is None or not self.dirty:
            return
        wall = time.monotonic() if now is None else now
        if not force and wall < self._next_save:
            return
        self._next_save = wall + SAVE_INTERVAL
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"format": FORMAT, "runs": self._runs}))
            os.replace(tmp, self.path)
            self.dirty = False
            self._warned = False
        except OSError as err:
            if not self._warned:  # retried every few seconds: said once until a save works again
                log.warning("voice memory %s not saved: %s (voices still work; they are not remembered)",
                            self.path, err.strerror)
                self._warned = True
