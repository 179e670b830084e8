"""Helpers for the patch tests: build session recordings and measure rendered sound."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from trainsound.bridge.wire.osc import OscArg, encode_message
from trainsound.bridge.wire.session import SessionWriter

SR = 48_000
START = 1_700_000_000.0
NAN = float("nan")

Msg = tuple[float, str, list[OscArg]]


def write_session(path: Path, messages: Iterable[Msg]) -> Path:
    """``(t_offset_s, address, args)`` triples → a session recording (times from START)."""
    with open(path, "wb") as fh:
        w = SessionWriter(fh, start=START)
        for t, address, args in sorted(messages, key=lambda m: m[0]):
            w.write(START + t, encode_message(address, args))
        w.flush()
    return path


def band_energy(x: np.ndarray, sr: int, hz: float, width: float = 15.0) -> float:
    """Share of the segment's spectral energy within ``hz ± width``."""
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / sr)
    total = spec.sum()
    return float(spec[(f > hz - width) & (f < hz + width)].sum() / total) if total > 0 else 0.0


def seg(x: np.ndarray, a: float, b: float, sr: int = SR) -> np.ndarray:
    return x[int(a * sr) : int(b * sr)]
