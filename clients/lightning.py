"""``trainsound.lightning``: a Lightning callback — ``Trainer(callbacks=[Sonify(run="mnist")])``.

Per-layer gradient norms are taken in ``on_before_optimizer_step``: Lightning calls it after the
AMP scaler has unscaled the gradients and *before* it clips them, so the norms are the true
pre-clip, unscaled ones, and the global ``metric/grad_norm`` is their root sum of squares. The rest
is the plain :func:`trainsound.watch` machinery (fused norms, one host copy per step, weight
statistics every ``weights_every``-th report) on the ``LightningModule``.

The loss of every optimizer step is the ``loss`` that ``training_step`` returned, as Lightning
backpropagates it (divided by ``accumulate_grad_batches``), summed over the step's micro-batches:
the mean micro-batch loss. Whatever the module logs with ``self.log`` goes out as ``metric/<name>``,
whatever its name (``loss``, ``train_loss``, ``lr``, ``step``); where the callback sends a metric of
its own (``lr``, ``grad_norm``, ``loss_scale``) its value wins for that step.

Importing this module without Lightning fails with one line naming the extra to install.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trainsound.errors import ClientArgumentError, Failures, check_counts, require

require("lightning", "trainsound.lightning", "lightning", "Lightning")

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402

from trainsound.torch.frame import FrameWatch, first_lr, guarded  # noqa: E402

__all__ = ["Sonify"]


class Sonify(pl.Callback):
    """Send a Lightning run's telemetry to the trainsound bridge, one bundle per optimizer step.

    Sends per-layer gradient norms before clipping (unscaled under AMP), weight statistics, the
    training loss of every optimizer step, every metric the module logs (``self.log``, any name),
    ``lr`` (first parameter group of the first optimizer, as the step used it), ``grad_norm``
    (global, pre-clip), ``loss_scale`` under 16-bit AMP,
    ``event skip`` when the optimizer skipped a step, ``epoch`` events and ``end``.
    With ``accumulate_grad_batches=k`` there is one report per optimizer step; under DDP only
    rank 0 sends (``ranks="all"`` for every rank).

    Args:
        run: run name (``/nn/<run>/...``).
        every: report every k-th optimizer step.
        **watch_options: as :func:`trainsound.watch` (``log``, ``weights_every``, ``host``, ``port``,
            ``client``, ``ranks``, ``activations``, …).

    Raises:
        ClientArgumentError: a wrong argument (checked here, before training starts).
    """

    def __init__(self, run: str = "lightning", every: int = 1, **watch_options: Any) -> None:
        super().__init__()
        if not isinstance(run, str) or not run:
            raise ClientArgumentError(f"run must be a non-empty string, got {run!r}")
        check_counts(every=every)
        for key in ("auto_loss", "scaler", "optimizer"):
            if key in watch_options:
                raise ClientArgumentError(f"{key} is set by the Lightning callback itself; leave it out")
        self.run = run
        self.every = every
        self.options = watch_options
        self.watch: FrameWatch | None = None
        #: What failed inside training steps (logged once per kind, counted), from the first fit on.
        self.failures: Failures | None = None
        self._before = 0  # watch.step when the step's gradients were taken
        self._captured = False
        self._lr: float | None = None  # the lr the step used (the scheduler moves it before on_train_batch_end)
        self._loss: Any = None  # the step's micro-batch losses, summed

    # -- lifecycle ------------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and self.watch is None:
            # The loss comes from training_step's output, not from backward(): under AMP that is the scaled loss.
            opts = dict(self.options)  # a second fit() starts from the same options
            self.watch = FrameWatch(pl_module, self.run, self.every, opts.pop("log", ("grads", "weights", "loss")),
                                    opts.pop("activations", None), auto_loss=False, **opts)
            self.failures = self.watch.failures  # kept after the watch closes
            self.watch.epoch = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.watch is not None and trainer.current_epoch != self.watch.epoch:
            self._guard(lambda w: w.set_epoch(trainer.current_epoch))

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        if self.watch is not None and optimizer is _first(trainer.optimizers):
            self._before = self.watch.step
            self._captured = True
            self._guard(lambda w: self._before_step(w, optimizer))

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.watch is None:
            return
        self._guard(lambda w: self._add_loss(outputs))
        if self._captured:  # an optimizer step ended in this batch
            self._captured = False
            self._guard(lambda w: self._end_step(w, trainer))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.teardown(trainer, pl_module, "fit")

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and self.watch is not None:
            watch, self.watch = self.watch, None
            watch.close()

    # -- per optimizer step ------------------------------------------------------------------------------
    def _before_step(self, w: FrameWatch, optimizer: Any) -> None:
        self._lr = None
        w.capture_grads()
        self._lr = first_lr(optimizer)

    def _add_loss(self, outputs: Any) -> None:
        """Every micro-batch's loss as Lightning backpropagates it (divided by ``accumulate_grad_batches``)."""
        value: Any = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if _scalar(value):
            loss = value.detach() if isinstance(value, torch.Tensor) else float(value)
            self._loss = loss if self._loss is None else self._loss + loss

    def _end_step(self, w: FrameWatch, trainer: pl.Trainer) -> None:
        loss, self._loss = self._loss, None
        if w.step == self._before:  # on_before_optimizer_step ran, optimizer.step() did not
            w.mark_skipped()
            return
        metrics = {k: v for k, v in trainer.callback_metrics.items() if _scalar(v)}
        own: dict[str, Any] = {} if self._lr is None else {"lr": self._lr}
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        if scaler is not None and scaler.is_enabled():
            own["loss_scale"] = scaler.get_scale()
        w.attach(loss, metrics, own)
        w.flush()

    def _guard(self, fn: Callable[[FrameWatch], Any]) -> None:
        guarded(self.watch, fn, "Lightning callback")


def _first(optimizers: Any) -> Any:
    return optimizers[0] if optimizers else None


def _scalar(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1
    return isinstance(value, (int, float)) and not isinstance(value, bool)
