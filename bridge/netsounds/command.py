"""``trainsound sonify-image IMAGE --out DIR``: a WAV per filter bank and scheme, and a PNG per bank."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TrainsoundError
from . import banks as nb
from . import synth

log = logging.getLogger(__name__)

SCHEMES: tuple[str, ...] = ("sum", "concat")
RATES: tuple[int, ...] = (44_100, 11_025)
#: Filters shown in a bank's PNG (a grid of their maps), at most.
PNG_FILTERS = 64


def write_png(bank: nb.Bank, path: Path) -> None:
    """The bank's first :data:`PNG_FILTERS` maps, each normalised, tiled in a grid (grey, row 0 = low pitch)."""
    from PIL import Image

    maps = synth.normalise_filters(bank.maps[:PNG_FILTERS])
    d, h, w = maps.shape
    cols = int(np.ceil(np.sqrt(d)))
    rows = -(-d // cols)
    grid = np.zeros((rows * (h + 1), cols * (w + 1)), np.float32)
    for i in range(d):
        r, c = divmod(i, cols)
        # flipped: the lowest row of the picture is the lowest frequency, as on a spectrogram
        grid[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = maps[i][::-1]
    img = Image.fromarray((grid * 255).astype(np.uint8), mode="L")
    if img.width < 256:
        k = 256 // img.width + 1  # small maps (the seed CNN's) scaled up whole pixels, not blurred
        img = img.resize((img.width * k, img.height * k), Image.Resampling.NEAREST)
    img.save(path)


def write_wav(x: np.ndarray, rate: int, path: Path) -> None:
    from ..sound.wav import WavWriter

    w = WavWriter(path, rate, channels=1, fmt="int16")
    try:
        w.write(x[:, None])
    finally:
        w.close()


def sonify_image(
    image: str | Path | None,
    out: str | Path,
    *,
    model: nb.Model = "squeezenet",
    weights: str | Path | None = None,
    schemes: Sequence[str] = SCHEMES,
    rate: int = 44_100,
    digit: int | None = None,
    max_side: int = nb.MAX_SIDE,
) -> list[Path]:
    """Run ``image`` (or the demo's ``digit``) through ``model``; write ``<bank>_<scheme>.wav`` and ``<bank>.png``.

    Returns the files written, in order. Errors name the file or option at fault.
    """
    if rate not in RATES:
        raise TrainsoundError(f"--rate must be one of {', '.join(map(str, RATES))}, got {rate}")
    bad = [s for s in schemes if s not in SCHEMES]
    if bad or not schemes:
        raise TrainsoundError(f"--scheme must be one of {', '.join(SCHEMES)}, got {bad[0] if bad else 'nothing'!r}")
    if (image is None) == (digit is None):
        raise TrainsoundError("give an IMAGE or --digit N (one of them)")
    if image is not None:
        pixels = nb.load_image(image, "RGB" if model == "squeezenet" else "L", max_side)
    else:
        pixels = nb.digit_image(int(digit or 0))
    found = nb.banks(pixels, model, weights)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for i, bank in enumerate(found, 1):
        stem = f"{i}-{bank.name}"
        for scheme in schemes:
            path = folder / f"{stem}_{scheme}.wav"
            write_wav(synth.render_bank(bank.maps, rate, scheme), rate, path)
            written.append(path)
        png = folder / f"{stem}.png"
        write_png(bank, png)
        written.append(png)
        log.debug("%s: %d filters of %d×%d", stem, *bank.maps.shape)
    return written


def cmd_sonify_image(args: argparse.Namespace) -> int:
    files = sonify_image(
        args.image, args.out, model=args.model, weights=args.weights,
        schemes=[args.scheme] if args.scheme else SCHEMES, rate=args.rate, digit=args.digit, max_side=args.max_side,
    )
    for f in files:
        print(f)
    return 0


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sonify-image",
        help="an image through a CNN, heard: a WAV per filter bank (netsounds, done right)",
        description="Run an image through SqueezeNet 1.0 (four banks) or the seed CNN (its two conv layers) and "
        "hear each bank's activations as a spectrogram (rows = frequency, columns = time): windowed overlap-add "
        "with continued phase. Writes <bank>_<scheme>.wav and <bank>.png per bank. Nothing is downloaded.",
    )
    p.add_argument("image", nargs="?", metavar="IMAGE", help="a PNG or JPEG (or use --digit)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--model", choices=nb.MODELS, default="squeezenet", help="squeezenet (default) or perone")
    p.add_argument("--weights", metavar="FILE", help="a state dict (torchvision squeezenet1_0, or the seed CNN); "
                   "default: squeezenet random init (seeded), perone trained on the demo digits here")
    p.add_argument("--scheme", choices=SCHEMES, help="sum over filters or concatenate them (default: both)")
    p.add_argument("--rate", type=int, choices=RATES, default=44_100, help="sample rate (default 44100)")
    p.add_argument("--digit", type=int, metavar="N", help="use the demo data's first image of digit N instead")
    p.add_argument("--max-side", type=int, default=nb.MAX_SIDE, metavar="PX",
                   help=f"shrink the image to at most PX on its longer side first (default {nb.MAX_SIDE})")
    p.set_defaults(func=cmd_sonify_image)
