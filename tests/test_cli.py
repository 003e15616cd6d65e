"""The entry points as a user runs them, and the configs they compose."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient

from tests.conftest import CONF_DIR, MANUAL_DIR
from trainers.config import register_schemas

register_schemas()


def _run(module, tmp_path, *overrides):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            module,
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
            f"tracking.artifact_location={tmp_path}/mlruns",
            f"hydra.run.dir={tmp_path}/outputs",
            *overrides,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_single_run_is_tracked(tmp_path, fashion):
    out = _run(
        "trainers",
        tmp_path,
        f"dataset.manual_dir={MANUAL_DIR}",
        "dataset.train_size=1024",
        "trainer.epochs=1",
        "model.hidden_sizes=[16]",
        "energy=hpc",
        "optimizer=lalr",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "test accuracy" in out.stdout
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs(
        [client.get_experiment_by_name("single-runs").experiment_id]
    )
    assert run.info.status == "FINISHED"
    assert run.data.params["optimizer.name"] == "lalr"
    assert "val_accuracy" in run.data.metrics


@pytest.mark.parametrize(
    "module, override, message",
    [
        ("trainers", "trainer.state_lr=-1", "trainer.state_lr=-1.0 is not allowed"),
        ("trainers", "energy.loss=hinge", "energy.loss='hinge' is not supported"),
        ("study", "study.space.optimizer_lr.adam.low=0", "optimizer_lr.adam.low=0.0"),
    ],
)
def test_bad_input_is_refused_by_name_before_anything_runs(
    tmp_path, module, override, message
):
    out = _run(module, tmp_path, override)
    assert out.returncode != 0
    assert message in out.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_paper_table2_experiment_sets_the_table_values():
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["+experiment=paper_table2"])
    assert cfg.trainer.batch_size == 128
    assert cfg.trainer.inference_steps == 200
    assert cfg.trainer.state_lr == 0.01
    assert cfg.trainer.convergence_threshold == 1e-7
    assert cfg.optimizer.lr == 0.01
    assert cfg.energy.beta == 1.0
