"""Where the Keras callback's in-step numbers wait for it, on each Keras 3 backend.

The numbers are computed inside the train step (traced by TensorFlow, jitted by JAX, eager in
PyTorch); how they get out differs:

- ``tensorflow``: assigned to a non-trainable ``keras.Variable`` inside the traced step, read after the batch;
- ``jax``: the step is stateless (a variable assigned in it is discarded), so ``jax.debug.callback`` hands
  the values to the host from inside the jitted step; Keras materialises the batch's logs before
  ``on_train_batch_end``, so the callback has run by then;
- ``torch``: eager; the step keeps a reference to the (detached) tensor.
"""

from __future__ import annotations

import functools
from typing import Any

import keras
import numpy as np
from keras import ops

from ..errors import ClientArgumentError

__all__ = ["BACKENDS", "Sink"]

BACKENDS = ("tensorflow", "jax", "torch")


class Sink:
    """Named float32 vectors of fixed size, written inside the train step, read on the host after it.

    Args:
        sizes: name → vector length.
    """

    def __init__(self, sizes: dict[str, int]) -> None:
        self.backend = keras.backend.backend()
        if self.backend not in BACKENDS:
            raise ClientArgumentError(f"Sonify needs a Keras backend in {BACKENDS}, KERAS_BACKEND is {self.backend!r}")
        self.sizes = sizes
        self._values: dict[str, Any] = {name: np.zeros(n, np.float32) for name, n in sizes.items()}
        self._vars: dict[str, Any] = {}
        if self.backend == "tensorflow":
            self._vars = {name: keras.Variable(ops.zeros((n,)), trainable=False, dtype="float32",
                                               name=f"trainsound_{name}") for name, n in sizes.items()}

    def put(self, name: str, tensor: Any) -> None:
        """Inside the step: keep ``tensor`` (any shape with ``sizes[name]`` elements) for the host."""
        vector = ops.reshape(ops.cast(tensor, "float32"), (self.sizes[name],))
        if self.backend == "tensorflow":
            self._vars[name].assign(vector)
        elif self.backend == "jax":
            import jax

            jax.debug.callback(functools.partial(self._store, name), vector)
        else:
            self._values[name] = vector.detach()

    def _store(self, name: str, value: Any) -> None:
        self._values[name] = np.asarray(value)

    def get(self, name: str) -> list[float]:
        """After the step: the values as floats (one device→host read)."""
        if self.backend == "tensorflow":
            return list(self._vars[name].numpy().tolist())
        return list(np.asarray(ops.convert_to_numpy(self._values[name]), np.float64).tolist())
