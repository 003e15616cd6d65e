"""CIFAR-10, CIFAR-100, Tiny ImageNet and a folder of images as TFDS
builders over their original files in a manual directory.

None of them can be downloaded here; each takes the archive (or its
extracted folder) that its publishers distribute:

* ``cifar10_files``: ``cifar-10-python.tar.gz`` (or ``cifar-10-batches-py/``);
* ``cifar100_files``: ``cifar-100-python.tar.gz`` (or ``cifar-100-python/``),
  fine labels;
* ``tiny_imagenet_files``: ``tiny-imagenet-200.zip`` (or
  ``tiny-imagenet-200/``); its labelled validation split serves as test;
* :func:`image_folder_builder`: ``<root>/train/<class>/*`` and
  ``<root>/test/<class>/*``, any format Pillow reads, one size.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from trainers.data.base import ManualDirBuilder

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff"}


def _archive_members(manual_dir: Path, archive: str, folder: str) -> dict[str, bytes]:
    """Files of ``archive`` (a .tar.gz or .zip) or of the extracted
    ``folder``, by their path relative to the folder's parent."""
    extracted = manual_dir / folder
    if extracted.is_dir():
        return {
            str(p.relative_to(manual_dir)): p.read_bytes()
            for p in extracted.rglob("*")
            if p.is_file()
        }
    path = manual_dir / archive
    if archive.endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            return {n: z.read(n) for n in z.namelist() if not n.endswith("/")}
    with tarfile.open(path, "r:gz") as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}


class _Archive(ManualDirBuilder, skip_registration=True):
    """A dataset shipped as one archive ``ARCHIVE`` that extracts to
    ``FOLDER``; either may be in the manual directory."""

    ARCHIVE = ""
    FOLDER = ""

    @classmethod
    def on_disk(cls, manual_dir) -> bool:
        d = Path(manual_dir)
        return (d / cls.ARCHIVE).is_file() or (d / cls.FOLDER).is_dir()


class _Cifar(_Archive, skip_registration=True):
    IMAGE_SHAPE = (32, 32, 3)
    SPLITS: dict[str, tuple[str, ...]] = {}
    LABEL_KEY = b"labels"

    def split_sources(self, manual_dir, dl_manager):
        members = _archive_members(manual_dir, self.ARCHIVE, self.FOLDER)
        return {
            split: [members[f"{self.FOLDER}/{name}"] for name in names]
            for split, names in self.SPLITS.items()
        }

    def examples(self, batches):
        for raw in batches:
            batch = pickle.loads(raw, encoding="bytes")
            images = np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32)
            yield from zip(images.transpose(0, 2, 3, 1), batch[self.LABEL_KEY])


class Cifar10Files(_Cifar):
    """CIFAR-10 (Krizhevsky 2009) from ``cifar-10-python.tar.gz``."""

    CLASS_NAMES = (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    )
    ARCHIVE, FOLDER = "cifar-10-python.tar.gz", "cifar-10-batches-py"
    SPLITS = {
        "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test": ("test_batch",),
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put cifar-10-python.tar.gz (the Python version from the CIFAR page) "
        "in a folder and pass dataset.manual_dir=<folder>."
    )


class Cifar100Files(_Cifar):
    """CIFAR-100 (Krizhevsky 2009), fine labels, from
    ``cifar-100-python.tar.gz``."""

    NUM_CLASSES = 100
    ARCHIVE, FOLDER = "cifar-100-python.tar.gz", "cifar-100-python"
    SPLITS = {"train": ("train",), "test": ("test",)}
    LABEL_KEY = b"fine_labels"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put cifar-100-python.tar.gz (the Python version from the CIFAR page) "
        "in a folder and pass dataset.manual_dir=<folder>."
    )


