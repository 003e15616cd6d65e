"""Fashion-MNIST as a TFDS builder that reads the original IDX files.

TFDS ships its own ``fashion_mnist`` builder, which always downloads. This
one, registered as ``fashion_mnist_idx``, prepares the same dataset from the
four gzipped IDX files found in a manual directory (by default where Debian's
``dataset-fashion-mnist`` package installs them) and falls back to the
original download only when the files are absent and the download host can
be reached. Offline and without the files it fails at once with the command
that gets them, instead of letting TFDS retry for minutes.

The prepared dataset is written as ArrayRecord files, which
``builder.as_data_source()`` reads without TensorFlow.
"""

from __future__ import annotations

import gzip
import socket
import struct
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import tensorflow_datasets as tfds

DEFAULT_MANUAL_DIR = "/usr/share/datasets/fashion-mnist"
DOWNLOAD_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
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
HOW_TO_GET = (
    "Install Debian's package with `apt-get install -y dataset-fashion-mnist` "
    "(as root; run `make data` to do it for you), or copy the four files "
    f"{sorted(f for pair in FILES.values() for f in pair)} into a folder and "
    "pass it as dataset.manual_dir=<folder>."
)


class DatasetMissingError(FileNotFoundError):
    """The dataset files are neither on disk nor downloadable from here."""


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


def files_present(directory: str | Path) -> bool:
    directory = Path(directory)
    return all((directory / f).is_file() for pair in FILES.values() for f in pair)


def host_reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the URL's host opens within ``timeout``."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def missing_error(manual_dir) -> DatasetMissingError:
    return DatasetMissingError(
        f"Fashion-MNIST files are not in {manual_dir} and the download host "
        f"cannot be reached. {HOW_TO_GET}"
    )


def _manual_dir(dl_manager) -> Path | None:
    """The configured manual directory, or None (TFDS asserts it exists)."""
    try:
        return Path(dl_manager.manual_dir)
    except AssertionError:
        return None


class FashionMnistIdx(tfds.core.GeneratorBasedBuilder):
    """Fashion-MNIST (Xiao et al. 2017) from its original IDX files."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Built from the original gzipped IDX files."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = HOW_TO_GET

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(names=CLASS_NAMES),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://github.com/zalandoresearch/fashion-mnist",
        )

    def _split_generators(self, dl_manager):
        manual_dir = _manual_dir(dl_manager)
        if manual_dir is not None and files_present(manual_dir):
            paths = {s: [manual_dir / f for f in pair] for s, pair in FILES.items()}
        elif host_reachable(DOWNLOAD_URL):
            urls = {
                f"{s}_{i}": DOWNLOAD_URL + f
                for s, pair in FILES.items()
                for i, f in enumerate(pair)
            }
            got = dl_manager.download(urls)
            paths = {s: [Path(got[f"{s}_0"]), Path(got[f"{s}_1"])] for s in FILES}
        else:
            raise missing_error(manual_dir)
        return {split: self._generate_examples(*p) for split, p in paths.items()}

    def _generate_examples(self, images_path: Path, labels_path: Path):
        images = read_idx(images_path)
        labels = read_idx(labels_path)
        if len(images) != len(labels):
            raise ValueError(
                f"{images_path} has {len(images)} images but {labels_path} has "
                f"{len(labels)} labels."
            )
        for i, (image, label) in enumerate(zip(images, labels)):
            yield i, {"image": image[..., None], "label": int(label)}
