"""The ``pyo`` output: a pyo patch played live by an engine process, or rendered offline to a WAV.

Live (``audio="jack"`` or ``"portaudio"``), :meth:`PyoOut.handle` only appends
``(event, mapped)`` to a bounded deque (the receive loop must stay lean, see
docs/architecture.md); the engine link's feeder thread drains it every few
milliseconds, keeps the newest value of each stream (:class:`Coalescer`) and
sends the resulting hook calls to the pyo engine process
(:func:`trainsound.patches.pyo.host.engine_main`), which runs pyo and the patch.

Offline (``audio="offline"``, the path of ``trainsound render --pyo-patch``, see
:func:`..render.render_pyo_session`),
``handle`` keeps the events with their times and :meth:`PyoOut.close` renders
them on pyo's offline server (:func:`trainsound.patches.pyo.host.render_offline`): before
each block, every event whose recorded time has come in pyo's sample clock is
fed, so the WAV has the session's timing exactly, whatever the machine's speed.

A patch that raises is logged once (with its name) and replaced by silence
(its gate closes); the bridge and its other outputs go on. pyo is imported only
when a server is booted.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from ...patches.pyo.host import (
    BUILTIN_PATCHES,
    DEFAULT_BUFFER_SIZE,
    DEFAULT_CHANNELS,
    DEFAULT_JACK_NAME,
    DEFAULT_PATCH,
    DEFAULT_SAMPLE_RATE,
    Call,
    PyoOptions,
    engine_main,
    load_patch,
    render_offline,
)
from ..config import Config, output_options
from ..errors import ConfigError, OutputUnavailable
from ..mapped import Mapped
from ..ratelog import MULTILINE
from ..sound.alarms import TICK_KINDS
from ..sound.engine import EngineLink
from ..sound.jackserver import jack_server_listening
from ..table import Table
from ..wire.protocol import Event, parse_event
from .base import BaseOutput

log = logging.getLogger(__name__)

AUDIO_CHOICES: tuple[str, ...] = ("jack", "portaudio", "offline")
#: Queue bound: ~10 s of a 10,000 values/s stream; beyond it items are counted as dropped.
QUEUE_MAX = 100_000
#: Offline: sound after the last event, so glides and the alarm finish (s).
OFFLINE_TAIL = 1.0
#: Offline bridge runs keep every event until close; a cap keeps a forgotten daemon from eating memory.
OFFLINE_MAX_EVENTS = 5_000_000
#: Live: how long the engine may take to finish (stop the patch, close the recording) before it is killed.
CLOSE_TIMEOUT = 5.0
#: How often a pyo output waiting for JACK looks for the server (one connect() on its socket).
JACK_CHECK_INTERVAL = 1.0


def section(t: Table) -> PyoOptions:
    """Validate the ``[pyo]`` table."""
    opts_raw = t.raw("options", {})
    if not isinstance(opts_raw, dict):
        raise ConfigError(f"{t.key('options')} must be a table, got {opts_raw!r}")
    wav = t.string("wav", "") or None
    dev_raw = t.raw("device", -1)
    if isinstance(dev_raw, bool) or not isinstance(dev_raw, int):
        raise ConfigError(f"{t.key('device')} must be an integer device index, got {dev_raw!r}")
    opts = PyoOptions(
        patch=t.string("patch", DEFAULT_PATCH),
        audio=t.string("audio", "jack", AUDIO_CHOICES),
        wav=wav,
        device=None if dev_raw < 0 else dev_raw,
        sample_rate=t.integer("sample_rate", DEFAULT_SAMPLE_RATE, 8_000, 384_000),
        buffer_size=t.integer("buffer_size", DEFAULT_BUFFER_SIZE, 16, 8192),
        channels=t.integer("channels", DEFAULT_CHANNELS, 1, 64),
        jack_name=t.string("jack_name", DEFAULT_JACK_NAME) or DEFAULT_JACK_NAME,
        jack_autoconnect=t.boolean("jack_autoconnect", True),
        options=dict(opts_raw),
    )
    t.finish()
    return opts


#: Event kind → the patch hook it calls.
_HOOKS = {
    "loss": "on_loss",
    "grad_norm": "on_grad_norm",
    "weight": "on_weights",
    "metric": "on_metric",
    "step": "on_step",
    "activation_spectrum": "on_spectrum",
    "weight_units": "on_weight_units",
}


class Coalescer:
    """Turns pipeline items into patch hook calls, keeping only the newest value per stream.

    Runs on the bridge side (pure Python, no pyo): what reaches the patch per
    feed is bounded by the number of streams, not by the message rate.
    Alarms are never coalesced away.
    """

    def __init__(self) -> None:
        self._latest: dict[tuple[str, str, str], Event] = {}
        self._values: dict[tuple[int, tuple[str, ...]], tuple[Event | None, Mapped]] = {}
        self._nans: dict[tuple[str, str], None] = {}
        self._signals: list[tuple[str, str, str, int]] = []
        self._ends: dict[str, None] = {}
        self.calls = 0
        self.alarms = 0

    def absorb(self, ev: Event | None, mapped: Sequence[Mapped]) -> None:
        """Take one pipeline item."""
        if ev is not None:
            if not ev.finite or (ev.kind == "event" and ev.name == "nan"):
                self._nans[(ev.run, ev.name or ev.kind)] = None
            elif ev.kind == "event" and ev.name == "end":
                self.end(ev.run)
            elif ev.kind != "event":
                self._latest[(ev.kind, ev.run, ev.name)] = ev
        for m in mapped:
            if m.norm != m.norm:
                if m.tick or (m.alarm and m.kind != "nan" and m.midi):  # NaN: on_nan, from the event above
                    self._signals.append((m.run, m.rule_name, m.kind, m.step))
                elif ev is None:
                    self._nans[(m.run, "/".join(m.stream))] = None
            else:
                self._values[(m.rule, m.stream)] = (ev, m)

    def end(self, run: str) -> None:
        """The run ended: its values pending here are dropped and the patch hears ``on_end`` last."""
        self._latest = {k: e for k, e in self._latest.items() if k[1] != run}
        self._values = {k: vm for k, vm in self._values.items() if vm[1].run != run}
        self._ends[run] = None

    def take(self) -> list[Call]:
        """The hook calls for everything absorbed since the last take (values, then alarms last)."""
        if not (self._latest or self._values or self._nans or self._signals or self._ends):
            return []
        calls: list[Call] = []
        for (kind, run, name), ev in self._latest.items():
            v = ev.values
            if kind in ("loss", "step"):
                calls.append((_HOOKS[kind], (run, int(v[0]) if kind == "step" else v[0])))
            elif kind in ("grad_norm", "metric"):
                calls.append((_HOOKS[kind], (run, name, v[0])))
            elif kind == "weight":
                calls.append(("on_weights", (run, name, v)))
            elif kind == "activation_spectrum" and ev.blob is not None:
                calls.append(("on_spectrum", (run, name, ev.blob)))
            elif kind == "weight_units" and ev.blob is not None:
                calls.append(("on_weight_units", (run, name, ev.blob)))
        for src, m in self._values.values():
            kind, name = (src.kind, src.name) if src is not None else ("", "")
            calls.append(("on_value", (m.run, kind, name, m.rule_name, m.stream, m.voice, m.norm, m.value)))
        for run, stream in self._nans:
            calls.append(("on_nan", (run, stream)))
        calls.extend(("on_alarm", sig) for sig in self._signals)
        calls.extend(("on_end", (run,)) for run in self._ends)
        self.alarms += len(self._nans) + sum(1 for sig in self._signals if sig[2] not in TICK_KINDS)
        self.calls += len(calls)
        self._latest, self._values, self._nans, self._signals, self._ends = {}, {}, {}, [], {}
        return calls


class PyoOut(BaseOutput):
    """Bridge output playing a pyo patch (see the module docstring).

    Args:
        config: the bridge config; its ``[pyo]`` table gives the defaults.
        patch: built-in patch name or path of a ``.py`` file.
        audio: ``"jack"``, ``"portaudio"`` or ``"offline"`` (render to ``wav`` on close).
        wav: offline: the WAV to write (required); live: also record to it.
        device: PortAudio output device index.
        **overrides: any other :class:`PyoOptions` field (``sample_rate``, ``options`` …).

    Raises:
        OutputUnavailable: pyo missing, unknown patch, or the audio device cannot be opened.
    """

    name = "pyo"
    silences = True

    def __init__(
        self,
        config: Config,
        patch: str | None = None,
        audio: str | None = None,
        wav: str | os.PathLike[str] | None = None,
        device: int | None = None,
        **overrides: Any,
    ) -> None:
        opts: PyoOptions = output_options(config, "pyo", PyoOptions())
        changes: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
        if patch is not None:
            changes["patch"] = patch
        if audio is not None:
            changes["audio"] = audio
        if wav is not None:
            changes["wav"] = os.fspath(wav)
        if device is not None:
            changes["device"] = device
        try:
            self.opts = opts = replace(opts, **changes)
        except TypeError as err:
            raise ConfigError(f"pyo output: {err}") from err
        if opts.audio not in AUDIO_CHOICES:
            raise ConfigError(f"pyo audio must be one of {', '.join(AUDIO_CHOICES)}; got {opts.audio!r}")
        if opts.audio == "offline" and not opts.wav:
            raise ConfigError("pyo audio 'offline' needs a WAV path (wav=...)")
        if importlib.util.find_spec("pyo") is None:
            raise OutputUnavailable("the pyo output needs pyo; install: pip install 'trainsound[pyo]'")
        self.patch_cls = load_patch(opts.patch)  # unknown patch: one clear error before anything starts
        self.label = f"{opts.patch!r}"
        self.queue: deque[tuple[Event | None, Sequence[Mapped]]] = deque()
        self.coalescer = Coalescer()
        self.fed = 0
        self.dropped = 0
        self.failed: str | None = None
        self.sample_rate = opts.sample_rate
        self._events: list[tuple[float, Event | None, Sequence[Mapped]]] = []
        self.link: EngineLink | None = None
        self.offline = opts.audio == "offline"
        self.waiting: str | None = None
        """Why the engine is not started yet (``waiting for JACK server``); it starts when JACK appears."""
        self._starter: threading.Thread | None = None
        self._next_check = 0.0
        if opts.audio == "jack":
            os.environ["JACK_NO_START_SERVER"] = "1"  # the engine inherits it: never spawn a jackd for pyo
            if not jack_server_listening():
                self.waiting = "waiting for JACK server (none running)"
                log.warning("pyo: %s; the patch starts when it appears (logged once)", self.waiting)
                return
        if not self.offline:
            self._start_engine()

    def _start_engine(self) -> None:
        self.link = EngineLink("pyo", engine_main, (self.opts,), take=self._take, on_message=self._from_engine)
        self.sample_rate = self.link.ready[0]
        self.waiting = None
        log.info("pyo output: patch %s on %s audio at %d Hz", self.label, self.opts.audio, self.sample_rate)

    def _start_when_jack_is_there(self) -> None:
        """The waiting engine's start, off the receive thread (booting pyo takes a moment)."""
        try:
            self._start_engine()
        except OutputUnavailable as err:
            self.waiting = f"waiting for JACK server ({err})"

    def _tick(self, now: float) -> None:
        if self.waiting is None or (self._starter is not None and self._starter.is_alive()):
            return
        wall = time.monotonic()
        if wall >= self._next_check:
            self._next_check = wall + JACK_CHECK_INTERVAL
            if jack_server_listening():
                self._starter = threading.Thread(target=self._start_when_jack_is_there, name="trainsound-pyo-start",
                                                 daemon=True)
                self._starter.start()

    # -- live (feeder thread) ----------------------------------------------------------
    def _take(self) -> tuple[Any, ...] | None:
        pop, absorb = self.queue.popleft, self.coalescer.absorb
        try:
            while True:
                absorb(*pop())
        except IndexError:
            pass
        calls = self.coalescer.take()
        return ("calls", calls) if calls else None

    def _from_engine(self, msg: tuple[Any, ...]) -> None:
        if msg[0] == "failed":
            _, hook, tb = msg
            self.failed = f"{hook}: {tb.strip().splitlines()[-1]}"
            log.error("pyo patch %s raised in %s; replaced by silence (the bridge goes on)\n%s", self.label, hook, tb,
                      extra=MULTILINE)  # the patch's own traceback, kept readable

    # -- Output protocol ---------------------------------------------------------
    def _release_run(self, run: str, now: float) -> None:
        """Ended or idle: the patch hears ``on_end(run)`` in order with the run's values (one per feed)."""
        self._handle(parse_event(f"/nn/{run}/event", ("end",), now, b""), ())

    def _handle(self, event: Event | None, mapped: Sequence[Mapped]) -> None:
        """Queue the item for the feeder (live) or the renderer (offline); O(1), never blocks."""
        if self.offline:
            if len(self._events) >= OFFLINE_MAX_EVENTS:
                self.dropped += 1
                if self.dropped == 1:
                    log.warning("pyo offline: over %d events kept for rendering; dropping the rest", OFFLINE_MAX_EVENTS)
                return
            t = event.t if event is not None else (mapped[0].t if mapped else math.nan)
            self._events.append((t, event, mapped))
            self.fed += 1
            return
        if len(self.queue) >= QUEUE_MAX:
            self.dropped += 1
            return
        self.queue.append((event, mapped))
        self.fed += 1

    def _close(self) -> None:
        """Silence the patch and stop pyo (offline: render the WAV first)."""
        if self.offline:
            self._render()
            return
        if self._starter is not None:
            self._starter.join(timeout=CLOSE_TIMEOUT)
        if self.link is not None:
            self.link.close(timeout=CLOSE_TIMEOUT)

    def health(self) -> dict[str, Any]:
        failed = self.failed or (self.link.failed if self.link is not None else None)
        h: dict[str, Any] = {
            "ok": failed is None and self.waiting is None,
            "patch": self.opts.patch,
            "audio": self.opts.audio,
            "fed": self.fed,
            "queued": len(self._events) if self.offline else len(self.queue),
            "dropped": self.dropped,
            "patch_calls": self.coalescer.calls,
            "alarms": self.coalescer.alarms,
            "failed": failed,
        }
        if self.waiting is not None:
            h["why"] = self.waiting
        elif failed is not None:
            h["why"] = f"pyo failed: {failed}"
        return h

    # -- offline ---------------------------------------------------------------
    def _render(self) -> None:
        events = sorted((e for e in self._events if e[0] == e[0]), key=lambda e: e[0])
        self._events = []
        t0 = events[0][0] if events else 0.0
        dur = (events[-1][0] - t0 if events else 0.0) + OFFLINE_TAIL
        co = self.coalescer
        nxt = [0]

        def calls_due(now: float) -> list[Call]:
            i = nxt[0]
            while i < len(events) and events[i][0] <= now:
                co.absorb(events[i][1], events[i][2])
                i += 1
            nxt[0] = i
            return co.take()

        render_offline(self.opts, self.patch_cls, t0, dur, calls_due, lambda hook, tb: self._from_engine(
            ("failed", hook, tb)))
        log.info("pyo offline: rendered %.1f s of patch %s to %s", dur, self.label, self.opts.wav)


def builtin_patches() -> Iterable[str]:
    """Names accepted by ``--pyo-patch`` besides file paths."""
    return BUILTIN_PATCHES
