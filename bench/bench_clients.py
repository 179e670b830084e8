"""Per-step cost of the training clients on the seed CNN (batch 64, CPU), as ratios to the bare step.

Run: ``.venv/bin/python bench/bench_clients.py`` (about a minute; ``--quick`` for a smoke run).

Two kinds of figures, because step times on a shared 2-vCPU VM vary ±25 % run to run:

- **isolated µs per step**: the client's own work on the training thread, timed in a tight loop
  on a model that holds real gradients (``watch``: the exact hook callables of one step — gradient
  norms, weight statistics, the loss tap, encode and ``sendto``; the seeds' way: per-layer
  ``.grad.norm()`` then ``.item()``). Divided by the median bare step.
- **step-time difference**: median step time with the client minus the bare median, measured in
  interleaved blocks in the same run (the only way to see hook costs spread through forward and
  backward, e.g. ``wandb.watch``); noisy, shown for comparison.
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
from torch import nn

import trainsound

BATCH = 64


class SeedCNN(nn.Module):
    """conv 1→20 5×5 → pool → conv 20→50 5×5 → pool → fc 800→500 → fc 500→10 (Perone 2019)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(800, 500)
        self.fc2 = nn.Linear(500, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.log_softmax(self.fc2(F.relu(self.fc1(x.flatten(1)))), dim=1)


class Setup:
    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = SeedCNN()
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
    for _ in range(20):
        fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def watch_once(s: Setup, handle: trainsound.torch_client.Watch, loss: torch.Tensor) -> Callable[[], None]:
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


def try_wandb(tmp: str) -> tuple[Any, str]:
    try:
        import wandb
    except ImportError:
        return None, "wandb is not installed (pip install wandb)"
    os.environ.setdefault("WANDB_SILENT", "true")
    try:
        run = wandb.init(mode="offline", dir=tmp, project="trainsound-bench", settings=wandb.Settings(console="off"))
    except Exception as err:
        return None, f"wandb.init(mode='offline') failed: {err}"
    return (wandb, run), f"wandb {wandb.__version__}, mode=offline"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few steps, for a smoke test")
    args = ap.parse_args()
    steps, rounds, loops = (10, 2, 50) if args.quick else (30, 4, 300)
    torch.manual_seed(0)
    print(
        f"trainsound {trainsound.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}"
    )
    print(f"seed CNN, batch {BATCH}, CPU; {rounds} interleaved rounds x {steps} steps; isolated loops of {loops}\n")

    s = Setup()
    s.time_steps(15)  # warm-up
    # --- isolated figures (a model with real gradients, no training around it) -----------------
    loss = F.nll_loss(s.model(s.x), s.y)
    loss.backward()
    iso: dict[str, float] = {}
    variants = {"watch(every=1)": ("grads", "weights", "loss"), "watch(every=1, log=grads+loss)": ("grads", "loss")}
    for name, log in variants.items():
        h = trainsound.watch(s.model, run="bench", port=9, log=log)  # port 9: discard, nobody listens
        iso[name] = isolated(watch_once(s, h, loss), loops)
        h.close()
    iso["seeds' way (.grad.norm().item() x4)"] = isolated(seeds_way(s), loops)
    s.opt.zero_grad()

    # --- interleaved step times ------------------------------------------------------------------
    with tempfile.TemporaryDirectory() as tmp:
        wb, wb_note = try_wandb(tmp)
        times: dict[str, list[float]] = {"bare": [], "watch(every=1)": [], "seeds' way": []}
        if wb is not None:
            times["wandb.watch(log='all', log_freq=1)"] = []
        seeds = seeds_way(s)
        for _ in range(rounds):
            s.after = lambda loss: None
            times["bare"] += s.time_steps(steps)
            h = trainsound.watch(s.model, run="bench", port=9)
            times["watch(every=1)"] += s.time_steps(steps)
            h.close()
            s.after = lambda loss: seeds() and None
            times["seeds' way"] += s.time_steps(steps)
            s.after = lambda loss: None
            if wb is not None:
                run = wb[1]
                run.watch(s.model, log="all", log_freq=1)
                s.after = lambda loss, run=run: run.log({"loss": loss.item()})
                times["wandb.watch(log='all', log_freq=1)"] += s.time_steps(steps)
                run.unwatch(s.model)
                s.after = lambda loss: None
        if wb is not None:
            wb[1].finish()

    bare = statistics.median(times["bare"])
    ordered = sorted(times["bare"])
    p10, p90 = ordered[len(ordered) // 10], ordered[9 * len(ordered) // 10]
    print(f"bare step (median): {bare * 1e6:9.0f} µs   (p10 {p10 * 1e6:.0f}, p90 {p90 * 1e6:.0f})\n")
    print(f"{'client':44s} {'isolated µs/step':>17s} {'ratio':>8s}")
    for name, t in iso.items():
        print(f"{name:44s} {t * 1e6:17.1f} {t / bare * 100:7.2f}%")
    print(f"\n{'client':44s} {'median step µs':>15s} {'vs bare':>9s}")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:44s} {m * 1e6:15.0f} {(m - bare) / bare * 100:+8.1f}%")
    print(f"\nwandb: {wb_note}")


if __name__ == "__main__":
    main()
