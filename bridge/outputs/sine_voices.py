"""The ``sine`` output's voice table: mapped values → voices, one allocator for offline and live rendering.

:class:`VoiceTable` turns each mapped stream into a voice (first-seen order, the stereo position of its
run, a level from its rule, master gain ``1/√voices``), soNNify's loss into its tone, NaN into the alarm;
no I/O, no clock. Where the voices sound is a :class:`Sink`:

- :class:`BankSink` (offline, WAV on the event clock): straight into a :class:`~..sound.voices.VoiceBank`,
  a batch of values as array operations; it also keeps pitch tracks and step times for the spectrogram;
- :class:`QueueSink` (live): plain tuples into a deque on the receive thread (no numpy, no lock), coalesced
  by the engine link's feeder (newest value per voice) into one batch for the engine process.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..alarms.watch import spoken_label
from ..config import Config
from ..mapped import Mapped
from ..mapping.groups import band, groups_rule
from ..sound.maps import DEFAULT_FMIN, DEFAULT_OCTAVES, pan_gains, run_pan
from ..sound.seeds import SONNIFY_AMPLITUDE, SonnifyLoss
from ..sound.spectrum import decode_blob, spectrum_sound
from ..sound.speech import Announcer
from ..sound.voices import VoiceBank
from ..sound.wav import MAX_BYTES as MAX_WAV_BYTES
from ..wire.midi import DATA_MAX
from ..wire.protocol import Event
from .sine_focus import DEFAULT_BED_GAIN, Budget, Moves

DEFAULT_SAMPLE_RATE = 48_000
DEFAULT_BLOCK = 256
DEFAULT_GAIN = 0.5
DEFAULT_CC_GAIN = 0.15
#: Runs with up to this many voice groups sound them all over the whole pitch range; more get a band each.
SHARED_RANGE = 4
#: ``timbre`` preset: the fundamental whose partials the voice groups are.
TIMBRE_F0 = 110.0
#: Pitch-track points kept per voice (the spectrogram's overlay).
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
    focus: str = "budget"
    """``budget``: the loss, global norm and spotlight in front, the groups as a quiet bed, the rest silent
    (docs/sound.md); ``all``: every mapped stream a voice of its own, as before (also ``--preset everything``)."""
    bed_gain: float = DEFAULT_BED_GAIN
    max_wav_bytes: int = MAX_WAV_BYTES
    """Largest WAV file; the render goes on in numbered parts (``out.1.wav``) beyond it."""


class Sink(Protocol):
    """Where a :class:`VoiceTable`'s voices sound."""

    def add_voice(self, voice: int, pan: float, level: float, label: str, master: float) -> None: ...

    def norms(self, voices: list[int], norms: list[float]) -> None: ...

    def hz(self, voice: int, hz: float) -> None: ...

    def mute(self, voice: int) -> None: ...

    def master(self, gain: float) -> None: ...

    def partial(self, voice: int, hz: float, level: float) -> None: ...

    def alarm(self, kind: str, label: str) -> None: ...

    def spectrum(self, blob: bytes, pan: float) -> None: ...

    def step(self, step: int) -> None: ...


