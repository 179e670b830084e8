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

import contextlib
import logging
import math
import os
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
#: Live: how often the feeder thread ships queued updates to the engine process (s).
FEED_INTERVAL = 0.005
#: Live: queue bound (~10 s at 10,000 msg/s); beyond it updates are counted as dropped.
LIVE_QUEUE_MAX = 100_000
#: Live: how long the engine process may take to start (spawn, imports, PortAudio).
ENGINE_STARTUP_TIMEOUT = 30.0
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


class _RunPans:
    """Stereo position per run, in first-seen order."""

    def __init__(self) -> None:
        self.runs: dict[str, int] = {}

    def pan(self, run: str) -> float:
        i = self.runs.get(run)
        if i is None:
            i = self.runs[run] = len(self.runs)
        return run_pan(i)


class _SonnifyLoss:
    """soNNify's loss → Hz per run: ``val_loss``, when present, is *the* loss."""

    def __init__(self) -> None:
        self.first_loss: dict[str, float] = {}
        self.val_runs: set[str] = set()

    def hz(self, ev: Event) -> float | None:
        """The tone for an event, NaN for a non-finite loss (the alarm), None if it is not the loss."""
        if ev.kind == "metric" and ev.name == "val_loss":
            if ev.run not in self.val_runs:
                self.val_runs.add(ev.run)
                self.first_loss.pop(ev.run, None)
        elif ev.kind != "loss" or ev.run in self.val_runs:
            return None
        x = ev.values[0]
        if not math.isfinite(x):
            return math.nan
        return presets.sonnify_hz(x, self.first_loss.setdefault(ev.run, x))


def _level(rule: Any, opts: SineOptions) -> float:
    """Note rules are the melody; CC rules (loss, weight stats) quieter voices of their own."""
    return opts.gain * rule.velocity / 127 if rule.target == "note" else opts.cc_gain


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
        self.pans = _RunPans()
        self.alarm = alarm_sound(sr)
        self.loss = _SonnifyLoss()
        self._tracks: list[tuple[float, np.ndarray, np.ndarray]] = []
        self._track_points = 0
        self.steps: list[tuple[float, int]] = []
        self.alarms = 0

    def _voice(self, key: tuple[Any, ...], run: str, level: float, label: str) -> int:
        v = self.voices.get(key)
        if v is None:
            v = self.voices[key] = self.bank.add_voice(self.pans.pan(run))
            self.bank.set_master(1.0 / math.sqrt(len(self.voices)))
            self._levels = np.append(self._levels, level)
            self._labels.append(label)
        return v

    def _new_voice(self, key: tuple[Any, ...], m: Mapped) -> int:
        """Per-voice constants, computed once (handle() is on the receive thread)."""
        rule = self.rules[m.rule]
        label = "/".join(m.stream) if rule.target == "note" else f"{m.rule_name or m.rule}:{'/'.join(m.stream)}"
        return self._voice(key, m.run, _level(rule, self.opts), label)

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
        hz = self.loss.hz(ev)
        if hz is None:
            return
        key = ("sonnify", ev.run)
        if hz != hz:
            self._alarm(key, True)
            return
        v = self._voice(key, ev.run, presets.SONNIFY_AMPLITUDE, f"{ev.run} loss")
        self._set([v], np.array([hz]))

    def _spectrum(self, ev: Event) -> None:
        assert ev.blob is not None
        x = spectrum_sound(decode_blob(ev.blob), self.bank.sr)
        if x.any():
            self.bank.play(np.outer(x, pan_gains(self.pans.pan(ev.run))).astype(np.float32))


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