def _decode(data: bytes, shape: tuple[int, int, int], where: str) -> np.ndarray:
    mode = "L" if shape[-1] == 1 else "RGB"
    image = np.asarray(Image.open(io.BytesIO(data)).convert(mode), np.uint8)
    image = image.reshape(image.shape[0], image.shape[1], shape[-1])
    if image.shape != shape:
        raise ValueError(f"{where} is {image.shape[:2]}, expected {shape[:2]}.")
    return image


class TinyImagenetFiles(_Archive):
    """Tiny ImageNet (200 classes, 64x64) from ``tiny-imagenet-200.zip``;
    the labelled validation images are the test split."""

    IMAGE_SHAPE = (64, 64, 3)
    NUM_CLASSES = 200
    ARCHIVE, FOLDER = "tiny-imagenet-200.zip", "tiny-imagenet-200"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put tiny-imagenet-200.zip (or its extracted tiny-imagenet-200 folder) "
        "in a folder and pass dataset.manual_dir=<folder>."
    )

    def split_sources(self, manual_dir, dl_manager):
        members = _archive_members(manual_dir, self.ARCHIVE, self.FOLDER)
        root = self.FOLDER
        wnids = members[f"{root}/wnids.txt"].decode().split()
        index = {w: i for i, w in enumerate(sorted(wnids))}
        train = [
            (data, index[name.split("/")[2]])
            for name, data in sorted(members.items())
            if name.startswith(f"{root}/train/") and "/images/" in name
        ]
        labels = {}
        for line in members[f"{root}/val/val_annotations.txt"].decode().splitlines():
            if line.strip():
                file, wnid = line.split("\t")[:2]
                labels[file] = index[wnid]
        test = [
            (members[f"{root}/val/images/{file}"], label)
            for file, label in sorted(labels.items())
        ]
        return {"train": train, "test": test}

    def examples(self, pairs):
        for i, (data, label) in enumerate(pairs):
            yield _decode(data, self.IMAGE_SHAPE, f"image {i}"), label


def scan_image_folder(root: str | Path) -> tuple[tuple[int, int, int], tuple[str, ...]]:
    """The image shape and class names of ``<root>/{train,test}/<class>/*``."""
    root = Path(root)
    classes = tuple(sorted(p.name for p in (root / "train").iterdir() if p.is_dir()))
    first = next(
        p
        for c in classes
        for p in sorted((root / "train" / c).iterdir())
        if p.suffix.lower() in _IMAGE_SUFFIXES
    )
    with Image.open(first) as image:
        channels = 1 if image.mode in ("L", "1", "I", "F") else 3
        shape = (image.height, image.width, channels)
    return shape, classes


def image_folder_builder(root: str | Path, data_dir: str) -> ManualDirBuilder:
    """A builder for the image folder at ``root`` (``train`` and ``test``
    sub-folders, one sub-folder per class inside each)."""
    root = Path(root)
    shape, classes = scan_image_folder(root)

    class ImageFolderFiles(ManualDirBuilder, skip_registration=True):
        name = "image_folder_files"
        IMAGE_SHAPE = shape
        CLASS_NAMES = classes
        MANUAL_DOWNLOAD_INSTRUCTIONS = (
            "Arrange the images as <root>/train/<class>/* and <root>/test/<class>/* "
            "and pass dataset.manual_dir=<root>."
        )
        BUILDER_CONFIGS = [
            tfds.core.BuilderConfig(
                name=f"{root.name}-{hashlib.sha1(str(root).encode()).hexdigest()[:8]}"
            )
        ]

        @classmethod
        def on_disk(cls, manual_dir) -> bool:
            return (Path(manual_dir) / "train").is_dir()

        def split_sources(self, manual_dir, dl_manager):
            return {
                split: [
                    (p, i)
                    for i, c in enumerate(classes)
                    for p in sorted((manual_dir / split / c).iterdir())
                    if p.suffix.lower() in _IMAGE_SUFFIXES
                ]
                for split in ("train", "test")
            }

        def examples(self, pairs):
            for path, label in pairs:
                yield _decode(path.read_bytes(), shape, str(path)), label

    return ImageFolderFiles(data_dir=data_dir)