class VoiceTable:
    """Continuous and sonnify modes: mapped values → voice updates on a :class:`Sink` (see the module)."""

    def __init__(self, config: Config, opts: SineOptions, mode: str, sink: Sink, budget: bool = False) -> None:
        self.rules = config.mappings
        # Grouped note rules of runs with many groups: each group in its own pitch band, so no two share a
        # pitch; up to SHARED_RANGE groups share the whole range (the same pitch means the same norm).
        self.grouped = tuple(groups_rule(r.voice_key, r.voices, config.groups) for r in config.mappings)
        self.banded = tuple(r.target == "note" and g for r, g in zip(config.mappings, self.grouped, strict=True))
        self.opts = opts
        self.mode = mode
        self.sink = sink
        self.voices: dict[tuple[Any, ...], int] = {}
        """Sounding voices: key → voice index (indices are never reused: the bank's slot may still fade)."""
        self.voice_run: dict[int, str] = {}
        self.allocated = 0
        self.runs: dict[str, int] = {}
        self.loss = SonnifyLoss()
        self.alarms = 0
        self.speak = config.alarms.speak
        self.budget = Budget(self.rules, self.banded, opts.gain, opts.bed_gain) if budget and mode == "continuous" \
            else None
        """The foreground budget (docs/sound.md); ``None``: every stream a voice of its own."""
        self.weight: dict[int, float] = {}

    def pan(self, run: str) -> float:
        """Stereo position per run, in first-seen order."""
        i = self.runs.get(run)
        if i is None:
            i = self.runs[run] = len(self.runs)
        return run_pan(i)

    def voice(self, key: tuple[Any, ...], run: str, level: float, label: str) -> int:
        v = self.voices.get(key)
        if v is None:
            v = self.voices[key] = self.allocated
            self.allocated += 1
            self.voice_run[v] = run
            self.weight[v] = (level / self.opts.gain) ** 2 if self.budget is not None and self.opts.gain > 0 else 1.0
            self.sink.add_voice(v, self.pan(run), level, label, self.master_gain())
        return v

    def master_gain(self) -> float:
        """``1/√voices``; under the budget the quiet bed counts by its power, so it does not push the front down."""
        return 1.0 / math.sqrt(max(1.0, sum(self.weight.get(v, 1.0) for v in self.voices.values())))

    def release_run(self, run: str) -> None:
        """The run ended: its voices fade out (one block's gain ramp) and leave the mix."""
        gone = [k for k, v in self.voices.items() if self.voice_run.get(v) == run]
        for k in gone:
            v = self.voices.pop(k)
            del self.voice_run[v]
            self.weight.pop(v, None)
            self.sink.mute(v)
        if self.budget is not None:
            self.budget.release_run(run)
        if gone and self.voices:
            self.sink.master(self.master_gain())

    def silence(self, rule: int, run: str) -> None:
        """``rule`` turned non-finite in ``run``: its groups (and the spotlight) fall silent until finite again."""
        if not self.grouped[rule]:
            return  # a stream of its own: its NaN mutes its voice (_signal)
        for key, v in self.voices.items():
            if key[0] == rule and self.voice_run.get(v) == run:
                self.sink.mute(v)
        spot = self.voices.get(("spotlight", run))
        if spot is not None:
            self.sink.mute(spot)

    def move(self, moves: Moves) -> None:
        """Groups brought forward or sent back (:class:`.sine_focus.Budget`): silence and sound at once."""
        mute, sound = moves
        for k in mute:
            v = self.voices.get(k)
            if v is not None:
                self.sink.mute(v)
        if sound:
            vs = [self.voice(key, str(key[-1][0]) if isinstance(key[-1], tuple) else "", level, label)
                  for key, label, level, _ in sound]
            self.sink.norms(vs, [unit for *_, unit in sound])

    def _new_voice(self, key: tuple[Any, ...], m: Mapped) -> int:
        """Note rules are the melody; CC rules (loss, weight stats) quieter voices of their own."""
        rule = self.rules[m.rule]
        if rule.target == "note":
            return self.voice(key, m.run, self.opts.gain * rule.velocity / DATA_MAX, "/".join(m.stream))
        return self.voice(key, m.run, self.opts.cc_gain, f"{m.rule_name or m.rule}:{'/'.join(m.stream)}")

    def _alarm(self, key: tuple[Any, ...] | None, loud: bool, kind: str = "nan", label: str = "") -> None:
        v = self.voices.get(key) if key is not None else None
        if v is not None:
            self.sink.mute(v)  # the value is unknown: that voice falls silent
            front = self.voices.get(("forward", *key)) if key is not None else None
            if front is not None:
                self.sink.mute(front)  # brought forward: that voice too
            if self.budget is not None and key is not None and self.budget.holds(key):
                self.sink.mute(self.voices.get(("spotlight", self.voice_run[v]), v))  # and its spotlight
        if loud:
            self.alarms += 1
            self.sink.alarm(kind, label)

    def _signal(self, m: Mapped) -> None:
        if m.tick:
            self.sink.alarm(m.kind, "")
            return
        label = spoken_label(m.rule_name, m.run, m.kind, m.step) if self.speak else ""
        # A NaN mutes its voice; the detectors' alarms (rule -1) leave the voices alone.
        self._alarm((m.rule, m.stream) if m.rule >= 0 else None, bool(m.midi), m.kind, label)

    def apply(self, event: Event | None, mapped: Sequence[Mapped]) -> None:
        if event is not None:
            if event.kind == "step" and event.values:
                self.sink.step(int(event.values[0]))
            elif event.kind == "activation_spectrum" and event.blob and self.opts.spectra and self.mode != "sonnify":
                self.sink.spectrum(event.blob, self.pan(event.run))
            if self.mode == "sonnify":
                self._sonnify(event)
        if not mapped:
            return
        if self.mode == "sonnify":  # the loss sings alone; alarms and ticks still sound
            for m in mapped:
                if m.norm != m.norm and (m.tick or m.rule < 0):
                    self._signal(m)
            return
        vs: list[int] = []
        ns: list[float] = []
        get = self.voices.get
        for m in mapped:
            norm = m.norm
            if norm != norm:  # an alarm or tick (values before it land first, so the alarm wins over them)
                if vs:
                    self.sink.norms(vs, ns)
                    vs, ns = [], []
                self._signal(m)
                continue
            if self.budget is not None:
                for key, label, level, unit in self.budget.place(m):
                    v = get(key)
                    vs.append(self.voice(key, m.run, level, label) if v is None else v)
                    ns.append(unit)
                continue
            key = (m.rule, m.stream)
            v = get(key)
            if self.mode == "timbre" and m.rule >= 0 and self.banded[m.rule]:
                self._partial(key, m, v)
                continue
            vs.append(self._new_voice(key, m) if v is None else v)
            banded = m.groups > SHARED_RANGE and m.rule >= 0 and self.banded[m.rule]
            ns.append(band(norm, m.voice, m.groups) if banded else norm)
        if vs:
            self.sink.norms(vs, ns)

    def _partial(self, key: tuple[Any, ...], m: Mapped, v: int | None) -> None:
        """``timbre``: group ``g`` is partial ``g+1`` of :data:`TIMBRE_F0`, its norm the partial's level."""
        if v is None:
            v = self.voice(key, m.run, 0.0, f"partial {m.voice + 1}: {'/'.join(m.stream)}")
        level = self.opts.gain * min(max(m.norm, 0.0), 1.0) / (m.voice + 1) ** 0.5
        self.sink.partial(v, TIMBRE_F0 * (m.voice + 1), level)

    def _sonnify(self, ev: Event) -> None:
        hz = self.loss.hz(ev)
        if hz is None:
            return
        key = ("sonnify", ev.run)
        if hz != hz:
            self._alarm(key, True)
            return
        self.sink.hz(self.voice(key, ev.run, SONNIFY_AMPLITUDE, f"{ev.run} loss"), hz)


