"""``trainsound sonify-image``: an image through a CNN, heard (netsounds, done right).

:func:`sonify_image` is the Python entry point; :mod:`.banks` runs the network, :mod:`.synth` turns
activation maps into sound, :mod:`.squeezenet` is SqueezeNet 1.0 written out.
"""

from __future__ import annotations

from .command import add_parser, sonify_image

__all__ = ["add_parser", "sonify_image"]
