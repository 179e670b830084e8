"""Fixture for the patch tests: render a session through a pyo patch offline."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# pyproject puts only tests/ on sys.path; the helpers of this folder are imported by name too.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from patchkit import SR, Msg, write_session


@pytest.fixture
def render(tmp_path: Path) -> Callable[..., np.ndarray]:
    """``render(patch, messages, **options)`` → the rendered WAV's first channel (float64)."""
    pytest.importorskip("pyo")
    import soundfile as sf

    from trainsound.bridge.replay.render import render_pyo_session

    counter = [0]

    def run(patch: str, messages: Iterable[Msg], **options: Any) -> np.ndarray:
        counter[0] += 1
        session = write_session(tmp_path / f"s{counter[0]}.session", messages)
        wav = tmp_path / f"s{counter[0]}.wav"
        render_pyo_session(session, patch, wav, sample_rate=SR, options=options or None)
        x, sr = sf.read(wav, dtype="float64", always_2d=True)
        assert sr == SR
        return np.asarray(x[:, 0])

    return run
