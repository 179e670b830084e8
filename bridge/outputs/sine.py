"""The ``sine`` output: training made audible with nothing else installed.

Live through the sound card (``--audio``, PyAudio callback mode) and/or to a
WAV file (``--wav``). The renderer mode comes from the preset (see
:mod:`..presets` and docs/sound.md):

- ``continuous``: sustained voices, pitch ``fmin·2^(octaves·u)`` (unquantised, so
  the numbers survive), stereo position per run, soft limiter; by default under
  the foreground budget (:mod:`.sine_focus`: loss, global norm and spotlight in
  front, groups as a quiet bed); ``everything`` (``[sine] focus = "all"``): every
  (rule, stream) a voice, level from the rule, master gain ``1/√voices``.
- ``perone``: step-clocked sequenced tones, exactly the seed's formula.
- ``sonnify``: one loss voice per run, soNNify's formula.

Clocks. Written to WAV only, audio is rendered on the *event* clock
(``Mapped.t``): a change lands at the first block boundary after its time, and
``tick(now)`` renders up to ``now`` — so an offline render of a recording is
deterministic and runs as fast as numpy allows. Live, :meth:`SineOut.handle`
only queues voice updates; the engine process (:mod:`..sound.sine_engine`)
renders ahead of PortAudio's callback and writes the WAV of what was played.
"""

from __future__ import annotations

import logging
import math
import os
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config, output_options, presets
from ..errors import ConfigError, OutputUnavailable
from ..mapped import Mapped
from ..mapping.deviation import Aligner, Reference
from ..sound.engine import SPAWN, EngineLink
from ..sound.maps import pitch_hz
from ..sound.seeds import SONNIFY_CAP_HZ, PeroneSequencer
from ..sound.sine_engine import COUNTERS, PERONE_FIFO_SECONDS, C, EngineSpec, engine_main
from ..sound.wav import FORMATS, WavWriter
from ..table import Table
from ..wire.protocol import Event
from .base import BaseOutput, fresh_path
from .sine_reference import AbVoices, DiffVoices, reference_voices
from .sine_voices import BankSink, QueueSink, SineOptions, Sink, VoiceTable, take_batch

#: ``[sine].focus``: the foreground budget, or every stream at once (docs/sound.md).
FOCUS_MODES = ("budget", "all")

log = logging.getLogger(__name__)

#: Largest render in one go (memory bound for long silences), in blocks.
MAX_RENDER_BLOCKS = 512
#: Offline, changes are scheduled and rendered in spans of about this much audio (tick() renders once this
#: much is due): one span of many change intervals costs a few array operations, which is what makes it fast.
TICK_RENDER_SECONDS = 1.0
#: Live: queue bound (~10 s at 10,000 msg/s); beyond it updates are counted as dropped.
LIVE_QUEUE_MAX = 100_000


def section(t: Table) -> SineOptions:
    """Validate ``[sine]`` (named in :data:`..config.OUTPUT_SECTIONS`)."""
    d = SineOptions()
    block = t.integer("block", d.block, 16, 8192)
    if block % 16:
        raise ConfigError(f"{t.key('block')} must be a multiple of 16, got {block}")
    opts = SineOptions(
        sample_rate=t.integer("sample_rate", d.sample_rate, 8000, 192_000),
        block=block,
        format=t.string("format", d.format, FORMATS),
        gain=t.number("gain", d.gain, 0.0, 1.0),
        cc_gain=t.number("cc_gain", d.cc_gain, 0.0, 1.0),
        fmin=t.number("fmin", d.fmin, 20.0, 2000.0),
        octaves=t.number("octaves", d.octaves, 0.5, 8.0),
        spectra=t.boolean("spectra", d.spectra),
        focus=t.string("focus", d.focus, FOCUS_MODES),
        bed_gain=t.number("bed_gain", d.bed_gain, 0.0, 1.0),
        max_wav_bytes=t.integer("max_wav_bytes", d.max_wav_bytes, 1 << 12, d.max_wav_bytes),
    )
    t.finish()
    return opts


