"""The automatic loss pickup of :func:`trainsound.watch`: ``loss.backward()`` tells every watch that wants
it which tensor the loss is, through a thin wrapper around ``torch.Tensor.backward`` that exists only
while such a watch is active (``auto_loss=False`` turns it off)."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any, Protocol

import torch

logger = logging.getLogger("trainsound.torch.watch")


class Tapped(Protocol):
    """What the tap calls: a watch taking the tensor ``backward()`` was called on."""

    def _tap_loss(self, tensor: torch.Tensor) -> None: ...


class LossTap:
    """Wraps ``torch.Tensor.backward`` while at least one watch wants the loss; restores it afterwards."""

    def __init__(self) -> None:
        self.watches: list[weakref.ref[Tapped]] = []
        self.original: Callable[..., Any] | None = None

    def add(self, w: Tapped) -> None:
        if self.original is None:
            original = torch.Tensor.backward
            self.original = original
            tap = self

            def backward(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
                for ref in tap.watches:
                    watcher = ref()
                    if watcher is not None:
                        try:
                            watcher._tap_loss(tensor)
                        except Exception:  # the loss tap must never break backward()
                            logger.debug("trainsound: loss tap failed", exc_info=True)
                return original(tensor, *args, **kwargs)

            backward.__wrapped__ = original  # type: ignore[attr-defined]
            torch.Tensor.backward = backward  # type: ignore[method-assign,assignment]
        self.watches.append(weakref.ref(w))

    def remove(self, w: Tapped) -> None:
        self.watches = [r for r in self.watches if r() not in (None, w)]
        if not self.watches and self.original is not None:
            if getattr(torch.Tensor.backward, "__wrapped__", None) is self.original:
                torch.Tensor.backward = self.original  # type: ignore[method-assign,assignment]
            self.original = None
