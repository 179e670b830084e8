"""The ``sine`` output: training made audible with nothing else installed.

Live through the sound card (``--audio``, PyAudio callback mode) and/or to a
WAV file (``--wav``). The renderer mode comes from the preset (see
:mod:`..presets` and docs/sound.md):

- ``continuous``: every (rule, stream) of the mapping is a sustained voice;
  pitch ``fmin·2^(octaves·norm)`` (unquantised, so the numbers survive),
  level from the rule (note rules loud, CC rules as quieter voices of their
  own), stereo position per run, master gain ``1/√voices``, soft limiter.
- ``perone``: step-clocked sequenced tones, exactly the seed's formula.
- ``sonnify``: one loss voice per run, soNNify's formula.

Clocks. Written to WAV only, audio is rendered on the *event* clock
(``Mapped.t``): a change lands at the first block boundary after its time, and
``tick(now)`` renders up to ``now`` — so an offline render of a recording is
deterministic and runs as fast as numpy allows. Live, :meth:`handle` only sets
targets under a lock; PortAudio's callback renders the blocks, and a writer
thread (never the callback) stores exactly what was played in the WAV.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import presets
from ..config import Config, Table, output_options
from ..errors import OutputUnavailable
from ..mapping import Mapped
from ..protocol import Event
from ..spectrum_audio import decode_blob, spectrum_sound
from ..synth import VoiceBank, alarm_slot, alarm_sound, pan_gains, run_pan
from ..wavfile import FORMATS, WavWriter

log = logging.getLogger(__name__)

DEFAULT_SAMPLE_RATE = 48_000
DEFAULT_BLOCK = 256
DEFAULT_GAIN = 0.5
DEFAULT_CC_GAIN = 0.15
DEFAULT_FMIN = 110.0
DEFAULT_OCTAVES = 5.0
#: Largest render in one go (memory bound for long silences), in blocks.
MAX_RENDER_BLOCKS = 512
#: Offline, changes are scheduled and rendered in spans of about this much audio (tick() renders once this
#: much is due): one span of many change intervals costs a few array operations, which is what makes it fast.
TICK_RENDER_SECONDS = 1.0
#: Live perone FIFO bound: older steps are dropped (counted) beyond this many seconds.
PERONE_FIFO_SECONDS = 2.0
TRACK_POINTS = 200_000


@dataclass(frozen=True)
class SineOptions:
    """The ``[sine]`` config table."""

    sample_rate: int = DEFAULT_SAMPLE_RATE
    block: int = DEFAULT_BLOCK
    format: str = "float32"
    gain: float = DEFAULT_GAIN
    cc_gain: float = DEFAULT_CC_GAIN
    fmin: float = DEFAULT_FMIN
    octaves: float = DEFAULT_OCTAVES
    spectra: bool = True


def options_from_table(t: Table) -> SineOptions:
    """Validate ``[sine]`` (registered with :func:`..config.register_output_section`)."""
    block = t.integer("block", DEFAULT_BLOCK, 16, 8192)
    if block % 16:
        from ..errors import ConfigError

        raise ConfigError(f"{t.key('block')} must be a multiple of 16, got {block}")
    opts = SineOptions(
        sample_rate=t.integer("sample_rate", DEFAULT_SAMPLE_RATE, 8000, 192_000),
        block=block,
        format=t.string("format", "float32", FORMATS),
        gain=t.number("gain", DEFAULT_GAIN, 0.0, 1.0),
        cc_gain=t.number("cc_gain", DEFAULT_CC_GAIN, 0.0, 1.0),
        fmin=t.number("fmin", DEFAULT_FMIN, 20.0, 2000.0),
        octaves=t.number("octaves", DEFAULT_OCTAVES, 0.5, 8.0),
        spectra=t.boolean("spectra", True),
    )
    t.finish()
    return opts


def pitch_hz(norm: float, fmin: float = DEFAULT_FMIN, octaves: float = DEFAULT_OCTAVES) -> float:
    """The continuous mode's pitch map: ``fmin·2^(octaves·norm)``, ``norm`` clamped to 0..1.

    >>> pitch_hz(0.0), pitch_hz(1.0), round(pitch_hz(0.5), 2)
    (110.0, 3520.0, 622.25)
    """
    return fmin * 2.0 ** (octaves * min(max(norm, 0.0), 1.0))


def norm_from_hz(hz: float, fmin: float = DEFAULT_FMIN, octaves: float = DEFAULT_OCTAVES) -> float:
    """Inverse of :func:`pitch_hz` (what a listener's ear — or a pitch tracker — recovers).

    >>> round(norm_from_hz(pitch_hz(0.3)), 9)
    0.3
    """
    return math.log2(hz / fmin) / octaves


class _Voices:
    """Continuous and sonnify modes: mapped values → voice targets (no I/O, no clock)."""

    def __init__(self, config: Config, opts: SineOptions, mode: str, sr: int, block: int) -> None:
        self.rules = config.mappings
        self.opts = opts
        self.mode = mode
        top = presets.SONNIFY_MAX_HZ if mode == "sonnify" else pitch_hz(1.0, opts.fmin, opts.octaves)
        self.bank = VoiceBank(sr, block, max_freq=top)
        self.voices: dict[tuple[Any, ...], int] = {}
        self._levels = np.zeros(0)
        self._labels: list[str] = []
        self.runs: dict[str, int] = {}
        self.alarm = alarm_sound(sr)
        self.first_loss: dict[str, float] = {}
        self.val_runs: set[str] = set()
        self._tracks: list[tuple[float, np.ndarray, np.ndarray]] = []
        self._track_points = 0
        self.steps: list[tuple[float, int]] = []
        self.alarms = 0

    def _run_pan(self, run: str) -> float:
        i = self.runs.get(run)
        if i is None:
            i = self.runs[run] = len(self.runs)
        return run_pan(i)

    def _voice(self, key: tuple[Any, ...], run: str, level: float, label: str) -> int:
        v = self.voices.get(key)
        if v is None:
            v = self.voices[key] = self.bank.add_voice(self._run_pan(run))
            self.bank.set_master(1.0 / math.sqrt(len(self.voices)))
            self._levels = np.append(self._levels, level)
            self._labels.append(label)
        return v

    def _new_voice(self, key: tuple[Any, ...], m: Mapped) -> int:
        """Per-voice constants, computed once (handle() is on the receive thread)."""
        rule = self.rules[m.rule]
        level = self.opts.gain * rule.velocity / 127 if rule.target == "note" else self.opts.cc_gain
        label = "/".join(m.stream) if rule.target == "note" else f"{m.rule_name or m.rule}:{'/'.join(m.stream)}"
        return self._voice(key, m.run, level, label)

    def _set(self, voices: list[int], hz: np.ndarray) -> None:
        va = np.array(voices, np.intp)
        self.bank.set_many(va, hz, self._levels[va])
        if self._track_points < TRACK_POINTS * max(1, len(self._labels)):
            self._tracks.append((self.bank.now / self.bank.sr, va, hz))
            self._track_points += len(va)

    def _alarm(self, key: tuple[Any, ...] | None, loud: bool) -> None:
        if key is not None and key in self.voices:
            self.bank.set(self.voices[key], gain=0.0)  # the value is unknown: that voice falls silent
        if loud:
            self.alarms += 1
            self.bank.play(self.alarm)

    def apply(self, event: Event | None, mapped: Sequence[Mapped]) -> None:
        if event is not None:
            if event.kind == "step" and event.values:
                self.steps.append((self.bank.now / self.bank.sr, int(event.values[0])))
            elif event.kind == "activation_spectrum" and event.blob and self.opts.spectra and self.mode != "sonnify":
                self._spectrum(event)
            if self.mode == "sonnify":
                self._sonnify(event)
                return
        if self.mode == "sonnify" or not mapped:
            return
        # One pass of plain Python per value, then the pitch map and the voice update as array operations.
        vs: list[int] = []
        ns: list[float] = []
        get = self.voices.get
        for m in mapped:
            norm = m.norm
            if norm != norm:  # NaN: alarm (values before it land first, so the alarm wins over them)
                if vs:
                    self._set(vs, self._hz(ns))
                    vs, ns = [], []
                self._alarm((m.rule, m.stream) if m.rule >= 0 else None, bool(m.midi))
                continue
            key = (m.rule, m.stream)
            v = get(key)
            vs.append(self._new_voice(key, m) if v is None else v)
            ns.append(norm)
        if vs:
            self._set(vs, self._hz(ns))

    def _hz(self, norms: list[float]) -> np.ndarray:
        x = np.clip(np.array(norms), 0.0, 1.0)
        return self.opts.fmin * np.exp2(self.opts.octaves * x)

    @property
    def tracks(self) -> dict[str, list[tuple[float, float]]]:
        out: dict[str, list[tuple[float, float]]] = {}
        for t, va, hz in self._tracks:
            for v, h in zip(va.tolist(), hz.tolist(), strict=True):
                tr = out.setdefault(self._labels[v], [])
                if len(tr) < TRACK_POINTS:
                    tr.append((t, h))
        return out

    def _sonnify(self, ev: Event) -> None:
        if ev.kind == "metric" and ev.name == "val_loss":
            if ev.run not in self.val_runs:
                self.val_runs.add(ev.run)
                self.first_loss.pop(ev.run, None)  # soNNify: val_loss, when present, is *the* loss
        elif ev.kind != "loss" or ev.run in self.val_runs:
            return
        key = ("sonnify", ev.run)
        x = ev.values[0]
        if not math.isfinite(x):
            self._alarm(key, True)
            return
        first = self.first_loss.setdefault(ev.run, x)
        v = self._voice(key, ev.run, presets.SONNIFY_AMPLITUDE, f"{ev.run} loss")
        self._set([v], np.array([presets.sonnify_hz(x, first)]))

    def _spectrum(self, ev: Event) -> None:
        assert ev.blob is not None
        x = spectrum_sound(decode_blob(ev.blob), self.bank.sr)
        if x.any():
            self.bank.play(np.outer(x, pan_gains(self._run_pan(ev.run))).astype(np.float32))


class _Perone:
    """Perone's step-clocked tones: pure, produces mono chunks of whole steps."""

    def __init__(self, sr: int) -> None:
        self.sr = sr
        self.layers: dict[str, list[str]] = {}  # run → layer order (first seen)
        self.pending: dict[str, dict[str, float]] = {}
        self.gap = np.zeros(presets.perone_gap(sr), np.float32)
        self.tone_len = len(presets.perone_tone(200.0, sr))
        self.alarm = alarm_slot(self.tone_len, sr, presets.PERONE_AMPLITUDE)
        self.steps_done = 0
        self.alarms = 0

    def apply(self, event: Event | None) -> list[np.ndarray]:
        if event is None:
            return []
        run = event.run
        if event.kind == "step":
            return self._flush(run)
        if event.kind != "grad_norm" or not event.values:
            return []
        out: list[np.ndarray] = []
        cur = self.pending.setdefault(run, {})
        if event.name in cur:  # a full round without a step message: that was a step
            out = self._flush(run)
            cur = self.pending.setdefault(run, {})
        order = self.layers.setdefault(run, [])
        if event.name not in order:
            order.append(event.name)
        cur[event.name] = event.values[0]
        return out

    def _flush(self, run: str) -> list[np.ndarray]:
        cur = self.pending.pop(run, None)
        if not cur:
            return []
        parts = []
        for layer in self.layers[run]:
            if layer not in cur:
                continue
            x = cur[layer]
            if math.isfinite(x):
                parts.append(presets.perone_tone(presets.perone_hz(x), self.sr))
            else:
                self.alarms += 1
                parts.append(self.alarm)
        parts.append(self.gap)
        self.steps_done += 1
        return [np.concatenate(parts)]

    def finish(self) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for run in list(self.pending):
            out += self._flush(run)
        return out


class SineOut:
    """The ``sine`` output (``--wav FILE``, ``--audio``)."""

    name = "sine"

    def __init__(self, config: Config, *, wav: str | os.PathLike[str] | None = None, live: bool = False,
                 device: str | int | None = None, preset: str = presets.DEFAULT_PRESET,
                 sample_rate: int | None = None, block: int | None = None, fmt: str | None = None) -> None:
        opts: SineOptions = output_options(config, "sine", SineOptions())
        p = presets.get(preset or presets.DEFAULT_PRESET)
        if not wav and not live:
            raise OutputUnavailable("the sine output needs --wav FILE and/or --audio")
        self.mode = p.mode
        self.preset = p.name
        self.live = live
        self.block = block or opts.block
        if self.block % 16:
            raise OutputUnavailable(f"sine block must be a multiple of 16, got {self.block}")
        sr = sample_rate or p.sample_rate or opts.sample_rate
        self.channels = 1 if self.mode == "perone" else 2
        self.stream: Any = None
        self._lock = threading.Lock()
        self._rest = np.zeros((0, self.channels), np.float32)
        if live:
            from ..devices import LiveStream

            self.stream = LiveStream(self._live_render, device=device, sample_rate=sr, channels=self.channels,
                                     block=self.block)
            sr = self.stream.sample_rate
        self.sr = sr
        self.wav: WavWriter | None = None
        self.wav_path = Path(wav) if wav else None
        if self.wav_path is not None:
            try:
                self.wav_path.parent.mkdir(parents=True, exist_ok=True)
                self.wav = WavWriter(self.wav_path, sr, channels=self.channels, fmt=fmt or opts.format)  # type: ignore[arg-type]
            except OSError as err:
                if self.stream is not None:
                    self.stream.close()
                raise OutputUnavailable(f"{self.wav_path}: cannot write WAV file: {err.strerror}") from err
        self.voices = _Voices(config, opts, self.mode, sr, self.block) if self.mode != "perone" else None
        self.perone = _Perone(sr) if self.mode == "perone" else None
        self._fifo: deque[np.ndarray] = deque()
        self._fifo_len = 0
        self.perone_dropped = 0
        self.perone_steps: list[tuple[float, int]] = []
        self._perone_pos = 0
        self.t0: float | None = None
        self._now = -math.inf
        self.closed = False
        self._queue: queue.SimpleQueue[np.ndarray | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        if live and self.wav is not None:
            self._writer = threading.Thread(target=self._write_loop, name="trainsound-sine-wav", daemon=True)
            self._writer.start()
        if self.stream is not None:
            self.stream.start()

    # -- input (receive thread) ----------------------------------------------------
    def handle(self, event: Event | None, mapped: Sequence[Mapped]) -> None:
        if self.closed:
            return
        if self.perone is not None:
            with self._lock:
                if event is not None and event.kind == "step" and event.values:
                    self.perone_steps.append((self._perone_pos / self.sr, int(event.values[0])))
                self._emit(self.perone.apply(event))
            return
        assert self.voices is not None
        t = event.t if event is not None else (mapped[0].t if mapped else None)
        if t is None:
            return
        if self.live:
            with self._lock:
                self.voices.apply(event, mapped)
            return
        if self.t0 is None:
            self.t0 = t
        bank = self.voices.bank
        block = math.ceil((t - self.t0) * self.sr / self.block - 1e-4)  # Unix-time float jitter
        if (block - bank.position // self.block) * self.block >= TICK_RENDER_SECONDS * self.sr:
            self._render_blocks(block)  # keep the scheduled span bounded
        bank.schedule(block)
        self.voices.apply(event, mapped)

    def tick(self, now: float) -> None:
        if self.closed or self.live or self.voices is None or self.t0 is None:
            return
        self._now = max(self._now, now)
        due = (now - self.t0) - self.voices.bank.position / self.sr
        if due >= TICK_RENDER_SECONDS:
            self._render_until(now, ceil=False)

    # -- offline (event clock) ---------------------------------------------------------
    def _render_until(self, t: float, *, ceil: bool) -> None:
        assert self.voices is not None and self.t0 is not None
        pos = (t - self.t0) * self.sr / self.block
        self._render_blocks(math.ceil(pos - 1e-4) if ceil else math.floor(pos + 1e-4))  # Unix-time float jitter

    def _render_blocks(self, target: int) -> None:
        assert self.voices is not None
        bank = self.voices.bank
        todo = target - bank.position // self.block
        while todo > 0:
            n = min(todo, MAX_RENDER_BLOCKS)
            x = bank.render(n)
            if self.wav is not None:
                self.wav.write(x)
            todo -= n

    # -- perone chunks -------------------------------------------------------------------
    def _emit(self, chunks: list[np.ndarray]) -> None:
        for c in chunks:
            self._perone_pos += len(c)
            if self.live:
                self._fifo.append(c)
                self._fifo_len += len(c)
                while self._fifo_len > PERONE_FIFO_SECONDS * self.sr and len(self._fifo) > 1:
                    self._fifo_len -= len(self._fifo.popleft())
                    self.perone_dropped += 1
            elif self.wav is not None:
                self.wav.write(c[:, None])

    # -- live (PortAudio thread) -------------------------------------------------------------
    def _live_render(self, frames: int) -> np.ndarray:
        with self._lock:
            if self.perone is not None:
                x = self._pull_fifo(frames)
            else:
                assert self.voices is not None
                need = frames - len(self._rest)
                blocks = max(0, -(-need // self.block))
                x = np.concatenate([self._rest, self.voices.bank.render(blocks)]) if blocks else self._rest
                x, self._rest = x[:frames], x[frames:]
        if self._writer is not None:
            self._queue.put(x.copy())
        return x

    def _pull_fifo(self, frames: int) -> np.ndarray:
        out = np.zeros((frames, 1), np.float32)
        i = 0
        while i < frames and self._fifo:
            c = self._fifo[0]
            take = min(len(c), frames - i)
            out[i:i + take, 0] = c[:take]
            i += take
            if take == len(c):
                self._fifo.popleft()
            else:
                self._fifo[0] = c[take:]
            self._fifo_len -= take
        return out

    def _write_loop(self) -> None:
        assert self.wav is not None
        while True:
            x = self._queue.get()
            if x is None:
                return
            try:
                self.wav.write(x)
            except (OSError, ValueError) as err:
                log.error("WAV %s: write failed, recording stopped: %s", self.wav_path, err)
                return

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        """Fade out (no click), stop the stream, finish the WAV header."""
        if self.closed:
            return
        self.closed = True
        if self.stream is not None:
            with self._lock:
                if self.voices is not None:
                    self.voices.bank.silence()
                elif self.perone is not None:
                    self._emit(self.perone.finish())
            # Let the fade (and a queued perone step) play out before stopping.
            wait = 3 * self.block / self.sr + (self._fifo_len / self.sr if self.perone is not None else 0.0)
            threading.Event().wait(min(wait, PERONE_FIFO_SECONDS + 0.1))
            self.stream.close()
            if self._writer is not None:
                self._queue.put(None)
                self._writer.join(5.0)
        elif self.perone is not None:
            self._emit(self.perone.finish())
        elif self.voices is not None and self.t0 is not None:
            if math.isfinite(self._now):
                self._render_until(self._now, ceil=False)
            self._render_blocks(self.voices.bank.cursor)  # changes scheduled beyond the last tick
            self.voices.bank.silence()
            x = self.voices.bank.render(1)
            if self.wav is not None:
                self.wav.write(x)
        if self.wav is not None:
            self.wav.close()

    def health(self) -> dict[str, Any]:
        h: dict[str, Any] = {"ok": True, "preset": self.preset, "sample_rate": self.sr}
        if self.voices is not None:
            h["voices"] = len(self.voices.voices)
            h["alarms"] = self.voices.alarms
        if self.perone is not None:
            h["steps"] = self.perone.steps_done
            h["alarms"] = self.perone.alarms
            h["dropped_steps"] = self.perone_dropped
        if self.stream is not None:
            h["device"] = self.stream.device.name
            h["underruns"] = self.stream.underruns
            h["startup_underruns"] = self.stream.startup_underruns
            h["callbacks"] = self.stream.callbacks
        if self.wav is not None:
            h["wav"] = str(self.wav_path)
            h["wav_seconds"] = round(self.wav.seconds, 3)
        return h

    def describe(self) -> str:
        parts = [f"sine ({self.preset}, {self.sr} Hz"]
        if self.stream is not None:
            parts.append(f", live on {self.stream.describe()}")
        if self.wav is not None:
            parts.append(f", WAV {self.wav_path} {self.wav.fmt}")
        return "".join(parts) + ")"

    # -- for render / spectrogram -----------------------------------------------------------
    @property
    def tracks(self) -> dict[str, list[tuple[float, float]]]:
        """Per-voice pitch tracks ``label → [(seconds, Hz)]`` (continuous and sonnify modes)."""
        return self.voices.tracks if self.voices is not None else {}

    @property
    def step_times(self) -> list[tuple[float, int]]:
        """``[(seconds into the audio, step)]``."""
        return self.voices.steps if self.voices is not None else self.perone_steps
