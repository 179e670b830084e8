"""The ``pyo`` output: a pyo server run by the bridge playing a patch, live or offline to a WAV.

Live (``audio="jack"`` or ``"portaudio"``), :meth:`PyoOut.handle` only appends
``(event, mapped)`` to a bounded deque (the receive loop must stay lean, see
docs/architecture.md); a small feeder thread drains it every few milliseconds,
keeps the newest value of each stream (:class:`Coalescer`) and sends the
resulting hook calls down a pipe to the pyo engine: a child process of the
bridge that runs pyo and the patch (:class:`PatchHost`). It is a process, not a
thread, because pyo's audio callback takes the GIL every block: sharing a GIL
with a busy receive loop caused JACK xruns (measured in bench/bench_pyo.py).

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

import contextlib
import importlib
import importlib.util
import inspect
import logging
import math
import os
import signal
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Sequence
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
#: Live: how long the engine process may take to boot pyo and the patch (s).
STARTUP_TIMEOUT = 30.0
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


#: Event kind → the patch hook it calls.
_HOOKS = {
    "loss": "on_loss",
    "grad_norm": "on_grad_norm",
    "weight": "on_weights",
    "metric": "on_metric",
    "step": "on_step",
    "activation_spectrum": "on_spectrum",
}
#: A hook call as it travels to the patch: (hook name, positional args); plain data, cheap to pickle.
Call = tuple[str, tuple[Any, ...]]


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
        self.calls = 0
        self.alarms = 0

    def absorb(self, ev: Event | None, mapped: Sequence[Mapped]) -> None:
        """Take one pipeline item."""
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

    def take(self) -> list[Call]:
        """The hook calls for everything absorbed since the last take (values, then alarms last)."""
        if not (self._latest or self._values or self._nans):
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
        for src, m in self._values.values():
            kind, name = (src.kind, src.name) if src is not None else ("", "")
            calls.append(("on_value", (m.run, kind, name, m.rule_name, m.stream, m.voice, m.norm, m.value)))
        for run, stream in self._nans:
            calls.append(("on_nan", (run, stream)))
        self.alarms += len(self._nans)
        self.calls += len(calls)
        self._latest, self._values, self._nans = {}, {}, {}
        return calls


class PatchHost:
    """Builds one patch and calls its hooks; a patch that raises is silenced, never propagated.

    Lives where pyo runs: in the engine process live, in the rendering process offline.

    Args:
        patch_cls: the patch class.
        server: the running pyo server.
        options: patch keyword options.
        on_fail: called once with ``(hook, traceback_text)`` when the patch raises.
    """

    def __init__(
        self, patch_cls: type, server: Any, options: dict[str, Any], on_fail: Callable[[str, str], None]
    ) -> None:
        self.patch: Any = None
        self.failed: str | None = None
        self._dead: Any = None
        self._on_fail = on_fail
        try:
            self.patch = patch_cls(server, **options)
        except Exception as err:
            self._fail("__init__", err)

    def run(self, calls: Sequence[Call]) -> None:
        from ...patches.pyo.base import Value, WeightStats

        p = self.patch
        if p is None:
            return
        hook = "?"
        try:
            for hook, args in calls:
                if hook == "on_spectrum":
                    mags = np.frombuffer(args[2], dtype="<f4")
                    if np.isfinite(mags).all():
                        p.on_spectrum(args[0], args[1], mags)
                    else:
                        hook = "on_nan"
                        p.on_nan(args[0], args[1])
                elif hook == "on_weights":
                    p.on_weights(args[0], args[1], WeightStats(*args[2]))
                elif hook == "on_value":
                    p.on_value(Value(*args))
                else:
                    getattr(p, hook)(*args)
        except Exception as err:
            self._fail(hook, err)

    def _fail(self, hook: str, err: BaseException) -> None:
        self.failed = f"{hook}: {type(err).__name__}: {err}"
        p, self.patch = self.patch, None
        # Keep the failed patch referenced until close: pyo cuts unreferenced objects at once (a click).
        self._dead = p
        gate = getattr(p, "gate", None)
        try:
            gate.value = 0.0  # type: ignore[union-attr]
        except Exception:  # no gate (super().__init__ not called, or broken): stop its objects outright
            if p is not None:
                self._close(p)
        self._on_fail(hook, "".join(traceback.format_exception(err)))

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


def _boot_live(pyo: Any, o: PyoOptions) -> Any:
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
    if o.wav:
        s.recordOptions(filename=o.wav, fileformat=0, sampletype=WAV_SAMPLETYPE)
        s.recstart()
    return s


def _engine_main(conn: Any, opts: PyoOptions) -> None:
    """The pyo engine process: boots pyo, builds the patch, runs hook calls sent by the bridge.

    pyo's audio callback takes the GIL every block; in its own process it never
    waits for the bridge's receive loop (in one process, a busy Python thread
    caused JACK xruns: bench/bench_pyo.py).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the bridge decides
    try:
        pyo = _import_pyo()
        patch_cls = load_patch(opts.patch)
        server = _boot_live(pyo, opts)
    except Exception as err:
        conn.send(("error", str(err)))
        return
    failures: deque[tuple[str, str, str]] = deque()
    host = PatchHost(patch_cls, server, dict(opts.options), lambda hook, tb: failures.append(("failed", hook, tb)))
    pending: deque[list[Call]] = deque()

    def apply() -> None:
        # pyo calls this before each block, in its audio thread: the patch changes between blocks,
        # never while pyo computes one (the same path as offline rendering).
        try:
            while True:
                host.run(pending.popleft())
        except IndexError:
            pass

    server.setCallback(apply)
    conn.send(("ready", int(server.getSamplingRate())))
    try:
        while True:
            while failures:  # reported from here: the audio thread must not write to the pipe
                conn.send(failures.popleft())
            if not conn.poll(0.05):  # waits without the GIL: pyo's callback runs freely
                continue
            msg = conn.recv()
            if msg[0] == "calls":
                pending.append(msg[1])
            elif msg[0] == "close":
                break
    except (EOFError, OSError):  # the bridge went away
        pass
    finally:
        host.close()
        if opts.wav:
            server.recstop()
        server.stop()
        server.shutdown()


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
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc: Any = None
        self._conn: Any = None
        self._closed = False
        if opts.audio != "offline":
            self._start_live()

    # -- live ----------------------------------------------------------------
    def _start_live(self) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # no fork of a threaded bridge
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_engine_main, args=(child, self.opts), name="trainsound-pyo", daemon=True)
        self._proc.start()
        child.close()
        if not self._conn.poll(STARTUP_TIMEOUT):
            self._kill()
            raise OutputUnavailable(f"pyo engine did not start within {STARTUP_TIMEOUT:.0f} s")
        try:
            msg = self._conn.recv()
        except EOFError:
            msg = ("error", f"pyo engine exited at start (exit code {self._proc.exitcode})")
        if msg[0] != "ready":
            self._kill()
            raise OutputUnavailable(msg[1])
        self.sample_rate = msg[1]
        self._thread = threading.Thread(target=self._feed_loop, name="trainsound-pyo-feed", daemon=True)
        self._thread.start()
        log.info("pyo output: patch %s on %s audio at %d Hz", self.label, self.opts.audio, self.sample_rate)

    def _kill(self, timeout: float = 1.0) -> None:
        if self._proc is not None:
            self._proc.join(timeout)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5.0)
        if self._conn is not None:
            self._conn.close()

    def _feed_loop(self) -> None:
        while not self._stop.wait(FEED_INTERVAL):
            if not self._feed_once():
                return
        self._feed_once()

    def _feed_once(self) -> bool:
        pop, absorb = self.queue.popleft, self.coalescer.absorb
        try:
            while True:
                absorb(*pop())
        except IndexError:
            pass
        calls = self.coalescer.take()
        try:
            if calls:
                self._conn.send(("calls", calls))
            while self._conn.poll():
                self._from_engine(self._conn.recv())
        except (EOFError, OSError):
            if self.failed is None:
                self.failed = f"pyo engine process exited (code {self._proc.exitcode})"
                log.error("pyo output: %s; the bridge goes on without it", self.failed)
            return False
        return True

    def _from_engine(self, msg: tuple[Any, ...]) -> None:
        if msg[0] == "failed":
            _, hook, tb = msg
            self.failed = f"{hook}: {tb.strip().splitlines()[-1]}"
            log.error("pyo patch %s raised in %s; replaced by silence (the bridge goes on)\n%s", self.label, hook, tb)

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
        """Nothing periodic: the feeder thread and the engine process do the work."""

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
        with contextlib.suppress(OSError):  # the engine may be gone already
            self._conn.send(("close",))
        self._kill(timeout=5.0)

    def health(self) -> dict[str, Any]:
        return {
            "ok": self.failed is None,
            "patch": self.opts.patch,
            "audio": self.opts.audio,
            "fed": self.fed,
            "queued": len(self.queue) if self.opts.audio != "offline" else len(self._events),
            "dropped": self.dropped,
            "patch_calls": self.coalescer.calls,
            "alarms": self.coalescer.alarms,
            "failed": self.failed,
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
        pyo = _import_pyo()
        s = pyo.Server(sr=o.sample_rate, nchnls=o.channels, duplex=0, audio="offline", buffersize=o.buffer_size)
        s.setVerbosity(1)
        s.deactivateMidi()
        s.boot()
        if not s.getIsBooted():
            raise OutputUnavailable("pyo could not boot its offline server")
        try:
            s.recordOptions(dur=dur, filename=str(o.wav), fileformat=0, sampletype=WAV_SAMPLETYPE)
            host = PatchHost(self.patch_cls, s, dict(o.options), self._offline_failed)
            co = self.coalescer
            block = o.buffer_size / float(o.sample_rate)
            state = {"block": 0, "next": 0}

            def feed() -> None:
                # Called by pyo before each block is computed: hand over what is due by the block's start.
                now = t0 + state["block"] * block
                state["block"] += 1
                i = state["next"]
                while i < len(events) and events[i][0] <= now:
                    co.absorb(events[i][1], events[i][2])
                    i += 1
                state["next"] = i
                calls = co.take()
                if calls:
                    host.run(calls)

            s.setCallback(feed)
            s.start()  # offline: blocks until `dur` is rendered
            host.close()
        finally:
            s.shutdown()
        log.info("pyo offline: rendered %.1f s of patch %s to %s", dur, self.label, o.wav)

    def _offline_failed(self, hook: str, tb: str) -> None:
        self._from_engine(("failed", hook, tb))


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
    for t, raw in iter_records(Path(session_path)):
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
