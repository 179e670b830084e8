"""pyo on the sound side: patches loaded by name or path, a host that keeps a failing patch from taking
anything down, and pyo's servers — the live engine process and the offline renderer.

pyo is imported only here, and only when a server is booted. Hook calls arrive as plain data
(:data:`Call`), so nothing here knows about events or the mapping.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...bridge.errors import OutputUnavailable
from ...bridge.sound.engine import child_signals, say_closed, serve_child

log = logging.getLogger(__name__)

PATCH_PACKAGE = "trainsound.patches.pyo"
BUILTIN_PATCHES: tuple[str, ...] = ("loss_sine", "weight_ensemble", "grad_chord", "activation_spectra")
#: WAV sample type for pyo's recorder: 1 = 24-bit integer PCM (what every player reads).
WAV_SAMPLETYPE = 1
#: A hook call as it travels to the patch: (hook name, positional args); plain data, cheap to pickle.
Call = tuple[str, tuple[Any, ...]]

DEFAULT_PATCH = "grad_chord"
DEFAULT_SAMPLE_RATE = 48_000
DEFAULT_BUFFER_SIZE = 256
DEFAULT_CHANNELS = 2
DEFAULT_JACK_NAME = "trainsound"


@dataclass(frozen=True)
class PyoOptions:
    """What a pyo server plays and how (the ``[pyo]`` config table; CLI flags override it)."""

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


def _patch_class(module: Any, where: str) -> type:
    from .base import Patch

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
        from .base import Value, WeightStats

        p = self.patch
        if p is None:
            return
        hook = "?"
        try:
            for hook, args in calls:
                if hook in ("on_spectrum", "on_weight_units"):  # float32 blobs; NaN anywhere is the alarm
                    mags = np.frombuffer(args[2], dtype="<f4")
                    if np.isfinite(mags).all():
                        getattr(p, hook)(args[0], args[1], mags)
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


def import_pyo() -> Any:
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


def engine_main(conn: Any, opts: PyoOptions) -> None:
    """The pyo engine process (spawned by :class:`.engine.EngineLink`): boots pyo, builds the patch, runs the
    hook calls the bridge sends (``("calls", [Call, …])``) before each audio block."""
    child_signals()
    try:
        pyo = import_pyo()
        patch_cls = load_patch(opts.patch)
        server = _boot_live(pyo, opts)
    except Exception as err:
        conn.send(("error", str(err)))
        return
    failures: deque[tuple[str, str, str]] = deque()
    host = PatchHost(patch_cls, server, dict(opts.options), lambda hook, tb: failures.append(("failed", hook, tb)))
    pending: deque[Sequence[Call]] = deque()

    def apply() -> None:
        # pyo calls this before each block, in its audio thread: the patch changes between blocks,
        # never while pyo computes one (the same path as offline rendering).
        try:
            while True:
                host.run(pending.popleft())
        except IndexError:
            pass

    def report() -> None:
        while failures:  # reported from here: the audio thread must not write to the pipe
            conn.send(failures.popleft())

    def handle(msg: tuple[Any, ...]) -> None:
        if msg[0] == "calls":
            pending.append(msg[1])

    server.setCallback(apply)
    try:
        serve_child(conn, ("ready", int(server.getSamplingRate())), handle, idle=report)
    finally:
        host.close()
        if opts.wav:
            server.recstop()
        server.stop()
        server.shutdown()
    say_closed(conn)


def render_offline(opts: PyoOptions, patch_cls: type, t0: float, duration: float,
                   calls_due: Callable[[float], list[Call]], on_fail: Callable[[str, str], None]) -> None:
    """Render ``duration`` seconds of a patch into ``opts.wav`` on pyo's offline server.

    Before each block pyo asks ``calls_due(t)`` for the hook calls due by the block's start ``t``
    (``t0`` + the block's time), so the file keeps the session's timing whatever the machine's speed.
    """
    assert opts.wav is not None
    pyo = import_pyo()
    s = pyo.Server(sr=opts.sample_rate, nchnls=opts.channels, duplex=0, audio="offline", buffersize=opts.buffer_size)
    s.setVerbosity(1)
    s.deactivateMidi()
    s.boot()
    if not s.getIsBooted():
        raise OutputUnavailable("pyo could not boot its offline server")
    try:
        s.recordOptions(dur=duration, filename=str(opts.wav), fileformat=0, sampletype=WAV_SAMPLETYPE)
        host = PatchHost(patch_cls, s, dict(opts.options), on_fail)
        block = opts.buffer_size / float(opts.sample_rate)
        blocks = [0]

        def feed() -> None:
            now = t0 + blocks[0] * block
            blocks[0] += 1
            calls = calls_due(now)
            if calls:
                host.run(calls)

        s.setCallback(feed)
        s.start()  # offline: blocks until `duration` is rendered
        host.close()
    finally:
        s.shutdown()
