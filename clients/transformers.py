"""``trainsound.transformers``: a Hugging Face ``TrainerCallback`` — ``Trainer(..., callbacks=[Sonify(run="gpt")])``.

The pre-clip gradients: the Trainer clips (``max_grad_norm``, default 1.0) *before* it calls
``on_pre_optimizer_step``, and no callback runs between the last ``backward()`` of a step and the
clip; recovering the pre-clip norms from the clipped ones is ill-conditioned (a clipped global norm
is ``max_norm·T/(T+1e-6)`` whatever ``T`` was). So the callback takes the per-tensor norms at the
end of every ``backward()`` instead: a post-accumulate-grad hook on the parameters queues one
autograd-engine callback per backward (``queue_callback``, how DDP learns a backward is done), and
that callback runs the fused norms on the fully accumulated ``.grad``. The last backward before an
optimizer step wins, so with gradient accumulation the norms are those of the summed gradients that
the Trainer clips; their root sum of squares is the Trainer's own pre-clip ``grad_norm``.

The loss of every optimizer step is read from the ``backward()`` calls of that step (the losses the
Trainer backpropagates, already divided for gradient accumulation) and summed: the per-step value that
the Trainer adds up and reports, averaged over ``logging_steps``, at ``on_log``. So the loss goes out
every step, whatever ``logging_steps`` is, and a NaN step is sent as NaN (the Trainer's NaN filter
would log a stand-in, 0.0 right after a log). ``on_log``'s own ``loss`` (a mean over the logging window)
is not sent; its other values go out as metrics, where the callback sends a metric of its own in that
step (``lr``, ``grad_norm``) its value wins.

Importing this module without transformers fails with one line naming the extra to install.
(This module is ``trainsound.transformers``; every import here is absolute, so ``transformers``
is the real Hugging Face package.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trainsound.errors import ClientArgumentError, Failures, check_counts, require

require("transformers", "trainsound.transformers", "transformers", "Hugging Face transformers")

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from trainsound.torch.frame import FrameWatch, first_lr, guarded  # noqa: E402

__all__ = ["Sonify"]


#: Trainer log keys → trainsound metric names (others keep their name; ``loss`` is the loss message).
LOG_NAMES = {"learning_rate": "lr"}
#: Trainer log keys not sent (epochs travel in ``step`` messages; ``train_*`` is the end-of-training summary;
#: ``loss`` is the mean over the logging window, the callback sends every step's).
LOG_SKIP = frozenset({"epoch", "total_flos", "step", "loss"})


class Sonify(TrainerCallback):
    """Send a Hugging Face Trainer run's telemetry to the trainsound bridge, one bundle per optimizer step.

    Per optimizer step: per-layer gradient norms **before** clipping, weight statistics (every
    ``weights_every``-th report), the step's loss (the sum of its micro-batches' ``backward()``
    losses, as the Trainer adds them up), ``metric/lr`` and ``metric/grad_norm`` (global, pre-clip).
    From ``on_log``: eval metrics and anything else logged (not its windowed ``loss``), attached to
    the step they were logged at. ``epoch`` events, ``skip`` when
    accelerate's scaler skipped a step, ``end``.

    Args:
        run: run name (``/nn/<run>/...``).
        every: report every k-th optimizer step.
        **watch_options: as :func:`trainsound.watch` (``log``, ``weights_every``, ``host``, ``port``, …).
    """

    def __init__(self, run: str = "transformers", every: int = 1, **watch_options: Any) -> None:
        if not isinstance(run, str) or not run:
            raise ClientArgumentError(f"run must be a non-empty string, got {run!r}")
        check_counts(every=every)
        for key in ("auto_loss", "scaler", "optimizer", "sum_loss"):
            if key in watch_options:
                raise ClientArgumentError(f"{key} is set by the Trainer callback itself; leave it out")
        self.run = run
        self.every = every
        self.options = watch_options
        self.watch: FrameWatch | None = None
        #: What failed inside training steps (logged once per kind, counted), from the first fit on.
        self.failures: Failures | None = None
        self._handles: list[Any] = []
        self._queued = False
        self._epoch = 0

    # -- lifecycle ------------------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None,
                       **kwargs: Any) -> None:
        if self.watch is not None or model is None:
            return
        scaler = getattr(optimizer, "scaler", None)  # accelerate's GradScaler under fp16
        opts = dict(self.options)
        self.watch = FrameWatch(model, self.run, self.every, opts.pop("log", ("grads", "weights", "loss")),
                                opts.pop("activations", None), scaler=scaler, sum_loss=True, **opts)
        self.failures = self.watch.failures  # kept after the watch closes
        self.watch.epoch = self._epoch = 0
        if self.watch.log_grads and (self.watch.client is not None or self.watch.sharded):
            probe = self._probe
            self._handles = [p.register_post_accumulate_grad_hook(probe) for p in model.parameters()
                             if p.requires_grad]

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._guard(lambda w: w.flush())  # the previous step, with whatever on_log added to it

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, optimizer: Any = None,
                              **kwargs: Any) -> None:
        # Before the scheduler moves it: the lr this step uses (what the Trainer logs as learning_rate).
        lr = first_lr(optimizer)
        if lr is not None:
            self._guard(lambda w: w.attach(own={"lr": lr}))

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        epoch = int(state.epoch or 0)
        if epoch != self._epoch:
            self._epoch = epoch
            self._guard(lambda w: w.set_epoch(epoch))

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        values = {LOG_NAMES.get(k, k): float(v) for k, v in (logs or {}).items()
                  if k not in LOG_SKIP and not k.startswith("train_")
                  and isinstance(v, (int, float)) and not isinstance(v, bool)}
        self._guard(lambda w: w.attach(metrics=values))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        if self.watch is not None:
            watch, self.watch = self.watch, None
            watch.close()

    # -- the end of every backward -----------------------------------------------------------------------
    def _probe(self, param: torch.Tensor) -> None:
        if not self._queued:
            self._queued = True
            torch.autograd.Variable._execution_engine.queue_callback(self._after_backward)

    def _after_backward(self) -> None:
        self._queued = False
        # Under fp16 the .grad are still multiplied by the scaler's scale here (accelerate unscales in its clip).
        self._guard(lambda w: w.capture_grads(unscale=w._scaler is not None))

    def _guard(self, fn: Callable[[FrameWatch], Any]) -> None:
        guarded(self.watch, fn, "Trainer callback")