class _LiveVoices:
    """Live, on the receive thread: mapped values → queued voice updates; plain Python, no numpy, no lock.

    The voice bank lives in the engine process (:mod:`..sine_engine`); a feeder
    thread coalesces the queue (newest value per voice) and ships it there.
    """

    def __init__(self, config: Config, opts: SineOptions, mode: str, queue: deque[tuple[Any, ...]]) -> None:
        self.rules = config.mappings
        self.opts = opts
        self.mode = mode
        self.queue = queue
        self.voices: dict[tuple[Any, ...], tuple[int, float]] = {}
        self.pans = _RunPans()
        self.loss = _SonnifyLoss()
        self.alarms = 0

    def _voice(self, key: tuple[Any, ...], run: str, level: float) -> tuple[int, float]:
        info = self.voices.get(key)
        if info is None:
            info = self.voices[key] = (len(self.voices), level)
            self.queue.append(("voice", info[0], self.pans.pan(run)))
            self.queue.append(("master", 1.0 / math.sqrt(len(self.voices))))
        return info

    def _alarm(self, key: tuple[Any, ...] | None, loud: bool) -> None:
        info = self.voices.get(key) if key is not None else None
        if info is not None:
            self.queue.append((info[0], math.nan, 0.0))  # the value is unknown: that voice falls silent
        if loud:
            self.alarms += 1
            self.queue.append(("alarm",))

    def apply(self, event: Event | None, mapped: Sequence[Mapped]) -> None:
        if event is not None:
            if event.kind == "activation_spectrum" and event.blob and self.opts.spectra and self.mode != "sonnify":
                self.queue.append(("spectrum", event.blob, self.pans.pan(event.run)))
            if self.mode == "sonnify":
                self._sonnify(event)
                return
        if self.mode == "sonnify":
            return
        fmin, octaves, append = self.opts.fmin, self.opts.octaves, self.queue.append
        for m in mapped:
            norm = m.norm
            if norm != norm:
                self._alarm((m.rule, m.stream) if m.rule >= 0 else None, bool(m.midi))
                continue
            key = (m.rule, m.stream)
            info = self.voices.get(key)
            if info is None:
                info = self._voice(key, m.run, _level(self.rules[m.rule], self.opts))
            append((info[0], fmin * 2.0 ** (octaves * min(max(norm, 0.0), 1.0)), info[1]))

    def _sonnify(self, ev: Event) -> None:
        hz = self.loss.hz(ev)
        if hz is None:
            return
        key = ("sonnify", ev.run)
        if hz != hz:
            self._alarm(key, True)
            return
        info = self._voice(key, ev.run, presets.SONNIFY_AMPLITUDE)
        self.queue.append((info[0], hz, info[1]))


