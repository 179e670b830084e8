"""The demo's networks and data: Perone's seed CNN (PyTorch) and the Keras seed's DNN/CNN.

Data: MNIST when it is at a local path (``--mnist DIR`` or ``$TRAINSOUND_MNIST``: the four IDX
files, gzipped or not, in DIR or DIR/MNIST/raw, or Keras' ``mnist.npz``); otherwise the 8×8
digits that scikit-learn ships, upsampled to 28×28. Nothing is downloaded.

Training sends through the real clients (``trainsound.watch`` / ``trainsound.log`` for PyTorch,
``trainsound.keras.Sonify`` for Keras) to the bridge named by ``$TRAINSOUND_ADDR``.

>>> spec = RunSpec("sgd-0.1", "torch", "cnn", "sgd", 0.1)
>>> (spec.batch, spec.steps, spec.activation)
(64, 200, 'relu')
>>> resize_matrix(2, 4).round(2).tolist()
[[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]]
"""

from __future__ import annotations

import gzip
import logging
import os
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import TrainsoundError
from .loop import Progress, train_steps

log = logging.getLogger(__name__)

#: One seed for all runs (same initial weights and batches: only the hyper-parameters differ). On the
#: digits stand-in SGD at LR 1.0 is chaotic (it reaches NaN or dies depending on the seed; docs/demo.md
#: has the scan): 9 is the first seed from 1 up where batch 64 stays finite and batch 256 reaches NaN,
#: as in Perone's published runs.
SEED = 9
#: Perone's runs at his batch size 10 (256 for the NaN run): over seeds 1–23, LR 1.0 at batch 10 reached NaN
#: in 16 and stayed finite in 7 (exploding, then dead); 16 is the first seed from 1 up where batch 10 stays
#: finite and batch 256 reaches NaN, as in the blog (docs/demo.md has the scan).
PERONE_SEED = 16
#: MNIST's pixel mean and std, as the PyTorch MNIST example (and so Perone) normalises it.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
ENV_MNIST = "TRAINSOUND_MNIST"
SIDE = 28

Framework = Literal["torch", "keras"]


@dataclass(frozen=True)
class RunSpec:
    """One training run of the demo."""

    name: str
    framework: Framework
    model: Literal["cnn", "dnn", "gpt2"]
    optimizer: Literal["sgd", "adam", "rmsprop", "adadelta"]
    lr: float
    batch: int = 64
    steps: int = 200
    activation: Literal["relu", "linear", "sigmoid", "tanh"] = "relu"
    listen_for: str = ""

    def settings(self) -> str:
        """A one-line description for the gallery and the progress display."""
        torch_sgd = self.optimizer == "sgd" and self.framework == "torch"
        opt = "SGD (momentum 0.5)" if torch_sgd else OPT_NAMES[self.optimizer]
        return (
            f"{self.framework} {self.model.upper()} ({self.activation}), {opt}, LR {self.lr:g}, "
            f"batch {self.batch}, {self.steps} steps"
        )


OPT_NAMES = {"sgd": "SGD", "adam": "Adam", "rmsprop": "RMSprop", "adadelta": "Adadelta"}
#: Perone's batch size in the blog's runs (and 256 for the NaN run).
PERONE_BATCH = 10

#: Perone's five published runs (../shared/SEEDS.md §1), each 200 steps of the seed CNN, batch 10.
PERONE_RUNS: tuple[RunSpec, ...] = (
    RunSpec("sgd-0.01", "torch", "cnn", "sgd", 0.01, batch=PERONE_BATCH,
            listen_for="a busy sound whose pitch slowly rises"),
    RunSpec("sgd-0.1", "torch", "cnn", "sgd", 0.1, batch=PERONE_BATCH,
            listen_for="quickly settles low; swings in and out"),
    RunSpec(
        "sgd-1.0",
        "torch",
        "cnn",
        "sgd",
        1.0,
        batch=PERONE_BATCH,
        listen_for="a shriek a few steps in (the explosion), then a flat drone: the network died (all gradients 0)",
    ),
    RunSpec(
        "sgd-1.0-b256",
        "torch",
        "cnn",
        "sgd",
        1.0,
        batch=256,
        listen_for="gradients explode, then NaN: the alarm sounds and stays",
    ),
    RunSpec("adam-0.01", "torch", "cnn", "adam", 0.01, batch=PERONE_BATCH,
            listen_for="loud jumps early, then a flat 200 Hz drone: at batch 10 Adam kills this network"),
)

#: A slice of the Keras seed's sweep (SEEDS.md §3): {DNN, CNN} × {SGD, Adam} × {relu, sigmoid} at LR 0.01.
KERAS_RUNS: tuple[RunSpec, ...] = tuple(
    RunSpec(
        f"keras-{model}-{opt}-{act}",
        "keras",
        model,
        opt,
        0.01,
        activation=act,
        listen_for="sigmoid: small, slow gradients (low, quiet); relu: larger and livelier",
    )
    for model in ("dnn", "cnn")
    for opt in ("sgd", "adam")
    for act in ("relu", "sigmoid")
)

