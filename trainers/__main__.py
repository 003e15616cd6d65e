"""``python -m trainers [overrides]``: one training run, tracked in MLflow.

The only place in ``trainers`` that knows of MLflow: the run loop reports
each epoch through a callback, which this entry point points at a tracker.
"""

from __future__ import annotations

import sys
from dataclasses import asdict

import hydra
from omegaconf import DictConfig, OmegaConf

from study.tracking import DIVERGENCE, Tracker, check_sqlite_url
from trainers import data as datasets
from trainers import metrics as m
from trainers.config import ConfigError, RunConfig, register_schemas, validate
from trainers.data.base import DatasetMissingError
from trainers.train import BatchSeries, check_fits, train_and_evaluate

register_schemas()


def run(cfg: RunConfig) -> dict[str, float]:
    """Trains ``cfg`` and logs it as one MLflow run; returns the last epoch."""
    validate(cfg)
    check_sqlite_url("tracking.uri", cfg.tracking.uri)
    data = datasets.load(cfg.dataset)
    check_fits(cfg, data)
    tracker = Tracker(cfg.tracking)
    experiment_id = tracker.experiment(cfg.tracking.experiment)
    name = f"{cfg.model.name}-{cfg.energy.name}-{cfg.optimizer.name}"
    run_id = tracker.start_run(experiment_id, name)

    def log_epoch(epoch: int, row: dict[str, float]) -> bool:
        tracker.log_metrics(run_id, row, step=epoch)
        return False

    def log_batches(epoch: int, series: BatchSeries) -> None:
        tracker.log_series(run_id, series.values, series.steps)

    try:
        tracker.log_config(run_id, asdict(cfg))
        result = train_and_evaluate(cfg, data, log_epoch, log_batches)
    except BaseException:
        tracker.end_run(run_id, "FAILED")
        raise
    if result.divergence is not None:
        tracker.set_tags(run_id, {DIVERGENCE: result.divergence})
    tracker.end_run(run_id, "FINISHED")
    return result.final | {"run_id": run_id, DIVERGENCE: result.divergence}


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(dict_cfg: DictConfig) -> None:
    cfg: RunConfig = OmegaConf.to_object(dict_cfg)
    try:
        final = run(cfg)
    except (ConfigError, DatasetMissingError) as err:
        sys.exit(f"error: {err}")
    print(
        f"validation accuracy {final[m.VAL_ACCURACY]:.4f}, test accuracy "
        f"{final[m.TEST_ACCURACY]:.4f} (forward pass); MLflow run {final['run_id']} "
        f"in experiment '{cfg.tracking.experiment}' at {cfg.tracking.uri}"
    )
    if final[DIVERGENCE]:
        print(f"diverged: {final[DIVERGENCE]}")


if __name__ == "__main__":
    main()
