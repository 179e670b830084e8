"""PyTorch: ``trainsound.watch(model)`` — gradient norms, weight statistics, loss, lr and activation spectra.

How a step flows (all hooks are thin; the numbers are computed with fused ``torch._foreach_*`` ops
and leave the device once per step as one vector):

- optimizer step **pre**-hook: the learning rate the step uses, per-tensor gradient norms (one
  ``torch._foreach_norm``), on the device;
- optimizer step **post**-hook, on every ``weights_every``-th reported step (default 10): per tensor the weight
  norm, sum, abs-max and ‖ΔW‖ against a preallocated copy of the weights of the previous weight report
  (``_foreach_*``); mean and std derived on the host; with ``units=``, those modules' per-unit mean weights;
- every per-tensor scalar of the step (gradient norms, weight statistics, a loss tensor already known) is
  stacked into **one** vector with one ``torch.stack`` and copied to the host once (on a GPU: asynchronously
  into pinned memory, with an event — no synchronisation inside the step);
- the model's next training forward (a forward pre-hook) closes the step: what :func:`log` got since the
  previous forward is attached and every record whose copy has finished goes out as one bundle ("one step
  late"); :meth:`Watch.close` sends the last one.

The loss is picked up from ``loss.backward()`` (a thin wrapper around ``torch.Tensor.backward`` while a watch
is active); ``trainsound.log(loss=...)`` replaces it for that step.
"""

from __future__ import annotations

import atexit
import logging
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import torch
from torch import nn

from ..errors import ClientArgumentError, Failures, check_counts
from ..osc import Client
from ..stats import LOG_CHOICES, log_items
from . import distributed as tdist
from .activations import DEFAULT_BINS, MAX_BINS, spectrum
from .logs import StepLogs, first_lr
from .loss import LossTap
from .names import layer_name
from .steps import DeviceStats, Record, send_record, stack_scalars, to_host
from .units import UnitMeans

__all__ = ["LOG_CHOICES", "Watch", "log", "watch"]

logger = logging.getLogger(__name__)

LogItem = Literal["grads", "weights", "loss"]
DEFAULT_SPECTRUM_EVERY = 10
DEFAULT_WEIGHTS_EVERY = 10
#: Records kept waiting for an unfinished device copy before the oldest is forced (synchronised).
MAX_QUEUED = 4

_active: list[weakref.ref[Watch]] = []


