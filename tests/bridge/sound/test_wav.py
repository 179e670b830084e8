"""WAV headers that tell the truth, and files that stay valid through SIGTERM and SIGKILL."""

from __future__ import annotations

import signal
import struct
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from trainsound.bridge.sound.wav import WavWriter

SR = 48_000


def test_float32_header_says_ieee_float_with_fact_chunk(tmp_path: Path) -> None:
    p = tmp_path / "f.wav"
    w = WavWriter(p, SR, channels=2, fmt="float32")
    x = np.random.default_rng(0).uniform(-1, 1, (1000, 2)).astype(np.float32)
    w.write(x)
    w.close()
    raw = p.read_bytes()
    assert raw[:4] == b"RIFF" and struct.unpack("<I", raw[4:8])[0] == len(raw) - 8 and raw[8:12] == b"WAVE"
    fmt_tag, channels, rate, _, align, bits = struct.unpack("<HHIIHH", raw[20:36])
    assert (fmt_tag, channels, rate, align, bits) == (3, 2, SR, 8, 32)
    assert raw[38:42] == b"fact" and struct.unpack("<I", raw[46:50])[0] == 1000
    info = sf.info(str(p))
    assert (info.subtype, info.frames, info.samplerate, info.channels) == ("FLOAT", 1000, SR, 2)
    y, _ = sf.read(str(p), dtype="float32")
    assert np.array_equal(x, y)


def test_int16_is_plain_pcm_that_wave_reads(tmp_path: Path) -> None:
    p = tmp_path / "i.wav"
    w = WavWriter(p, 44_100, channels=1, fmt="int16")
    w.write(np.array([0.0, 0.5, -0.5, 1.5, np.nan], np.float32))
    w.close()
    with wave.open(str(p)) as r:
        assert (r.getframerate(), r.getnchannels(), r.getsampwidth(), r.getnframes()) == (44_100, 1, 2, 5)
        assert list(np.frombuffer(r.readframes(5), "<i2")) == [0, 16384, -16384, 32767, 0]
    assert w.nonfinite == 1


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="WAV format must be one of float32, int16; got 'int24'"):
        WavWriter(tmp_path / "x.wav", SR, fmt="int24")  # type: ignore[arg-type]


WRITER = """
import sys, time, numpy as np
from trainsound.bridge.sound.wav import WavWriter
w = WavWriter(sys.argv[1], 48000, channels=2, fmt="float32", header_interval=0.05)
print("ready", flush=True)
while True:
    w.write(np.full((480, 2), 0.25, np.float32)); time.sleep(0.002)
"""


def test_sigkill_leaves_a_valid_file_up_to_the_last_header_rewrite(tmp_path: Path) -> None:
    p = tmp_path / "k.wav"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(p)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(0.6)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    info = sf.info(str(p))
    assert info.subtype == "FLOAT" and info.frames > 0
    y, _ = sf.read(str(p), dtype="float32")
    assert np.isfinite(y).all() and np.all(y == 0.25)
    assert info.frames * 8 <= p.stat().st_size  # data beyond the header's size is simply not counted yet
