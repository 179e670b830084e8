"""Errors the training clients raise (only ever from constructors, never from a training step)."""

from __future__ import annotations

import importlib
from types import ModuleType

from trainsound.bridge.errors import TrainsoundError

__all__ = ["ClientArgumentError", "MissingExtraError", "check_counts", "require"]


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
