"""Tail the event files of a TensorBoard logdir with TensorBoard's own reader.

``tensorboard``'s :class:`EventFileLoader` keeps its offset in each file, so every :meth:`Logdir.poll`
returns only what was appended since, and a torn last record (a writer caught mid-write) is left for
the next poll instead of failing. Every folder holding event files is one run.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import TrainsoundError
from ..wire.protocol import sanitize

__all__ = ["Logdir", "LogdirError", "Scalar", "load_reader"]

logger = logging.getLogger(__name__)

_SETTLED_NS = 2_000_000_000


class LogdirError(TrainsoundError, OSError):
    """The logdir cannot be read (missing, not a directory, no ``tensorboard`` installed)."""


@dataclass(frozen=True)
class Scalar:
    run: str
    step: int
    wall_time: float
    tag: str
    value: float


def load_reader() -> tuple[Any, Any]:
    """``(EventFileLoader, make_ndarray)`` from the ``tensorboard`` package, or one line naming the extra."""
    # TensorBoard's pure-Python record reader (its "no TensorFlow" build) unless TensorFlow is already
    # loaded: importing TensorFlow only to read a file would cost seconds and hundreds of MB.
    if "tensorflow" not in sys.modules:
        sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    try:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
        from tensorboard.util.tensor_util import make_ndarray
    except ImportError as err:
        raise LogdirError("reading TensorBoard logs needs tensorboard: pip install 'trainsound[tensorboard]'") from err
    return EventFileLoader, make_ndarray


class Logdir:
    """Every event file under ``path`` (recursively), each read incrementally.

    A poll costs what changed: a folder is listed again only when its mtime moved, and a file is read
    only when its size or mtime moved (3,000 idle runs are 6,000 ``stat`` calls a poll, no reads). A file
    that cannot be read is warned about once and skipped until it changes.

    Args:
        path: the logdir (``--logdir`` of the training).
        run: name for event files directly in ``path`` (default: the folder's name); files in a subfolder
            ``sub/`` are run ``<run>.sub`` when ``run`` is given, else ``sub``.
        wait: a ``path`` that does not exist yet is waited for (said once) instead of refused: training
            creates its log folder at its first write, and ``follow`` is naturally started before.
    """

    def __init__(self, path: str | Path, run: str | None = None, *, wait: bool = False) -> None:
        self.path = Path(path)
        if not self.path.is_dir() and (not wait or self.path.exists()):
            raise LogdirError(f"{self.path}: not a directory")
        self.run = run
        self._loader_cls, self._make_ndarray = load_reader()
        self._files: dict[Path, tuple[str, Any]] = {}
        self._read_at: dict[Path, tuple[int, int]] = {}  # file → (size, mtime) when last read
        self._dirs: dict[Path, tuple[int, int]] = {}  # folder → (mtime, when listed), both in ns
        self._waiting = False

    def run_of(self, file: Path) -> str:
        rel = file.parent.relative_to(self.path)
        if rel == Path("."):
            return sanitize(self.run or self.path.resolve().name)
        sub = ".".join(rel.parts)
        return sanitize(f"{self.run}.{sub}" if self.run else sub)

    def _root_present(self) -> bool:
        if self._dirs:
            return True
        if self.path.is_dir():
            if self._waiting:
                logger.info("%s appeared: following it", self.path)
            self._dirs[self.path] = (-1, 0)
            return True
        if not self._waiting:
            self._waiting = True
            logger.info("waiting for %s to appear (the training creates it at its first write)", self.path)
        return False

    def _discover(self) -> None:
        if not self._root_present():
            return
        queue = list(self._dirs)
        while queue:  # folders found by a listing are listed in the same poll
            folder = queue.pop()
            seen, listed = self._dirs[folder]
            try:
                mtime = os.stat(folder).st_mtime_ns
            except OSError:  # removed: its files are dropped when they fail to stat
                del self._dirs[folder]
                continue
            # A folder's mtime has the file system's coarse tick: an entry made in the same tick as our
            # last listing leaves it unchanged, so a folder modified shortly before that listing is listed again.
            if mtime == seen and listed - mtime > _SETTLED_NS:
                continue
            self._dirs[folder] = (mtime, time.time_ns())
            queue.extend(self._list(folder))

    def _list(self, folder: Path) -> list[Path]:
        """Adds ``folder``'s event files; returns its subfolders not known before."""
        new: list[Path] = []
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as err:
            logger.debug("%s: cannot list (%s)", folder, err)
            return new
        for e in entries:
            p = Path(e.path)
            try:
                if e.is_dir(follow_symlinks=False) and p not in self._dirs:
                    self._dirs[p] = (-1, 0)
                    new.append(p)
                elif "tfevents" in e.name and e.is_file() and p not in self._files:
                    self._files[p] = (self.run_of(p), self._loader_cls(str(p)))
                    logger.info("following %s as run %s", p, self._files[p][0])
            except OSError:
                continue
        return new

    def poll(self) -> list[Scalar]:
        """The scalars appended since the last poll (new files included), file by file in order."""
        self._discover()
        out: list[Scalar] = []
        for file, (run, loader) in list(self._files.items()):
            try:
                st = os.stat(file)
            except OSError:
                del self._files[file]
                self._read_at.pop(file, None)
                continue
            stamp = (st.st_size, st.st_mtime_ns)
            if self._read_at.get(file) == stamp:
                continue  # unchanged since the last read (or since it failed: warned once, skipped till it changes)
            self._read_at[file] = stamp
            try:
                out.extend(self._scalars(run, loader))
            except Exception as err:  # a damaged file must not stop the others (the reader skips torn tails)
                logger.warning("%s: cannot read (%s); skipped until it changes", file, err)
        return out

    def _scalars(self, run: str, loader: Any) -> Iterator[Scalar]:
        for event in loader.Load():
            if not event.HasField("summary"):
                continue
            for v in event.summary.value:
                if v.HasField("simple_value"):
                    value = float(v.simple_value)
                elif v.metadata.plugin_data.plugin_name == "scalars" and v.HasField("tensor"):
                    value = float(self._make_ndarray(v.tensor).reshape(-1)[0])
                else:
                    continue  # images, histograms, text: not scalars
                yield Scalar(run, int(event.step), float(event.wall_time), v.tag, value)