class Watch:
    """Handle returned by :func:`watch`; :meth:`close` removes every hook and sends the last step.

    Attributes:
        client: the :class:`~trainsound.osc.Client` (``None`` on ranks that do not send).
        step: optimizer steps seen so far.
    """

    def __init__(
        self,
        model: nn.Module,
        run: str,
        every: int,
        log: Iterable[str],
        activations: Sequence[str] | None,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        client: Client | None = None,
        host: str | None = None,
        port: int | None = None,
        spectrum_bins: int = DEFAULT_BINS,
        spectrum_every: int = DEFAULT_SPECTRUM_EVERY,
        weights_every: int = DEFAULT_WEIGHTS_EVERY,
        update_ratio: bool = True,
        units: Sequence[str] | str | None = None,
        weight_only: bool = False,
        auto_loss: bool = True,
        ranks: Literal["zero", "all"] = "zero",
        sharded: bool | None = None,
        process_group: Any = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ClientArgumentError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(run, str) or not run:
            raise ClientArgumentError(f"run must be a non-empty string, got {run!r}")
        check_counts(every=every, spectrum_every=spectrum_every, weights_every=weights_every)
        if isinstance(spectrum_bins, bool) or not isinstance(spectrum_bins, int) or not 2 <= spectrum_bins <= MAX_BINS:
            raise ClientArgumentError(f"spectrum_bins must be an integer in 2..{MAX_BINS}, got {spectrum_bins!r}")
        items = log_items(log)
        if ranks not in ("zero", "all"):
            raise ClientArgumentError(f"ranks must be 'zero' or 'all', got {ranks!r}")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise ClientArgumentError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        activations = [activations] if isinstance(activations, str) else activations
        missing = [name for name in activations or () if name not in dict(model.named_modules())]
        if missing:
            raise ClientArgumentError(f"activations: model has no module named {missing[0]!r}")

        self.model = model
        self.every = every
        self.log_grads = "grads" in items
        self.log_weights = "weights" in items
        self.log_loss = "loss" in items
        self.spectrum_bins = spectrum_bins
        self.spectrum_every = spectrum_every
        self.weights_every = weights_every
        self.update_ratio = bool(update_ratio)
        self.auto_loss = bool(auto_loss)
        self.step = 0
        self.epoch: int | None = None
        self.stats = DeviceStats(model, self.log_weights and self.update_ratio, weight_only=bool(weight_only))
        self.units = UnitMeans(model, units)
        self._grad_norms: Sequence[torch.Tensor] | None = None
        self._numel: torch.Tensor | None = None
        self._spectra: dict[str, torch.Tensor] = {}
        self._logs = StepLogs()
        self._stepped = False
        self._current: Record | None = None
        self._queue: list[Record] = []
        self._hooks: list[Any] = []
        self._closed = False
        self._optimizers: weakref.WeakKeyDictionary[torch.optim.Optimizer, bool] = weakref.WeakKeyDictionary()
        self._optimizer = optimizer

        rank, world = tdist.dist_info()
        self.rank, self.world = rank, world
        self.sharded = tdist.is_sharded(model) if sharded is None else bool(sharded)
        self.process_group = process_group
        sends = ranks == "all" or rank == 0
        self.client: Client | None = None
        if sends:
            self.client = client or Client(host, port, run=tdist.rank_run_name(run, rank, ranks == "all" and world > 1))
        #: What failed inside training steps: logged once per kind, counted (the client's when it sends).
        self.failures = self.client.failures if self.client is not None else Failures(logger)
        # A rank that neither sends nor takes part in a collective needs no hooks at all.
        if not sends and not (self.sharded and world > 1):
            return
        self._install(activations or ())
        if self.client is not None:
            self.client.event("start")
            self.client.flush()

    # -- wiring -----------------------------------------------------------------------------------
    def _install(self, activations: Sequence[str]) -> None:
        self._hooks.append(self.model.register_forward_pre_hook(self._on_forward))
        if self._optimizer is not None:
            self._hooks.append(self._optimizer.register_step_pre_hook(self._on_pre_step))
            self._hooks.append(self._optimizer.register_step_post_hook(self._on_post_step))
        else:
            from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

            self._hooks.append(register_optimizer_step_pre_hook(self._on_pre_step))
            self._hooks.append(register_optimizer_step_post_hook(self._on_post_step))
        modules = dict(self.model.named_modules())
        for name in activations:
            hook = self._spectrum_hook(layer_name(name, modules[name]))
            self._hooks.append(modules[name].register_forward_hook(hook))
        if self.log_loss and self.auto_loss:
            _LOSS_TAP.add(self)
        _active.append(weakref.ref(self))
        atexit.register(self.close)

    def _mine(self, optimizer: torch.optim.Optimizer) -> bool:
        if self._optimizer is not None:
            return True
        known = self._optimizers.get(optimizer)
        if known is None:
            ids = {id(p) for p in self.stats.layout.params}
            known = any(id(p) in ids for g in optimizer.param_groups for p in g["params"])
            self._optimizers[optimizer] = known
        return known

    def _reporting(self) -> bool:
        return self.step % self.every == 0

    # -- hooks (each guarded: nothing may raise into training) ------------------------------------
    def _on_forward(self, module: nn.Module, args: Any) -> None:
        if module.training and torch.is_grad_enabled():
            self._guard(self._boundary)

    def _spectrum_hook(self, name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if (
                isinstance(output, torch.Tensor)
                and module.training
                and self._reporting()
                and self.step % self.spectrum_every == 0
            ):
                try:
                    self._spectra[name] = spectrum(output, self.spectrum_bins)
                except Exception:  # a strange activation must not stop training
                    logger.debug("trainsound: no spectrum for %s", name, exc_info=True)

        return hook

    def _on_pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._reporting() and self._mine(optimizer):
            if (lr := first_lr(optimizer)) is not None:  # the rate this step uses: lr ticks, lr → 0 plateaus
                self._logs.metrics({"lr": lr}, own=True)
            if self.log_grads:
                self._guard(self._capture_grads)

    def _on_post_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._mine(optimizer):
            self._guard(self._finish_step)

    def _guard(self, fn: Callable[[], None]) -> None:
        self.failures.run("trainsound.watch", fn)  # telemetry must never crash training, nor flood its log

    # -- the per-step work ------------------------------------------------------------------------
    def _weights_due(self, step: int) -> bool:
        """Weight statistics go with every ``weights_every``-th reported step (the first included)."""
        return self.log_weights and (step // self.every) % self.weights_every == 0

    def _capture_grads(self) -> None:
        self._grad_norms = self.stats.grad_norms()

    def _finish_step(self) -> None:
        step = self.step
        self.step += 1
        self._stepped = True
        if step % self.every:
            self._spectra.clear()
            return
        lay = self.stats.layout
        n = len(lay.params)
        rec = Record(step, self.epoch, weights=bool(n) and self._weights_due(step))
        scalars: list[torch.Tensor] = []
        if self.log_grads and n:
            scalars.extend(self._grad_norms if self._grad_norms is not None else [self.stats.zero] * n)
        self._grad_norms = None
        norms = len(scalars)
        if rec.weights:
            scalars.extend(self.stats.weight_parts())
            norms += 2 * n
        sharded = self.sharded and self.world > 1 and n
        if self.client is not None and not sharded:  # fold log tensors known now into the same vector
            device = self.stats.zero.device
            for key, value in self._logs.values.items():
                if isinstance(value, torch.Tensor) and value.numel() == 1 and value.device == device:
                    rec.folded[key] = (value, len(scalars))
                    scalars.append(value.reshape(()))
        # torch.stack promotes dtypes (float32 norms of bfloat16 weights); it needs one device.
        head = stack_scalars(scalars, self.stats.uniform) if scalars else torch.zeros(0, device=self.stats.zero.device)
        if sharded:  # ranks add squares and max abs-maxima; otherwise both are done on the host
            rec.reduced = True
            head[:norms].square_()
            if rec.weights:
                at = (n if self.log_grads else 0) + 3 * n
                torch.maximum(head[at : at + n], head[at + n : at + 2 * n].neg(), out=head[at : at + n])
        parts = [head]
        if sharded and rec.weights:
            if self._numel is None:
                self._numel = torch.tensor(lay.numel, device=self.stats.zero.device)
            parts.append(self._numel)
        offset, dev = sum(p.numel() for p in parts), self.stats.zero.device
        blocks = [(rec.spectra, k, x.to(dev).float().reshape(-1)) for k, x in self._spectra.items()]
        if self.units and (step // self.every) % self.weights_every == 0:  # as weight statistics
            blocks += [(rec.units, k, x) for k, x in self.units.parts(dev).items()]
        for where, name, x in blocks:
            where[name] = slice(offset, offset + x.numel())
            offset += x.numel()
            parts.append(x)
        self._spectra = {}
        vector = parts[0] if len(parts) == 1 else torch.cat(parts)
        if sharded:
            at = (n if self.log_grads else 0) + 3 * n
            maxima = [slice(at, at + n)] if rec.weights else []
            vector = tdist.reduce_stats(vector, maxima, self.process_group)
        if self.client is None:
            return
        to_host(vector, rec)
        self._current = rec

    def _boundary(self) -> None:
        """A new training iteration starts: close the previous step's record and send what is ready."""
        if self._current is not None:
            rec, self._current = self._current, None
            rec.logs = self._logs.take()
            self._queue.append(rec)
        elif self._stepped:
            self._logs.take()  # logs of a step that is not reported
        self._stepped = False
        self._drain(wait=len(self._queue) > MAX_QUEUED)

    def _drain(self, wait: bool) -> None:
        while self._queue:
            rec = self._queue[0]
            values = rec.values(wait)
            if values is None:
                return
            self._queue.pop(0)
            self._send(rec, values)
            wait = wait and len(self._queue) > MAX_QUEUED

    def _send(self, rec: Record, v: list[float]) -> None:
        if self.client is not None:
            send_record(self.client, rec, v, self.stats.layout, grads=self.log_grads, loss=self.log_loss,
                        device=self.stats.zero.device)

    # -- public -----------------------------------------------------------------------------------
    def log(self, loss: Any = None, **metrics: Any) -> None:
        """Attach the loss and metrics to the current step (tensors are read on the host once per step).

        A loss given here replaces the one ``backward()`` ran on, for this step only.
        """
        if loss is not None:
            self._logs.loss(loss)
        self._logs.metrics(metrics)

    def _tap_loss(self, tensor: torch.Tensor) -> None:
        if tensor.numel() == 1 and not self._closed:
            self._logs.tap(tensor)

    def set_epoch(self, epoch: int) -> None:
        """Send an ``epoch`` event and include ``epoch`` in following ``step`` messages."""
        self.epoch = int(epoch)
        if self.client is not None:
            self.client.event("epoch")

    def flush(self) -> None:
        """Send every finished step now (waits for pending device copies)."""
        self._guard(self._boundary)
        self._guard(lambda: self._drain(wait=True))

    def close(self) -> None:
        """Remove every hook, send the last step and an ``end`` event. Idempotent."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        _LOSS_TAP.remove(self)
        _active[:] = [r for r in _active if r() not in (None, self)]
        atexit.unregister(self.close)
        if self.client is not None:
            self.client.event("end")
            self.client.close()

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_LOSS_TAP = LossTap()


def watch(
    model: nn.Module,
    run: str = "torch",
    every: int = 1,
    log: Iterable[LogItem] | LogItem = ("grads", "weights", "loss"),
    activations: Sequence[str] | None = None,
    **options: Any,
) -> Watch:
    """Send a model's telemetry to the trainsound bridge after every ``every``-th optimizer step.

    Args:
        model: the ``nn.Module`` to watch. Every module that directly owns trainable parameters is a layer,
            named by its module path (``features.0``, ``fc1``; wrappers' segments such as DDP's ``module.`` dropped).
        run: run name (``/nn/<run>/...``); each run of a sweep should have its own.
        every: report every k-th optimizer step (the first step is always reported).
        log: any of ``"grads"`` (per-layer gradient L2 norm over weight and bias), ``"weights"`` (mean, std,
            abs-max, L2 norm, update ratio ‖ΔW‖/‖W‖ since the last weight report), ``"loss"``; the lr goes every step.
        activations: module paths whose outputs get an ``activation_spectrum``.
        **options: ``optimizer`` (hook only this optimizer; default: any optimizer holding the model's
            parameters), ``client`` / ``host`` / ``port``, ``spectrum_bins`` (64), ``spectrum_every`` (10 steps),
            ``weights_every`` (10: weight statistics on every 10th reported step — the first included — so the
            default stays under 1 % of a step; the update ratio then spans those 10 reports; ``1`` for every
            reported step), ``update_ratio`` (True; keeps one copy of the weights), ``units`` (module paths:
            their weight's per-output-unit means as ``weight_units``, with the weight statistics),
            ``weight_only`` (False; True: each layer's ``weight`` alone, bias ignored, as Perone's
            ``layer.weight.grad.norm()``), ``auto_loss`` (True: take the loss from ``loss.backward()``),
            ``ranks`` (``"zero"``: only rank 0 sends; ``"all"``: every rank, as ``<run>.rank<r>``),
            ``sharded`` (None: auto-detect FSDP/DTensor; True: reduce norms across ranks), ``process_group``.

    Returns:
        A :class:`Watch`; ``.close()`` removes every hook (also at interpreter exit).
    Raises:
        ClientArgumentError: a wrong argument (the message names it).
    """
    return Watch(model, run, every, log, activations, **options)


def log(loss: Any = None, **metrics: Any) -> None:
    """Attach ``loss`` and metrics to the current step of every active watch (tensors welcome)."""
    for ref in list(_active):
        w = ref()
        if w is not None:
            w.log(loss, **metrics)
