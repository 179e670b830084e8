"""Tail the event files of a TensorBoard logdir with TensorBoard's own reader.

``tensorboard``'s :class:`EventFileLoader` keeps its offset in each file, so every :meth:`Logdir.poll`
returns only what was appended since, and a torn last record (a writer caught mid-write) is left for
the next poll instead of failing. Every folder holding event files is one run.
"""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import TrainsoundError
from ..wire.protocol import sanitize

__all__ = ["Logdir", "LogdirError", "Scalar", "load_reader"]

logger = logging.getLogger(__name__)

EVENT_GLOB = "*tfevents*"


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

    Args:
        path: the logdir (``--logdir`` of the training).
        run: name for event files directly in ``path`` (default: the folder's name); files in a subfolder
            ``sub/`` are run ``<run>.sub`` when ``run`` is given, else ``sub``.
    """

    def __init__(self, path: str | Path, run: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise LogdirError(f"{self.path}: not a directory")
        self.run = run
        self._loader_cls, self._make_ndarray = load_reader()
        self._files: dict[Path, tuple[str, Any]] = {}

    def run_of(self, file: Path) -> str:
        rel = file.parent.relative_to(self.path)
        if rel == Path("."):
            return sanitize(self.run or self.path.resolve().name)
        sub = ".".join(rel.parts)
        return sanitize(f"{self.run}.{sub}" if self.run else sub)

    def _discover(self) -> None:
        for file in sorted(self.path.rglob(EVENT_GLOB)):
            if file.is_file() and file not in self._files:
                self._files[file] = (self.run_of(file), self._loader_cls(str(file)))
                logger.info("following %s as run %s", file, self._files[file][0])

    def poll(self) -> list[Scalar]:
        """The scalars appended since the last poll (new files included), file by file in order."""
        self._discover()
        out: list[Scalar] = []
        for file, (run, loader) in self._files.items():
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
