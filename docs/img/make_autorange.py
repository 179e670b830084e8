"""Draws docs/img/autorange.png: the loss CC of the auto range, before and after issue 11.

Run from the repository root: ``.venv/bin/python docs/img/make_autorange.py``.
"""

from __future__ import annotations

import math
from bisect import insort

import matplotlib
import numpy as np

from trainsound.bridge.mapping.scales import AutoRange

matplotlib.use("Agg")
import matplotlib.pyplot as plt


class ReservoirRange:
    """The auto range before issue 11: the 2nd..98th percentile of the whole history (log10), clamped."""

    def __init__(self, size: int = 256) -> None:
        self.size, self.values, self.stride, self.skip, self.lo, self.hi = size, [], 1, 0, 0.0, 0.0

    def norm(self, x: float) -> float:
        v = math.log10(x)
        self.skip += 1
        if self.skip >= self.stride:
            self.skip = 0
            insort(self.values, v)
            if len(self.values) > self.size:
                self.values, self.stride = self.values[::2], self.stride * 2
        n = len(self.values)
        self.lo, self.hi = self.values[int(0.02 * (n - 1))], self.values[math.ceil(0.98 * (n - 1))]
        if n < 2 or self.hi <= self.lo:
            return 0.5
        return min(1.0, max(0.0, (v - self.lo) / (self.hi - self.lo)))


def main() -> None:
    rng = np.random.default_rng(0)
    k = np.arange(500)
    streams = {
        "falling loss 3.0 → 0.003": 3.0 * 0.001 ** (k / 499),
        "the same with 5 % noise": 3.0 * 0.001 ** (k / 499) * np.exp(rng.normal(0, 0.05, 500)),
        "stationary noise around 2.0": 2.0 * np.exp(rng.normal(0, 0.15, 500)),
    }
    fig, axes = plt.subplots(len(streams), 2, figsize=(12, 7.5), dpi=100, sharex=True)
    for row, (title, xs) in zip(axes, streams.items(), strict=True):
        old, new = ReservoirRange(), AutoRange(256, start=0.9)
        cc_old = [round(old.norm(float(x)) * 127) for x in xs]
        cc_new = [round(new.norm(float(x)) * 127) for x in xs]
        row[0].semilogy(k, xs, color="black", lw=1)
        row[0].set_ylabel("loss")
        row[0].set_title(title, fontsize=10)
        row[1].step(k, cc_old, where="post", color="#d62728", lw=1, label="before: whole-history percentiles")
        row[1].step(k, cc_new, where="post", color="#1f77b4", lw=1.2, label="now: trend-aware, pivoted (default)")
        row[1].set_ylim(-4, 131)
        row[1].set_ylabel("CC 74")
        row[1].set_title(f"{title}: {len(set(cc_new))} distinct CC values (before: {len(set(cc_old))})",
                         fontsize=10)
    axes[0][1].legend(fontsize=8, loc="upper right")
    for ax in axes[-1]:
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig("docs/img/autorange.png")


if __name__ == "__main__":
    main()
