"""The shared shape of the platform's TFDS builders.

Each builder prepares a dataset from the original files found in a manual
directory, downloads them only where that is possible (a download URL and
a reachable host), and otherwise fails at once with what to do, instead of
letting TFDS retry for minutes offline. Images are ``Tensor`` features of a
fixed shape (uint8) and labels ``ClassLabel``s, so the prepared ArrayRecord
files read through ``as_data_source()`` without TensorFlow.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import tensorflow_datasets as tfds


class DatasetMissingError(FileNotFoundError):
    """The dataset files are neither on disk nor downloadable from here."""


def host_reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the URL's host opens within ``timeout``."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def manual_dir_of(dl_manager) -> Path | None:
    """The configured manual directory, or None (TFDS asserts it exists)."""
    try:
        return Path(dl_manager.manual_dir)
    except AssertionError:
        return None


class ManualDirBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Subclasses set ``IMAGE_SHAPE``, ``CLASS_NAMES`` (or ``NUM_CLASSES``),
    ``MANUAL_DOWNLOAD_INSTRUCTIONS`` (what the error says to do) and
    optionally ``DOWNLOAD_URL``, and implement
    :meth:`on_disk`, :meth:`split_sources` and :meth:`examples`."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Built from the original files."}
    IMAGE_SHAPE: tuple[int, int, int] = (0, 0, 0)
    CLASS_NAMES: tuple[str, ...] | None = None
    NUM_CLASSES: int = 0
    MANUAL_DOWNLOAD_INSTRUCTIONS = ""
    DOWNLOAD_URL: str | None = None

    def _info(self) -> tfds.core.DatasetInfo:
        if self.CLASS_NAMES is not None:
            label = tfds.features.ClassLabel(names=self.CLASS_NAMES)
        else:
            label = tfds.features.ClassLabel(num_classes=self.NUM_CLASSES)
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(
                        shape=self.IMAGE_SHAPE, dtype=np.uint8
                    ),
                    "label": label,
                }
            ),
            supervised_keys=("image", "label"),
        )

    @classmethod
    def on_disk(cls, manual_dir: str | Path) -> bool:
        raise NotImplementedError

    @classmethod
    def downloadable(cls) -> bool:
        return cls.DOWNLOAD_URL is not None and host_reachable(cls.DOWNLOAD_URL)

    @classmethod
    def missing_error(cls, manual_dir) -> DatasetMissingError:
        return DatasetMissingError(
            f"{cls.name} files are not in {manual_dir} and cannot be downloaded "
            f"from here. {cls.MANUAL_DOWNLOAD_INSTRUCTIONS}"
        )

    def split_sources(self, manual_dir: Path | None, dl_manager) -> dict[str, Any]:
        """What :meth:`examples` reads for each split."""
        raise NotImplementedError

    def examples(self, source: Any):
        """Yields ``(image uint8 of IMAGE_SHAPE, label int)`` pairs."""
        raise NotImplementedError

    def _split_generators(self, dl_manager):
        manual_dir = manual_dir_of(dl_manager)
        if (
            manual_dir is None or not self.on_disk(manual_dir)
        ) and not self.downloadable():
            raise self.missing_error(manual_dir)
        sources = self.split_sources(manual_dir, dl_manager)
        return {split: self._generate_examples(src) for split, src in sources.items()}

    def _generate_examples(self, source):
        for i, (image, label) in enumerate(self.examples(source)):
            yield i, {"image": np.asarray(image, np.uint8), "label": int(label)}
