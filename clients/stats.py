"""Per-tensor sums → per-layer statistics: pure Python, shared by the PyTorch and Keras clients.

Both clients compute, per parameter tensor and on the device, the sum of squares of its gradient
and the sum, sum of squares, abs-max and squared change of its values; one vector comes to the
host per step and is combined here per layer (a layer owns one or more tensors: weight and bias).
Sums are combined in float64, so a layer norm equals the norm over its concatenated parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["LOG_CHOICES", "layer_grad_norms", "layer_weight_stats"]

#: What a client may be asked to send (``log=`` of ``watch`` and ``Sonify``).
LOG_CHOICES: frozenset[str] = frozenset({"grads", "weights", "loss"})

WeightStats = tuple[float, float, float, float, float]


def layer_grad_norms(grad_sq: Sequence[float], owner: Sequence[int], names: Sequence[str]) -> dict[str, float]:
    """L2 norm per layer from per-tensor squared norms.

    >>> layer_grad_norms([9.0, 16.0, 4.0], [0, 0, 1], ["fc1", "fc2"])
    {'fc1': 5.0, 'fc2': 2.0}
    """
    sq = [0.0] * len(names)
    for i, x in enumerate(grad_sq):
        sq[owner[i]] += x
    return {name: math.sqrt(s) if s >= 0 else s for name, s in zip(names, sq, strict=True)}


def _ratio(delta: float, norm: float) -> float:
    return delta / norm if norm and math.isfinite(norm) else 0.0


def layer_weight_stats(
    sums: Sequence[float],
    sqs: Sequence[float],
    maxes: Sequence[float],
    deltas: Sequence[float],
    counts: Sequence[float],
    owner: Sequence[int],
    names: Sequence[str],
) -> dict[str, WeightStats]:
    """``(mean, std, abs_max, norm, update_ratio)`` per layer over all its tensors.

    ``std`` is the population standard deviation; ``update_ratio`` = ‖ΔW‖/‖W‖ (0 when ‖W‖ = 0).
    Non-finite inputs stay non-finite (the bridge's NaN alarm needs them).

    >>> s = layer_weight_stats([2.0, 2.0], [4.0, 4.0], [1.0, 1.0], [0.0, 0.16], [4.0, 4.0], [0, 0], ["fc"])
    >>> [round(x, 6) for x in s["fc"]]
    [0.5, 0.866025, 1.0, 2.828427, 0.141421]
    """
    acc = [[0.0, 0.0, 0.0, 0.0, 0.0] for _ in names]
    for i, o in enumerate(owner):
        a = acc[o]
        a[0] += sums[i]
        a[1] += sqs[i]
        m = maxes[i]
        a[2] = m if (m != m or m > a[2]) and a[2] == a[2] else a[2]
        a[3] += deltas[i]
        a[4] += counts[i]
    out: dict[str, WeightStats] = {}
    for name, (s, q, m, d, c) in zip(names, acc, strict=True):
        mean = s / c if c else 0.0
        if math.isfinite(q) and q >= 0:
            norm = math.sqrt(q)
            std = math.sqrt(max(q / c - mean * mean, 0.0)) if c else 0.0
        else:
            norm = std = q
        ratio = d if not math.isfinite(d) or d < 0 else _ratio(math.sqrt(d), norm)
        out[name] = (mean, std, m, norm, ratio)
    return out
