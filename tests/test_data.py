"""The Fashion-MNIST builder: the IDX format, the splits and the error
a user gets when the files are missing."""

from __future__ import annotations

import gzip
import struct
import time

import numpy as np
import pytest

from trainers.config import ConfigError, DatasetConfig
from trainers.data import load, prepare
from trainers.data.base import DatasetMissingError
from trainers.data.idx import read_idx


def _write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_read_idx_round_trips(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28))
    _write_idx(tmp_path / "x.gz", images)
    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz"), images)


def test_read_idx_rejects_other_dtypes(tmp_path):
    with gzip.open(tmp_path / "bad.gz", "wb") as f:
        f.write(struct.pack(">HBB", 0, 0x0D, 1) + struct.pack(">I", 1) + b"\0" * 4)
    with pytest.raises(ValueError, match="not an unsigned-byte IDX file"):
        read_idx(tmp_path / "bad.gz")


def test_missing_files_fail_fast_with_the_command_that_gets_them(tmp_path, monkeypatch):
    import trainers.data.base as base

    # No internet here either way; make the test independent of the network.
    monkeypatch.setattr(base, "host_reachable", lambda url, timeout=3.0: False)
    cfg = DatasetConfig(manual_dir=str(tmp_path / "empty"), data_dir=str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(
        DatasetMissingError, match="apt-get install -y dataset-fashion-mnist"
    ):
        prepare(cfg)
    assert time.perf_counter() - start < 30


def test_splits_are_disjoint_and_sized(fashion):
    assert fashion.train_x.shape == (55000, 784)
    assert fashion.val_x.shape == (5000, 784)
    assert fashion.test_x.shape == (10000, 784)
    assert fashion.train_x.dtype == np.float32
    assert fashion.train_x.min() >= 0.0 and fashion.train_x.max() <= 1.0
    assert set(np.unique(fashion.test_y)) == set(range(10))
    train_rows = {row.tobytes() for row in fashion.train_x[:2000]}
    assert not any(row.tobytes() in train_rows for row in fashion.val_x)


def test_train_size_beyond_the_split_is_refused(fashion):
    from tests.conftest import MANUAL_DIR

    with pytest.raises(ConfigError, match="dataset.train_size=60000"):
        load(DatasetConfig(manual_dir=MANUAL_DIR, train_size=60000))
