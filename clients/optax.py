"""``trainsound.optax``: an optax ``GradientTransformation`` that hears the gradients go by.

``optax.chain(trainsound.optax.sonify(run="mlp"), optax.adam(1e-3))`` — gradients pass through
unchanged. Inside the (jitted) update, per-layer squared L2 norms are computed on the device in the
same XLA computation (a *layer* is a group of leaves sharing a pytree path: Flax Linen's
``params/Dense_0/{kernel,bias}`` → ``Dense_0``, NNX's ``l1.kernel.value`` → ``l1``) and handed to the
host with ``jax.debug.callback`` — a host callback inside the compiled step, so nothing waits on
the device between steps. The loss travels the same way when the update is given ``value=loss``
(optax's extra-argument convention), every step, NaN included; host-side metrics go through :func:`log`
(``trainsound.log`` routes here too) and ride with the next step that is sent. A logged ``loss`` is the
loss only where the update was not given ``value=`` (the in-step loss is exact and a step early), and
a logged ``grad_norm`` does not replace the one sent here.

Importing this module without JAX/optax fails with one line naming the extra to install.
"""

from __future__ import annotations

import atexit
import functools
import math
import weakref
from collections.abc import Sequence
from typing import Any, NamedTuple

from trainsound.errors import ClientArgumentError, require

require("jax", "trainsound.optax", "jax", "JAX")
require("optax", "trainsound.optax", "jax", "optax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from trainsound.osc import Client  # noqa: E402
from trainsound.stats import layer_grad_norms  # noqa: E402

__all__ = ["SonifyState", "close", "layer_name", "log", "sonify"]

#: Leaf names that are a layer's parameters, not part of its path (Flax, Haiku, Equinox conventions).
_WRAPPERS = frozenset({"params", "value", "raw_value"})

_active: list[weakref.ref[_Sender]] = []


def _key(entry: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def layer_name(path: Sequence[Any]) -> str:
    """The layer of a parameter leaf: its pytree path without wrappers and without the leaf's own name.

    >>> from jax.tree_util import DictKey, GetAttrKey, SequenceKey
    >>> layer_name([DictKey("params"), DictKey("Dense_0"), DictKey("kernel")])
    'Dense_0'
    >>> layer_name([DictKey("l1"), DictKey("kernel"), GetAttrKey("value")])
    'l1'
    >>> layer_name([DictKey("blocks"), SequenceKey(2), DictKey("w")]), layer_name([DictKey("w")])
    ('blocks.2', 'w')
    """
    keys = [_key(e) for e in path]
    keys = [k for k in keys if k not in _WRAPPERS] or keys
    return ".".join(keys[:-1]) or keys[-1]


class SonifyState(NamedTuple):
    """The transformation's state: the number of updates seen."""

    steps: jax.Array


class _Sender:
    """Host side of one :func:`sonify`: receives the device's numbers in the callback and sends a step."""

    def __init__(self, client: Client, every: int) -> None:
        self.client = client
        self.every = every
        self.logs: dict[str, Any] = {}
        self.epoch: int | None = None
        self.started = False
        self.closed = False

    def __call__(self, step: Any, sq: Any, loss: Any, names: tuple[str, ...], owner: tuple[int, ...],
                 has_loss: bool) -> None:
        # a host callback must never break the jitted step, nor flood its log: one line, then counted
        self.client.failures.run("optax sonify", lambda: self._send(
            int(step), [float(x) for x in sq], float(loss) if has_loss else None, names, owner))

    def _send(self, step: int, sq: list[float], loss: float | None, names: tuple[str, ...],
              owner: tuple[int, ...]) -> None:
        c = self.client
        if self.closed:
            return
        if not self.started:
            self.started = True
            c.event("start")
            c.flush()
        logs = self._ready_logs()
        logged = logs.pop("loss", None)
        if loss is None:
            loss = logged
        if loss is not None:
            c.loss(loss)
        if sq:
            logs.pop("grad_norm", None)  # sent below, from the gradients themselves
        for key, value in logs.items():
            c.metric(key, value)
        if sq:
            c.grad_norms(layer_grad_norms(sq, owner, names))
            c.metric("grad_norm", math.sqrt(sum(sq)))
        c.step(step, self.epoch)

    def _ready_logs(self) -> dict[str, float]:
        """Logged values that can be read now; a device array still being computed waits for the next step."""
        out, keep = {}, {}
        for key, value in self.logs.items():
            is_ready = getattr(value, "is_ready", None)
            if callable(is_ready) and not is_ready():
                keep[key] = value
            else:
                out[key] = float(value)
        self.logs = keep
        return out

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.client.event("end")
            self.client.close()


def sonify(run: str = "jax", every: int = 1, *, host: str | None = None, port: int | None = None,
           client: Client | None = None) -> optax.GradientTransformationExtraArgs:
    """A gradient transformation that sends per-layer gradient norms (and ``value=`` the loss) every ``every`` steps.

    Put it first in the chain so it sees the raw gradients: ``optax.chain(sonify(), optax.clip_by_global_norm(1.0),
    optax.adam(1e-3))``; ``opt.update(grads, state, params, value=loss)`` adds the loss.
    Sends ``metric/grad_norm`` (the global norm of the raw gradients) and the step index from 0.

    Raises:
        ClientArgumentError: a wrong argument (the message names it).
    """
    if not isinstance(run, str) or not run:
        raise ClientArgumentError(f"run must be a non-empty string, got {run!r}")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ClientArgumentError(f"every must be an integer >= 1, got {every!r}")
    sender = _Sender(client or Client(host, port, run=run), every)
    _active.append(weakref.ref(sender))
    atexit.register(sender.close)

    def init_fn(params: Any) -> SonifyState:
        return SonifyState(steps=jnp.zeros([], jnp.int32))

    def update_fn(updates: Any, state: SonifyState, params: Any = None, **extra: Any) -> tuple[Any, SonifyState]:
        leaves = jax.tree_util.tree_flatten_with_path(updates)[0]
        names = [layer_name(path) for path, _ in leaves]
        groups = tuple(dict.fromkeys(names))
        owner = tuple(groups.index(n) for n in names)
        value = extra.get("value")
        loss = jnp.asarray(value, jnp.float32) if value is not None else jnp.float32(0)

        def report() -> None:
            sq = jnp.stack([jnp.sum(jnp.square(leaf.astype(jnp.float32))) for _, leaf in leaves]) if leaves \
                else jnp.zeros((0,), jnp.float32)
            jax.debug.callback(functools.partial(sender, names=groups, owner=owner, has_loss=value is not None),
                               state.steps, sq, loss)

        jax.lax.cond(state.steps % every == 0, report, lambda: None)
        return updates, SonifyState(steps=state.steps + 1)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def log(loss: Any = None, **metrics: Any) -> None:
    """Attach host-side values (floats or finished JAX arrays) to the next step every active sonify sends."""
    values = dict(metrics)
    if loss is not None:
        values["loss"] = loss
    for ref in list(_active):
        s = ref()
        if s is not None and not s.closed:
            s.logs.update(values)


def close() -> None:
    """Send ``end`` for every active :func:`sonify` and close its socket (also done at interpreter exit)."""
    for ref in list(_active):
        s = ref()
        if s is not None:
            s.close()
    _active.clear()
