"""Session recordings: every accepted message with its arrival time.

File layout (little-endian), designed so that a crash loses only what was not
yet flushed and a torn last record is simply ignored on reading:

- a header line ``TRAINSOUND-SESSION 1 {json}\\n`` (JSON: start time, bridge version);
- records ``<d t><I n>`` followed by ``n`` bytes: the OSC message exactly as
  received (one bundle element; bundles are stored as their messages).

>>> import io
>>> buf = io.BytesIO()
>>> w = SessionWriter(buf, start=100.0)
>>> w.write(100.5, encode_message("/nn/r/loss", [1.0]))
>>> w.flush()
>>> [(t, a, v) for t, a, v in iter_messages(io.BytesIO(buf.getvalue()))]
[(100.5, '/nn/r/loss', (1.0,))]
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

from ..errors import OSCDecodeError, SessionFileError
from .osc import OscArg, decode_message, encode_message

MAGIC = b"TRAINSOUND-SESSION 1 "
_REC = struct.Struct("<dI")
MAX_RECORD = 1 << 21

__all__ = ["MAGIC", "SessionWriter", "encode_message", "iter_messages", "iter_records", "read_header"]


class SessionWriter:
    """Appends records to a binary stream; the caller decides when to flush."""

    def __init__(self, fh: IO[bytes], start: float, meta: dict[str, Any] | None = None) -> None:
        self.fh = fh
        header = {"start": start, **(meta or {})}
        fh.write(MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n")
        self._buf: list[bytes] = []
        self.pending_bytes = 0
        self.records = 0

    def write(self, t: float, raw: bytes) -> None:
        rec = _REC.pack(t, len(raw)) + raw
        self._buf.append(rec)
        self.pending_bytes += len(rec)
        self.records += 1

    def write_many(self, t: float, raws: list[bytes]) -> None:
        """Records of several messages that share one time (a datagram's)."""
        pack = _REC.pack
        rec = b"".join([pack(t, len(raw)) + raw for raw in raws])
        self._buf.append(rec)
        self.pending_bytes += len(rec)
        self.records += len(raws)

    def take(self) -> bytes:
        """The records written since the last take, as bytes (the caller writes them)."""
        data = b"".join(self._buf)
        self._buf.clear()
        self.pending_bytes = 0
        return data

    def flush(self) -> None:
        if self._buf:
            self.fh.write(self.take())
        self.fh.flush()

    @property
    def pending(self) -> int:
        return len(self._buf)


def _open(src: str | Path | BinaryIO) -> tuple[BinaryIO, str, bool]:
    if isinstance(src, (str, Path)):
        try:
            return open(src, "rb"), str(src), True
        except OSError as err:
            raise SessionFileError(f"{src}: cannot open session file: {err.strerror}") from err
    return src, getattr(src, "name", "<stream>"), False


def read_header(fh: BinaryIO, name: str) -> dict[str, Any]:
    line = fh.readline(1 << 16)
    if not line.startswith(MAGIC) or not line.endswith(b"\n"):
        raise SessionFileError(f"{name}: not a trainsound session recording (bad header)")
    try:
        meta = json.loads(line[len(MAGIC) :])
    except ValueError as err:
        raise SessionFileError(f"{name}: session header is not valid JSON") from err
    if not isinstance(meta, dict):
        raise SessionFileError(f"{name}: session header is not a JSON object")
    return meta


def iter_records(src: str | Path | BinaryIO) -> Iterator[tuple[float, bytes]]:
    """Yield ``(t, raw_message)``; a torn final record (crash) ends the iteration quietly."""
    fh, name, owned = _open(src)
    try:
        read_header(fh, name)
        while True:
            head = fh.read(_REC.size)
            if len(head) < _REC.size:
                return
            t, n = _REC.unpack(head)
            if n > MAX_RECORD:
                raise SessionFileError(f"{name}: corrupt record of {n} bytes")
            raw = fh.read(n)
            if len(raw) < n:
                return
            yield t, raw
    finally:
        if owned:
            fh.close()


def iter_messages(src: str | Path | BinaryIO) -> Iterator[tuple[float, str, tuple[OscArg, ...]]]:
    """Yield ``(t, address, args)`` for every record."""
    for t, raw in iter_records(src):
        try:
            address, args = decode_message(raw)
        except OSCDecodeError as err:
            raise SessionFileError(f"{getattr(src, 'name', src)}: undecodable record at t={t}: {err}") from err
        yield t, address, args