ALL_RUNS: dict[str, RunSpec] = {r.name: r for r in (*PERONE_RUNS, *KERAS_RUNS)}


def with_steps(spec: RunSpec, steps: int | None) -> RunSpec:
    """``spec`` with fewer steps (small mode); the NaN run keeps enough steps to reach NaN honestly."""
    if steps is None or steps >= spec.steps:
        return spec
    if spec.name == "sgd-1.0-b256":
        # It reaches NaN around step 8 here; 40 steps keep the NaN check a real check, not a hope.
        steps = max(steps, 40)
    return replace(spec, steps=steps)


# -- data ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Data:
    """Training images (N×1×28×28 float32, normalised) and labels (N int64)."""

    x: np.ndarray
    y: np.ndarray
    source: str


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Bilinear interpolation matrix with half-pixel centres (as ``torch.nn.functional.interpolate``)."""
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, None)
    i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = src - i0
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), i0] += 1 - w1
    m[np.arange(n_out), i1] += w1
    return m


def load_digits_28() -> Data:
    """scikit-learn's 8×8 digits (1,797 images), upsampled to 28×28 and standardised.

    Standardised with the data's own mean and std — what the MNIST loader's (0.1307, 0.3081) are for
    MNIST. With MNIST's constants instead, these brighter, blurrier images make SGD at LR 1.0 reach NaN
    even at batch 64 (see docs/demo.md).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise TrainsoundError("the demo needs MNIST at a local path or scikit-learn: pip install scikit-learn") from err
    digits = load_digits()
    r = resize_matrix(8, SIDE).astype(np.float32)
    x = np.einsum("ij,njk,lk->nil", r, digits.images.astype(np.float32) / 16.0, r)[:, None]
    x = (x - x.mean()) / x.std()
    return Data(x.astype(np.float32), digits.target.astype(np.int64), "scikit-learn digits 8×8 → 28×28")


def _read_idx(path: Path) -> np.ndarray:
    """An unsigned-byte IDX file (MNIST's format), gzipped or not; errors name the file."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as err:
        raise TrainsoundError(f"{path}: cannot read MNIST file: {err}") from err
    if len(raw) < 4:
        raise TrainsoundError(f"{path}: not an IDX file (too short)")
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08 or len(raw) < 4 + 4 * ndim:
        raise TrainsoundError(f"{path}: not an unsigned-byte IDX file")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    body = raw[4 + 4 * ndim :]
    if len(body) != int(np.prod(shape)):
        raise TrainsoundError(f"{path}: IDX header says {shape}, but {len(body)} bytes follow")
    return np.frombuffer(body, np.uint8).reshape(shape)


def find_mnist(root: str | Path | None) -> Path | None:
    """The MNIST training images (IDX, maybe gzipped) or Keras ``mnist.npz`` under ``root``."""
    if root is None:
        return None
    base = Path(root).expanduser()
    if base.is_file():
        return base
    for folder in (base, base / "MNIST" / "raw", base / "raw"):
        for name in ("train-images-idx3-ubyte", "train-images-idx3-ubyte.gz", "train-images.idx3-ubyte", "mnist.npz"):
            if (folder / name).is_file():
                return folder / name
    return None


def load_mnist(path: Path) -> Data:
    """MNIST's training set, normalised as the PyTorch MNIST example does."""
    if path.suffix == ".npz":
        try:
            with np.load(path) as z:
                images, labels = z["x_train"], z["y_train"]
        except (OSError, ValueError, KeyError) as err:
            raise TrainsoundError(f"{path}: not a Keras mnist.npz (x_train, y_train): {err}") from err
    else:
        labels_path = Path(str(path).replace("images-idx3", "labels-idx1").replace("images.idx3", "labels.idx1"))
        images, labels = _read_idx(path), _read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (SIDE, SIDE) or len(labels) != len(images):
        raise TrainsoundError(f"{path}: want N×{SIDE}×{SIDE} images with N labels, got {images.shape} and "
                              f"{len(labels)} labels")
    x = (images.astype(np.float32)[:, None] / 255.0 - MNIST_MEAN) / MNIST_STD
    return Data(x.astype(np.float32), labels.astype(np.int64), f"MNIST ({path})")


def load_data(mnist: str | Path | None = None) -> Data:
    """MNIST if found at ``mnist`` or ``$TRAINSOUND_MNIST``, else the upsampled scikit-learn digits."""
    where = mnist or os.environ.get(ENV_MNIST)
    path = find_mnist(where)
    if where and path is None:
        raise TrainsoundError(f"no MNIST files found under {where} (want train-images-idx3-ubyte[.gz] or mnist.npz)")
    return load_mnist(path) if path else load_digits_28()


def torch_batches(n: int, batch: int, steps: int) -> list[Any]:
    """Index batches for ``steps`` steps, drawn as ``DataLoader(shuffle=True)`` draws them.

    Each epoch, ``RandomSampler`` seeds a fresh generator from the global torch RNG and permutes;
    the last partial batch is kept. So after ``torch.manual_seed`` and model creation, the batches
    are those of the PyTorch MNIST example that Perone's script is built on.
    """
    import torch

    out: list[Any] = []
    while len(out) < steps:
        gen = torch.Generator()
        gen.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
        perm = torch.randperm(n, generator=gen)
        out.extend(perm[i : i + batch] for i in range(0, n, batch))
    return out[:steps]


