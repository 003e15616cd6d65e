"""Shared fixtures: small deterministic configs and a cached data subset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from study.config import register_schemas
from trainers.config import DatasetConfig
from trainers.config import register_schemas as register_run_schema
from trainers.data import Splits, load
from trainers.data.idx import FashionMnistIdx

MANUAL_DIR = os.environ.get("FASHION_MNIST_DIR", DatasetConfig().manual_dir)
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")

register_schemas()
register_run_schema()


@pytest.fixture(scope="session")
def fashion() -> Splits:
    """All of Fashion-MNIST, loaded once per session through TFDS."""
    if not FashionMnistIdx.on_disk(MANUAL_DIR):
        pytest.skip(
            f"Fashion-MNIST is not in {MANUAL_DIR}: "
            "apt-get install -y dataset-fashion-mnist"
        )
    return load(DatasetConfig(manual_dir=MANUAL_DIR))


def subset(data: Splits, train: int, val: int = 500, test: int = 1000) -> Splits:
    return Splits(
        data.train_x[:train],
        data.train_y[:train],
        data.val_x[:val],
        data.val_y[:val],
        data.test_x[:test],
        data.test_y[:test],
    )


@pytest.fixture
def small_fashion(fashion) -> Splits:
    return subset(fashion, train=2048)


FAST = [
    "model.hidden_sizes=[32,32]",
    "trainer.epochs=2",
    "trainer.batch_size=64",
    "trainer.eval_batch_size=500",
    "study.n_startup_trials=2",
]


@pytest.fixture
def compose_study(tmp_path):
    def make(*overrides):
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return compose(
                "study",
                overrides=[
                    f"study.storage=sqlite:///{tmp_path}/optuna.db",
                    f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
                    f"tracking.artifact_location={tmp_path}/mlruns",
                    *FAST,
                    *overrides,
                ],
            )

    return make
