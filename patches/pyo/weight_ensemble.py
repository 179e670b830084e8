"""weight_ensemble — soNNify's harmonic ensemble: the weights as a chord that detunes when they move.

What you hear: a steady chord at ``base_hz`` times the chord's ratios (major ``1:4:5:6`` over 100 Hz →
100, 400, 500, 600 Hz; further partials repeat the ratios an octave up, and after ``octaves`` octaves
start again at the bottom). With ``/nn/<run>/weight_units/<layer>`` (``watch(model, units=["fc2"])``)
there is **one partial per output unit** of the layer, as soNNify's ``WeightsDense`` had, each as
loud as ``0.5 + 0.5·|unit mean| / max |unit mean|`` (the strongest units loudest, none silent);
layers that send only ``/nn/<run>/weight/<layer>`` get one partial each. The chord goes through a
band-pass whose centre an LFO sweeps at ``|mean weight| · 200`` Hz (a slow "wah" for small weights,
a flutter for large ones), then through a frequency shifter by ``(mean weight − previous mean
weight) · 10,000`` Hz: while the network's weights drift, every partial shifts by the same number
of Hz and the chord stops being harmonic — a changing network detunes the chord; a settled one
rings in tune.

Why: soNNify's "weights as an ensemble" idea, fixed to scale. soNNify built one sine per neuron and
broke on big layers. Here the partial frequencies cycle through ``octaves`` octaves of the chord, so
there are at most ``len(chord) · octaves`` distinct frequencies (20 for a major chord over 5
octaves, the highest 9.6 kHz), and a unit whose partial has the frequency of another's simply adds
to that oscillator's level: the oscillator bank is fixed when the patch starts, thousands of units
or layers cost nothing more, and nothing goes above the audible range (or aliases). Partial levels
are normalised by ``max(‖a‖₂, ‖a‖₁ / 2)``: equal loudness for a few partials, a bounded peak for
many. The mean used is the average over layers of their latest means (a layer that sends per-unit
means is heard through them: their mean); the shift uses the average of their latest changes, so
layers reporting in turn do not make it jitter. NaN/Inf sounds the alarm.

Options: ``chord`` (``major``, ``minor``, ``dim``, ``7th``, ``min7``, ``maj7``), ``base_hz`` (100),
``octaves`` (5), ``max_partials`` (32: at most this many chord positions before they repeat),
``level`` (0.3), ``max_shift_hz`` (400).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Patch, WeightStats

#: soNNify's chords as frequency ratios over the base (just intonation), fundamental first.
CHORDS: dict[str, tuple[float, ...]] = {
    "major": (1.0, 4.0, 5.0, 6.0),
    "minor": (1.0, 4.0, 4.8, 6.0),
    "dim": (1.0, 4.0, 4.0 * 6 / 5, 4.0 * 36 / 25),
    "7th": (1.0, 4.0, 5.0, 6.0, 7.0),
    "min7": (1.0, 4.0, 4.8, 6.0, 7.2),
    "maj7": (1.0, 4.0, 5.0, 6.0, 7.5),
}
#: soNNify's constants: LFO rate per unit of |mean weight|, shift per unit of mean change.
LFO_HZ_PER_WEIGHT = 200.0
SHIFT_HZ_PER_WEIGHT = 10_000.0
MAX_LFO_HZ = 20.0
#: Band-pass centre range swept by the LFO (Hz), and its Q: mild, so no partial vanishes.
SWEEP_LOW, SWEEP_HIGH, SWEEP_Q = 250.0, 1600.0, 0.7


def partial_hz(index: int, chord: tuple[float, ...], base: float, octaves: int = 5) -> float:
    """Frequency of partial ``index``: the chord's ratios, then again an octave up, cycling over ``octaves``.

    >>> [partial_hz(i, CHORDS["major"], 100.0) for i in range(6)]
    [100.0, 400.0, 500.0, 600.0, 200.0, 800.0]
    >>> partial_hz(8, CHORDS["major"], 100.0, octaves=2)
    100.0
    """
    octave, step = divmod(index, len(chord))
    return base * chord[step] * 2.0 ** (octave % octaves)


def unit_levels(means: np.ndarray) -> np.ndarray:
    """Each unit's partial level: ``0.5 + 0.5·|m| / max|m|`` (all 1 when every mean is 0).

    >>> unit_levels(np.array([0.0, -0.2, 0.4])).tolist()
    [0.5, 0.75, 1.0]
    """
    mags = np.abs(means.astype(np.float64))
    top = mags.max() if mags.size else 0.0
    return 0.5 + 0.5 * mags / top if top > 0 else np.ones_like(mags)


class WeightEnsemble(Patch):
    """One partial per unit (or layer) in chord ratios; band-pass swept by |mean|·200 Hz; shifted by Δmean·10 kHz."""

    name = "weight_ensemble"

    def __init__(
        self,
        server: Any,
        chord: str = "major",
        base_hz: float = 100.0,
        octaves: int = 5,
        max_partials: int = 32,
        level: float = 0.3,
        max_shift_hz: float = 400.0,
        **options: Any,
    ) -> None:
        super().__init__(server, **options)
        if chord not in CHORDS:
            raise ValueError(f"weight_ensemble chord must be one of {', '.join(CHORDS)}; got {chord!r}")
        if int(octaves) < 1 or int(max_partials) < 1:
            raise ValueError(f"weight_ensemble octaves and max_partials must be >= 1; got {octaves}, {max_partials}")
        from pyo import ButBP, FreqShift, Sig, SigTo, Sine

        self.chord, self.base = CHORDS[chord], float(base_hz)
        self.level, self.max_shift = float(level), float(max_shift_hz)
        self.positions = min(int(max_partials), len(self.chord) * int(octaves))
        slot_hz = [partial_hz(i, self.chord, self.base, int(octaves)) for i in range(self.positions)]
        self.freqs = sorted(set(slot_hz))
        # Chord position → oscillator: equal frequencies share one (same phase, so their levels add).
        self._slot_osc = np.array([self.freqs.index(f) for f in slot_hz])
        self.amps = [SigTo(0.0, time=0.1, init=0.0) for _ in self.freqs]
        self.partials = Sine(freq=self.freqs, mul=self.amps)
        self.lfo_rate = SigTo(0.0, time=0.2, init=0.0)
        mid, half = (SWEEP_LOW + SWEEP_HIGH) / 2, (SWEEP_HIGH - SWEEP_LOW) / 2
        self.lfo = Sine(freq=self.lfo_rate, mul=half, add=mid)
        self.band = ButBP(self.partials, freq=self.lfo, q=SWEEP_Q)
        # Dry and filtered together: the sweep colours the chord without hiding partials.
        self.mix = self.partials * 0.5 + self.band
        self.shift = SigTo(0.0, time=0.15, init=0.0)
        self.shifted = FreqShift(self.mix, shift=self.shift)
        self.gain = Sig(self.level)
        self.voice = self.out(self.shifted * self.gain)
        self._layer_levels: dict[tuple[str, str], np.ndarray] = {}  # per layer: its level on each oscillator
        self._total = np.zeros(len(self.freqs))
        self._unit_layers: set[tuple[str, str]] = set()
        self._means: dict[tuple[str, str], float] = {}
        self._deltas: dict[tuple[str, str], float] = {}
        # Running sums: recomputing means over thousands of layers per report would be quadratic.
        self._sum_mean = 0.0
        self._sum_delta = 0.0

    # -- partial levels ------------------------------------------------------------------------
    def _set_levels(self, key: tuple[str, str], levels: np.ndarray) -> None:
        old = self._layer_levels.get(key)
        self._total += levels - (old if old is not None else 0.0)
        self._layer_levels[key] = levels
        total = np.maximum(self._total, 0.0)  # running sums: no tiny negative leftovers
        norm = max(float(np.sqrt((total**2).sum())), float(total.sum()) / 2)
        for amp, x in zip(self.amps, total / norm if norm > 0 else total, strict=True):
            amp.value = float(x)

    def _slot_levels(self, slot_weights: np.ndarray) -> np.ndarray:
        return np.bincount(self._slot_osc, slot_weights, minlength=len(self.freqs))

    # -- mean and shift ---------------------------------------------------------------------------
    def _track(self, key: tuple[str, str], mean: float, restart: bool = False) -> None:
        prev = None if restart else self._means.get(key)
        delta = 0.0 if prev is None else mean - prev
        self._sum_mean += mean - self._means.get(key, 0.0)
        self._sum_delta += delta - self._deltas.get(key, 0.0)
        self._means[key] = mean
        self._deltas[key] = delta
        n = len(self._means)
        mean, delta = self._sum_mean / n, self._sum_delta / n
        self.lfo_rate.value = min(MAX_LFO_HZ, abs(mean) * LFO_HZ_PER_WEIGHT)
        self.shift.value = max(-self.max_shift, min(self.max_shift, delta * SHIFT_HZ_PER_WEIGHT))

    # -- hooks ----------------------------------------------------------------------------------
    def on_end(self, run: str) -> None:
        """The run ended: its partials fade (100 ms), its means leave the LFO and the shift."""
        for key in [k for k in self._layer_levels if k[0] == run]:
            self._set_levels(key, np.zeros(len(self.freqs)))
            del self._layer_levels[key]
            self._unit_layers.discard(key)
            self._sum_mean -= self._means.pop(key, 0.0)
            self._sum_delta -= self._deltas.pop(key, 0.0)
        n = len(self._means)
        self.lfo_rate.value = min(MAX_LFO_HZ, abs(self._sum_mean / n) * LFO_HZ_PER_WEIGHT) if n else 0.0
        self.shift.value = max(-self.max_shift, min(self.max_shift, self._sum_delta / n * SHIFT_HZ_PER_WEIGHT)) \
            if n else 0.0

    def on_weights(self, run: str, layer: str, stats: WeightStats) -> None:
        key = (run, layer)
        if key in self._unit_layers:
            return  # heard through its units
        if key not in self._layer_levels:
            # Beyond the chord positions, layers share partials (folded): the graph never grows.
            slot = np.zeros(self.positions)
            slot[len(self._layer_levels) % self.positions] = 1.0
            self._set_levels(key, self._slot_levels(slot))
        self._track(key, stats.mean)

    def on_weight_units(self, run: str, layer: str, means: np.ndarray) -> None:
        key = (run, layer)
        first = key not in self._unit_layers
        self._unit_layers.add(key)
        slots = np.arange(means.size) % self.positions
        self._set_levels(key, self._slot_levels(np.bincount(slots, unit_levels(means), minlength=self.positions)))
        self._track(key, float(means.astype(np.float64).mean()), restart=first)


PATCH = WeightEnsemble
