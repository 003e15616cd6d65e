"""Datasets as flat float32 arrays, with a validation split held out of train.

TFDS is the dataset layer (read through ``as_data_source``, so without
TensorFlow); this module turns a prepared split into arrays that the trainer
puts on the device once per run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np

from trainers.config import ConfigError, DatasetConfig

log = logging.getLogger(__name__)


class Splits(NamedTuple):
    """Images flattened to ``(n, features)`` in [0, 1]; labels ``(n,)`` int32."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    image_shape: tuple[int, ...] = (28, 28, 1)

    @property
    def num_features(self) -> int:
        return self.train_x.shape[1]

    @property
    def num_classes(self) -> int:
        return int(max(self.train_y.max(), self.test_y.max())) + 1


def _builder_class(name: str):
    from trainers.data.idx import FashionMnistIdx, MnistIdx
    from trainers.data.images import Cifar10Files, Cifar100Files, TinyImagenetFiles

    return {
        "fashion_mnist": FashionMnistIdx,
        "mnist": MnistIdx,
        "cifar10": Cifar10Files,
        "cifar100": Cifar100Files,
        "tiny_imagenet": TinyImagenetFiles,
    }[name]


def builder(cfg: DatasetConfig):
    """The TFDS builder of ``cfg.name`` (not yet prepared)."""
    data_dir = cfg.data_dir or str(Path.home() / "tensorflow_datasets")
    if cfg.name == "image_folder":
        from trainers.data.images import image_folder_builder

        if not (Path(cfg.manual_dir) / "train").is_dir():
            raise ConfigError(
                f"dataset.manual_dir={cfg.manual_dir!r} has no train/ folder: an "
                "image folder needs <root>/train/<class>/* and <root>/test/<class>/*."
            )
        return image_folder_builder(cfg.manual_dir, data_dir)
    return _builder_class(cfg.name)(data_dir=data_dir)


def prepare(cfg: DatasetConfig):
    """Builds the TFDS dataset from ``cfg.manual_dir`` unless already built;
    fails at once, saying what to do, when the files are missing offline."""
    import tensorflow_datasets as tfds

    found = builder(cfg)
    if not found.is_prepared():
        on_disk = found.on_disk(cfg.manual_dir)
        if not on_disk and not found.downloadable():
            raise found.missing_error(cfg.manual_dir)
        log.info("Preparing %s under %s", cfg.name, found.data_dir)
        manual_dir = cfg.manual_dir if on_disk else None
        config = tfds.download.DownloadConfig(manual_dir=manual_dir)
        found.download_and_prepare(download_config=config, file_format="array_record")
    return found


def _read(builder, split: str) -> tuple[np.ndarray, np.ndarray]:
    source = builder.as_data_source(split=split)
    records = source.__getitems__(range(len(source)))
    images = np.stack([r["image"] for r in records])
    labels = np.array([r["label"] for r in records], dtype=np.int32)
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return x, labels


def load(cfg: DatasetConfig) -> Splits:
    """The train, validation and test arrays ``cfg`` asks for.

    The validation split is the last ``validation_size`` images of a fixed
    permutation (``split_seed``) of the training split; ``train_size`` then
    keeps the first images of the rest. The test split is always whole.
    """
    prepared = prepare(cfg)
    x, y = _read(prepared, "train")
    test_x, test_y = _read(prepared, "test")
    image_shape = tuple(prepared.info.features["image"].shape)

    available = len(x) - cfg.validation_size
    if available < 1:
        raise ConfigError(
            f"dataset.validation_size={cfg.validation_size} leaves no training "
            f"images out of {len(x)}."
        )
    train_size = available if cfg.train_size is None else cfg.train_size
    if train_size > available:
        raise ConfigError(
            f"dataset.train_size={cfg.train_size} is larger than the {available} "
            f"training images left after holding out {cfg.validation_size}."
        )
    order = np.random.default_rng(cfg.split_seed).permutation(len(x))
    train, val = order[:train_size], order[available:]
    splits = Splits(x[train], y[train], x[val], y[val], test_x, test_y, image_shape)
    return normalize(splits) if cfg.normalize else splits


def normalize(splits: Splits) -> Splits:
    """Per-channel standardisation with the training split's mean and
    deviation (channels last), applied to every split."""
    channels = splits.image_shape[-1]
    pixels = splits.train_x.reshape(-1, channels)
    mean, std = pixels.mean(0), pixels.std(0) + 1e-8

    def apply(x):
        return ((x.reshape(len(x), -1, channels) - mean) / std).reshape(len(x), -1)

    return splits._replace(
        train_x=apply(splits.train_x),
        val_x=apply(splits.val_x),
        test_x=apply(splits.test_x),
    )
