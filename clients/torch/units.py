"""PyTorch: per-unit mean weights (``watch(model, units=[...])``) for soNNify's per-neuron ensemble.

For each named module, its ``weight`` tensor's mean over every axis but the first: one value per
output unit (a ``Linear``'s rows, a ``Conv``'s filters). One reduction per module on the device;
the results join the step's single vector and reach the host with it (see :mod:`.torch_steps`).
Sent as ``/nn/<run>/weight_units/<layer>`` every ``weights_every``-th reported step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ClientArgumentError
from . import distributed as tdist
from .names import layer_name

__all__ = ["UnitMeans"]


class UnitMeans:
    """The watched modules' weight tensors, checked once; :meth:`parts` reduces them on the device.

    Raises:
        ClientArgumentError: a name that is no module of the model, or a module without a ``weight``.
    """

    def __init__(self, model: nn.Module, names: Sequence[str] | str | None) -> None:
        if isinstance(names, str):
            names = [names]
        modules = dict(model.named_modules())
        self.weights: dict[str, torch.Tensor] = {}
        for name in names or ():
            module = modules.get(name)
            if module is None:
                raise ClientArgumentError(f"units: model has no module named {name!r}")
            weight = getattr(module, "weight", None)
            if not isinstance(weight, torch.Tensor) or weight.dim() < 1 or not weight.numel():
                raise ClientArgumentError(f"units: module {name!r} has no weight tensor")
            self.weights[layer_name(name, module)] = weight

    def __bool__(self) -> bool:
        return bool(self.weights)

    def parts(self, device: torch.device) -> dict[str, torch.Tensor]:
        """Per module, a float32 vector of its units' mean weights, on ``device``."""
        out = {}
        for name, w in self.weights.items():
            w = tdist.local(w).detach()
            out[name] = w.reshape(w.shape[0], -1).mean(dim=1, dtype=torch.float32).to(device)
        return out
