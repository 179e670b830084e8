"""The pyo patch interface: subclass :class:`Patch`, override only the hooks you use.

A patch is a small Python module that defines one subclass of :class:`Patch`
(or names it ``PATCH = MyPatch``). The bridge's ``pyo`` output builds it once
the pyo server runs and then calls its hooks from one thread (never the
receive loop), coalesced: when values arrive faster than the patch is fed
(every few milliseconds live, every audio block offline), a hook sees only the
newest value of each stream. Alarms are never coalesced away.

Two kinds of hooks:

- **telemetry hooks** get the training values themselves, finite only:
  :meth:`Patch.on_step`, :meth:`Patch.on_loss`, :meth:`Patch.on_metric`,
  :meth:`Patch.on_grad_norm`, :meth:`Patch.on_weights`, :meth:`Patch.on_weight_units`,
  :meth:`Patch.on_spectrum`;
- :meth:`Patch.on_value` gets every value the bridge's mapping rules produced
  (``norm`` in 0..1, the same numbers MIDI and OSC out use), so a patch can
  follow the user's mapping config instead of its own scaling.

Any non-finite value (NaN, ±Inf, or a ``/nn/<run>/event nan``) calls
:meth:`Patch.on_nan` instead, whose default sounds :class:`Alarm`. The bridge's
fault detectors (spike, plateau, divergence, exploding, vanishing, dead) and
context ticks (epoch, lr) call :meth:`Patch.on_alarm`, whose default plays the
kind's earcon (docs/alarms.md) with the patch's voices ducked under it.

Sound must leave through :meth:`Patch.out`: it passes the bridge's gate, which
is how a patch that raises is replaced by silence. Keep every pyo object you
create referenced (an attribute of the patch): pyo silently drops
unreferenced objects.

Minimal example::

    from trainsound.patches.pyo.base import Patch

    class Beep(Patch):
        \"\"\"One sine per run whose pitch follows the loss.\"\"\"

        def __init__(self, server, **options):
            super().__init__(server, **options)
            from pyo import Sine, SigTo
            self.freq = SigTo(220.0, time=0.05)
            self.osc = self.out(Sine(self.freq, mul=0.2))

        def on_loss(self, run, loss):
            self.freq.value = 200.0 + 100.0 * min(loss, 8.0)
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

#: Alarm tones (Hz): a two-tone siren, far above where the patches' voices sit on average.
ALARM_LOW_HZ = 880.0
ALARM_HIGH_HZ = 1175.0
ALARM_RATE_HZ = 8.0
ALARM_SECONDS = 0.6
ALARM_LEVEL = 0.4
#: Ramp of the bridge's gate (s): long enough not to click.
GATE_RAMP = 0.02
#: The voices' level while an alarm sounds, and how fast they get there (s): an alarm is never masked.
DUCK_GAIN = 0.2
DUCK_RAMP = 0.01


class WeightStats(NamedTuple):
    """``/nn/<run>/weight/<layer>`` arguments, in protocol order."""

    mean: float
    std: float
    abs_max: float
    norm: float
    update_ratio: float


class Value(NamedTuple):
    """One value produced by a mapping rule of the bridge's config."""

    run: str
    kind: str
    """Event kind: ``loss``, ``grad_norm``, ``weight`` … (``""`` for a value released late)."""
    name: str
    """Layer or metric name, ``""`` when the address has none."""
    rule: str
    """The rule's name (``rule_name`` in the config)."""
    stream: tuple[str, ...]
    voice: int
    """First-seen index of the stream, shared by rules keyed alike."""
    norm: float
    """0..1 after the rule's scaling, clamp, invert and smoothing."""
    raw: float


