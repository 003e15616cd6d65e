"""Shared fixtures: small deterministic configs and a cached data subset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trainers.config import DatasetConfig
from trainers.data import Splits, load
from trainers.data.fashion_mnist import files_present

MANUAL_DIR = os.environ.get("FASHION_MNIST_DIR", DatasetConfig().manual_dir)
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@pytest.fixture(scope="session")
def fashion() -> Splits:
    """All of Fashion-MNIST, loaded once per session through TFDS."""
    if not files_present(MANUAL_DIR):
        pytest.skip(
            f"Fashion-MNIST is not in {MANUAL_DIR}: "
            "apt-get install -y dataset-fashion-mnist"
        )
    return load(DatasetConfig(manual_dir=MANUAL_DIR))


def subset(data: Splits, train: int, val: int = 500, test: int = 1000) -> Splits:
    return Splits(
        data.train_x[:train], data.train_y[:train],
        data.val_x[:val], data.val_y[:val],
        data.test_x[:test], data.test_y[:test],
    )


@pytest.fixture
def small_fashion(fashion) -> Splits:
    return subset(fashion, train=2048)
