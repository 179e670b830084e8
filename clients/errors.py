"""Errors the training clients raise (only ever from constructors, never from a training step), and
:class:`Failures`: how an adapter reports what fails inside a step without raising or flooding."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

from trainsound.bridge.errors import TrainsoundError

__all__ = ["ClientArgumentError", "Failures", "MissingExtraError", "check_counts", "require"]


class ClientArgumentError(TrainsoundError, ValueError):
    """A client was given a wrong argument; the message names the argument and the bad value."""


class MissingExtraError(TrainsoundError, ImportError):
    """An optional framework (PyTorch, TensorFlow) is not installed; the message says which extra to install."""


def require(module: str, feature: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` or fail with one clear line naming the extra to install.

    >>> require("math", "trainsound.x", "x", "math").__name__
    'math'
    >>> require("no_such_module_xyz", "trainsound.watch", "torch", "PyTorch")
    Traceback (most recent call last):
    ...
    trainsound.errors.MissingExtraError: trainsound.watch needs PyTorch: pip install 'trainsound[torch]'
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(f"{feature} needs {what}: pip install 'trainsound[{extra}]'") from err


def check_counts(**values: object) -> None:
    """Each keyword must be an integer >= 1 (``every``, ``weights_every`` …), or the error names it.

    >>> check_counts(every=2, weights_every=0)
    Traceback (most recent call last):
    ...
    trainsound.errors.ClientArgumentError: weights_every must be an integer >= 1, got 0
    """
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ClientArgumentError(f"{name} must be an integer >= 1, got {value!r}")


class Failures:
    """An adapter's failures inside training steps: the first of each kind is logged as one line, all are counted.

    A broken telemetry step must neither stop training nor flood its log: a callback that fails on
    every step logs one warning naming what failed and the error (the traceback only at DEBUG), and
    the rest are counted in :attr:`count` (and :attr:`kinds`), summarised by :meth:`summary`.

    >>> quiet = logging.getLogger("doctest"); quiet.disabled = True
    >>> f = Failures(quiet)
    >>> for _ in range(3):
    ...     f.run("Lightning callback", lambda: {}["lr"])
    >>> f.count, f.summary()
    (3, 'Lightning callback failed 3 times (KeyError)')
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.count = 0
        #: ``"who (ErrorType)"`` → how often; a kind not seen before is logged once.
        self.kinds: dict[str, int] = {}

    def run(self, who: str, fn: Callable[[], Any]) -> None:
        """``fn()``; whatever it raises is recorded as ``who`` failing, never raised."""
        try:
            fn()
        except Exception as err:  # telemetry must never stop training
            self.record(who, err)

    def record(self, who: str, err: BaseException) -> None:
        """Count ``err``; log it (one line) when ``who`` has not failed this way before."""
        self.count += 1
        kind = f"{who} ({type(err).__name__})"
        seen = self.kinds.get(kind, 0)
        self.kinds[kind] = seen + 1
        if not seen:
            text = " ".join(str(err).split())  # one line, whatever the message holds
            self.logger.warning("trainsound: %s failed: %s: %s; training goes on (repeats are only counted)",
                                who, type(err).__name__, text)
            self.logger.debug("trainsound: %s failed", who, exc_info=err)

    def summary(self) -> str | None:
        """``"<who> failed N times (Error)"`` per kind, or ``None`` when nothing failed."""
        if not self.count:
            return None
        return "; ".join(f"{kind.replace(' (', f' failed {n} times (', 1)}" for kind, n in self.kinds.items())
