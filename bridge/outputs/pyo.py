"""The ``pyo`` output: a pyo server inside the bridge playing a patch, live or offline to a WAV.

Live (``audio="jack"`` or ``"portaudio"``), :meth:`PyoOut.handle` only appends
``(event, mapped)`` to a bounded deque (the receive loop must stay lean, see
docs/architecture.md); a small feeder thread drains it every few milliseconds,
keeps the newest value of each stream and calls the patch's hooks. pyo renders
audio in its own C thread.

Offline (``audio="offline"``, the path of ``trainsound render``), ``handle``
stores the events with their times and :meth:`PyoOut.close` renders them with
``Server(audio="offline")``: a per-block callback feeds every event whose
recorded time has come in pyo's sample clock, so the WAV has the session's
timing exactly, whatever the machine's speed.

A patch that raises is logged once (with its name) and replaced by silence
(its gate closes); the bridge and its other outputs go on. pyo is imported only
when the output is built.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import math
import os
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..config import Config, Table, default, output_options
from ..errors import ConfigError, OutputUnavailable
from ..mapping import Mapped
from ..protocol import Event

log = logging.getLogger(__name__)

Audio = Literal["jack", "portaudio", "offline"]
AUDIO_CHOICES: tuple[str, ...] = ("jack", "portaudio", "offline")
PATCH_PACKAGE = "trainsound.patches.pyo"
BUILTIN_PATCHES: tuple[str, ...] = ("loss_sine", "weight_ensemble", "grad_chord", "activation_spectra")

DEFAULT_PATCH = "grad_chord"
DEFAULT_SAMPLE_RATE = 48_000
DEFAULT_BUFFER_SIZE = 256
DEFAULT_CHANNELS = 2
DEFAULT_JACK_NAME = "trainsound"
#: How often the feeder thread hands queued values to the patch (s): well under a beat, a few blocks.
FEED_INTERVAL = 0.005
#: Queue bound: ~10 s of a 10,000 values/s stream; beyond it items are counted as dropped.
QUEUE_MAX = 100_000
#: Offline: sound after the last event, so glides and the alarm finish (s).
OFFLINE_TAIL = 1.0
#: Offline bridge runs keep every event until close; a cap keeps a forgotten daemon from eating memory.
OFFLINE_MAX_EVENTS = 5_000_000
#: WAV sample type for pyo's recorder: 1 = 24-bit integer PCM (what every player reads).
WAV_SAMPLETYPE = 1


@dataclass(frozen=True)
class PyoOptions:
    """The ``[pyo]`` config table (CLI flags override it)."""

    patch: str = DEFAULT_PATCH
    audio: str = "jack"
    wav: str | None = None
    """Live: also record the output to this WAV; offline: the file to render."""
    device: int | None = None
    """PortAudio output device index (``None``: the default device)."""
    sample_rate: int = DEFAULT_SAMPLE_RATE
    buffer_size: int = DEFAULT_BUFFER_SIZE
    channels: int = DEFAULT_CHANNELS
    jack_name: str = DEFAULT_JACK_NAME
    jack_autoconnect: bool = True
    """Connect pyo's JACK outputs to the system playback ports."""
    options: dict[str, Any] = field(default_factory=dict)
    """Keyword options for the patch (``[pyo.options]``)."""


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


# -- patches ---------------------------------------------------------------------
def _patch_class(module: Any, where: str) -> type:
    from ...patches.pyo.base import Patch

    cls = getattr(module, "PATCH", None)
    if cls is None:
        found = [
            c for _, c in inspect.getmembers(module, inspect.isclass)
            if issubclass(c, Patch) and c is not Patch and c.__module__ == module.__name__
        ]
        if len(found) != 1:
            raise OutputUnavailable(f"pyo patch {where} must define one Patch subclass or PATCH; found {len(found)}")
        cls = found[0]
    if not (isinstance(cls, type) and issubclass(cls, Patch)):
        raise OutputUnavailable(f"pyo patch {where}: PATCH is not a subclass of trainsound.patches.pyo.base.Patch")
    return cls


