"""Keras 3 (TensorFlow, JAX and PyTorch backends): the ``Sonify`` callback, with no re-compile.

How the gradients are reached without touching ``compile()``: at ``on_train_begin`` the callback
wraps two *instance* attributes — ``model.optimizer.apply`` (called by the TF trainer's
``apply_gradients`` with the step's gradients) and ``model.compute_loss`` — and asks Keras to
re-trace the train function once. Inside the traced graph the wrappers compute, per trainable
variable, the gradient's sum of squares and the weights' sum, sum of squares, abs-max and squared
change, and store them with the step's loss and learning rate in one non-trainable ``tf.Variable``. After each batch
the callback reads that variable (one host transfer), combines per layer and sends one bundle.
``on_train_end`` restores both attributes and re-traces, so the model is left as it was.

Cost: one extra trace of the train function per ``fit`` (two if the function had already been
traced), a few fused reductions per variable inside the step, one copy of the trainable weights
for ``update_ratio``, and one small device→host read per reported step.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import keras
from keras import ops

from ..errors import ClientArgumentError, check_counts
from ..osc import Client
from ..stats import layer_grad_norms, layer_weight_stats, log_items
from .backends import BACKENDS, Sink

__all__ = ["Sonify"]

logger = logging.getLogger(__name__)
_MISSING = object()
#: What the callback sends as metrics itself: a Keras log of the same name is not sent over it.
OWN_METRICS = frozenset({"lr"})
#: The values read back per step before the per-variable ones: the loss and the learning rate.
HEAD = 2


def _layer_of(path: str, model_name: str) -> str:
    """``sequential/conv2d/kernel`` → ``conv2d``; nested layers keep their path (``block.dense``)."""
    parts = path.split("/")
    if len(parts) > 2 and parts[0] == model_name:
        parts = parts[1:]
    return ".".join(parts[:-1]) or parts[0]


class Sonify(keras.callbacks.Callback):
    """Send per-layer gradient norms, weight statistics, loss and metrics to the trainsound bridge.

    ``model.fit(x, y, callbacks=[Sonify(run="mnist")])`` — no re-compile, no extra metrics.

    Args:
        run: run name (``/nn/<run>/...``).
        every: report every k-th batch (the first is always reported).
        log: any of ``"grads"``, ``"weights"``, ``"loss"`` (loss and the other logged metrics).
        host: bridge host (default ``$TRAINSOUND_ADDR`` or 127.0.0.1).
        port: bridge port (default ``$TRAINSOUND_ADDR`` or 9150).
        client: an existing :class:`~trainsound.osc.Client` to send with instead.
        update_ratio: compute ‖ΔW‖/‖W‖ (keeps one copy of the trainable weights inside the step).
        weights_every: send weight statistics and ``units`` on every k-th reported batch (the first
            included); computed in the step every batch all the same.
        units: layer names whose kernel's per-output-unit means go out as ``weight_units`` (the mean
            over every kernel axis but the last: a Dense layer's columns, a Conv layer's filters).
        weight_only: statistics of each layer's kernel alone, bias ignored (the Keras seed's
            ``gradient_norm_<layer>``).

    Raises:
        ClientArgumentError: a wrong argument, or a Keras backend other than TensorFlow, JAX or PyTorch.
    """

    def __init__(
        self,
        run: str = "keras",
        every: int = 1,
        log: Iterable[str] | str = ("grads", "weights", "loss"),
        *,
        host: str | None = None,
        port: int | None = None,
        client: Client | None = None,
        update_ratio: bool = True,
        weights_every: int = 1,
        units: Iterable[str] | str | None = None,
        weight_only: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(run, str) or not run:
            raise ClientArgumentError(f"run must be a non-empty string, got {run!r}")
        check_counts(every=every, weights_every=weights_every)
        items = log_items(log)
        if keras.backend.backend() not in BACKENDS:
            raise ClientArgumentError(f"Sonify needs a Keras backend in {BACKENDS}, KERAS_BACKEND is "
                                      f"{keras.backend.backend()!r}")
        self.run = run
        self.every = every
        self.log_grads = "grads" in items
        self.log_weights = "weights" in items
        self.log_loss = "loss" in items
        self.update_ratio = update_ratio
        self.weights_every = weights_every
        self.units = [units] if isinstance(units, str) else list(units or ())
        self.weight_only = bool(weight_only)
        self.client = client or Client(host, port, run=run)
        self.step = 0
        self.epoch = 0
        self._sink: Sink | None = None
        self._restore: list[tuple[Any, str, Any]] = []

    # -- wiring -----------------------------------------------------------------------------------
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        model, optimizer = self.model, self.model.optimizer
        variables = [v for v in model.trainable_variables if not self.weight_only or v.name == "kernel"]
        self._unit_vars = self._unit_kernels(model)
        self._unit_slices: dict[str, slice] = {}
        self._index = {id(v): i for i, v in enumerate(variables)}
        names = [_layer_of(v.path, model.name) for v in variables]
        self._names = list(dict.fromkeys(names))
        self._owner = [self._names.index(n) for n in names]
        self._counts = [float(max(int(ops.size(v)), 0)) for v in variables]
        n = len(variables)
        self._n = n
        at = HEAD + 5 * n
        for name, kernel in self._unit_vars.items():
            width = int(kernel.shape[-1])
            self._unit_slices[name] = slice(at, at + width)
            at += width
        # stats: [lr | grad_sq (n) | sums (n) | sq (n) | abs_max (n) | delta_sq (n) | unit means of each `units`
        # layer]; read back as [loss | stats], so the unit slices count the loss; on every backend (keras_backends)
        self._sink = Sink({"loss": 1, "stats": at - 1})
        self._wrap(optimizer, "apply", self._make_apply(optimizer.apply))
        self._wrap(model, "compute_loss", self._make_compute_loss(model.compute_loss))
        model.make_train_function(force=True)
        self.client.event("start")
        self.client.flush()

    def _unit_kernels(self, model: Any) -> dict[str, Any]:
        """``units`` layer name → its kernel variable; errors name the layer."""
        out = {}
        for name in self.units:
            try:
                layer = model.get_layer(name)
            except ValueError:
                raise ClientArgumentError(f"units: model has no layer named {name!r}") from None
            kernel = getattr(layer, "kernel", None)
            if kernel is None or len(kernel.shape) < 1:
                raise ClientArgumentError(f"units: layer {name!r} has no kernel")
            out[name] = kernel
        return out

    def _wrap(self, obj: Any, attr: str, fn: Any) -> None:
        """Shadow ``obj.attr`` with an instance attribute; remember what to put back."""
        self._restore.append((obj, attr, vars(obj).get(attr, _MISSING)))
        object.__setattr__(obj, attr, fn)

    def _unwrap(self) -> None:
        for obj, attr, previous in reversed(self._restore):
            if previous is _MISSING:
                object.__delattr__(obj, attr)
            else:
                object.__setattr__(obj, attr, previous)
        self._restore.clear()

    def _make_compute_loss(self, original: Any) -> Any:
        sink = self._sink
        assert sink is not None

        def compute_loss(*args: Any, **kwargs: Any) -> Any:
            loss = original(*args, **kwargs)
            if kwargs.get("training", True):
                sink.put("loss", loss)
            return loss

        return compute_loss

    def _make_apply(self, original: Any) -> Any:
        sink, index, n, model, optimizer = self._sink, self._index, self._n, self.model, self.model.optimizer
        kernels = list(self._unit_vars.values())
        assert sink is not None
        want_grads, want_weights, want_delta = self.log_grads, self.log_weights, self.update_ratio and self.log_weights

        def apply(grads: Any, trainable_variables: Any = None) -> Any:
            # JAX's stateless_apply calls apply(grads) alone, for the model's trainable variables, in order.
            variables = list(trainable_variables if trainable_variables is not None else model.trainable_variables)
            pos = [index.get(id(v), -1) for v in variables]
            grad_sq = [ops.zeros(())] * n
            if want_grads:
                for i, g in zip(pos, grads, strict=True):
                    if i >= 0 and g is not None:
                        g = ops.convert_to_tensor(g)
                        grad_sq[i] = ops.sum(ops.square(ops.cast(g, "float32")))
            before = [ops.copy(v.value) for v in variables] if want_delta and variables is not None else None
            lr = ops.reshape(ops.cast(optimizer.learning_rate, "float32"), (1,))  # the one this step uses
            result = original(grads, trainable_variables)
            parts = [lr, ops.stack(grad_sq)] if n else [lr]
            if want_weights and variables is not None and n:
                sums, sqs, maxes, deltas = ([ops.zeros(())] * n for _ in range(4))
                for k, (i, v) in enumerate(zip(pos, variables, strict=True)):
                    if i < 0:
                        continue
                    w = ops.cast(v.value, "float32")
                    sums[i] = ops.sum(w)
                    sqs[i] = ops.sum(ops.square(w))
                    maxes[i] = ops.max(ops.abs(w))
                    if before is not None:
                        deltas[i] = ops.sum(ops.square(w - ops.cast(before[k], "float32")))
                parts += [ops.stack(sums), ops.stack(sqs), ops.stack(maxes), ops.stack(deltas)]
            elif n:
                parts.append(ops.zeros((4 * n,)))
            for kernel in kernels:  # one mean per output unit: over every axis but the last
                width = int(kernel.shape[-1])
                parts.append(ops.mean(ops.reshape(ops.cast(kernel.value, "float32"), (-1, width)), axis=0))
            sink.put("stats", ops.concatenate(parts))
            return result

        return apply

    # -- per batch ----------------------------------------------------------------------------------
    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        step = self.step
        self.step += 1
        if step % self.every:
            return
        # telemetry must never stop training, nor flood its log: one line, then counted
        self.client.failures.run("Keras Sonify", lambda: self._send(step, logs or {}))

    def _send(self, step: int, logs: dict[str, Any]) -> None:
        assert self._sink is not None
        v = self._sink.get("loss") + self._sink.get("stats")  # [loss | stats]: one small host read each
        c, n = self.client, self._n
        if self.log_loss:
            c.loss(v[0])  # this step's, from inside it (logs["loss"] is the epoch's running mean)
            for name, value in logs.items():
                if name != "loss" and name not in OWN_METRICS and isinstance(value, (int, float)):
                    c.metric(name, value)
        c.metric("lr", v[1])
        if self.log_grads and n:
            c.grad_norms(layer_grad_norms(v[HEAD : HEAD + n], self._owner, self._names))
        due = (step // self.every) % self.weights_every == 0
        if self.log_weights and n and due:
            sums, sqs, maxes, deltas = (v[HEAD + k * n : HEAD + (k + 1) * n] for k in range(1, 5))
            c.weights(layer_weight_stats(sums, sqs, maxes, deltas, self._counts, self._owner, self._names))
        for name, sl in self._unit_slices.items() if due else ():
            c.weight_units(name, v[sl])
        c.step(step, self.epoch)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch + 1
        for name, value in (logs or {}).items():
            if name.startswith("val_") and isinstance(value, (int, float)):
                self.client.metric(name, value)
        self.client.event("epoch")
        self.client.flush()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._unwrap()
        try:
            self.model.make_train_function(force=True)
        except Exception:
            logger.debug("trainsound: could not re-trace the train function", exc_info=True)
        self.client.event("end")
        self.client.flush()
