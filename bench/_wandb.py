"""The baseline both client benchmarks measure against: ``wandb.watch(log="all", log_freq=1)``, offline.

One step of it, isolated, is what its hooks do after a backward and a forward, plus ``run.log``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


def try_wandb(tmp: str) -> tuple[Any, str]:
    """An offline wandb run (or ``None``) and a line saying which, or why not."""
    try:
        import wandb
    except ImportError:
        return None, "wandb is not installed (pip install wandb)"
    os.environ.setdefault("WANDB_SILENT", "true")
    try:
        run = wandb.init(mode="offline", dir=tmp, project="trainsound-bench", settings=wandb.Settings(console="off"))
    except Exception as err:
        return None, f"wandb.init(mode='offline') failed: {err}"
    return run, f"wandb {wandb.__version__}, mode=offline"


def wandb_once(model: Any, x: Any, run: Any, loss: Any, out: Any = None) -> Callable[[], None]:
    """One step of ``wandb.watch(log='all', log_freq=1)``: the hooks it registered on ``model``, then ``run.log``."""
    grad_hooks = [(p, h) for p in model.parameters() for h in (p._backward_hooks or {}).values()]
    fwd_hooks = list(model._forward_hooks.values())
    if not grad_hooks or not fwd_hooks:
        raise RuntimeError("wandb.watch registered no hooks where expected (wandb internals changed?)")

    def step() -> None:
        for p, h in grad_hooks:
            h(p.grad)
        for h in fwd_hooks:
            h(model, (x,), out)
        run.log({"loss": loss.item()})

    return step