def load_patch(name_or_path: str) -> type:
    """The patch class for a built-in name (``loss_sine``) or a ``.py`` file path.

    Raises:
        OutputUnavailable: no such patch, or the module does not define one.
    """
    p = Path(name_or_path)
    if name_or_path.endswith(".py") or os.sep in name_or_path or "/" in name_or_path:
        if not p.is_file():
            raise OutputUnavailable(f"pyo patch file {name_or_path} does not exist")
        spec = importlib.util.spec_from_file_location(f"trainsound_user_patch_{p.stem}", p)
        if spec is None or spec.loader is None:
            raise OutputUnavailable(f"pyo patch file {name_or_path} cannot be imported")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            raise OutputUnavailable(f"pyo patch {name_or_path} failed to import: {type(err).__name__}: {err}") from err
        return _patch_class(module, name_or_path)
    if not name_or_path.isidentifier():
        raise OutputUnavailable(f"pyo patch name {name_or_path!r} is neither a built-in name nor a .py path")
    try:
        module = importlib.import_module(f"{PATCH_PACKAGE}.{name_or_path}")
    except ModuleNotFoundError as err:
        if err.name == f"{PATCH_PACKAGE}.{name_or_path}":
            raise OutputUnavailable(
                f"unknown pyo patch {name_or_path!r}; built-in: {', '.join(BUILTIN_PATCHES)} (or give a .py path)"
            ) from None
        raise OutputUnavailable(f"pyo patch {name_or_path!r} needs {err.name}: {err}") from err
    return _patch_class(module, name_or_path)


#: Event kind → the patch hook it calls (for error messages).
_HOOKS = {
    "loss": "on_loss",
    "grad_norm": "on_grad_norm",
    "weight": "on_weights",
    "metric": "on_metric",
    "step": "on_step",
    "activation_spectrum": "on_spectrum",
}


class PatchRunner:
    """Feeds one patch: coalesces queued items, calls hooks, survives the patch's failure.

    Not thread-safe: :meth:`absorb` and :meth:`flush` run on one thread (the
    feeder thread live, pyo's block callback offline).
    """

    def __init__(self, patch_cls: type, server: Any, options: dict[str, Any], label: str) -> None:
        self.label = label
        self.patch: Any = None
        self.failed: str | None = None
        self.calls = 0
        self.alarms = 0
        self._latest: dict[tuple[str, str, str], Event] = {}
        self._values: dict[tuple[int, tuple[str, ...]], tuple[Event | None, Mapped]] = {}
        self._nans: dict[tuple[str, str], None] = {}
        self._dead: Any = None
        try:
            self.patch = patch_cls(server, **options)
        except Exception as err:
            self._fail("__init__", err)

    def absorb(self, ev: Event | None, mapped: Sequence[Mapped]) -> None:
        """Take one pipeline item; only the newest value per stream survives until :meth:`flush`."""
        if ev is not None:
            if not ev.finite or (ev.kind == "event" and ev.name == "nan"):
                self._nans[(ev.run, ev.name or ev.kind)] = None
            elif ev.kind != "event":
                self._latest[(ev.kind, ev.run, ev.name)] = ev
        for m in mapped:
            if m.norm != m.norm:
                if ev is None:
                    self._nans[(m.run, "/".join(m.stream))] = None
            else:
                self._values[(m.rule, m.stream)] = (ev, m)

    def flush(self) -> None:
        """Call the patch's hooks with everything absorbed since the last flush."""
        if not (self._latest or self._values or self._nans):
            return
        latest, values, nans = self._latest, self._values, self._nans
        self._latest, self._values, self._nans = {}, {}, {}
        p = self.patch
        if p is None:
            return
        from ...patches.pyo.base import Value, WeightStats

        hook = "?"
        try:
            for (kind, run, name), ev in latest.items():
                hook = _HOOKS.get(kind, kind)
                v = ev.values
                if kind == "loss":
                    p.on_loss(run, v[0])
                elif kind == "grad_norm":
                    p.on_grad_norm(run, name, v[0])
                elif kind == "weight":
                    p.on_weights(run, name, WeightStats(*v))
                elif kind == "metric":
                    p.on_metric(run, name, v[0])
                elif kind == "step":
                    p.on_step(run, int(v[0]))
                elif kind == "activation_spectrum" and ev.blob is not None:
                    mags = np.frombuffer(ev.blob, dtype="<f4")
                    if np.isfinite(mags).all():
                        p.on_spectrum(run, name, mags)
                    else:
                        nans[(run, name)] = None
                self.calls += 1
            hook = "on_value"
            for ev, m in values.values():
                kind, name = (ev.kind, ev.name) if ev is not None else ("", "")
                p.on_value(Value(m.run, kind, name, m.rule_name, m.stream, m.voice, m.norm, m.value))
                self.calls += 1
            hook = "on_nan"
            for run, stream in nans:
                self.alarms += 1
                p.on_nan(run, stream)
        except Exception as err:
            self._fail(hook, err)

    def _fail(self, hook: str, err: BaseException) -> None:
        self.failed = f"{hook}: {type(err).__name__}: {err}"
        log.error("pyo patch %s raised in %s; replaced by silence (the bridge goes on)", self.label, hook, exc_info=err)
        p, self.patch = self.patch, None
        # Keep the failed patch referenced until close: pyo cuts unreferenced objects at once (a click).
        self._dead = p
        gate = getattr(p, "gate", None)
        if gate is not None:
            try:
                gate.value = 0.0
            except Exception:  # the patch broke its own gate: stop its objects outright
                self._close(p)

    @staticmethod
    def _close(p: Any) -> None:
        try:
            p.close()
        except Exception as err:
            log.warning("pyo patch close() raised: %s: %s", type(err).__name__, err)

    def close(self) -> None:
        """Close the patch (healthy or failed)."""
        for p in (self.patch, self._dead):
            if p is not None:
                self._close(p)
        self.patch = self._dead = None


