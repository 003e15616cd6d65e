"""Fashion-MNIST from its four gzipped IDX files, with numpy alone.

The benchmark scripts run in virtualenvs that lack the platform's
dependencies, so they read the data here rather than through
``trainers.data``. Images come back flattened to ``(n, 784)`` float32 in
[0, 1], labels as ``(n,)`` int32, as the platform's loader gives them.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
TRAIN_SIZE = 55_000
"""The platform trains on 55,000 images and holds 5,000 out for validation."""

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


class Data(NamedTuple):
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        _, _, ndim = struct.unpack(">HBB", f.read(4))
        shape = struct.unpack(f">{ndim}I", f.read(4 * ndim))
        return np.frombuffer(f.read(), dtype=np.uint8).reshape(shape)


def _split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = (_read_idx(folder / name) for name in _FILES[split])
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return x, labels.astype(np.int32)


def load(folder: str | None = None, train_size: int = TRAIN_SIZE) -> Data:
    """The first ``train_size`` training images and the whole test split,
    from ``folder`` (default: ``$FASHION_MNIST_DIR`` or Debian's place)."""
    path = Path(folder or os.environ.get("FASHION_MNIST_DIR", DEFAULT_DIR))
    missing = [n for pair in _FILES.values() for n in pair if not (path / n).exists()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST files missing from {path}: {', '.join(missing)}. "
            "Install Debian's dataset-fashion-mnist or set FASHION_MNIST_DIR."
        )
    train_x, train_y = _split(path, "train")
    test_x, test_y = _split(path, "test")
    return Data(train_x[:train_size], train_y[:train_size], test_x, test_y)


def epoch_order(data: Data, seed: int) -> np.ndarray:
    """The order of the training images in the epoch ``seed`` shuffles."""
    return np.random.default_rng(seed).permutation(len(data.train_x))


def batches(data: Data, batch_size: int, seed: int, max_batches: int | None = None):
    """Shuffled full training batches ``(x, y)``; at most ``max_batches``."""
    order = epoch_order(data, seed)
    count = len(order) // batch_size
    if max_batches is not None:
        count = min(count, max_batches)
    for i in range(count):
        idx = order[i * batch_size : (i + 1) * batch_size]
        yield data.train_x[idx], data.train_y[idx]
