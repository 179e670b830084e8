"""``trainsound.keras``: the Keras callback, imported lazily.

``from trainsound.keras import Sonify`` imports Keras/TensorFlow only at that moment; without
TensorFlow it fails with one line naming the extra to install. (This module is
``trainsound.keras``; the ``import keras`` inside :mod:`trainsound.keras.callback` is absolute and
reaches the real Keras.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .callback import Sonify

__all__ = ["Sonify"]


def __getattr__(name: str) -> Any:
    if name == "Sonify":
        from ..errors import require

        require("tensorflow", "trainsound.keras.Sonify", "keras", "TensorFlow (Keras 3)")
        require("keras", "trainsound.keras.Sonify", "keras", "TensorFlow (Keras 3)")
        from .callback import Sonify

        return Sonify
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
