"""Per-step cost of the training clients on the seed CNN (batch 64, CPU), as ratios to the bare step.

Run: ``.venv/bin/python bench/bench_clients.py`` (about 30 s; ``--quick`` for a smoke run).

Target (issue 3): the default ``trainsound.watch`` costs at most 1 % of the bare step at ``every=1``.

Two kinds of figures, because step times on a shared 2-vCPU VM vary ±25 % run to run:

- **isolated µs per step** (the verdict): the client's own work on the training thread, timed in
  a tight loop on a model that holds real gradients — ``watch``: the exact hook callables of one
  step (gradient norms, weight statistics, the loss tap, encode and ``sendto``), averaged over a
  multiple of ``weights_every`` steps; the seeds' way: per-layer ``.grad.norm()`` then ``.item()``;
  ``wandb.watch``: the hooks it registered (a histogram per gradient and per parameter) plus
  ``run.log``. Each round times a block of bare steps and then every client, so each ratio divides
  by a bare step measured moments before; the table shows medians over the rounds.
- **step-time difference**: median step time with the client minus the bare median, measured in
  interleaved blocks in the same run (shows hook costs spread through forward and backward);
  noisy, shown for comparison only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from _wandb import try_wandb, wandb_once

import trainsound
from trainsound.bridge.demo.models import perone_net

BATCH = 64


class Setup:
    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = perone_net()  # the seed CNN (conv 1→20, conv 20→50, fc 800→500, fc 500→10)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.5)
        self.x = torch.randn(BATCH, 1, 28, 28)
        self.y = torch.randint(0, 10, (BATCH,))
        self.after: Callable[[torch.Tensor], None] = lambda loss: None

    def step(self) -> None:
        self.opt.zero_grad()
        loss = F.nll_loss(self.model(self.x), self.y)
        loss.backward()
        self.after(loss)
        self.opt.step()

    def time_steps(self, n: int) -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            self.step()
            out.append(time.perf_counter() - t0)
        return out


def isolated(fn: Callable[[], Any], n: int) -> float:
    """Seconds per call of ``fn`` over ``n`` calls, after 20 warm-up calls."""
    for _ in range(20):
        fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def watch_once(s: Setup, handle: trainsound.torch.watch.Watch, loss: torch.Tensor) -> Callable[[], None]:
    """One step's worth of the watch's hook work, in the order training runs it."""

    def run() -> None:
        handle._tap_loss(loss)
        handle._on_pre_step(s.opt, (), {})
        handle._on_post_step(s.opt, (), {})
        handle._on_forward(s.model, ())

    return run


def seeds_way(s: Setup) -> Callable[[], list[float]]:
    layers = [s.model.conv1, s.model.conv2, s.model.fc1, s.model.fc2]
    return lambda: [m.weight.grad.norm().item() for m in layers]


DEFAULT = "watch() default (weights every 10th step)"
EVERY_STEP = "watch(weights_every=1): all, every step"
GRADS = "watch(log=('grads', 'loss'))"
SEEDS = "seeds' way (.grad.norm().item() x4)"
WANDB = "wandb.watch(log='all', log_freq=1) + log"
WATCHES: dict[str, dict[str, Any]] = {
    DEFAULT: {},
    EVERY_STEP: {"weights_every": 1},
    GRADS: {"log": ("grads", "loss")},
}
TARGET = 0.01


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few steps, for a smoke test")
    args = ap.parse_args()
    rounds, steps, loops, wb_loops = (2, 8, 50, 10) if args.quick else (5, 20, 300, 30)
    torch.manual_seed(0)
    print(
        f"trainsound {trainsound.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"seed CNN, batch {BATCH}, CPU, every=1; {rounds} rounds of {steps} bare steps then each client "
        f"isolated ({loops} steps; wandb {wb_loops})\n"
    )

    s = Setup()
    s.time_steps(15)  # warm-up
    with tempfile.TemporaryDirectory() as tmp:
        run, wb_note = try_wandb(tmp)
        # --- isolated figures (a model with real gradients, no training around it) ---------------
        bare_rounds: list[float] = []
        iso: dict[str, list[float]] = {name: [] for name in [*WATCHES, SEEDS] + ([WANDB] if run else [])}
        for _ in range(rounds):
            bare_rounds.append(statistics.median(s.time_steps(steps)))
            s.opt.zero_grad()
            out = s.model(s.x)
            loss = F.nll_loss(out, s.y)
            loss.backward()
            for name, kw in WATCHES.items():
                h = trainsound.watch(s.model, run="bench", port=9, **kw)  # port 9: discard, nobody listens
                iso[name].append(isolated(watch_once(s, h, loss), loops))
                h.close()
            iso[SEEDS].append(isolated(seeds_way(s), loops))
            if run is not None:
                run.watch(s.model, log="all", log_freq=1)
                iso[WANDB].append(isolated(wandb_once(s.model, s.x, run, loss, out.detach()), wb_loops))
                run.unwatch(s.model)
            del out, loss

        # --- interleaved step times (noisy; for comparison) --------------------------------------
        times: dict[str, list[float]] = {"bare": [], DEFAULT: [], EVERY_STEP: []}
        if run is not None:
            times[WANDB] = []
        for _ in range(max(2, rounds - 2)):
            times["bare"] += s.time_steps(steps)
            for name in (DEFAULT, EVERY_STEP):
                h = trainsound.watch(s.model, run="bench", port=9, **WATCHES[name])
                times[name] += s.time_steps(steps)
                h.close()
            if run is not None:
                run.watch(s.model, log="all", log_freq=1)
                s.after = lambda loss, run=run: run.log({"loss": loss.item()})
                times[WANDB] += s.time_steps(steps)
                run.unwatch(s.model)
                s.after = lambda loss: None
        if run is not None:
            run.finish()

    bare = statistics.median(bare_rounds)
    print(
        f"bare step: {bare * 1e6:.0f} µs (median of the rounds' medians; rounds "
        f"{min(bare_rounds) * 1e6:.0f}..{max(bare_rounds) * 1e6:.0f})\n"
    )
    print(f"{'client (isolated, per step)':44s} {'µs/step':>9s} {'of bare':>8s}  {'target <= 1 %':s}")
    print(f"{'bare step':44s} {bare * 1e6:9.0f} {100:7.1f}%")
    for name, ts in iso.items():
        t = statistics.median(ts)
        ratio = statistics.median(x / b for x, b in zip(ts, bare_rounds, strict=True))
        spread = f"  ({min(ts) * 1e6:.0f}..{max(ts) * 1e6:.0f} µs)"
        verdict = "meets" if ratio <= TARGET else "misses"
        print(f"{name:44s} {t * 1e6:9.1f} {ratio * 100:7.2f}%  {verdict}{spread}")
    print(f"\n{'client (step-time difference, noisy)':44s} {'median µs':>9s} {'vs bare':>8s}")
    step_bare = statistics.median(times["bare"])
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:44s} {m * 1e6:9.0f} {(m - step_bare) / step_bare * 100:+7.1f}%")
    print(f"\nwandb: {wb_note}")


if __name__ == "__main__":
    main()
