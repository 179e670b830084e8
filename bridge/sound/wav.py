"""A WAV writer whose header tells the truth and that survives a crash.

The seeds wrote float32 samples under a header that said 32-bit integer PCM.
Here float32 files are ``WAVE_FORMAT_IEEE_FLOAT`` (format 3, with the ``fact``
chunk that format requires) and int16 files are plain PCM. The RIFF, ``fact``
and ``data`` sizes are rewritten every ``header_interval`` seconds (wall time)
and at :meth:`WavWriter.close`, so a file cut short by SIGKILL or a power cut
is still a valid WAV up to its last header rewrite.

A failed write (disk full, a file size limit) never leaves a partial frame: the
file is truncated back to the end of the last whole write, the frames are counted
as dropped and :attr:`WavWriter.error` says why until a later write succeeds —
so the file stays valid and aligned however often the disk fills and frees.
A RIFF WAV cannot exceed 4 GiB: at ``max_bytes`` (default just under 4 GiB) the
writer finishes the file and goes on in numbered parts ``out.1.wav``,
``out.2.wav``, … — each a complete WAV of its own (not RF64, which many tools
still cannot read).

>>> import io, wave
>>> buf = io.BytesIO()
>>> w = WavWriter(buf, 8000, channels=1, fmt="int16")
>>> w.write(np.zeros((80, 1), np.float32))
>>> w.close()
>>> r = wave.open(io.BytesIO(buf.getvalue()))
>>> (r.getframerate(), r.getnchannels(), r.getsampwidth(), r.getnframes())
(8000, 1, 2, 80)
"""

from __future__ import annotations

import logging
import os
import struct
import time
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

from ..errors import write_failure

log = logging.getLogger(__name__)

SampleFormat = Literal["float32", "int16"]
FORMATS: tuple[str, ...] = ("float32", "int16")
WAVE_FORMAT_PCM = 1
WAVE_FORMAT_IEEE_FLOAT = 3
HEADER_INTERVAL = 0.5
INT16_SCALE = 32767.0
#: Largest file: a RIFF size field is 32 bits (file size - 8).
MAX_BYTES = 0xFFFFFFFF


def header(sample_rate: int, channels: int, fmt: SampleFormat, frames: int) -> bytes:
    """The complete header for ``frames`` frames, up to and including the ``data`` chunk size.

    >>> len(header(44100, 1, "int16", 0)), len(header(44100, 2, "float32", 0))
    (44, 58)
    """
    width = 4 if fmt == "float32" else 2
    block_align = channels * width
    data_size = frames * block_align
    if fmt == "float32":
        # fmt chunk of 18 bytes (cbSize = 0) and a fact chunk: what non-PCM formats require.
        fmt_chunk = struct.pack("<4sIHHIIHHH", b"fmt ", 18, WAVE_FORMAT_IEEE_FLOAT, channels, sample_rate,
                                sample_rate * block_align, block_align, 32, 0)
        fact = struct.pack("<4sII", b"fact", 4, frames)
    else:
        fmt_chunk = struct.pack("<4sIHHIIHH", b"fmt ", 16, WAVE_FORMAT_PCM, channels, sample_rate,
                                sample_rate * block_align, block_align, 16)
        fact = b""
    body = b"WAVE" + fmt_chunk + fact + struct.pack("<4sI", b"data", data_size)
    return struct.pack("<4sI", b"RIFF", len(body) - 4 + 4 + data_size) + body


