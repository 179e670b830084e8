"""The loss and metrics attached to a watched step, kept apart so that no name can collide.

Values are keyed by the message they become (``"loss"``, ``"metric/<name>"``): a metric the user
calls ``loss`` is ``metric/loss``, never the loss. A metric the adapter sends itself (``lr``,
``grad_norm``, ``loss_scale``) wins over a user's metric of the same name in the same step. An explicit
loss (``log(loss=…)``) replaces the one taken from ``backward()`` for its own step only.

>>> logs = StepLogs()
>>> logs.tap(2.0); logs.metrics({"loss": 9.0, "lr": 0.5}); logs.metrics({"lr": 0.1}, own=True)
>>> logs.metrics({"lr": 0.7}); logs.take()
{'loss': 2.0, 'metric/loss': 9.0, 'metric/lr': 0.1}
>>> logs.loss(3.0); logs.tap(2.0); logs.take(), logs.take()
({'loss': 3.0}, {})
>>> logs.tap(4.0); logs.take()
{'loss': 4.0}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import torch

__all__ = ["LOSS", "METRIC", "StepLogs", "first_lr"]

#: The key of the step's training loss.
LOSS: Final = "loss"
#: The prefix of a metric's key.
METRIC: Final = "metric/"


def first_lr(optimizer: Any) -> float | None:
    """The learning rate of an optimizer's first parameter group (a tensor lr is read as a float)."""
    groups = getattr(optimizer, "param_groups", None)
    if not groups:
        return None
    lr = groups[0].get("lr")
    if isinstance(lr, torch.Tensor):
        return float(lr.item())
    return float(lr) if isinstance(lr, (int, float)) else None


def _detach(value: Any) -> Any:
    return value.detach() if isinstance(value, torch.Tensor) else value


class StepLogs:
    """The open step's loss and metrics (numbers, or tensors kept detached), handed over once per step by :meth:`take`.

    Args:
        sum_loss: the step's loss is the sum of the losses ``backward()`` was called on (gradient
            accumulation whose micro-batch losses are already divided by the number of micro-batches).
    """

    def __init__(self, sum_loss: bool = False) -> None:
        self.sum_loss = sum_loss
        self.values: dict[str, Any] = {}
        self._explicit = False  # log(loss=…) this step: backward()'s loss does not replace it
        self._own: set[str] = set()  # keys the adapter set this step

    def loss(self, value: Any) -> None:
        """The step's loss, given explicitly (it stays the loss of this step)."""
        self._explicit = True
        self.values[LOSS] = _detach(value)

    def tap(self, value: Any) -> None:
        """The loss ``backward()`` ran on; ignored when the step already has an explicit loss."""
        if self._explicit:
            return
        value, previous = _detach(value), self.values.get(LOSS)
        self.values[LOSS] = previous + value if self.sum_loss and previous is not None else value

    def metrics(self, values: Mapping[str, Any], own: bool = False) -> None:
        """Attach metrics; ``own``: the adapter's, which a user's metric of the same name does not replace."""
        for name, value in values.items():
            key = METRIC + name
            if own:
                self._own.add(key)
            elif key in self._own:
                continue
            self.values[key] = _detach(value)

    def drop(self, name: str) -> None:
        """Forget a metric of the open step (e.g. the grad norm of a step the optimizer skipped)."""
        self.values.pop(METRIC + name, None)
        self._own.discard(METRIC + name)

    def take(self) -> dict[str, Any]:
        """Hand over the step's values and start the next step empty."""
        values, self.values = self.values, {}
        self._explicit = False
        self._own = set()
        return values