def _import_pyo() -> Any:
    # pyo prints a paragraph about wxPython on import unless told which GUI toolkit to use.
    os.environ.setdefault("PYO_GUI_WX", "0")
    try:
        import pyo
    except ImportError as err:
        raise OutputUnavailable(f"the pyo output needs pyo ({err}); install: pip install 'trainsound[pyo]'") from err
    return pyo


class PyoOut:
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
        self._pyo = _import_pyo()
        self.patch_cls = load_patch(opts.patch)
        self.label = f"{opts.patch!r}"
        self.queue: deque[tuple[Event | None, Sequence[Mapped]]] = deque()
        self.fed = 0
        self.dropped = 0
        self.runner: PatchRunner | None = None
        self.server: Any = None
        self._events: list[tuple[float, Event | None, Sequence[Mapped]]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        if opts.audio != "offline":
            self._start_live()

    # -- live ----------------------------------------------------------------
    def _start_live(self) -> None:
        pyo, o = self._pyo, self.opts
        kwargs: dict[str, Any] = {"sr": o.sample_rate, "nchnls": o.channels, "duplex": 0, "buffersize": o.buffer_size}
        if o.audio == "jack":
            kwargs["jackname"] = o.jack_name
        s = pyo.Server(audio=o.audio, **kwargs)
        s.setVerbosity(1)  # errors only: pyo's warnings go to stdout, which is not ours to fill
        s.deactivateMidi()
        if o.audio == "jack":
            s.setJackAuto(False, o.jack_autoconnect)
        elif o.device is not None:
            s.setOutputDevice(o.device)
        s.boot()
        if not s.getIsBooted():
            s.shutdown()
            raise OutputUnavailable(f"pyo could not open {o.audio} audio (is a JACK server or sound card there?)")
        s.start()
        self.server = s
        if o.wav:
            s.recordOptions(filename=o.wav, fileformat=0, sampletype=WAV_SAMPLETYPE)
            s.recstart()
        self.runner = PatchRunner(self.patch_cls, s, dict(o.options), self.label)
        self._thread = threading.Thread(target=self._feed_loop, name="trainsound-pyo-feed", daemon=True)
        self._thread.start()
        log.info("pyo output: patch %s on %s audio at %d Hz", self.label, o.audio, s.getSamplingRate())

    def _feed_loop(self) -> None:
        q, runner = self.queue, self.runner
        assert runner is not None
        while not self._stop.wait(FEED_INTERVAL):
            self._drain(q, runner)
        self._drain(q, runner)

    @staticmethod
    def _drain(q: deque[tuple[Event | None, Sequence[Mapped]]], runner: PatchRunner) -> None:
        pop = q.popleft
        try:
            while True:
                runner.absorb(*pop())
        except IndexError:
            pass
        runner.flush()

    # -- Output protocol ---------------------------------------------------------
    def handle(self, event: Event | None, mapped: Sequence[Mapped]) -> None:
        """Queue the item for the feeder (live) or the renderer (offline); O(1), never blocks."""
        if self.opts.audio == "offline":
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

    def tick(self, now: float) -> None:
        """Nothing periodic: the feeder thread and pyo's audio thread do the work."""

    def close(self) -> None:
        """Stop feeding, silence the patch, stop pyo (offline: render the WAV first)."""
        if self._closed:
            return
        self._closed = True
        if self.opts.audio == "offline":
            self._render()
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        if self.runner is not None:
            self.runner.close()
        if self.server is not None:
            if self.opts.wav:
                self.server.recstop()
            self.server.stop()
            self.server.shutdown()
            self.server = None

    def health(self) -> dict[str, Any]:
        r = self.runner
        return {
            "ok": r is None or r.failed is None,
            "patch": self.opts.patch,
            "audio": self.opts.audio,
            "fed": self.fed,
            "queued": len(self.queue) if self.opts.audio != "offline" else len(self._events),
            "dropped": self.dropped,
            "alarms": r.alarms if r is not None else 0,
            "failed": r.failed if r is not None else None,
        }

    # -- offline ---------------------------------------------------------------
    def _render(self) -> None:
        o = self.opts
        assert o.wav is not None
        events = [e for e in self._events if e[0] == e[0]]
        events.sort(key=lambda e: e[0])
        self._events = []
        t0 = events[0][0] if events else 0.0
        dur = (events[-1][0] - t0 if events else 0.0) + OFFLINE_TAIL
        s = self._pyo.Server(sr=o.sample_rate, nchnls=o.channels, duplex=0, audio="offline", buffersize=o.buffer_size)
        s.setVerbosity(1)
        s.deactivateMidi()
        s.boot()
        if not s.getIsBooted():
            raise OutputUnavailable("pyo could not boot its offline server")
        try:
            s.recordOptions(dur=dur, filename=str(o.wav), fileformat=0, sampletype=WAV_SAMPLETYPE)
            runner = self.runner = PatchRunner(self.patch_cls, s, dict(o.options), self.label)
            block = o.buffer_size / float(o.sample_rate)
            state = {"block": 0, "next": 0}

            def feed() -> None:
                # Called by pyo before each block is computed: hand over what is due by the block's start.
                now = t0 + state["block"] * block
                state["block"] += 1
                i = state["next"]
                while i < len(events) and events[i][0] <= now:
                    runner.absorb(events[i][1], events[i][2])
                    i += 1
                state["next"] = i
                runner.flush()

            s.setCallback(feed)
            s.start()  # offline: blocks until `dur` is rendered
            runner.close()
        finally:
            s.shutdown()
        log.info("pyo offline: rendered %.1f s of patch %s to %s", dur, self.label, o.wav)


def render_session(
    session_path: str | os.PathLike[str],
    patch: str,
    wav_path: str | os.PathLike[str],
    *,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    config: Config | None = None,
    options: dict[str, Any] | None = None,
) -> None:
    """Render a session recording through a pyo patch into a WAV, on recorded time (no sound card).

    The recording goes through the same :class:`~trainsound.bridge.pipeline.Pipeline`
    as live traffic, so the patch sees what it would have seen in the bridge.

    Args:
        session_path: a session recording (``trainsound bridge --record``).
        patch: built-in patch name or ``.py`` path.
        wav_path: the WAV to write (24-bit PCM, ``channels`` of the ``[pyo]`` table, default 2).
        sample_rate: of the WAV.
        config: the bridge config (mapping rules, ``[pyo]`` table); default: built-in.
        options: patch options, overriding ``[pyo.options]``.

    Raises:
        OutputUnavailable: pyo missing or unknown patch.
        SessionFileError: the recording cannot be read.
    """
    from ..pipeline import Pipeline
    from ..session import iter_records

    cfg = config or default()
    extra: dict[str, Any] = {"sample_rate": sample_rate}
    if options is not None:
        extra["options"] = options
    out = PyoOut(cfg, patch=patch, audio="offline", wav=wav_path, **extra)
    pipe = Pipeline(cfg, [out])
    last: float | None = None
    for t, raw in iter_records(session_path):
        pipe.tick(t)
        pipe.feed_message(t, raw)
        last = t
    if last is not None:
        pipe.tick(last)
    # Rendering happens in close(); called directly so its errors reach the caller
    # (Pipeline.close logs an output's errors and goes on, right for live, wrong here).
    out.close()


def builtin_patches() -> Iterable[str]:
    """Names accepted by ``--pyo-patch`` besides file paths."""
    return BUILTIN_PATCHES
