"""What training frameworks add to a PyTorch :class:`~trainsound.torch.watch.Watch`.

:class:`FrameWatch` is the watch that :func:`trainsound.watch` returns; it adds to the plain watch

- :meth:`FrameWatch.capture_grads`: the step's per-tensor gradient norms taken *now* — the framework
  adapters (Lightning, Hugging Face) call it before the framework clips; the optimizer's pre-step hook
  then keeps them instead of reading the clipped gradients. It also logs ``grad_norm``, the global
  pre-clip norm, computed on the device from the same per-tensor norms (no second pass);
- :meth:`FrameWatch.attach`: the step's loss, the user's metrics under any name and the adapter's own
  metrics (which win over a user's metric of the same name), so that nothing a user logs collides;
- ``scaler=``: a ``torch.amp.GradScaler``. A skipped step (overflow) shows as a smaller scale at the
  next iteration (the scale only shrinks on an overflow), and is sent as ``event skip``; every
  reported step carries ``metric/loss_scale``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..errors import ClientArgumentError
from .logs import first_lr
from .watch import Watch

__all__ = ["FrameWatch", "first_lr", "guarded"]


class FrameWatch(Watch):
    """A :class:`~trainsound.torch.watch.Watch` that frameworks can feed (see the module docstring).

    Args:
        scaler: a ``torch.amp.GradScaler`` whose skipped steps become ``event skip``.
        *args, **kwargs: as :class:`~trainsound.torch.watch.Watch`.
    """

    def __init__(self, *args: Any, scaler: Any = None, sum_loss: bool = False, **kwargs: Any) -> None:
        if scaler is not None and not callable(getattr(scaler, "get_scale", None)):
            raise ClientArgumentError(f"scaler must be a torch.amp.GradScaler, got {type(scaler).__name__}")
        self._scaler = scaler
        self._last_scale: float | None = None
        self._held = False  # grad norms were captured by the framework for this step
        self.skipped = 0
        super().__init__(*args, **kwargs)
        self._logs.sum_loss = sum_loss  # gradient accumulation: the step's loss is the sum of its backward() losses

    # -- entry points for framework adapters -------------------------------------------------------
    def attach(self, loss: Any = None, metrics: Mapping[str, Any] | None = None,
               own: Mapping[str, Any] | None = None) -> None:
        """Attach to the open step its ``loss`` (explicit, for this step), the user's ``metrics`` (any names,
        ``loss`` and ``lr`` included: they go out as ``metric/<name>``) and the adapter's ``own`` metrics."""
        if loss is not None:
            self._logs.loss(loss)
        self._logs.metrics(metrics or {})
        self._logs.metrics(own or {}, own=True)

    def capture_grads(self, unscale: bool = False) -> Sequence[torch.Tensor] | None:
        """Take the step's gradient norms now (before clipping); returns the per-tensor norms on the device.

        Also logs the global norm over them as ``grad_norm``. The optimizer step that follows keeps these.
        ``unscale``: the gradients are still multiplied by the ``scaler``'s scale; divide the norms by it.
        """
        self._grad_norms = None
        self._held = True
        if not (self.log_grads and self._reporting()):
            return None
        self._guard(self._capture_grads)
        norms = self._grad_norms
        scale = getattr(self._scaler, "_scale", None)
        if norms and unscale and isinstance(scale, torch.Tensor):
            norms = self._grad_norms = torch._foreach_div(list(norms), scale.to(norms[0].device))
        if norms:
            total = torch.linalg.vector_norm(torch.stack([t.float() for t in norms]))
            self._logs.metrics({"grad_norm": total}, own=True)
        return norms

    def mark_skipped(self) -> None:
        """The framework says the optimizer skipped this step: send ``event skip`` now, forget the step's grads."""
        self._grad_norms = None
        self._held = False
        self._logs.drop("grad_norm")
        self.skipped += 1
        if self.client is not None:
            self.client.event("skip")
            self.client.flush()

    # -- the plain watch's hooks, extended ---------------------------------------------------------
    def _on_pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._held:  # the framework took them before clipping
            return
        super()._on_pre_step(optimizer, args, kwargs)

    def _finish_step(self) -> None:
        self._held = False
        super()._finish_step()

    def _boundary(self) -> None:
        if self._scaler is not None:
            self._check_scaler()
        super()._boundary()

    def _tap_loss(self, tensor: torch.Tensor) -> None:
        scale = getattr(self._scaler, "_scale", None)
        if isinstance(scale, torch.Tensor) and tensor.numel() == 1:  # backward() ran on the scaled loss
            tensor = tensor.detach() / scale.to(tensor.device)
        super()._tap_loss(tensor)

    def _check_scaler(self) -> None:
        scale = float(self._scaler.get_scale())
        if self._last_scale is not None and scale < self._last_scale:
            self.mark_skipped()
        self._last_scale = scale
        if self._current is not None:
            self._logs.metrics({"loss_scale": scale}, own=True)


def guarded(watch: FrameWatch | None, fn: Callable[[FrameWatch], Any], who: str) -> None:
    """``fn(watch)`` when there is a watch; whatever it raises is recorded as ``who`` failing in the watch's
    :class:`~trainsound.errors.Failures` (one line the first time, then counted), never raised into training
    (the framework adapters' callbacks all go through here)."""
    if watch is not None:
        watch.failures.run(who, lambda: fn(watch))
