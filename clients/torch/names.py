"""PyTorch: the layer names the bridge shows and sounds.

A module path without the segments wrappers insert (:func:`.distributed.strip_wrappers`); a path that ends
in a container's index (``nn.Sequential``, ``nn.ModuleList``: ``0``, ``features.3``) gets the module's type
after a dot, so a person reads ``0.Linear`` rather than ``0``. The dot keeps the name a valid OSC address
segment and keeps the index first, so voice groups still see the depth (``features.3.Conv2d`` is layer 3 of
``features``). Named modules (``fc1``, ``encoder.attn``) keep their names.
"""

from __future__ import annotations

from torch import nn

from .distributed import strip_wrappers


def layer_name(path: str, module: nn.Module) -> str:
    """The name of the module at ``path`` as the bridge shows it.

    >>> layer_name("0", nn.Linear(2, 2)), layer_name("module.features.3", nn.Conv2d(1, 1, 1))
    ('0.Linear', 'features.3.Conv2d')
    >>> layer_name("fc1", nn.Linear(2, 2)), layer_name("", nn.Sequential())
    ('fc1', 'root')
    """
    name = strip_wrappers(path)
    if name.rpartition(".")[2].isdigit():
        return f"{name}.{type(module).__name__}"
    return name
