"""MNIST-format datasets from their original gzipped IDX files.

TFDS's own ``mnist`` and ``fashion_mnist`` always download; these builders,
``fashion_mnist_idx`` and ``mnist_idx``, read the four files from a manual
directory (for Fashion-MNIST by default where Debian's
``dataset-fashion-mnist`` package installs them).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from trainers.data.base import DatasetMissingError, ManualDirBuilder

__all__ = ["DatasetMissingError", "FashionMnistIdx", "MnistIdx", "read_idx"]

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_FILE_LIST = sorted(f for pair in FILES.values() for f in pair)


def read_idx(path: Path) -> np.ndarray:
    """Reads a gzipped IDX file (the MNIST format) into a uint8 array."""
    with gzip.open(path, "rb") as f:
        zero, dtype_code, ndim = struct.unpack(">HBB", f.read(4))
        if zero != 0 or dtype_code != 0x08:
            raise ValueError(
                f"{path} is not an unsigned-byte IDX file "
                f"(header {zero:#x} {dtype_code:#x})."
            )
        shape = struct.unpack(f">{ndim}I", f.read(4 * ndim))
        data = np.frombuffer(f.read(), dtype=np.uint8)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path} holds {data.size} bytes, expected {shape}.")
    return data.reshape(shape)


class _Idx(ManualDirBuilder, skip_registration=True):
    IMAGE_SHAPE = (28, 28, 1)

    @classmethod
    def on_disk(cls, manual_dir) -> bool:
        return all((Path(manual_dir) / f).is_file() for f in _FILE_LIST)

    def split_sources(self, manual_dir, dl_manager):
        if manual_dir is not None and self.on_disk(manual_dir):
            return {s: [manual_dir / f for f in pair] for s, pair in FILES.items()}
        urls = {f: self.DOWNLOAD_URL + f for f in _FILE_LIST}
        got = dl_manager.download(urls)
        return {s: [Path(got[f]) for f in pair] for s, pair in FILES.items()}

    def examples(self, source):
        images_path, labels_path = source
        images, labels = read_idx(images_path), read_idx(labels_path)
        if len(images) != len(labels):
            raise ValueError(
                f"{images_path} has {len(images)} images but {labels_path} has "
                f"{len(labels)} labels."
            )
        return zip(images[..., None], labels)


class FashionMnistIdx(_Idx):
    """Fashion-MNIST (Xiao et al. 2017) from its original IDX files."""

    CLASS_NAMES = (
        "t-shirt/top",
        "trouser",
        "pullover",
        "dress",
        "coat",
        "sandal",
        "shirt",
        "sneaker",
        "bag",
        "ankle boot",
    )
    DOWNLOAD_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Install Debian's package with `apt-get install -y dataset-fashion-mnist` "
        "(as root; `make data` does it for you), or copy the four files "
        f"{_FILE_LIST} into a folder and pass dataset.manual_dir=<folder>."
    )


class MnistIdx(_Idx):
    """MNIST (LeCun et al. 1998) from its original IDX files."""

    NUM_CLASSES = 10
    DOWNLOAD_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Copy the four MNIST files {_FILE_LIST} into a folder and pass "
        "dataset.manual_dir=<folder>."
    )
