"""activation_spectra — a layer's activation spectrum resynthesised by a sine bank (netsounds, fixed).

What you hear: a shimmering cluster whose spectral shape is the shape of the
layer's activation spectrum. The spectrum's bins (lowest first) are spread over
a bank of ``bands`` sines, log-spaced from ``low_hz`` to ``high_hz`` (default
48 bands, 110 … 3520 Hz, ten per octave); each band's level is the spectrum's
magnitude there, normalised to the spectrum's peak. Energy in low bins sounds
low, energy in high bins sounds high; a flat spectrum is a wide cluster, a
peaky one nearly a tone. Levels glide over ``glide`` s from one spectrum to
the next.

``mode="latest"`` (default) plays one layer at a time: the one whose spectrum
arrived last (a network reporting layer after layer is heard block by block,
as netsounds played SqueezeNet's blocks in turn). ``mode="layered"`` averages
the latest spectra of all layers into one cluster.

Why: netsounds inverse-FFT'd activations with zero phase, no window and no
overlap, which clicked; a fixed oscillator bank with gliding levels is an
additive resynthesis that cannot click and costs the same whatever the number
of bins (any length resamples onto the bank). NaN/Inf in a spectrum sounds the
alarm (880/1175 Hz siren) instead of becoming a DC thump.

Options: ``mode`` (``latest``/``layered``), ``bands`` (48), ``low_hz`` (110),
``high_hz`` (3520), ``level`` (0.4), ``glide`` (0.05 s).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Patch

MODES = ("latest", "layered")


def band_levels(magnitudes: np.ndarray, bands: int) -> np.ndarray:
    """Resample a magnitude spectrum onto ``bands`` points, normalised so they sum to 1 (zeros stay zeros).

    >>> band_levels(np.array([0.0, 1.0], np.float32), 3).round(2).tolist()
    [0.0, 0.33, 0.67]
    """
    m = np.abs(np.asarray(magnitudes, dtype=np.float64))
    if m.size == 1:
        m = np.repeat(m, 2)
    pos = np.linspace(0.0, m.size - 1, bands)
    out = np.interp(pos, np.arange(m.size), m)
    total = out.sum()
    return out / total if total > 0.0 else out


class ActivationSpectra(Patch):
    """Additive resynthesis of activation spectra on a fixed log-spaced sine bank."""

    name = "activation_spectra"

    def __init__(
        self,
        server: Any,
        mode: str = "latest",
        bands: int = 48,
        low_hz: float = 110.0,
        high_hz: float = 3520.0,
        level: float = 0.4,
        glide: float = 0.05,
        **options: Any,
    ) -> None:
        super().__init__(server, **options)
        if mode not in MODES:
            raise ValueError(f"activation_spectra mode must be one of {', '.join(MODES)}; got {mode!r}")
        from pyo import SigTo, Sine

        self.mode, self.bands, self.level = mode, int(bands), float(level)
        self.freqs = np.geomspace(float(low_hz), float(high_hz), self.bands)
        self.amps = [SigTo(0.0, time=glide, init=0.0) for _ in range(self.bands)]
        self.bank = self.out(Sine(freq=self.freqs.tolist(), mul=self.amps))
        self._latest: dict[tuple[str, str], np.ndarray] = {}
        # Running sum of the latest spectra: averaging thousands of layers anew per report would be quadratic.
        self._sum = np.zeros(self.bands)
        self._latest_run = ""

    def on_end(self, run: str) -> None:
        """The run ended: its spectra leave the mix (the bank glides to what the other runs hold, or silence)."""
        if self.mode == "layered":
            for key in [k for k in self._latest if k[0] == run]:
                self._sum -= self._latest.pop(key)
            mix = self._sum / len(self._latest) if self._latest else np.zeros(self.bands)
            levels = (mix * self.level).tolist()
        elif self._latest_run == run:  # "latest": the bank holds one run's spectrum; silent if it was this one
            levels = [0.0] * self.bands
        else:
            return
        for amp, a in zip(self.amps, levels, strict=True):
            amp.value = a

    def on_spectrum(self, run: str, layer: str, magnitudes: np.ndarray) -> None:
        self._latest_run = run
        levels = band_levels(magnitudes, self.bands)
        if self.mode == "layered":
            prev = self._latest.get((run, layer))
            self._sum += levels if prev is None else levels - prev
            self._latest[(run, layer)] = levels
            levels = self._sum / len(self._latest)
        # Levels sum to 1, so the cluster's peak stays under `level` whatever its shape.
        for amp, a in zip(self.amps, (levels * self.level).tolist(), strict=True):
            amp.value = a


PATCH = ActivationSpectra