class SineOut(BaseOutput):
    """The ``sine`` output (``--wav FILE``, ``--audio``)."""

    name = "sine"
    silences = True

    def __init__(self, config: Config, *, wav: str | os.PathLike[str] | None = None, live: bool = False,
                 device: str | int | None = None, preset: str = presets.DEFAULT_PRESET,
                 sample_rate: int | None = None, block: int | None = None, fmt: str | None = None,
                 never_overwrite: bool = False, keep_tracks: bool = False) -> None:
        opts: SineOptions = output_options(config, "sine", SineOptions())
        p = presets.get(preset or presets.DEFAULT_PRESET)
        if not wav and not live:
            raise OutputUnavailable("the sine output needs --wav FILE and/or --audio")
        self.mode = p.mode
        self.preset = p.name
        if self.mode in ("ab", "diff") and output_options(config, "reference", None) is None:
            raise OutputUnavailable(f"the sine preset {p.name} needs --reference SESSION.tsr")
        budget = p.focus and opts.focus == "budget"
        self.live = live
        self.block = block or opts.block
        if self.block % 16:
            raise OutputUnavailable(f"sine block must be a multiple of 16, got {self.block}")
        sr = sample_rate or p.sample_rate or opts.sample_rate
        self.channels = 1 if self.mode == "perone" else 2
        self.wav: WavWriter | None = None
        self.wav_path = (fresh_path(wav, "WAV file") if never_overwrite else Path(wav)) if wav else None
        fmt = fmt or opts.format
        if self.wav_path is not None:
            try:
                self.wav_path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise OutputUnavailable(f"{self.wav_path}: cannot write WAV file: {err.strerror}") from err
        max_freq = SONNIFY_CAP_HZ if self.mode == "sonnify" else pitch_hz(1.0, opts.fmin, opts.octaves)
        self.link: EngineLink | None = None
        self.queue: deque[tuple[Any, ...]] = deque()
        self.dropped = 0
        self.bank_sink: BankSink | None = None
        self.voices: VoiceTable | AbVoices | DiffVoices | None = None
        self.perone: PeroneSequencer | None = None
        if live:
            spec = EngineSpec(self.mode, device, sr, self.channels, self.block, max_freq,
                              str(self.wav_path) if self.wav_path is not None else None, fmt, opts.max_wav_bytes)
            self.counters = SPAWN.Array("q", len(COUNTERS), lock=False)
            self.link = EngineLink("sine", engine_main, (spec, self.counters),
                                   take=lambda: take_batch(self.queue, self.mode))
            sr, self.channels, self.device, self.device_description = self.link.ready
            if self.mode != "perone":
                self.voices = self._voice_table(config, opts, QueueSink(opts, self.queue), budget)
        else:
            if self.wav_path is not None:
                try:
                    self.wav = WavWriter(self.wav_path, sr, channels=self.channels, fmt=fmt,  # type: ignore[arg-type]
                                         max_bytes=opts.max_wav_bytes)
                except OSError as err:
                    raise OutputUnavailable(f"{self.wav_path}: cannot write WAV file: {err.strerror}") from err
            if self.mode == "perone":
                self.perone = PeroneSequencer(sr)
            else:
                # Pitch tracks and step times only for a render's spectrogram: a bridge writing --wav for
                # days would hold every point (+14 MB a minute measured; issue 16, item 8).
                self.bank_sink = BankSink(opts, sr, self.block, max_freq, keep_tracks=keep_tracks)
                self.voices = self._voice_table(config, opts, self.bank_sink, budget)
        self.keep_tracks = keep_tracks
        self.sr = sr
        self.perone_steps: list[tuple[float, int]] = []
        self._perone_pos = 0
        self.t0: float | None = None
        self._now = -math.inf
        self._clock = -math.inf
        """The pipeline's clock at the last tick (a brought-forward group's time left)."""
        self._wav_failing = False
        self._silenced: list[tuple[int, str]] = []

    def _voice_table(self, config: Config, opts: SineOptions, sink: Sink,
                     budget: bool) -> VoiceTable | AbVoices | DiffVoices:
        if self.mode not in ("ab", "diff"):
            return VoiceTable(config, opts, self.mode, sink, budget)
        ref: Reference = output_options(config, "reference", None)
        return reference_voices(config, opts, self.mode, sink, budget, Aligner(ref, config.mappings))

    # -- input (receive thread) ----------------------------------------------------
    def _handle(self, event: Event | None, mapped: Sequence[Mapped]) -> None:
        if self.link is not None:  # live: queue, never block (the engine process renders)
            if len(self.queue) >= LIVE_QUEUE_MAX:
                self.dropped += 1
            elif self.voices is not None:
                self._release_silenced()
                self.voices.apply(event, mapped)
            elif event is not None and event.kind in ("step", "grad_norm"):
                self.queue.append(("perone", event.kind, event.run, event.name, event.values))
            return
        if self.perone is not None:
            if self.keep_tracks and event is not None and event.kind == "step" and event.values:
                self.perone_steps.append((self._perone_pos / self.sr, int(event.values[0])))
            self._emit(self.perone.apply(event))
            return
        assert self.voices is not None and self.bank_sink is not None
        t = event.t if event is not None else (mapped[0].t if mapped else None)
        if t is None:
            return
        if self.t0 is None:
            self.t0 = t
        bank = self.bank_sink.bank
        block = math.ceil((t - self.t0) * self.sr / self.block - 1e-4)  # Unix-time float jitter
        if (block - bank.position // self.block) * self.block >= TICK_RENDER_SECONDS * self.sr:
            self._render_blocks(block)  # keep the scheduled span bounded
        bank.schedule(block)
        self._release_silenced()
        self.voices.apply(event, mapped)

    def _silence(self, rule: int, run: str) -> None:
        self._silenced.append((rule, run))  # released in _handle, at the NaN's own block

    def _release_silenced(self) -> None:
        if self._silenced and self.voices is not None:
            for rule, run in self._silenced:
                self.voices.silence(rule, run)
            self._silenced.clear()

    def _tick(self, now: float) -> None:
        self._clock = now
        if isinstance(self.voices, VoiceTable) and self.voices.budget is not None and self.voices.budget.forward:
            self.voices.move(self.voices.budget.expire(now))
        self._watch_wav()
        if self.bank_sink is None or self.t0 is None:
            return
        self._now = max(self._now, now)
        due = (now - self.t0) - self.bank_sink.bank.position / self.sr
        if due >= TICK_RENDER_SECONDS:
            self._render_until(now, ceil=False)

    def _release_run(self, run: str, now: float) -> None:
        if self.voices is not None:
            self.voices.release_run(run)

    # -- brought forward by a listener (receive thread; live, the moves reach the engine as voice updates) --
    def bring_forward(self, run: str, group: str | None, until: float) -> None:
        budget = self.voices.budget if isinstance(self.voices, VoiceTable) else None
        if self.closed or budget is None or not isinstance(self.voices, VoiceTable):
            return
        if group is None:
            self.voices.move(budget.send_back())
        elif until <= self._clock:
            self.voices.move(budget.send_back((run, group)))
        else:
            self.voices.move(budget.bring_forward(run, group, until))

    def forwarded(self) -> list[dict[str, Any]] | None:
        budget = self.voices.budget if isinstance(self.voices, VoiceTable) else None
        if budget is None:
            return None
        return [{"run": r, "group": g, "left": round(max(0.0, u - self._clock), 1) if math.isfinite(u) else None}
                for (r, g), u in budget.forward.items()]

    # -- offline (event clock) ---------------------------------------------------------
    def _render_until(self, t: float, *, ceil: bool) -> None:
        assert self.t0 is not None
        pos = (t - self.t0) * self.sr / self.block
        self._render_blocks(math.ceil(pos - 1e-4) if ceil else math.floor(pos + 1e-4))  # Unix-time float jitter

    def _render_blocks(self, target: int) -> None:
        assert self.bank_sink is not None
        bank = self.bank_sink.bank
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
    def _close(self) -> None:
        """Fade out (no click), stop the stream, finish the WAV header."""
        if self.link is not None:
            self.link.close(timeout=PERONE_FIFO_SECONDS + 5.0)
            return
        if self.perone is not None:
            self._emit(self.perone.finish())
        elif self.bank_sink is not None and self.t0 is not None:
            bank = self.bank_sink.bank
            if math.isfinite(self._now):
                self._render_until(self._now, ceil=False)
            self._render_blocks(bank.cursor)  # changes scheduled beyond the last tick
            bank.silence()
            x = bank.render(1)
            if self.wav is not None:
                self.wav.write(x)
        if self.wav is not None:
            self.wav.close()

    def _watch_wav(self) -> None:
        """Log a WAV write failure once when it begins and once when writing works again."""
        w = self.wav
        if w is None:
            return
        if w.error is not None and not self._wav_failing:
            log.error("WAV %s; dropping audio until it can write again (the file stays valid)", w.error)
        elif w.error is None and self._wav_failing:
            log.warning("WAV %s: writing again (%d frames dropped so far)", w.path, w.dropped_frames)
        self._wav_failing = w.error is not None

    def counter(self, name: str) -> int:
        """A live engine counter (shared memory written by the engine process)."""
        return int(self.counters[C[name]])

    def health(self) -> dict[str, Any]:
        h: dict[str, Any] = {"ok": True, "preset": self.preset, "sample_rate": self.sr}
        if self.voices is not None:
            h["voices"] = len(self.voices.voices)
            h["alarms"] = self.voices.alarms
            if (forward := self.forwarded()) is not None:
                h["forward"] = forward
        if self.perone is not None:
            h["steps"] = self.perone.steps_done
            h["alarms"] = self.perone.alarms
        if self.link is not None:
            h["ok"] = self.link.failed is None
            if self.voices is None:
                h["steps"] = self.counter("steps")
                h["alarms"] = self.counter("alarms")
                h["dropped_steps"] = self.counter("dropped_steps")
            late, dev = self.counter("late_blocks"), self.counter("device_underruns")
            h.update(device=self.device, underruns=late + dev, device_underruns=dev, late_blocks=late,
                     startup_underruns=self.counter("startup_underruns"), callbacks=self.counter("callbacks"),
                     dropped_updates=self.dropped, engine_errors=self.counter("errors"))
            if self.wav_path is not None:
                h["wav"] = str(self.wav_path)
                h["wav_seconds"] = round(self.counter("wav_frames") / self.sr, 3)
                h["wav_errors"] = self.counter("wav_errors")
                h["wav_dropped_frames"] = self.counter("wav_dropped_frames")
                if self.counter("wav_failing"):
                    h["ok"] = False
                    h["why"] = f"cannot write WAV {self.wav_path} (disk full or write error; see the log)"
            if self.link.failed is not None:
                h["why"] = f"sound engine failed: {self.link.failed}"
        if self.wav is not None:
            self._watch_wav()
            h.update(wav=str(self.wav.path), wav_seconds=round(self.wav.seconds, 3), wav_errors=self.wav.errors,
                     wav_dropped_frames=self.wav.dropped_frames)
            if self.wav.error is not None:
                h["ok"] = False
                h["why"] = self.wav.error
        return h

    def describe(self) -> str:
        parts = [f"sine ({self.preset}, {self.sr} Hz"]
        if self.link is not None:
            parts.append(f", live on {self.device_description} in an engine process")
        if self.wav_path is not None:
            parts.append(f", WAV {self.wav_path}")
        return "".join(parts) + ")"

    # -- for render / spectrogram -----------------------------------------------------------
    @property
    def tracks(self) -> dict[str, list[tuple[float, float]]]:
        """Per-voice pitch tracks ``label → [(seconds, Hz)]`` (continuous and sonnify modes, offline)."""
        return self.bank_sink.tracks if self.bank_sink is not None else {}

    @property
    def step_times(self) -> list[tuple[float, int]]:
        """``[(seconds into the audio, step)]`` (offline)."""
        return self.bank_sink.steps if self.bank_sink is not None else self.perone_steps
