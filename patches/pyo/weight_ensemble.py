"""weight_ensemble — soNNify's harmonic ensemble: the weights as a chord that detunes when they move.

What you hear: a steady chord, one sine partial per layer, at ``base_hz`` times
the chord's ratios (major ``1:4:5:6`` over 100 Hz → 100, 400, 500, 600 Hz;
further layers repeat the ratios an octave up). The chord goes through a
band-pass whose centre an LFO sweeps at ``|mean weight| · 200`` Hz (a slow
"wah" for small weights, a flutter for large ones), then through a frequency
shifter by ``(mean weight − previous mean weight) · 10,000`` Hz: while the
network's weights drift, every partial shifts by the same number of Hz and the
chord stops being harmonic — a changing network detunes the chord; a settled
one rings in tune.

Why: soNNify's "weights as an ensemble" idea, fixed to scale. soNNify had one
partial per neuron and broke on big layers; the protocol sends weight
statistics per layer, and the bank here is fixed (``max_partials``, default
32), so thousands of layers fold onto it instead of growing the graph. The
mean weight used is the average over layers of their latest means; the shift
uses the average of their latest changes, so layers reporting in turn do not
make it jitter. NaN/Inf sounds the alarm.

Options: ``chord`` (``major``, ``minor``, ``dim``, ``7th``, ``min7``, ``maj7``),
``base_hz`` (100), ``max_partials`` (32), ``level`` (0.3), ``max_shift_hz`` (400).
"""

from __future__ import annotations

from typing import Any

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


def partial_hz(index: int, chord: tuple[float, ...], base: float) -> float:
    """Frequency of partial ``index``: the chord's ratios, then again an octave up, and so on.

    >>> [partial_hz(i, CHORDS["major"], 100.0) for i in range(6)]
    [100.0, 400.0, 500.0, 600.0, 200.0, 800.0]
    """
    octave, step = divmod(index, len(chord))
    return base * chord[step] * 2.0**octave


class WeightEnsemble(Patch):
    """One partial per layer in chord ratios; band-pass swept by |mean|·200 Hz; shifted by Δmean·10 kHz."""

    name = "weight_ensemble"

    def __init__(
        self,
        server: Any,
        chord: str = "major",
        base_hz: float = 100.0,
        max_partials: int = 32,
        level: float = 0.3,
        max_shift_hz: float = 400.0,
        **options: Any,
    ) -> None:
        super().__init__(server, **options)
        if chord not in CHORDS:
            raise ValueError(f"weight_ensemble chord must be one of {', '.join(CHORDS)}; got {chord!r}")
        from pyo import ButBP, FreqShift, Sig, SigTo, Sine

        self.chord, self.base = CHORDS[chord], float(base_hz)
        self.max_partials, self.level, self.max_shift = int(max_partials), float(level), float(max_shift_hz)
        freqs = [partial_hz(i, self.chord, self.base) for i in range(self.max_partials)]
        self.amps = [SigTo(0.0, time=0.1, init=0.0) for _ in freqs]
        self.partials = Sine(freq=freqs, mul=self.amps)
        self.lfo_rate = SigTo(0.0, time=0.2, init=0.0)
        mid, half = (SWEEP_LOW + SWEEP_HIGH) / 2, (SWEEP_HIGH - SWEEP_LOW) / 2
        self.lfo = Sine(freq=self.lfo_rate, mul=half, add=mid)
        self.band = ButBP(self.partials, freq=self.lfo, q=SWEEP_Q)
        # Dry and filtered together: the sweep colours the chord without hiding partials.
        self.mix = self.partials * 0.5 + self.band
        self.shift = SigTo(0.0, time=0.15, init=0.0)
        self.shifted = FreqShift(self.mix, shift=self.shift)
        self.gain = Sig(0.0)
        self.voice = self.out(self.shifted * self.gain)
        self._layer_partial: dict[tuple[str, str], int] = {}
        self._means: dict[tuple[str, str], float] = {}
        self._deltas: dict[tuple[str, str], float] = {}
        # Running sums: recomputing means over thousands of layers per report would be quadratic.
        self._sum_mean = 0.0
        self._sum_delta = 0.0

    def _partial(self, key: tuple[str, str]) -> int:
        p = self._layer_partial.get(key)
        if p is None:
            # Beyond the bank, layers share partials (folded): the graph never grows.
            p = self._layer_partial[key] = len(self._layer_partial) % self.max_partials
            used = min(len(self._layer_partial), self.max_partials)
            self.amps[p].value = 1.0
            # √n keeps the loudness about level whatever the number of partials.
            self.gain.value = self.level / used**0.5
        return p

    def on_weights(self, run: str, layer: str, stats: WeightStats) -> None:
        key = (run, layer)
        self._partial(key)
        prev = self._means.get(key)
        delta = 0.0 if prev is None else stats.mean - prev
        self._sum_mean += stats.mean - (prev or 0.0)
        self._sum_delta += delta - self._deltas.get(key, 0.0)
        self._means[key] = stats.mean
        self._deltas[key] = delta
        n = len(self._means)
        mean, delta = self._sum_mean / n, self._sum_delta / n
        self.lfo_rate.value = min(MAX_LFO_HZ, abs(mean) * LFO_HZ_PER_WEIGHT)
        self.shift.value = max(-self.max_shift, min(self.max_shift, delta * SHIFT_HZ_PER_WEIGHT))


PATCH = WeightEnsemble
