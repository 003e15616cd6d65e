"""The Optuna objective: one trial is one tracked training run.

The trial's value is the final validation accuracy (maximised); each epoch's
validation accuracy is reported as an intermediate value for the pruner. A
trial whose training diverged ends PRUNED with the reason in its
``divergence`` user attribute; the study goes on. Test accuracy is recorded
(``test_accuracy`` user attribute) but never optimised.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

import optuna
from omegaconf import DictConfig

from study import space
from study.tracking import DIVERGENCE, STUDY_NAME, TRIAL_NUMBER, TRIAL_STATE, Tracker
from trainers import metrics as m
from trainers.data import Splits
from trainers.train import BatchSeries, train_and_evaluate

log = logging.getLogger(__name__)


class Objective:
    """Runs trials of the study ``cfg`` on ``data``, each as a child of the
    MLflow run ``parent_id``."""

    def __init__(
        self,
        cfg: DictConfig,
        data: Splits,
        tracker: Tracker,
        experiment_id: str,
        parent_id: str,
    ):
        self.cfg = cfg
        self.data = data
        self.tracker = tracker
        self.experiment_id = experiment_id
        self.parent_id = parent_id

    def __call__(self, trial: optuna.Trial) -> float:
        params = space.suggest(trial, self.cfg)
        run_cfg = space.trial_config(self.cfg, params)
        run_id = self.tracker.start_run(
            self.experiment_id,
            f"trial-{trial.number}",
            parent_id=self.parent_id,
            tags={TRIAL_NUMBER: trial.number, STUDY_NAME: trial.study.study_name},
        )
        trial.set_user_attr("mlflow_run_id", run_id)
        log.info("Trial %d: %s", trial.number, params)
        try:
            self.tracker.log_config(run_id, asdict(run_cfg))
            value = self._train(trial, run_cfg, run_id)
        except optuna.TrialPruned:
            self.tracker.set_tags(run_id, {TRIAL_STATE: "PRUNED"})
            self.tracker.end_run(run_id, "FINISHED")
            raise
        except BaseException:
            self.tracker.set_tags(run_id, {TRIAL_STATE: "FAIL"})
            self.tracker.end_run(run_id, "FAILED")
            raise
        self.tracker.set_tags(run_id, {TRIAL_STATE: "COMPLETE"})
        self.tracker.end_run(run_id, "FINISHED")
        return value

    def _train(self, trial: optuna.Trial, run_cfg, run_id: str) -> float:
        def report(epoch: int, row: dict[str, float]) -> bool:
            self.tracker.log_metrics(run_id, row, step=epoch)
            trial.report(row[m.VAL_ACCURACY], step=epoch)
            return trial.should_prune()

        def log_batches(epoch: int, series: BatchSeries) -> None:
            self.tracker.log_series(run_id, series.values, series.steps)

        result = train_and_evaluate(
            run_cfg, self.data, callback=report, on_batches=log_batches
        )
        final = result.final
        trial.set_user_attr(m.TEST_ACCURACY, final[m.TEST_ACCURACY])
        trial.set_user_attr("epochs_run", len(result.history))
        if result.divergence is not None:
            trial.set_user_attr(DIVERGENCE, result.divergence)
            self.tracker.set_tags(run_id, {DIVERGENCE: result.divergence})
            raise optuna.TrialPruned(f"diverged: {result.divergence}")
        if result.stopped_by_callback:
            raise optuna.TrialPruned(
                f"pruned after epoch {len(result.history)}: validation accuracy "
                f"{final[m.VAL_ACCURACY]:.4f} below the pruner's bar"
            )
        return final[m.VAL_ACCURACY]