# -- PyTorch: Perone's seed CNN -------------------------------------------------------------
def perone_net() -> Any:
    """conv(1→20,5) → pool → conv(20→50,5) → pool → fc(800→500) → fc(500→10), log-softmax."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class PeroneNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 20, 5, 1)
            self.conv2 = nn.Conv2d(20, 50, 5, 1)
            self.fc1 = nn.Linear(4 * 4 * 50, 500)
            self.fc2 = nn.Linear(500, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.max_pool2d(F.relu(self.conv1(x)), 2, 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2, 2)
            x = F.relu(self.fc1(x.flatten(1)))
            return F.log_softmax(self.fc2(x), dim=1)

    return PeroneNet()


def train_torch(
    spec: RunSpec, data: Data, progress: Progress | None = None, *, port: int | None = None, seed: int = PERONE_SEED
) -> list[float]:
    """Train the seed CNN for ``spec.steps`` steps, sending every step through ``trainsound.watch``.

    Returns the loss per step. NaN does not stop training: Perone's NaN run plays on, and so do we.
    """
    import torch
    from torch.nn import functional as F

    import trainsound

    # Two threads: the bridge process needs the other core for its receive loop and sine renderer.
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    torch.manual_seed(seed)
    model = perone_net()
    params = model.parameters()
    opt = (
        torch.optim.SGD(params, lr=spec.lr, momentum=0.5)
        if spec.optimizer == "sgd"
        else torch.optim.Adam(params, lr=spec.lr)
    )
    x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
    handle = trainsound.watch(
        model, run=spec.name, every=1, log=("grads", "weights", "loss"), optimizer=opt, host="127.0.0.1", port=port,
        weight_only=True,  # Perone's layer.weight.grad.norm(): the weight alone, no bias
    )
    return train_steps(handle, opt, torch_batches(len(x), spec.batch, spec.steps),
                       lambda ix: F.nll_loss(model(x[ix]), y[ix]), progress)


# -- Keras: the Keras seed's DNN and CNN ------------------------------------------------------
def keras_model(spec: RunSpec, eager: bool = False) -> Any:
    """The Keras seed's small DNN or CNN for 28×28×1 inputs, compiled with ``spec``'s optimizer.

    ``eager``: no ``tf.function`` (the same numbers; faster for a handful of steps, where tracing dominates).
    """
    import keras

    act = spec.activation
    if spec.model == "dnn":
        layers = [
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(128, activation=act, name="dense1"),
            keras.layers.Dense(64, activation=act, name="dense2"),
        ]
    else:
        layers = [
            keras.layers.Conv2D(16, 3, activation=act, name="conv1"),
            keras.layers.MaxPooling2D(2, name="pool1"),
            keras.layers.Conv2D(32, 3, activation=act, name="conv2"),
            keras.layers.MaxPooling2D(2, name="pool2"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(64, activation=act, name="dense1"),
        ]
    model = keras.Sequential(
        [keras.Input((SIDE, SIDE, 1)), *layers, keras.layers.Dense(10, activation="softmax", name="out")]
    )
    opt = getattr(keras.optimizers, OPT_NAMES[spec.optimizer])(spec.lr)
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", run_eagerly=eager)
    return model


def train_keras(spec: RunSpec, data: Data, progress: Progress | None = None, *, port: int | None = None,
                eager: bool = False, kernel_only: bool = False) -> list[float]:
    """Train with ``model.fit`` for ``spec.steps`` steps; ``trainsound.keras.Sonify`` sends every batch.

    ``kernel_only``: the Keras seed's norms (kernel gradients only, bias ignored).
    """
    import keras

    import trainsound.keras

    keras.utils.set_random_seed(SEED)
    model = keras_model(spec, eager)
    n_batches = -(-len(data.x) // spec.batch)
    epochs = -(-spec.steps // n_batches)
    losses: list[float] = []

    class _Progress(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            losses.append(float((logs or {}).get("loss", float("nan"))))
            if progress is not None:
                progress(len(losses), losses[-1])
            if len(losses) >= spec.steps:
                self.model.stop_training = True

    x = np.transpose(data.x, (0, 2, 3, 1))  # channels last
    model.fit(
        x,
        data.y,
        batch_size=spec.batch,
        epochs=epochs,
        shuffle=True,
        verbose=0,
        callbacks=[
            trainsound.keras.Sonify(run=spec.name, host="127.0.0.1", port=port, weight_only=kernel_only), _Progress()
        ],
    )
    return losses


def train(spec: RunSpec, data: Data, progress: Progress | None = None, *, port: int | None = None) -> list[float]:
    """Train one run with its framework's client, sending to the bridge on ``port`` (default: $TRAINSOUND_ADDR)."""
    trainer = train_torch if spec.framework == "torch" else train_keras
    return trainer(spec, data, progress, port=port)
