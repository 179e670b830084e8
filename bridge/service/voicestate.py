"""Voices remembered across restarts: the same run name gets the same channels, so a saved DAW set keeps working.

The engine asks :class:`VoiceMemory` for a stream's voice before it allocates one in first-seen
order, and tells it every voice it allocates. The daemon loads the file at start and saves it
(atomically: a temp file renamed over it) when it changed, at most every few seconds and at
shutdown. The file is small JSON, bounded: at most :data:`MAX_RUNS` run names, the least
recently used forgotten first, and :data:`MAX_BYTES` read at most. A missing, unreadable or foreign
file is one log line and an empty memory — never a failed start: it is opened non-blocking and read
only if it is a regular file (a FIFO there hung the start, a link to ``/dev/zero`` grew the bridge to
6 GB: issue 28, item 11). Two bridges may share the file: each save takes a lock on the folder,
re-reads the file and merges (a run's most recently used entry wins), so neither loses the other's runs.

Default place: ``$XDG_STATE_HOME/trainsound/voices.json`` (``~/.local/state/trainsound/voices.json``);
``[voices] state`` in the config chooses another, ``state = ""`` turns remembering off.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config, output_options
from ..errors import ConfigError
from ..table import Table

log = logging.getLogger(__name__)

MAX_RUNS = 1000
#: The most bytes of the file read (1,000 runs of ~50 voices take ~3 MB).
MAX_BYTES = 16 << 20
#: How long a save waits for another bridge's save of the same file before it tries again later.
LOCK_WAIT = 0.5
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
            self._runs = read_runs(path)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as err:
            log.warning("voice memory %s unreadable (%s): starting afresh", path, err)

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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with _folder_lock(self.path.parent):
                # Another bridge's runs, saved since: merged, not overwritten (missing or foreign: ours replace it).
                with contextlib.suppress(OSError, ValueError):
                    self._runs = merge(read_runs(self.path), self._runs)
                _write_atomic(self.path, json.dumps({"format": FORMAT, "runs": self._runs}))
            self.dirty = False
            self._warned = False
        except OSError as err:
            if not self._warned:  # retried every few seconds: said once until a save works again
                log.warning("voice memory %s not saved: %s (voices still work; they are not remembered)",
                            self.path, err.strerror or err)
                self._warned = True


def read_runs(path: Path) -> dict[str, dict[str, Any]]:
    """The runs in a voice file: opened non-blocking, a regular file only, at most :data:`MAX_BYTES` read.

    Raises:
        FileNotFoundError: there is none. OSError, ValueError: it cannot be read or is not a voice file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO: the open does not wait for a writer
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file (a FIFO, device or directory)")
        if st.st_size > MAX_BYTES:
            raise ValueError(f"{st.st_size} bytes, more than {MAX_BYTES}")
        chunks, size = [], 0
        while size <= MAX_BYTES and (chunk := os.read(fd, min(1 << 20, MAX_BYTES + 1 - size))):
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > MAX_BYTES:
        raise ValueError(f"more than {MAX_BYTES} bytes")
    data = json.loads(b"".join(chunks))
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("runs"), dict):
        raise ValueError("not a trainsound voice file")
    runs: dict[str, dict[str, Any]] = {}
    for run, entry in data["runs"].items():
        if isinstance(entry, dict) and isinstance(entry.get("voices"), dict):
            used = entry.get("used", 0.0)
            runs[str(run)] = {"used": float(used) if isinstance(used, (int, float)) else 0.0,
                              "voices": entry["voices"]}
    return runs


def merge(disk: dict[str, dict[str, Any]], ours: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Both files' runs, a run's most recently used entry winning, the :data:`MAX_RUNS` most recent kept.

    >>> merge({"a": {"used": 1.0, "voices": {}}, "b": {"used": 5.0, "voices": {"k": 1}}},
    ...       {"b": {"used": 2.0, "voices": {"k": 2}}, "c": {"used": 3.0, "voices": {}}})["b"]["voices"]
    {'k': 1}
    """
    out = dict(disk)
    for run, entry in ours.items():
        if run not in out or entry["used"] >= out[run]["used"]:
            out[run] = entry
    if len(out) > MAX_RUNS:
        out = dict(sorted(out.items(), key=lambda kv: kv[1]["used"])[-MAX_RUNS:])
    return out


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Any:
    """An exclusive lock on ``folder`` (flock on its descriptor: no lock file to leave behind), waiting at
    most :data:`LOCK_WAIT` s; ``OSError`` if another bridge holds it longer (the save is tried again later)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OSError(f"{folder} is locked by another bridge's save") from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write_atomic(path: Path, text: str) -> None:
    """A fresh temp file beside ``path`` (never an existing one: whatever sits at a fixed name), renamed over it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
