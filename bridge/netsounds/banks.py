"""An image through a CNN: load it (bounded), run it, return the filter banks' activations.

Models (nothing is downloaded):

- ``squeezenet``: SqueezeNet 1.0 (:mod:`.squeezenet`), four banks cut at its max-pools as netsounds
  did; weights from ``--weights FILE`` (a torchvision ``squeezenet1_0`` state dict) or torchvision's
  random initialisation under :data:`SEED`. Input: RGB, ImageNet mean/std.
- ``perone``: the seed CNN of the demo (Perone's), trained here on the demo's digits for
  :data:`PERONE_STEPS` steps (about two seconds) unless ``--weights`` gives its state dict; its two
  convolution layers (after ReLU) are its banks. Input: grey, 28×28, standardised as its data.

Memory is bounded by the image side, not by the file: Pillow decodes JPEGs straight at a reduced
scale (``Image.draft``) and every image is shrunk to at most :data:`MAX_SIDE` pixels on its longer
side before the network sees it, so the activations are at most those of a 512×512 input (SqueezeNet's
first bank 96×253×253 float32, 25 MB). A PNG must still be decoded once at full size (W·H·4 bytes at
most: 64 MB for 4,000×4,000), and Pillow refuses decompression bombs (> 89 megapixels by default)
with an error naming the file.

The working size is bounded too, not only the input (issue 28, item 7: a 274-byte 1×100,000 PNG was
shrunk to 1×512, then brought up to 224×114,688 for SqueezeNet: 5.1 GB). An image whose longer side
is more than :data:`MAX_ASPECT` times its shorter is refused from its header, before decoding, so the
network's input is at most ``max(max_side², 224 × 896)`` pixels; ``max_side`` is at most
:data:`MAX_MAX_SIDE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import TrainsoundError

Model = Literal["squeezenet", "perone"]
MODELS: tuple[str, ...] = ("squeezenet", "perone")
MAX_SIDE = 512
#: The largest ``--max-side`` (SqueezeNet's first bank of a 1024² input: 96×509×509 float32, 100 MB).
MAX_MAX_SIDE = 1024
#: The longest side may be at most this many times the shortest (a 4:1 panorama passes).
MAX_ASPECT = 4
#: SqueezeNet's input is brought up to this shorter side (its pools need room; its training size).
MIN_SIDE = 224
SEED = 0
PERONE_STEPS = 150
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Bank:
    """One filter bank's activations for the image: ``maps`` is D × H × W float32."""

    name: str
    maps: np.ndarray


def load_image(path: str | Path, mode: Literal["RGB", "L"], max_side: int = MAX_SIDE) -> np.ndarray:
    """PNG/JPEG (anything Pillow reads) → H×W(×3) float32 in 0..1, longer side at most ``max_side``.

    Raises:
        TrainsoundError: naming the file: unreadable, or too narrow or wide (:data:`MAX_ASPECT`).
    """
    if not 1 <= max_side <= MAX_MAX_SIDE:
        raise TrainsoundError(f"--max-side must be in 1..{MAX_MAX_SIDE}, got {max_side}")
    try:
        from PIL import Image
    except ImportError as err:
        raise TrainsoundError("sonify-image needs Pillow: pip install 'trainsound[demo]'") from err
    try:
        with Image.open(path) as src:
            check_aspect(*src.size, str(path))  # from the header: nothing decoded yet
            src.draft(mode, (max_side, max_side))  # JPEG: decode at 1/2, 1/4 or 1/8 scale already
            im = src.convert(mode)
            im.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.float32) / 255.0
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise TrainsoundError(f"{path}: cannot read the image: {err}") from err


def check_aspect(width: int, height: int, what: str) -> None:
    """Refuse an image more than :data:`MAX_ASPECT` times longer than wide (or the reverse), naming it.

    >>> check_aspect(400, 100, "wide.png")  # 4:1 passes
    >>> check_aspect(1, 100_000, "thin.png")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    trainsound.bridge.errors.TrainsoundError: thin.png: 1×100000 pixels: one side is more than 4 times the other
    """
    if min(width, height) < 1 or max(width, height) > MAX_ASPECT * min(width, height):
        raise TrainsoundError(f"{what}: {width}×{height} pixels: one side is more than {MAX_ASPECT} times the "
                              f"other (sonify-image takes at most {MAX_ASPECT}:1)")


def digit_image(n: int) -> np.ndarray:
    """The first image of digit ``n`` in the demo's data, 28×28 in 0..1."""
    from ..demo.models import load_digits_28

    if not 0 <= n <= 9:
        raise TrainsoundError(f"--digit must be 0..9, got {n}")
    data = load_digits_28()
    x = data.x[int(np.flatnonzero(data.y == n)[0]), 0]
    return ((x - x.min()) / (x.max() - x.min())).astype(np.float32)


def _load_weights(model: Any, weights: str | Path) -> None:
    import torch

    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
    except (OSError, RuntimeError, KeyError, AttributeError, ValueError) as err:
        raise TrainsoundError(f"{weights}: not a state dict for this model: {err}") from err


def perone_trained(steps: int = PERONE_STEPS) -> Any:
    """The seed CNN after ``steps`` SGD steps (LR 0.1, momentum 0.5, batch 64) on the demo's digits."""
    import torch
    from torch.nn import functional as F

    from ..demo.models import load_digits_28, perone_net

    data = load_digits_28()
    torch.manual_seed(SEED)
    model = perone_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
    for _ in range(steps):
        ix = torch.randint(0, len(x), (64,))
        opt.zero_grad()
        F.nll_loss(model(x[ix]), y[ix]).backward()
        opt.step()
    return model.eval()


def banks(image: np.ndarray, model: Model = "squeezenet", weights: str | Path | None = None) -> list[Bank]:
    """The image's activations in each filter bank of ``model``."""
    import torch
    from torch.nn import functional as F

    if model not in MODELS:
        raise TrainsoundError(f"--model must be one of {', '.join(MODELS)}, got {model!r}")
    check_aspect(image.shape[1], image.shape[0], "the image")  # what the upscale below may grow is bounded
    net: Any = None
    if model == "perone":
        from ..demo.models import perone_net

        if weights is not None:
            net = perone_net()
            _load_weights(net, weights)
        else:
            net = perone_trained()
    with torch.no_grad():
        if model == "squeezenet":
            from .squeezenet import SqueezeNet10

            torch.manual_seed(SEED)
            net = SqueezeNet10()
            if weights is not None:
                _load_weights(net, weights)
            rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
            x = (torch.from_numpy(rgb).permute(2, 0, 1) - torch.tensor(IMAGENET_MEAN)[:, None, None])
            x = (x / torch.tensor(IMAGENET_STD)[:, None, None])[None]
            if min(x.shape[-2:]) < MIN_SIDE:  # SqueezeNet's pools need room: small images (digits) go up
                scale = MIN_SIDE / min(x.shape[-2:])
                x = F.interpolate(x, scale_factor=scale, mode="bilinear")
            found = net.eval().blocks(x)
        else:
            grey = image.mean(axis=2) if image.ndim == 3 else image
            x = F.interpolate(torch.from_numpy(grey)[None, None], size=(28, 28), mode="bilinear", antialias=True)
            x = (x - x.mean()) / (x.std() + 1e-6)
            c1 = F.relu(net.conv1(x))
            c2 = F.relu(net.conv2(F.max_pool2d(c1, 2, 2)))
            found = [("conv1", c1), ("conv2", c2)]
    return [Bank(name, t[0].numpy().astype(np.float32)) for name, t in found]
