"""The other datasets' builders on small files made in the formats their
publishers distribute."""

from __future__ import annotations

import io
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from trainers.config import DatasetConfig
from trainers.data import load, prepare
from trainers.data.base import DatasetMissingError

RNG = np.random.default_rng(0)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _cifar_archive(path, folder, batches, label_key, classes):
    truth = {}
    with tarfile.open(path, "w:gz") as tar:
        for name, n in batches.items():
            images = RNG.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
            labels = [int(v) for v in RNG.integers(0, classes, size=n)]
            rows = images.transpose(0, 3, 1, 2).reshape(n, -1)
            _add(
                tar,
                f"{folder}/{name}",
                pickle.dumps({b"data": rows, label_key: labels}),
            )
            truth[name] = (images, labels)
    return truth


@pytest.mark.parametrize(
    "name, archive, folder, batches, key, classes",
    [
        (
            "cifar10",
            "cifar-10-python.tar.gz",
            "cifar-10-batches-py",
            {**{f"data_batch_{i}": 6 for i in range(1, 6)}, "test_batch": 5},
            b"labels",
            10,
        ),
        (
            "cifar100",
            "cifar-100-python.tar.gz",
            "cifar-100-python",
            {"train": 30, "test": 5},
            b"fine_labels",
            100,
        ),
    ],
)
def test_cifar_builders_read_the_python_archives(
    tmp_path, name, archive, folder, batches, key, classes
):
    manual = tmp_path / "manual"
    manual.mkdir()
    truth = _cifar_archive(manual / archive, folder, batches, key, classes)
    cfg = DatasetConfig(
        name=name,
        manual_dir=str(manual),
        data_dir=str(tmp_path / "tfds"),
        validation_size=5,
    )
    splits = load(cfg)
    assert splits.image_shape == (32, 32, 3)
    assert splits.train_x.shape == (25, 32 * 32 * 3)
    test_name = "test_batch" if name == "cifar10" else "test"
    images, labels = truth[test_name]
    order = np.argsort([x.tobytes() for x in images])
    got = np.argsort(
        [x.tobytes() for x in (splits.test_x * 255).round().astype(np.uint8)]
    )
    np.testing.assert_array_equal(
        (splits.test_x[got] * 255).round().astype(np.uint8).reshape(-1, 32, 32, 3),
        images[order],
    )
    np.testing.assert_array_equal(splits.test_y[got], np.asarray(labels)[order])


def _png(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_tiny_imagenet_builder_reads_the_zip(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    wnids = ["n02", "n01"]
    with zipfile.ZipFile(manual / "tiny-imagenet-200.zip", "w") as z:
        z.writestr("tiny-imagenet-200/wnids.txt", "\n".join(wnids))
        for w in wnids:
            for i in range(3):
                image = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
                z.writestr(
                    f"tiny-imagenet-200/train/{w}/images/{w}_{i}.JPEG", _png(image)
                )
        z.writestr(
            "tiny-imagenet-200/val/val_annotations.txt",
            "val_0.JPEG\tn01\t0\t0\t1\t1\nval_1.JPEG\tn02\t0\t0\t1\t1\n",
        )
        for i in range(2):
            image = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            z.writestr(f"tiny-imagenet-200/val/images/val_{i}.JPEG", _png(image))
    cfg = DatasetConfig(
        name="tiny_imagenet",
        manual_dir=str(manual),
        data_dir=str(tmp_path / "tfds"),
        validation_size=2,
    )
    splits = load(cfg)
    assert splits.image_shape == (64, 64, 3)
    assert len(splits.train_x) + len(splits.val_x) == 6
    # Sorted wnids: n01 -> 0, n02 -> 1.
    assert sorted(splits.test_y.tolist()) == [0, 1]


def test_image_folder_builder_reads_class_folders(tmp_path):
    root = tmp_path / "pictures"
    for split, n in (("train", 4), ("test", 2)):
        for c in ("cats", "dogs"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                image = RNG.integers(0, 256, (12, 10), dtype=np.uint8)
                Image.fromarray(image).save(root / split / c / f"{i}.png")
    cfg = DatasetConfig(
        name="image_folder",
        manual_dir=str(root),
        data_dir=str(tmp_path / "tfds"),
        validation_size=2,
    )
    splits = load(cfg)
    assert splits.image_shape == (12, 10, 1)
    assert splits.test_x.shape == (4, 120)
    assert sorted(splits.test_y.tolist()) == [0, 0, 1, 1]


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100", "tiny_imagenet"])
def test_missing_dataset_says_what_to_do(tmp_path, monkeypatch, name):
    import trainers.data.base as base

    monkeypatch.setattr(base, "host_reachable", lambda url, timeout=3.0: False)
    cfg = DatasetConfig(name=name, manual_dir=str(tmp_path), data_dir=str(tmp_path))
    with pytest.raises(DatasetMissingError, match="dataset.manual_dir=<folder>"):
        prepare(cfg)


def test_normalize_standardises_each_channel(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    _cifar_archive(
        manual / "cifar-10-python.tar.gz",
        "cifar-10-batches-py",
        {**{f"data_batch_{i}": 6 for i in range(1, 6)}, "test_batch": 5},
        b"labels",
        10,
    )
    cfg = DatasetConfig(
        name="cifar10",
        manual_dir=str(manual),
        data_dir=str(tmp_path / "tfds"),
        validation_size=5,
        normalize=True,
    )
    splits = load(cfg)
    pixels = splits.train_x.reshape(-1, 3)
    np.testing.assert_allclose(pixels.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(pixels.std(0), 1.0, atol=1e-4)
