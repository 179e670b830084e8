"""Activation spectra: what netsounds did, done properly.

A layer's output ``(N, C, H, W)`` (or ``(N, C, L)``, or ``(N, F)``) is Hann-windowed over its
spatial axes, transformed with a real FFT, and its magnitude averaged over batch and channels.
For 2-D maps the 2-D magnitude is then averaged over rings of equal radial frequency
(a radially averaged spectrum) and resampled, so the result is one curve of ``bins`` values
from DC (first) up to the Nyquist frequency (last), independent of the map size. 1-D outputs
are resampled to ``bins`` the same way.

The binning tables are pure numpy (:func:`binning_matrix`); the FFT runs in torch on the
activation's device (:func:`spectrum`) so that on a GPU nothing leaves the device until the
step's single host copy.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["DEFAULT_BINS", "MAX_BINS", "binning_matrix", "spectrum"]

DEFAULT_BINS = 64
MAX_BINS = 4096


def binning_matrix(shape: tuple[int, ...], bins: int) -> np.ndarray:
    """Linear map from the rFFT magnitudes of a map of ``shape`` to ``bins`` radial-frequency values.

    ``shape`` is the spatial shape, ``(L,)`` or ``(H, W)``; the rFFT has ``prod(shape[:-1]) * (W//2+1)``
    coefficients. They are first averaged over rings of equal radial frequency (ring ``j`` at
    ``j / max(shape)`` cycles/sample; corners beyond Nyquist join the last ring), then the ring profile
    is linearly interpolated to ``bins`` points from DC to Nyquist, so small maps give smooth curves
    rather than empty bins.

    Returns:
        A float32 matrix of shape ``(n_coefficients, bins)``; ``spectrum = magnitudes.ravel() @ matrix``.

    >>> binning_matrix((8,), 5).round(3).tolist() == np.eye(5).tolist()
    True
    >>> m = binning_matrix((4, 4), 3)
    >>> m.shape, m.sum(axis=0).round(3).tolist()
    ((12, 3), [1.0, 1.0, 1.0])
    """
    freqs = [np.abs(np.fft.fftfreq(n)) for n in shape[:-1]] + [np.fft.rfftfreq(shape[-1])]
    grids = np.meshgrid(*freqs, indexing="ij")
    radius = np.sqrt(sum(g**2 for g in grids)).ravel()
    n = max(shape)
    rings = n // 2 + 1
    ring = np.minimum(np.rint(radius * n).astype(np.int64), rings - 1)
    counts = np.bincount(ring, minlength=rings).astype(np.float64)
    average = np.zeros((radius.size, rings))
    average[np.arange(radius.size), ring] = 1.0 / np.maximum(counts[ring], 1.0)
    present = np.flatnonzero(counts)
    centres = np.arange(rings) / n
    targets = np.linspace(0.0, 0.5, bins)
    interp = np.zeros((rings, bins))
    for j in present:
        unit = (present == j).astype(np.float64)
        interp[j] = np.interp(targets, centres[present], unit)
    return (average @ interp).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _tables(shape: tuple[int, ...], bins: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    matrix = binning_matrix(shape, bins)
    window = np.ones(shape)
    for axis, n in enumerate(shape):
        w = np.hanning(n + 2)[1:-1] if n > 2 else np.ones(n)
        window = window * w.reshape([-1 if a == axis else 1 for a in range(len(shape))])
    return (
        torch.as_tensor(matrix, device=device),
        torch.as_tensor(window, dtype=torch.float32, device=device),
    )


def spectrum(activation: torch.Tensor, bins: int = DEFAULT_BINS) -> torch.Tensor:
    """Magnitude spectrum of an activation, averaged over batch and channels, as ``bins`` float32 values.

    ``(N, C, H, W)`` → 2-D rFFT over ``(H, W)`` and radial average; ``(N, C, L)`` → rFFT over ``L``;
    ``(N, F)`` → rFFT over the features. Returns a tensor on the activation's device (no host sync).
    """
    import torch

    x = activation.detach()
    if x.dim() < 2:
        x = x.reshape(1, -1)
    # 4-D and up: the last two axes are spatial, everything before them is averaged over.
    spatial = tuple(x.shape[-2:]) if x.dim() >= 4 else tuple(x.shape[-1:])
    matrix, window = _tables(spatial, bins, str(x.device))
    x = x.float() * window
    dims = tuple(range(-len(spatial), 0))
    mag = torch.fft.rfftn(x, dim=dims).abs()
    mean = mag.reshape(-1, *mag.shape[-len(spatial) :]).mean(dim=0).reshape(-1)
    return mean @ matrix