class _LiveLink:
    """The bridge's end of the engine process: spawn it, feed it, read its counters."""

    def __init__(self, spec: Any) -> None:
        import multiprocessing

        from ..sine_engine import COUNTERS, engine_main

        self.spec = spec
        self.queue: deque[tuple[Any, ...]] = deque()
        self.dropped = 0
        self.failed: str | None = None
        ctx = multiprocessing.get_context("spawn")  # no fork of a threaded bridge
        self.counters = ctx.Array("q", len(COUNTERS), lock=False)
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=engine_main, args=(child, spec, self.counters), name="trainsound-sine",
                                 daemon=True)
        self._proc.start()
        child.close()
        msg: tuple[Any, ...]
        if not self._conn.poll(ENGINE_STARTUP_TIMEOUT):
            msg = ("error", f"sine engine did not start within {ENGINE_STARTUP_TIMEOUT:.0f} s")
        else:
            try:
                msg = self._conn.recv()
            except EOFError:
                msg = ("error", f"sine engine exited at start (exit code {self._proc.exitcode})")
        if msg[0] != "ready":
            self._kill()
            raise OutputUnavailable(msg[1])
        _, self.sr, self.channels, self.device, self.description = msg
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed_loop, name="trainsound-sine-feed", daemon=True)
        self._thread.start()

    def counter(self, name: str) -> int:
        from ..sine_engine import C

        return int(self.counters[C[name]])

    def _kill(self, timeout: float = 1.0) -> None:
        self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5.0)
        self._conn.close()

    def _feed_loop(self) -> None:
        while not self._stop.wait(FEED_INTERVAL):
            if not self.feed():
                return

    def feed(self) -> bool:
        """Send what was queued since the last feed (values coalesced: newest per voice); False once the
        engine is gone."""
        controls: list[tuple[Any, ...]] = []
        values: dict[int, tuple[float, float]] = {}
        pop = self.queue.popleft
        try:
            while True:
                item = pop()
                if type(item[0]) is int:
                    values[item[0]] = item[1:]
                else:
                    controls.append(item)
        except IndexError:
            pass
        if not controls and not values:
            return self.failed is None
        if self.spec.mode == "perone":
            msg: tuple[Any, ...] = ("perone", [c[1:] for c in controls])
        else:
            voices = np.fromiter(values.keys(), np.intp, len(values))
            hz_gain = np.array(list(values.values()), np.float64).reshape(-1, 2)
            msg = ("batch", controls, voices, hz_gain[:, 0].copy(), hz_gain[:, 1].copy())
        try:
            self._conn.send(msg)
        except OSError:
            if self.failed is None:
                self.failed = f"sine engine process exited (code {self._proc.exitcode})"
                log.error("sine output: %s; the bridge goes on without it", self.failed)
            return False
        return True

    def close(self, timeout: float) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.feed()
        with contextlib.suppress(OSError):
            self._conn.send(("close",))
        with contextlib.suppress(OSError, EOFError):
            if self._conn.poll(timeout):
                self._conn.recv()
        self._kill(timeout=5.0)


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
        self.wav: WavWriter | None = None
        self.wav_path = Path(wav) if wav else None
        fmt = fmt or opts.format
        if self.wav_path is not None:
            try:
                self.wav_path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise OutputUnavailable(f"{self.wav_path}: cannot write WAV file: {err.strerror}") from err
        max_freq = presets.SONNIFY_MAX_HZ if self.mode == "sonnify" else pitch_hz(1.0, opts.fmin, opts.octaves)
        self.link: _LiveLink | None = None
        self.live_voices: _LiveVoices | None = None
        if live:
            from ..sine_engine import EngineSpec

            spec = EngineSpec(self.mode, device, sr, self.channels, self.block, max_freq,
                              str(self.wav_path) if self.wav_path is not None else None, fmt)
            self.link = _LiveLink(spec)
            sr, self.channels = self.link.sr, self.link.channels
            if self.mode != "perone":
                self.live_voices = _LiveVoices(config, opts, self.mode, self.link.queue)
        elif self.wav_path is not None:
            try:
                self.wav = WavWriter(self.wav_path, sr, channels=self.channels, fmt=fmt)  # type: ignore[arg-type]
            except OSError as err:
                raise OutputUnavailable(f"{self.wav_path}: cannot write WAV file: {err.strerror}") from err
        self.sr = sr
        self.voices = _Voices(config, opts, self.mode, sr, self.block) if self.mode != "perone" and not live else None
        self.perone = _Perone(sr) if self.mode == "perone" and not live else None
        self.perone_steps: list[tuple[float, int]] = []
        self._perone_pos = 0
        self.t0: float | None = None
        self._now = -math.inf
        self.closed = False

    # -- input (receive thread) ----------------------------------------------------
    def handle(self, event: Event | None, mapped: Sequence[Mapped]) -> None:
        if self.closed:
            return
        if self.link is not None:  # live: queue, never block (the engine process renders)
            if len(self.link.queue) >= LIVE_QUEUE_MAX:
                self.link.dropped += 1
            elif self.live_voices is not None:
                self.live_voices.apply(event, mapped)
            elif event is not None and event.kind in ("step", "grad_norm"):
                self.link.queue.append(("perone", event.kind, event.run, event.name, event.values))
            return
        if self.perone is not None:
            if event is not None and event.kind == "step" and event.values:
                self.perone_steps.append((self._perone_pos / self.sr, int(event.values[0])))
            self._emit(self.perone.apply(event))
            return
        assert self.voices is not None
        t = event.t if event is not None else (mapped[0].t if mapped else None)
        if t is None:
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

    def _emit(self, chunks: list[np.ndarray]) -> None:
        for c in chunks:
            self._perone_pos += len(c)
            if self.wav is not None:
                self.wav.write(c[:, None])

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        """Fade out (no click), stop the stream, finish the WAV header."""
        if self.closed:
            return
        self.closed = True
        if self.link is not None:
            from ..sine_engine import PERONE_FIFO_SECONDS

            self.link.close(timeout=PERONE_FIFO_SECONDS + 5.0)
            return
        if self.perone is not None:
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
        if self.link is not None:
            ln = self.link
            h["ok"] = ln.failed is None
            if self.live_voices is not None:
                h["voices"] = len(self.live_voices.voices)
                h["alarms"] = self.live_voices.alarms
            else:
                h["steps"] = ln.counter("steps")
                h["alarms"] = ln.counter("alarms")
                h["dropped_steps"] = ln.counter("dropped_steps")
            late, dev = ln.counter("late_blocks"), ln.counter("device_underruns")
            h.update(device=ln.device, underruns=late + dev, device_underruns=dev, late_blocks=late,
                     startup_underruns=ln.counter("startup_underruns"), callbacks=ln.counter("callbacks"),
                     dropped_updates=ln.dropped, engine_errors=ln.counter("errors"))
            if self.wav_path is not None:
                h["wav"] = str(self.wav_path)
                h["wav_seconds"] = round(ln.counter("wav_frames") / self.sr, 3)
        if self.wav is not None:
            h["wav"] = str(self.wav_path)
            h["wav_seconds"] = round(self.wav.seconds, 3)
        return h

    def describe(self) -> str:
        parts = [f"sine ({self.preset}, {self.sr} Hz"]
        if self.link is not None:
            parts.append(f", live on {self.link.description} in an engine process")
        if self.wav_path is not None:
            parts.append(f", WAV {self.wav_path}")
        return "".join(parts) + ")"

    # -- for render / spectrogram -----------------------------------------------------------
    @property
    def tracks(self) -> dict[str, list[tuple[float, float]]]:
        """Per-voice pitch tracks ``label → [(seconds, Hz)]`` (continuous and sonnify modes, offline)."""
        return self.voices.tracks if self.voices is not None else {}

    @property
    def step_times(self) -> list[tuple[float, int]]:
        """``[(seconds into the audio, step)]`` (offline)."""
        return self.voices.steps if self.voices is not None else self.perone_steps
