"""Session recording output (``--record FILE``): every accepted message, appended.

Records are buffered and flushed every 50 ms (and fsync'd every second), so a
crash loses at most the last fraction of a second. A failed write (disk full)
keeps what was not written and tries again at the next flush; a record cut in
two by a full disk is completed by that retry (a reader ignores a torn last
record, so the file stays valid meanwhile). While the disk stays full the
buffer is bounded (:data:`MAX_PENDING_BYTES`); what does not fit is counted as
``shed`` in the status, never held without limit.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import OutputUnavailable, write_failure
from ..mapped import Mapped
from ..wire.protocol import PROTOCOL_VERSION, Event
from ..wire.session import SessionWriter
from .base import COARSE_TICK, BaseOutput, fresh_path

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.05
FSYNC_INTERVAL = 1.0
#: Unwritten recording held while the disk is full; beyond it new messages are shed (counted).
MAX_PENDING_BYTES = 16 << 20
RECORD_OVERHEAD = 12  # a record's time and length before the message


class RecordOut(BaseOutput):
    """The ``record`` output."""

    name = "record"
    tick_interval = COARSE_TICK  # flushed every 50 ms: a finer tick has nothing to do

    def __init__(
        self,
        config: Config,
        *,
        path: str | os.PathLike[str],
        never_overwrite: bool = False,
        max_pending_bytes: int = MAX_PENDING_BYTES,
    ) -> None:
        self.path = fresh_path(path, "session recording") if never_overwrite else Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Unbuffered: a full disk shows on our write (perhaps short), and nothing is left half in a buffer.
            self._fh = open(self.path, "wb", buffering=0)  # noqa: SIM115 (kept open for the session)
        except OSError as err:
            raise OutputUnavailable(f"{self.path}: cannot write session recording: {err.strerror}") from err
        from .. import __version__

        self.writer = SessionWriter(self._fh, time.time(), {"bridge": __version__, "protocol": PROTOCOL_VERSION})
        self.max_pending_bytes = max_pending_bytes
        self._carry = b""
        """Bytes a failed write left unwritten (written first next time)."""
        self._next_flush = 0.0
        self._next_sync = 0.0
        self.errors = 0
        self.shed = 0
        """Messages not recorded because the disk stayed full and the buffer was at its bound."""
        self.error: str | None = None
        """Why the last write failed (``disk full: …``); ``None`` once a write succeeds again."""

    def _handle(self, event: Event | None, mapped: Sequence[Mapped]) -> None:
        if event is not None:
            if len(self._carry) + self.writer.pending_bytes + len(event.raw) + RECORD_OVERHEAD > self.max_pending_bytes:
                self.shed += 1
                return
            self.writer.write(event.t, event.raw)

    def handle_batch(self, batch: Sequence[tuple[Event, Sequence[Mapped]]]) -> None:
        if self.closed or not batch:
            return
        raws = [ev.raw for ev, _ in batch]
        size = sum(map(len, raws)) + RECORD_OVERHEAD * len(batch)
        if len(self._carry) + self.writer.pending_bytes + size > self.max_pending_bytes:
            for event, mapped in batch:  # near the bound: message by message, as they arrive
                self._handle(event, mapped)
            return
        self.writer.write_many(batch[0][0].t, raws)

    def _tick(self, now: float) -> None:
        wall = time.monotonic()
        if wall >= self._next_flush and (self.writer.pending or self._carry):
            self._flush(wall >= self._next_sync)
            self._next_flush = wall + FLUSH_INTERVAL

    def _flush(self, sync: bool) -> None:
        view = memoryview(self._carry + self.writer.take())
        try:
            while view:
                done = self._fh.write(view)
                view = view[done if done is not None else len(view) :]
            if sync:
                os.fsync(self._fh.fileno())
                self._next_sync = time.monotonic() + FSYNC_INTERVAL
        except OSError as err:
            self.errors += 1
            if self.error is None:
                log.error("session recording %s; keeping up to %d MiB until it can write again",
                          write_failure(err, self.path), self.max_pending_bytes >> 20)
            self.error = write_failure(err, self.path)
            self._carry = bytes(view)
            return
        self._carry = b""
        if self.error is not None:
            log.warning("session recording %s: writing again (%d messages shed meanwhile)", self.path, self.shed)
            self.error = None

    def _close(self) -> None:
        self._flush(True)
        if self._carry:
            log.error("session recording %s: %d bytes could not be written", self.path, len(self._carry))
        self._fh.close()
        log.info("session recording %s: %d messages", self.path, self.writer.records)

    def health(self) -> dict[str, Any]:
        h: dict[str, Any] = {
            "ok": self.error is None,
            "path": str(self.path),
            "records": self.writer.records,
            "errors": self.errors,
            "pending_bytes": len(self._carry) + self.writer.pending_bytes,
            "shed": self.shed,
        }
        if self.error is not None:
            h["why"] = self.error
        return h

    def describe(self) -> str:
        return f"session recording {self.path}"