class BankSink:
    """Offline: voices in a :class:`VoiceBank` in this process, plus pitch tracks and step times."""

    def __init__(self, opts: SineOptions, sample_rate: int, block: int, max_freq: float, *,
                 keep_tracks: bool = True) -> None:
        self.keep_tracks = keep_tracks
        """Keep pitch tracks and step times (``trainsound render``'s spectrogram); a bridge does not."""
        self.fmin, self.octaves, self.spectra = opts.fmin, opts.octaves, opts.spectra
        self.bank = VoiceBank(sample_rate, block, max_freq=max_freq)
        self.announcer = Announcer(self.bank)
        self.alarm_times: list[tuple[float, str]] = []
        """``(seconds, kind)`` of every alarm and tick played (offline)."""
        self._levels = np.zeros(0)
        self.labels: list[str] = []
        self._tracks: list[tuple[float, np.ndarray, np.ndarray]] = []
        self._track_points = 0
        self.steps: list[tuple[float, int]] = []

    def add_voice(self, voice: int, pan: float, level: float, label: str, master: float) -> None:
        self.bank.add_voice(pan)
        self.bank.set_master(master)
        self._levels = np.append(self._levels, level)
        self.labels.append(label)

    def norms(self, voices: list[int], norms: list[float]) -> None:
        self._set(voices, self.fmin * np.exp2(self.octaves * np.clip(np.array(norms), 0.0, 1.0)))

    def hz(self, voice: int, hz: float) -> None:
        self._set([voice], np.array([hz]))

    def _set(self, voices: list[int], hz: np.ndarray) -> None:
        va = np.array(voices, np.intp)
        self.bank.set_many(va, hz, self._levels[va])
        if self.keep_tracks and self._track_points < TRACK_POINTS * max(1, len(self.labels)):
            self._tracks.append((self.bank.now / self.bank.sr, va, hz))
            self._track_points += len(va)

    def mute(self, voice: int) -> None:
        self.bank.set(voice, gain=0.0)

    def master(self, gain: float) -> None:
        self.bank.set_master(gain)

    def partial(self, voice: int, hz: float, level: float) -> None:
        self.bank.set(voice, freq=hz, gain=level)
        if self.keep_tracks and self._track_points < TRACK_POINTS * max(1, len(self.labels)):
            self._tracks.append((self.bank.now / self.bank.sr, np.array([voice], np.intp), np.array([hz])))
            self._track_points += 1

    def alarm(self, kind: str, label: str) -> None:
        self.alarm_times.append((self.bank.now / self.bank.sr, kind))
        self.announcer.announce(kind, label)

    def spectrum(self, blob: bytes, pan: float) -> None:
        x = spectrum_sound(decode_blob(blob), self.bank.sr)
        if x.any():
            self.bank.play(np.outer(x, pan_gains(pan)).astype(np.float32))

    def step(self, step: int) -> None:
        if self.keep_tracks:
            self.steps.append((self.bank.now / self.bank.sr, step))

    @property
    def tracks(self) -> dict[str, list[tuple[float, float]]]:
        """Per-voice pitch tracks ``label → [(seconds, Hz)]``."""
        out: dict[str, list[tuple[float, float]]] = {}
        for t, va, hz in self._tracks:
            for v, h in zip(va.tolist(), hz.tolist(), strict=True):
                tr = out.setdefault(self.labels[v], [])
                if len(tr) < TRACK_POINTS:
                    tr.append((t, h))
        return out


