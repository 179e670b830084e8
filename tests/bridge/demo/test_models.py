"""The demo's real MNIST loader, on small MNIST-format files made here (nothing is downloaded)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from trainsound.bridge.demo.models import MNIST_MEAN, MNIST_STD, load_data
from trainsound.bridge.errors import TrainsoundError


def idx(array: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


@pytest.fixture
def images() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (12, 28, 28), dtype=np.uint8), rng.integers(0, 10, 12, dtype=np.uint8)


@pytest.mark.parametrize("layout", ["plain", "gzip", "torchvision", "npz"])
def test_mnist_files_are_found_and_normalised(tmp_path: Path, images: tuple[np.ndarray, np.ndarray],
                                              layout: str) -> None:
    x, y = images
    if layout == "npz":
        np.savez(tmp_path / "mnist.npz", x_train=x, y_train=y)
    else:
        folder = tmp_path / "MNIST" / "raw" if layout == "torchvision" else tmp_path
        folder.mkdir(parents=True, exist_ok=True)
        write, suffix = (gzip.compress, ".gz") if layout == "gzip" else ((lambda b: b), "")
        (folder / f"train-images-idx3-ubyte{suffix}").write_bytes(write(idx(x)))
        (folder / f"train-labels-idx1-ubyte{suffix}").write_bytes(write(idx(y)))
    data = load_data(tmp_path)
    assert data.x.shape == (12, 1, 28, 28) and data.x.dtype == np.float32
    np.testing.assert_allclose(data.x[:, 0], (x / 255.0 - MNIST_MEAN) / MNIST_STD, rtol=1e-5)
    assert data.y.tolist() == y.tolist() and "MNIST" in data.source


def test_env_variable_and_digits_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          images: tuple[np.ndarray, np.ndarray]) -> None:
    monkeypatch.delenv("TRAINSOUND_MNIST", raising=False)
    assert "digits" in load_data(None).source
    np.savez(tmp_path / "mnist.npz", x_train=images[0], y_train=images[1])
    monkeypatch.setenv("TRAINSOUND_MNIST", str(tmp_path))
    assert "MNIST" in load_data(None).source


def test_bad_mnist_files_give_one_clear_error(tmp_path: Path, images: tuple[np.ndarray, np.ndarray]) -> None:
    with pytest.raises(TrainsoundError, match="no MNIST files found under"):
        load_data(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx(images[0]))
    with pytest.raises(TrainsoundError, match=r"train-labels-idx1-ubyte: cannot read MNIST file"):
        load_data(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx(images[1])[:-3])
    with pytest.raises(TrainsoundError, match=r"IDX header says \(12,\), but 9 bytes follow"):
        load_data(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx(images[1][:5]))
    with pytest.raises(TrainsoundError, match="with N labels"):
        load_data(tmp_path)
