"""Published fault rules, run on the streams a recording holds (the fault benchmark's comparison columns).

A recording is decoded with the bridge's own codec (``iter_records`` + ``parse_event``): per step, the
loss, the global grad norm (``metric/grad_norm``, or the root of the per-layer norms' squares) and every
layer's grad norm. Each rule returns the steps it fires at; :func:`events` merges steps less than
``gap`` apart into one event, so a rule that fires on every step of a bad stretch counts once.

>>> lightning_spike([1.0, 1.0, 1.0, 3.5, 1.0])
[3]
>>> megatron([(0, 2.0), (1, 1.0), (2, 21.0)])
[2]
>>> events([3, 4, 5, 40], gap=5)
[3, 40]
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from trainsound.bridge.errors import TrainsoundError
from trainsound.bridge.wire.osc import decode_message
from trainsound.bridge.wire.protocol import parse_event
from trainsound.bridge.wire.session import iter_records


@dataclass
class Streams:
    """One run's values by step (the last value sent for a step wins)."""

    loss: dict[int, float] = field(default_factory=dict)
    grad_total: dict[int, float] = field(default_factory=dict)
    layers: dict[str, dict[int, float]] = field(default_factory=dict)
    undecodable: int = 0

    def total(self) -> list[tuple[int, float]]:
        """The global grad norm per step: the client's ``metric/grad_norm``, else from the layers'."""
        if self.grad_total:
            return sorted(self.grad_total.items())
        steps: dict[int, float] = {}
        for series in self.layers.values():
            for s, g in series.items():
                steps[s] = steps.get(s, 0.0) + g * g
        return sorted((s, math.sqrt(v)) for s, v in steps.items())


def decode(path: str | Path) -> Streams:
    """The loss and grad-norm streams of a recording (one run per recording)."""
    out = Streams()
    step, seen_step = 0, False
    for t, raw in iter_records(path):
        try:
            address, args = decode_message(raw)
            ev = parse_event(address, args, t, raw)
        except TrainsoundError:  # counted: the rules see what the bridge would
            out.undecodable += 1
            continue
        if ev.kind == "step":
            step, seen_step = int(ev.values[0]), True
        elif ev.kind == "loss":
            if not seen_step and step in out.loss:  # no step messages: count the losses
                step += 1
            out.loss[step] = ev.values[0]
        elif ev.kind == "metric" and ev.name == "grad_norm":
            out.grad_total[step] = ev.values[0]
        elif ev.kind == "grad_norm":
            out.layers.setdefault(ev.name, {})[step] = ev.values[0]
    return out


def events(steps: Sequence[int], gap: int = 5) -> list[int]:
    """The first step of each group of firing steps less than ``gap`` apart."""
    out: list[int] = []
    last = None
    for s in sorted(steps):
        if last is None or s - last >= gap:
            out.append(s)
        last = s
    return out


def lightning_spike(losses: Sequence[float], window: int = 10, rtol: float = 2.0, warmup: int = 1) -> list[int]:
    """Indices where ``lightning.fabric.utilities.spike.SpikeDetection`` fires: a non-finite loss, or a loss
    that is not below the previous one and is ≥ ``rtol`` × the running mean of the last ``window`` finite
    non-spike losses away from it. (Lightning raises at the first; here the run goes on, stats unchanged.)"""
    hist: deque[float] = deque(maxlen=window)
    last = 0.0
    out = []
    for i, x in enumerate(losses):
        if i >= warmup:
            if not math.isfinite(x):
                out.append(i)
                continue
            mean = sum(hist) / len(hist) if hist else math.nan
            if x - last > 0 and abs(x - mean) >= abs(rtol * mean):
                out.append(i)
                continue
        if math.isfinite(x):
            hist.append(x)
            last = x
    return out


def megatron(losses: Sequence[tuple[int, float]], factor: float = 10.0) -> list[int]:
    """Steps where Megatron-LM's checks fire: a NaN/Inf loss, or a loss > ``factor`` × the largest seen so far."""
    top = -math.inf
    out = []
    for s, x in losses:
        if not math.isfinite(x) or (top > 0 and x > factor * top):
            out.append(s)
        if math.isfinite(x):
            top = max(top, x)
    return out


def zclip(norms: Sequence[tuple[int, float]], alpha: float = 0.97, z_thresh: float = 2.5,
          warmup: int = 25) -> list[int]:
    """Steps where ZClip sees a spike: the global grad norm's z-score on its EMA mean and variance is
    > ``z_thresh`` (after ``warmup`` norms seed them); a spike updates the EMAs with its reciprocally
    clipped value μ + (z_thresh²/z)·σ, as ZClip does."""
    out = []
    seed: list[float] = []
    mu = var = 0.0
    for s, g in norms:
        if not math.isfinite(g):
            continue
        if len(seed) < warmup:
            seed.append(g)
            if len(seed) == warmup:
                mu = sum(seed) / warmup
                var = sum((x - mu) ** 2 for x in seed) / warmup
            continue
        sd = math.sqrt(var)
        z = (g - mu) / sd if sd > 0 else 0.0
        if z > z_thresh:
            out.append(s)
            g = mu + (z_thresh**2 / z) * sd
        mu = alpha * mu + (1 - alpha) * g
        var = alpha * var + (1 - alpha) * (g - mu) ** 2
    return out


def mosaic(layers: dict[str, dict[int, float]], fast: int = 25, slow: int = 500, ratio: float = 5.0) -> list[int]:
    """Steps where any layer's grad norm averaged over the last ``fast`` steps is > ``ratio`` × its average
    over the last ``slow`` (MosaicML's per-layer rule; from ``fast`` values on, the slow window partly filled)."""
    fired: set[int] = set()
    for series in layers.values():
        f: deque[float] = deque(maxlen=fast)
        w: deque[float] = deque(maxlen=slow)
        for s, g in sorted(series.items()):
            if not math.isfinite(g):
                continue
            f.append(g)
            w.append(g)
            if len(w) >= fast:
                mw = sum(w) / len(w)
                if mw > 0 and sum(f) / len(f) > ratio * mw:
                    fired.add(s)
    return sorted(fired)


RULES = ("lightning", "megatron", "zclip", "mosaic")


def run_rules(st: Streams) -> dict[str, list[int]]:
    """Each published rule's firing steps on one run."""
    losses = sorted(st.loss.items())
    return {
        "lightning": [losses[i][0] for i in lightning_spike([x for _, x in losses])],
        "megatron": megatron(losses),
        "zclip": zclip(st.total()),
        "mosaic": mosaic(st.layers),
    }