class QueueSink:
    """Live: voice updates queued as plain tuples for the engine process (see the module docstring).

    Values are ``(voice, hz, level)``; controls are tuples whose first item is a string.
    """

    def __init__(self, opts: SineOptions, queue: deque[tuple[Any, ...]]) -> None:
        self.fmin, self.octaves = opts.fmin, opts.octaves
        self.queue = queue
        self.levels: list[float] = []

    def add_voice(self, voice: int, pan: float, level: float, label: str, master: float) -> None:
        self.levels.append(level)
        self.queue.append(("voice", voice, pan))
        self.queue.append(("master", master))

    def norms(self, voices: list[int], norms: list[float]) -> None:
        fmin, octaves, levels, append = self.fmin, self.octaves, self.levels, self.queue.append
        for v, n in zip(voices, norms, strict=True):
            append((v, fmin * 2.0 ** (octaves * min(max(n, 0.0), 1.0)), levels[v]))

    def hz(self, voice: int, hz: float) -> None:
        self.queue.append((voice, hz, self.levels[voice]))

    def mute(self, voice: int) -> None:
        self.queue.append((voice, math.nan, 0.0))

    def master(self, gain: float) -> None:
        self.queue.append(("master", gain))

    def partial(self, voice: int, hz: float, level: float) -> None:
        self.queue.append((voice, hz, level))

    def alarm(self, kind: str, label: str) -> None:
        self.queue.append(("alarm", kind, label))

    def spectrum(self, blob: bytes, pan: float) -> None:
        self.queue.append(("spectrum", blob, pan))

    def step(self, step: int) -> None:
        """Live audio keeps no step times."""


def take_batch(queue: deque[tuple[Any, ...]], mode: str) -> tuple[Any, ...] | None:
    """What the feeder sends the engine: everything queued since the last feed, values coalesced (the newest
    per voice); ``None`` if nothing was queued."""
    controls: list[tuple[Any, ...]] = []
    values: dict[int, tuple[float, float]] = {}
    pop = queue.popleft
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
        return None
    if mode == "perone":
        return ("perone", [c[1:] for c in controls])
    voices = np.fromiter(values.keys(), np.intp, len(values))
    hz_gain = np.array(list(values.values()), np.float64).reshape(-1, 2)
    return ("batch", controls, voices, hz_gain[:, 0].copy(), hz_gain[:, 1].copy())