def log_unit(x: float, lo: float, hi: float) -> float:
    """``x`` on a log scale from ``lo`` to ``hi``, clamped to 0..1.

    >>> round(log_unit(1e-2, 1e-4, 1e2), 3)
    0.333
    >>> log_unit(0.0, 1e-4, 1e2)
    0.0
    """
    if not x > 0.0:
        return 0.0
    u = (math.log10(x) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    return 0.0 if u < 0.0 else 1.0 if u > 1.0 else u


class Earcons:
    """The bridge's earcons (one short sound per alarm kind, ``trainsound.bridge.sound.alarms``) played through
    the patch's gate, each built on first use; the patch's voices are ducked while one plays."""

    def __init__(self, patch: Patch) -> None:
        self.patch = patch
        self._players: dict[str, tuple[Any, Any]] = {}
        self._undo: Any = None
        self.count = 0

    def play(self, kind: str) -> None:
        from pyo import CallAfter, DataTable, TableRead

        from ...bridge.sound.alarms import TICK_KINDS, earcon

        p = self.patch
        sr = int(p.server.getSamplingRate()) if p.server is not None else 48_000
        x = earcon(kind, sr)
        hit = self._players.get(kind)
        if hit is None:
            table = DataTable(size=len(x), init=x.tolist())
            hit = self._players[kind] = (table, TableRead(table, freq=table.getRate(), loop=0))
            p.out_alarm(hit[1])
        hit[1].play()  # from the start (a new TableRead does not play until asked)
        self.count += 1
        if kind not in TICK_KINDS:
            p.duck.value = DUCK_GAIN
            self._undo = CallAfter(p.unduck, time=len(x) / sr)


class Alarm:
    """A two-tone siren (880/1175 Hz, 8 alternations/s, 0.6 s) for NaN/Inf.

    Args:
        patch: the patch whose gate the alarm plays through.
        level: peak amplitude.
    """

    def __init__(self, patch: Patch, level: float = ALARM_LEVEL) -> None:
        from pyo import LFO, Adsr, Sine

        mid = (ALARM_LOW_HZ + ALARM_HIGH_HZ) / 2
        half = (ALARM_HIGH_HZ - ALARM_LOW_HZ) / 2
        self.env = Adsr(attack=0.005, decay=0.05, sustain=0.9, release=0.08, dur=ALARM_SECONDS, mul=level)
        self.freq = LFO(freq=ALARM_RATE_HZ, sharp=1.0, type=2, mul=half, add=mid)
        self.tone = patch.out_alarm(Sine(self.freq, mul=self.env))
        self.patch = patch
        self.count = 0
        self._undo: Any = None

    def trigger(self) -> None:
        """Sound the alarm now (restarts it if it sounds already), the voices ducked under it."""
        from pyo import CallAfter

        self.count += 1
        self.env.play()
        self.patch.duck.value = DUCK_GAIN
        self._undo = CallAfter(self.patch.unduck, time=ALARM_SECONDS)


class Patch:
    """Base class of a pyo patch: every hook is a no-op, override what you use.

    Args:
        server: the booted, started pyo ``Server`` (for its sample rate etc.).
        **options: patch options from the ``[pyo.options]`` config table; a
            subclass takes the ones it knows as keyword arguments.

    Attributes:
        gate: the bridge's gate (a pyo ``SigTo``); 1 while the patch is healthy.
        duck: the voices' level (a pyo ``SigTo``): 1, or ``DUCK_GAIN`` while an alarm sounds.
        alarm: the default NaN alarm.
        earcons: the default sounds of :meth:`on_alarm`.
    """

    #: Shown in logs and status reports; defaults to the module name.
    name: str = ""

    def __init__(self, server: Any, **options: Any) -> None:
        from pyo import SigTo

        if options:
            raise TypeError(f"{type(self).__name__} got unknown options: {', '.join(sorted(options))}")
        self.server = server
        self.gate = SigTo(1.0, time=GATE_RAMP, init=1.0)
        self.duck = SigTo(1.0, time=DUCK_RAMP, init=1.0)
        self._voice_gain = self.gate * self.duck
        self._outs: list[Any] = []
        self.alarm = Alarm(self)
        self.earcons = Earcons(self)

    # -- output --------------------------------------------------------------
    def out(self, signal: Any) -> Any:
        """Play ``signal`` (any pyo object, mono or multichannel) on both speakers through the gate, ducked
        while an alarm sounds.

        Returns the playing object; it is kept referenced here.
        """
        return self._out(signal, self._voice_gain)

    def out_alarm(self, signal: Any) -> Any:
        """Like :meth:`out`, but never ducked: for alarm sounds."""
        return self._out(signal, self.gate)

    def unduck(self) -> None:
        """The voices back to full level (after an alarm)."""
        self.duck.value = 1.0

    def _out(self, signal: Any, gain: Any) -> Any:
        from pyo import Mix

        nchnls = int(self.server.getNchnls()) if self.server is not None else 2
        mixed = Mix(signal, voices=1, mul=gain)
        # A mono mix copied to every channel: pyo's .out() alone sends stream i to channel i only.
        spread = Mix(mixed, voices=max(1, nchnls)).out()
        self._outs.extend([mixed, spread])
        return mixed

    # -- hooks (no-ops) --------------------------------------------------------
    def on_step(self, run: str, step: int) -> None:
        """A training step of ``run`` finished."""

    def on_loss(self, run: str, loss: float) -> None:
        """The training loss of a step (finite)."""

    def on_metric(self, run: str, name: str, value: float) -> None:
        """Any other scalar: ``accuracy``, ``lr``, ``val_loss`` … (finite)."""

    def on_grad_norm(self, run: str, layer: str, norm: float) -> None:
        """L2 norm of a layer's gradient (finite)."""

    def on_weights(self, run: str, layer: str, stats: WeightStats) -> None:
        """Weight statistics of a layer (all finite)."""

    def on_spectrum(self, run: str, layer: str, magnitudes: np.ndarray) -> None:
        """Activation spectrum of a layer: float32 magnitudes, lowest bin first (all finite)."""

    def on_weight_units(self, run: str, layer: str, means: np.ndarray) -> None:
        """One mean weight per output unit of a layer: float32, unit order (all finite)."""

    def on_value(self, value: Value) -> None:
        """A value mapped by one of the config's rules."""

    def on_end(self, run: str) -> None:
        """The run ended (its ``end`` event, or it went idle): release its voices. No-op by default."""

    def on_nan(self, run: str, stream: str) -> None:
        """A non-finite value arrived on ``stream`` (e.g. ``"fc1"`` or ``"loss"``): sound the alarm."""
        self.alarm.trigger()

    def on_alarm(self, run: str, name: str, kind: str, step: int) -> None:
        """The bridge's detectors found a fault (``kind``: spike, plateau, divergence, exploding, vanishing,
        dead) on stream ``name`` (``loss``, a layer, ``""`` for the whole run) at ``step``, or a context tick
        (``epoch``, ``lr``): play the kind's earcon."""
        self.earcons.play(kind)

    def close(self) -> None:
        """Stop every object this patch plays (the gate is closed by the bridge already)."""
        for o in self._outs:
            o.stop()
        self._outs.clear()
