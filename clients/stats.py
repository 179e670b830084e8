"""Per-tensor sums → per-layer statistics: pure Python, shared by the PyTorch and Keras clients.

Both clients compute, per parameter tensor and on the device, the sum of squares of its gradient
and the sum, sum of squares, abs-max and squared change of its values; one vector comes to the
host per step and is combined here per layer (a layer owns one or more tensors: weight and bias).
Sums are combined in float64, so a layer norm equals the norm over its concatenated parameters.

The standard deviation comes from the sum and the sum of squares (no second pass over the
weights): ``var = Σw²/n − mean²`` in float64, clamped at 0. The inputs are float32 sums, so
its relative error is about 1e-7 × (mean² + var)/var: negligible for weights centred near 0
(the usual case, well inside 1e-5), coarse only for a layer whose values sit far from 0 with a
tiny spread (measured: a LayerNorm-like gain of 1 ± 0.001 reads std with ~3–8 % error;
exactly 1.0 reads 0).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from .errors import ClientArgumentError

__all__ = ["LOG_CHOICES", "abs_max", "layer_grad_norms", "layer_weight_stats", "log_items"]

#: What a client may be asked to send (``log=`` of ``watch`` and ``Sonify``).
LOG_CHOICES: frozenset[str] = frozenset({"grads", "weights", "loss"})

WeightStats = tuple[float, float, float, float, float]


def log_items(log: Iterable[str] | str) -> tuple[str, ...]:
    """A client's ``log=`` argument as a tuple, each item one of :data:`LOG_CHOICES`.

    >>> log_items("loss")
    ('loss',)
    """
    items = (log,) if isinstance(log, str) else tuple(log)
    bad = [x for x in items if x not in LOG_CHOICES]
    if bad:
        raise ClientArgumentError(f"log must name some of {sorted(LOG_CHOICES)}, got {bad[0]!r}")
    return items


def layer_grad_norms(grad_sq: Sequence[float], owner: Sequence[int], names: Sequence[str]) -> dict[str, float]:
    """L2 norm per layer from per-tensor squared norms.

    >>> layer_grad_norms([9.0, 16.0, 4.0], [0, 0, 1], ["fc1", "fc2"])
    {'fc1': 5.0, 'fc2': 2.0}
    """
    sq = [0.0] * len(names)
    for i, x in enumerate(grad_sq):
        sq[owner[i]] += x
    return {name: math.sqrt(s) if s >= 0 else s for name, s in zip(names, sq, strict=True)}


def abs_max(maxes: Sequence[float], mins: Sequence[float]) -> list[float]:
    """Per tensor ``max(max, -min)``; NaN if either is NaN (the bridge's NaN alarm needs it).

    >>> abs_max([0.5, 2.0, float("nan"), 1.0], [-3.0, -1.0, 0.0, float("nan")])
    [3.0, 2.0, nan, nan]
    """
    out = []
    for mx, mn in zip(maxes, mins, strict=True):
        a = -mn
        out.append(mx if mx >= a or mx != mx else a)
    return out


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
