"""A WAV writer whose header tells the truth and that survives a crash.

The seeds wrote float32 samples under a header that said 32-bit integer PCM.
Here float32 files are ``WAVE_FORMAT_IEEE_FLOAT`` (format 3, with the ``fact``
chunk that format requires) and int16 files are plain PCM. The RIFF, ``fact``
and ``data`` sizes are rewritten every ``header_interval`` seconds (wall time)
and at :meth:`WavWriter.close`, so a file cut short by SIGKILL or a power cut
is still a valid WAV up to its last header rewrite.

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

import os
import struct
import time
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

SampleFormat = Literal["float32", "int16"]
FORMATS: tuple[str, ...] = ("float32", "int16")
WAVE_FORMAT_PCM = 1
WAVE_FORMAT_IEEE_FLOAT = 3
HEADER_INTERVAL = 0.5
INT16_SCALE = 32767.0


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
                 fmt: SampleFormat = "float32", header_interval: float = HEADER_INTERVAL) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"WAV format must be one of {', '.join(FORMATS)}; got {fmt!r}")
        if isinstance(target, (str, os.PathLike)):
            self.path: Path | None = Path(target)
            self.fh: BinaryIO = open(self.path, "wb")  # noqa: SIM115 (kept open until close())
            self._owned = True
        else:
            self.path, self.fh, self._owned = None, target, False
        self.sr = int(sample_rate)
        self.channels = channels
        self.fmt: SampleFormat = fmt
        self.frames = 0
        self.header_interval = header_interval
        self._header_frames = -1
        self._next_header = 0.0
        self.nonfinite = 0
        """Non-finite samples replaced by 0 (should stay 0: the synth never makes any)."""
        self.closed = False
        self._write_header()

    def _write_header(self) -> None:
        pos = self.fh.tell()
        self.fh.seek(0)
        self.fh.write(header(self.sr, self.channels, self.fmt, self.frames))
        if pos > 0:
            self.fh.seek(pos)
        self.fh.flush()
        self._header_frames = self.frames
        self._next_header = time.monotonic() + self.header_interval

    def write(self, frames: np.ndarray) -> None:
        """Append ``(n, channels)`` float frames; clipped to -1..1, non-finite samples become 0."""
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
        self.fh.write(data)
        self.frames += len(x)
        if time.monotonic() >= self._next_header:
            self._write_header()

    def flush(self) -> None:
        """Rewrite the header now (sizes up to here) and flush to the OS."""
        if self._header_frames != self.frames:
            self._write_header()
        else:
            self.fh.flush()

    @property
    def seconds(self) -> float:
        return self.frames / self.sr

    def close(self) -> None:
        """Finish the header; the file is complete and valid."""
        if self.closed:
            return
        self.closed = True
        self._write_header()
        if self._owned:
            self.fh.close()