class WavWriter:
    """Streams float frames in -1..1 to a WAV file (a path or a seekable binary stream)."""

    def __init__(self, target: str | os.PathLike[str] | BinaryIO, sample_rate: int, *, channels: int = 2,
                 fmt: SampleFormat = "float32", header_interval: float = HEADER_INTERVAL,
                 max_bytes: int = MAX_BYTES) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"WAV format must be one of {', '.join(FORMATS)}; got {fmt!r}")
        self.sr = int(sample_rate)
        self.channels = channels
        self.fmt: SampleFormat = fmt
        self._align = channels * (4 if fmt == "float32" else 2)
        self._head = len(header(self.sr, channels, fmt, 0))
        self.max_frames = max(1, (max_bytes - self._head) // self._align)
        """Frames per file (parts beyond it); a whole number of frames, so every part is aligned."""
        if isinstance(target, (str, os.PathLike)):
            self.path: Path | None = Path(target)
            self.first_path = self.path
            self.fh: BinaryIO = open(self.path, "wb", buffering=0)  # noqa: SIM115 (kept open until close())
            self._owned = True
        else:
            self.path, self.fh, self._owned = None, target, False
        self.part = 0
        self.frames = 0
        """Frames in the current file (its header's count)."""
        self.total_frames = 0
        """Frames written over all parts."""
        self.header_interval = header_interval
        self._header_frames = -1
        self._next_header = 0.0
        self.nonfinite = 0
        """Non-finite samples replaced by 0 (should stay 0: the synth never makes any)."""
        self.errors = 0
        """Failed writes (each truncated back to the last whole frame)."""
        self.dropped_frames = 0
        """Frames lost to failed writes."""
        self.error: str | None = None
        """Why the last write failed (``disk full: …``); ``None`` once a write succeeds again."""
        self.closed = False
        self._write_header()

    def _write_header(self) -> None:
        pos = self._head + self.frames * self._align
        try:
            self.fh.seek(0)
            self.fh.write(header(self.sr, self.channels, self.fmt, self.frames))
            self.fh.seek(pos)
            self.fh.flush()
        except OSError as err:  # in place, so rare: the sizes stay as they were at the last rewrite
            self._failed(err, 0)
            return
        self._header_frames = self.frames
        self._next_header = time.monotonic() + self.header_interval

    def _failed(self, err: OSError, frames: int) -> None:
        self.errors += 1
        self.dropped_frames += frames
        self.error = write_failure(err, self.path or "WAV stream")

    def write(self, frames: np.ndarray) -> None:
        """Append ``(n, channels)`` float frames; clipped to -1..1, non-finite samples become 0.

        A failed write is counted (:attr:`errors`, :attr:`dropped_frames`, :attr:`error`), never raised.
        """
        x = np.asarray(frames, np.float32)
        if x.ndim == 1:
            x = x[:, None]
        if x.shape[1] != self.channels:
            raise ValueError(f"expected {self.channels} channel(s), got {x.shape[1]}")
        bad = ~np.isfinite(x)
        if bad.any():
            self.nonfinite += int(bad.sum())
            x = np.where(bad, np.float32(0.0), x)
        if self.fmt == "int16":
            data = (np.clip(x, -1.0, 1.0) * INT16_SCALE).round().astype("<i2").tobytes()
        else:
            data = np.clip(x, -1.0, 1.0).astype("<f4").tobytes()
        n = len(x)
        while n:
            room = self.max_frames - self.frames
            if room <= 0:
                self._next_part()
                continue
            k = min(n, room)
            self._append(data[: k * self._align], k)
            data, n = data[k * self._align :], n - k
        if time.monotonic() >= self._next_header:
            self._write_header()

    def _append(self, data: bytes, n: int) -> None:
        end = self._head + self.frames * self._align
        view = memoryview(data)
        try:
            while view:  # unbuffered: a full disk shows on this write (maybe short), not on a later flush
                done = self.fh.write(view)
                view = view[done if done is not None else len(view) :]
        except OSError as err:
            self._failed(err, n)
            try:  # back to the end of the last whole write: a partial frame would misalign the rest
                self.fh.truncate(end)
                self.fh.seek(end)
            except OSError:
                pass
            return
        self.frames += n
        self.total_frames += n
        self.error = None

    def _next_part(self) -> None:
        """Finish this file and go on in ``<stem>.<n><suffix>`` (a stream target cannot grow parts)."""
        self._write_header()
        if not self._owned or self.path is None:
            raise ValueError(f"WAV stream full at {self.frames} frames")
        self.fh.close()
        self.part += 1
        first = self.first_path
        prev, self.path = self.path, first.with_name(f"{first.stem}.{self.part}{first.suffix}")
        log.info("WAV: %s reached its size limit; going on in %s", prev, self.path)
        self.fh = open(self.path, "wb", buffering=0)  # noqa: SIM115 (kept open until close())
        self.frames = 0
        self._write_header()

    def flush(self) -> None:
        """Rewrite the header now (sizes up to here) and flush to the OS."""
        if self._header_frames != self.frames:
            self._write_header()
        else:
            try:
                self.fh.flush()
            except OSError as err:
                self._failed(err, 0)

    @property
    def seconds(self) -> float:
        return self.total_frames / self.sr

    def close(self) -> None:
        """Finish the header; the file is complete and valid."""
        if self.closed:
            return
        self.closed = True
        self._write_header()
        if self._owned:
            try:
                self.fh.close()
            except OSError as err:
                self._failed(err, 0)
