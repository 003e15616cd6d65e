"""Running a study: one MLflow parent run around ``study.optimize``.

Ctrl-C stops it cleanly: the running trial is marked FAIL in Optuna (Optuna
does that itself) and FAILED in MLflow, the parent run KILLED, and the
summary so far returned; running the same command again continues.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import optuna
from omegaconf import DictConfig, OmegaConf

from study.config import searched_optimizers, validate_study
from study.objective import Objective
from study.space import baseline, lr_param, trial_config
from study.storage import open_study, study_name
from study.tracking import STUDY_NAME, Tracker, check_sqlite_url
from trainers import data as datasets
from trainers import metrics as m
from trainers.config import validate
from trainers.train import check_fits

log = logging.getLogger(__name__)


class Summary(NamedTuple):
    study_name: str
    experiment_id: str
    parent_run_id: str
    counts: dict[str, int]
    best: dict[str, Any] | None
    interrupted: bool


def check(cfg: DictConfig) -> None:
    """Every option a trial can use, checked before any data is loaded."""
    check_sqlite_url("study.storage", cfg.study.storage)
    check_sqlite_url("tracking.uri", cfg.tracking.uri)
    validate_study(cfg)
    params = baseline(cfg)
    for optimizer in searched_optimizers(cfg):
        low = cfg.study.space.optimizer_lr[optimizer].low
        candidate = {**params, "optimizer": optimizer, lr_param(optimizer): low}
        validate(trial_config(cfg, candidate))


def _started(study: optuna.Study) -> int:
    """Trials that have run or are running (not those merely enqueued)."""
    waiting = optuna.trial.TrialState.WAITING
    return sum(t.state != waiting for t in study.trials)


def summarize(study: optuna.Study) -> tuple[dict[str, int], dict[str, Any] | None]:
    counts: dict[str, int] = {}
    for t in study.trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return counts, None
    best = study.best_trial
    return counts, {
        "number": best.number,
        "params": best.params,
        m.VAL_ACCURACY: best.value,
        m.TEST_ACCURACY: best.user_attrs.get(m.TEST_ACCURACY),
        "mlflow_run_id": best.user_attrs.get("mlflow_run_id"),
    }


def run_study(cfg: DictConfig, data: datasets.Splits | None = None) -> Summary:
    """Adds ``cfg.study.n_trials`` trials to the study ``cfg`` names."""
    # Setup: check the options, open the study and its MLflow parent run.
    check(cfg)
    data = data if data is not None else datasets.load(cfg.dataset)
    first = baseline(cfg)
    first.setdefault("optimizer", searched_optimizers(cfg)[0])
    check_fits(trial_config(cfg, first), data)
    name = study_name(cfg)
    tracker = Tracker(cfg.tracking)
    experiment_id = tracker.experiment(name)
    study = open_study(cfg)
    parent_id = tracker.start_run(
        experiment_id, f"study-{_started(study)}", tags={STUDY_NAME: name}
    )
    tracker.log_config(parent_id, OmegaConf.to_container(cfg, resolve=True))

    # Trials: divergence is a result; Ctrl-C stops between or inside trials.
    objective = Objective(cfg, data, tracker, experiment_id, parent_id)
    interrupted = False
    try:
        study.optimize(objective, n_trials=cfg.study.n_trials)
    except KeyboardInterrupt:
        interrupted = True
        log.warning("Interrupted: the running trial is marked failed.")
    finally:
        counts, best = summarize(study)
        if best is not None:
            tracker.log_metrics(
                parent_id,
                {
                    f"best_{m.VAL_ACCURACY}": best[m.VAL_ACCURACY],
                    f"best_{m.TEST_ACCURACY}": best[m.TEST_ACCURACY] or float("nan"),
                },
                step=len(study.trials),
            )
            tracker.set_tags(parent_id, {"best_trial": best["number"]})
        tracker.end_run(parent_id, "KILLED" if interrupted else "FINISHED")
    return Summary(name, experiment_id, parent_id, counts, best, interrupted)
