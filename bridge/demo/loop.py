"""The demo's PyTorch training loop, shared by the seed CNN (:mod:`.models`) and the small GPT-2 (:mod:`.gpt2`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

#: Called after every step with (step, loss).
Progress = Callable[[int, float], None]


def train_steps(handle: Any, opt: Any, batches: Iterable[Any], loss_of: Callable[[Any], Any],
                progress: Progress | None = None, **metrics: float) -> list[float]:
    """One optimizer step per batch: ``loss_of(batch)`` backward, its value logged to trainsound with ``metrics``.

    Returns the loss per step; closes ``handle`` (the run's ``trainsound.watch``) at the end, whatever happens.
    NaN does not stop training: Perone's NaN run plays on, and so do we.
    """
    import trainsound

    losses: list[float] = []
    try:
        for step, batch in enumerate(batches):
            opt.zero_grad()
            loss = loss_of(batch)
            loss.backward()
            value = float(loss.item())
            trainsound.log(loss=value, **metrics)
            opt.step()
            losses.append(value)
            if progress is not None:
                progress(step + 1, value)
    finally:
        handle.close()
    return losses
