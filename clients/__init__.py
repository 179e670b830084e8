"""trainsound: hear your neural network train.

The training side: one line in a training script sends telemetry over OSC to
the trainsound bridge (``trainsound bridge``). See docs/clients.md.

- :func:`send` / :class:`Client` — plain client (python-osc-free struct encoder, numpy only);
- :func:`watch` / :func:`log` — PyTorch (imported lazily: ``import trainsound`` never imports torch);
- :mod:`trainsound.keras` — ``Sonify`` callback for Keras 3 (TensorFlow, JAX and PyTorch backends);
- :mod:`trainsound.lightning`, :mod:`trainsound.transformers` — callbacks; :mod:`trainsound.optax` — a
  gradient transformation. Each imports its framework only when used.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from .errors import ClientArgumentError, MissingExtraError

if TYPE_CHECKING:
    from .osc import Client, send
    from .torch.frame import FrameWatch

__version__ = "0.1.0"
__all__ = ["Client", "ClientArgumentError", "MissingExtraError", "__version__", "log", "send", "watch"]


def __getattr__(name: str) -> Any:
    # Client and send load numpy on first use: ``trainsound bridge`` imports this package first and
    # catches SIGHUP before any heavy import (issue 16, item 16).
    if name in ("Client", "send"):
        from . import osc

        return getattr(osc, name)
    raise AttributeError(f"module 'trainsound' has no attribute {name!r}")


def _torch_client(feature: str) -> Any:
    from .errors import require

    require("torch", feature, "torch", "PyTorch")
    from .torch import watch as torch_client

    return torch_client


def watch(
    model: Any,
    run: str = "torch",
    every: int = 1,
    log: Any = ("grads", "weights", "loss"),
    activations: Any = None,
    **options: Any,
) -> FrameWatch:
    """Send a PyTorch model's gradient norms, weight statistics, loss and activation spectra every step.

    See :func:`trainsound.torch.watch.watch` for all options; ``scaler=`` (a ``torch.amp.GradScaler``)
    adds ``metric/loss_scale`` and an ``event skip`` for every step the scaler skipped
    (:mod:`trainsound.torch.frame`).

    Raises:
        MissingExtraError: PyTorch is not installed.
    """
    _torch_client("trainsound.watch")
    from .torch.frame import FrameWatch

    return FrameWatch(model, run, every, log, activations, **options)


def log(loss: Any = None, **metrics: Any) -> None:
    """Attach the loss and metrics of the current step to every active :func:`watch` (and every active
    :func:`trainsound.optax.sonify`).

    See :func:`trainsound.torch.watch.log` and :func:`trainsound.optax.log`.
    """
    optax_client = sys.modules.get("trainsound.optax")
    if optax_client is not None:
        optax_client.log(loss, **metrics)
        if "trainsound.torch.watch" not in sys.modules:
            return  # a JAX script: no torch needed
    _torch_client("trainsound.log").log(loss, **metrics)
