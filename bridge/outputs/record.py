"""Session recording output (``--record FILE``): every accepted message, appended.

Records are buffered and flushed every 50 ms (and fsync'd every second), so a
crash loses at most the last fraction of a second.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import OutputUnavailable
from ..mapping import Mapped
from ..wire.protocol import PROTOCOL_VERSION, Event
from ..wire.session import SessionWriter
from .base import BaseOutput, fresh_path

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.05
FSYNC_INTERVAL = 1.0


class RecordOut(BaseOutput):
    """The ``record`` output."""

    name = "record"

    def __init__(self, config: Config, *, path: str | os.PathLike[str], never_overwrite: bool = False) -> None:
        self.path = fresh_path(path, "session recording") if never_overwrite else Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "wb")  # noqa: SIM115 (kept open for the session)
        except OSError as err:
            raise OutputUnavailable(f"{self.path}: cannot write session recording: {err.strerror}") from err
        from .. import __version__

        self.writer = SessionWriter(self._fh, time.time(), {"bridge": __version__, "protocol": PROTOCOL_VERSION})
        self.writer.flush()
        self._next_flush = 0.0
        self._next_sync = 0.0
        self.errors = 0

    def _handle(self, event: Event | None, mapped: Sequence[Mapped]) -> None:
        if event is not None:
            self.writer.write(event.t, event.raw)

    def _tick(self, now: float) -> None:
        wall = time.monotonic()
        if wall >= self._next_flush and self.writer.pending:
            self._flush(wall >= self._next_sync)
            self._next_flush = wall + FLUSH_INTERVAL

    def _flush(self, sync: bool) -> None:
        try:
            self.writer.flush()
            if sync:
                os.fsync(self._fh.fileno())
                self._next_sync = time.monotonic() + FSYNC_INTERVAL
        except OSError as err:
            self.errors += 1
            log.error("%s: cannot write session recording: %s", self.path, err)

    def _close(self) -> None:
        self._flush(True)
        self._fh.close()
        log.info("session recording %s: %d messages", self.path, self.writer.records)

    def health(self) -> dict[str, Any]:
        return {"ok": self.errors == 0, "path": str(self.path), "records": self.writer.records, "errors": self.errors}

    def describe(self) -> str:
        return f"session recording {self.path}"
