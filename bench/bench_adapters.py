"""Per-step cost of the framework adapters on a 12-block GPT-2-shaped model (CPU), as ratios to the bare step.

Run: ``.venv/bin/python bench/bench_adapters.py`` (``--quick`` for a smoke run, ``--profile`` to add where
``watch()``'s time goes). The model: ``GPT2Config(n_layer=12, n_embd=256, n_head=8)`` (n_head=8: GPT-2's
default 12 heads do not divide 256), random init, batch 8 × 128 tokens, SGD.

Figures are **isolated µs per step**: each client's own per-step work on the training thread, timed
in a loop on a model holding real gradients, divided by a bare step measured in the same round
(median over rounds). The clients, side by side in one run:

- ``trainsound.watch`` default (weight statistics every 10th step) and ``log=("grads", "loss")``;
- the Lightning callback's per-step work (pre-clip capture, global norm, step, lr/loss logs, send);
- the HF Trainer callback's per-step work (its post-accumulate-grad probe on every parameter, the capture
  at the end of backward, lr, send);
- Lightning's ``grad_norm`` utility (per-parameter norms + total, read as floats, as ``self.log_dict`` would);
- the seeds' way: per-layer ``.grad.norm().item()`` over every parameter tensor;
- ``wandb.watch(log="all", log_freq=1)`` (offline): the hooks it registered plus ``run.log``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from _wandb import try_wandb, wandb_once

import trainsound

warnings.filterwarnings("ignore")
TARGET = 0.01


class Setup:
    def __init__(self) -> None:
        from transformers import GPT2Config, GPT2LMHeadModel

        torch.manual_seed(0)
        self.model = GPT2LMHeadModel(GPT2Config(n_layer=12, n_embd=256, n_head=8))
        self.model.train()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-4)
        self.x = torch.randint(0, 50257, (8, 128))

    def step(self) -> torch.Tensor:
        self.opt.zero_grad()
        loss = self.model(input_ids=self.x, labels=self.x).loss
        loss.backward()
        self.opt.step()
        return loss.detach()


def isolated(fn: Callable[[], Any], n: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def watch_once(s: Setup, h: Any, loss: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        h._tap_loss(loss)
        h._on_pre_step(s.opt, (), {})
        h._on_post_step(s.opt, (), {})
        h._on_forward(s.model, ())

    return run


def lightning_once(s: Setup, h: Any, loss: torch.Tensor) -> Callable[[], None]:
    """What trainsound.lightning.Sonify does per optimizer step (on_before_optimizer_step … on_train_batch_end)."""
    from trainsound.torch.frame import first_lr

    def run() -> None:
        h.capture_grads()
        h._on_pre_step(s.opt, (), {})
        h._on_post_step(s.opt, (), {})
        h.log(loss, lr=first_lr(s.opt), train_loss=loss)
        h.flush()

    return run


def hf_once(s: Setup, cb: Any, loss: torch.Tensor) -> Callable[[], None]:
    """What trainsound.transformers.Sonify does per optimizer step: the probe runs once per parameter in backward."""
    params = [p for p in s.model.parameters() if p.requires_grad]

    def run() -> None:
        cb._queued = True  # as after the first parameter of a backward: the rest return at once
        for p in params:
            cb._probe(p)
        cb._after_backward()
        cb.watch._tap_loss(loss)
        cb.on_pre_optimizer_step(None, None, None, optimizer=s.opt)
        cb.watch._on_pre_step(s.opt, (), {})
        cb.watch._on_post_step(s.opt, (), {})
        cb.on_step_begin(None, None, None)

    return run


def lightning_grad_norm(s: Setup) -> Callable[[], dict[str, float]]:
    from lightning.pytorch.utilities import grad_norm

    return lambda: {k: float(v) for k, v in grad_norm(s.model, norm_type=2).items()}


def seeds_way(s: Setup) -> Callable[[], list[float]]:
    params = [p for p in s.model.parameters() if p.requires_grad]
    return lambda: [p.grad.norm().item() for p in params]


def profile_watch(s: Setup, loss: torch.Tensor, steps: int) -> str:
    """cProfile of ``steps`` default watch steps (a multiple of weights_every): where the time goes."""
    h = trainsound.watch(s.model, run="bench", port=9)
    once = watch_once(s, h, loss)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(steps):
        once()
    prof.disable()
    h.close()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(8)
    return "\n".join(line for line in out.getvalue().splitlines() if line.strip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one round, few loops")
    ap.add_argument("--profile", action="store_true", help="also profile 10 default watch() steps")
    args = ap.parse_args()
    # A bare step takes ~10-20 s on the shared 2-vCPU VM: few of them (each round's ratio uses its own).
    rounds, bare_steps, loops = (1, 1, 2) if args.quick else (2, 1, 10)
    from trainsound.transformers import Sonify as HfSonify

    s = Setup()
    n_params = sum(p.numel() for p in s.model.parameters())
    print(f"trainsound {trainsound.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f}")
    print(f"GPT-2 shaped: 12 blocks, n_embd 256, {n_params / 1e6:.1f} M parameters in "
          f"{sum(1 for _ in s.model.parameters())} tensors; batch 8 x 128; {rounds} round(s) of {bare_steps} bare "
          f"step(s), each client isolated over {loops} steps\n")
    loss = s.step()  # warm-up, and real gradients to measure on
    clients: dict[str, Callable[[], Callable[[], Any]]] = {}
    handles: list[Any] = []

    def watch_client(**kw: Any) -> Callable[[], Any]:
        h = trainsound.watch(s.model, run="bench", port=9, **kw)
        handles.append(h)
        return watch_once(s, h, loss)

    def lightning_client() -> Callable[[], Any]:
        from trainsound.torch.frame import FrameWatch

        h = FrameWatch(s.model, "bench", 1, ("grads", "weights", "loss"), None, port=9, auto_loss=False)
        handles.append(h)
        return lightning_once(s, h, loss)

    def hf_client() -> Callable[[], Any]:
        cb = HfSonify(run="bench", port=9)
        cb.on_train_begin(None, None, None, model=s.model, optimizer=s.opt)
        for hook in cb._handles:  # the probe is called directly here; a real backward would call it too
            hook.remove()
        handles.append(cb.watch)
        return hf_once(s, cb, loss)

    clients["watch() default (weights every 10th step)"] = watch_client
    clients["watch(log=('grads', 'loss'))"] = lambda: watch_client(log=("grads", "loss"))
    clients["trainsound.lightning.Sonify (per step)"] = lightning_client
    clients["trainsound.transformers.Sonify (per step)"] = hf_client
    clients["Lightning grad_norm(model, 2) -> floats"] = lambda: lightning_grad_norm(s)
    clients["seeds' way: .grad.norm().item() per tensor"] = lambda: seeds_way(s)
    with tempfile.TemporaryDirectory() as tmp:
        run, wb_note = try_wandb(tmp)
        bare: list[float] = []
        iso: dict[str, list[float]] = {name: [] for name in clients}
        wandb_name = "wandb.watch(log='all', log_freq=1) + log"
        if run is not None:
            iso[wandb_name] = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(bare_steps):
                loss = s.step()
            bare.append((time.perf_counter() - t0) / bare_steps)
            for name, make in clients.items():
                iso[name].append(isolated(make(), loops))  # 10 steps: one of them carries the weight statistics
                for h in handles:
                    h.close()
                handles.clear()
            if run is not None:
                run.watch(s.model, log="all", log_freq=1)
                iso[wandb_name].append(isolated(wandb_once(s.model, s.x, run, loss), 1))  # ~15 s a step here
                run.unwatch(s.model)
        if run is not None:
            run.finish()
        b = statistics.median(bare)
        print(f"bare step: {b * 1e6:.0f} µs (rounds {min(bare) * 1e6:.0f}..{max(bare) * 1e6:.0f})\n")
        print(f"{'client (isolated, per step)':46s} {'µs/step':>10s} {'of bare':>8s}  target <= 1 %")
        seeds = statistics.median(iso["seeds' way: .grad.norm().item() per tensor"])
        for name, ts in iso.items():
            t = statistics.median(ts)
            ratio = statistics.median(x / y for x, y in zip(ts, bare, strict=True))
            print(f"{name:46s} {t * 1e6:10.0f} {ratio * 100:7.2f}%  {'meets' if ratio <= TARGET else 'misses'}"
                  f"  ({t / seeds:.2f}x the seeds' way)")
        print(f"\nwandb: {wb_note}")
        if args.profile:
            print("\nwhere 10 default watch() steps spend their time (cProfile, by own time):")
            print(profile_watch(s, loss, 10))


if __name__ == "__main__":
    main()
