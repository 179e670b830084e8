"""Spoken alarm labels ("conv2 vanishing at step 3,400") from espeak-ng, an offline TTS from Debian.

espeak-ng writes a WAV to stdout (22,050 Hz mono int16); it is read with :mod:`wave` and resampled
to the output rate. A missing espeak-ng is one clear log line, then the earcons alone. Utterances are
cached: a run repeats its few labels.
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import wave
from typing import Any

import numpy as np

from .alarms import TICK_KINDS, earcon

log = logging.getLogger(__name__)

ESPEAK = "espeak-ng"
#: Words per minute: quick enough to finish before the next alarm, slow enough to understand.
SPEECH_WPM = 190
SPEECH_AMPLITUDE = 0.35
SPEECH_TIMEOUT_S = 10.0
CACHE_SIZE = 256
SILENCE = 1e-3


class Speech:
    """Text → mono float32 samples at ``sample_rate``; ``None`` when espeak-ng is missing or fails."""

    def __init__(self, sample_rate: int, exe: str = ESPEAK) -> None:
        self.sr = sample_rate
        self.exe = shutil.which(exe)
        self._cache: dict[str, np.ndarray | None] = {}
        self.failures = 0
        if self.exe is None:
            log.warning("speech: %s is not installed (apt-get install espeak-ng); alarms sound as earcons only", exe)

    @property
    def available(self) -> bool:
        return self.exe is not None

    def say(self, text: str) -> np.ndarray | None:
        if self.exe is None:
            return None
        hit = self._cache.get(text)
        if hit is not None or text in self._cache:
            return hit
        x = self._synth(text)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[text] = x
        return x

    def _synth(self, text: str) -> np.ndarray | None:
        assert self.exe is not None
        try:
            p = subprocess.run([self.exe, "--stdout", "-s", str(SPEECH_WPM), "--", text], capture_output=True,
                               timeout=SPEECH_TIMEOUT_S, check=True)
            with wave.open(io.BytesIO(p.stdout)) as w:
                rate, raw = w.getframerate(), w.readframes(w.getnframes())
        except (OSError, subprocess.SubprocessError, wave.Error, EOFError) as err:
            self.failures += 1
            if self.failures == 1:
                log.warning("speech: %s failed (%s); alarms sound as earcons only", self.exe, err)
            return None
        x = np.frombuffer(raw, "<i2").astype(np.float64) / 32768.0
        loud = np.flatnonzero(np.abs(x) > SILENCE)
        if len(loud) == 0:
            return None
        x = x[loud[0]:loud[-1] + 1]  # espeak-ng pads with silence; the next alarm should not wait for it
        n = round(len(x) * self.sr / rate)
        y = np.interp(np.arange(n) * (rate / self.sr), np.arange(len(x)), x)
        peak = float(np.abs(y).max())
        return (y * (SPEECH_AMPLITUDE / peak if peak > 0 else 0.0)).astype(np.float32)


#: Silence between an earcon and its spoken label (s).
SPEECH_GAP_S = 0.05


class Announcer:
    """Plays alarms into a :class:`~.voices.VoiceBank`: the kind's earcon (cached), the voices ducked under it,
    then the spoken label if one is given (docs/alarms.md)."""

    def __init__(self, bank: Any) -> None:
        self.bank = bank
        self.sr = bank.sr
        self._speech: Speech | None = None
        self._earcons: dict[str, np.ndarray] = {}
        self.spoken = 0

    @property
    def speech(self) -> Speech:
        """Made on the first label, so a bridge that never speaks never looks for espeak-ng."""
        if self._speech is None:
            self._speech = Speech(self.sr)
        return self._speech

    def earcon(self, kind: str) -> np.ndarray:
        x = self._earcons.get(kind)
        if x is None:
            x = self._earcons[kind] = earcon(kind, self.sr)
        return x

    def announce(self, kind: str, label: str = "") -> int:
        """Play ``kind``'s earcon now, the voices ducked under it (not under a tick); then say ``label``, if any,
        synchronously (offline). Returns the sample at which a label starts."""
        x = self.earcon(kind)
        bank = self.bank
        at = bank.now
        bank.play(x, at)
        end = at + len(x) + int(SPEECH_GAP_S * self.sr)
        if kind not in TICK_KINDS:
            bank.duck(end - at, at)
        if label:
            speech = self.speech.say(label)
            if speech is not None:
                self.play_speech(speech, end)
        return end

    def play_speech(self, speech: np.ndarray, at: int) -> None:
        """Mix a spoken label in from sample ``at``, the voices ducked under it."""
        self.bank.play(speech, at)
        self.bank.duck(len(speech), at)
        self.spoken += 1
