"""Opening a study: its name, storage, sampler and pruner.

The storage is any Optuna storage URL; by default a SQLite file created in
the working directory before the first trial. Many workers, on many
machines, can share one study by pointing at the same RDB (PostgreSQL) or
journal storage.
"""

from __future__ import annotations

import logging

import optuna
from optuna.trial import TrialState
from sqlalchemy.exc import SQLAlchemyError

from study import space
from study.config import StudyRunConfig
from trainers.config import ConfigError

log = logging.getLogger(__name__)


def study_name(cfg: StudyRunConfig) -> str:
    """``study.name``, or ``<model>-<energy>-<optimizer>-<dataset>`` with
    ``searched`` for the optimizer when the study chooses it."""
    if cfg.study.name:
        return cfg.study.name
    optimizer = cfg.optimizer.name if cfg.optimizer is not None else "searched"
    return f"{cfg.model.name}-{cfg.energy.name}-{optimizer}-{cfg.dataset.name}"


def open_study(cfg: StudyRunConfig) -> optuna.Study:
    """Creates the study, or loads it to add trials.

    A new study gets the config's baseline as its first (enqueued) trial,
    and so does a study none of whose trials has finished yet.
    The TPE sampler is seeded with ``seed`` plus the number of trials the
    study already holds, so a continued study does not replay the random
    start-up suggestions of its first invocation.
    """
    name = study_name(cfg)
    try:
        study = optuna.create_study(
            study_name=name,
            storage=cfg.study.storage,
            direction="maximize",
            load_if_exists=True,
        )
    except (ImportError, ValueError, SQLAlchemyError) as err:
        raise ConfigError(
            f"study.storage={cfg.study.storage!r} cannot be opened: {err}"
        ) from err
    existing = len(study.trials)
    study.sampler = optuna.samplers.TPESampler(
        seed=cfg.seed + existing, n_startup_trials=cfg.study.n_startup_trials
    )
    study.pruner = optuna.pruners.MedianPruner(
        n_startup_trials=cfg.study.n_startup_trials,
        n_warmup_steps=cfg.study.pruner_warmup_epochs,
    )
    states = {t.state for t in study.trials}
    if not states & {TrialState.COMPLETE, TrialState.PRUNED, TrialState.WAITING}:
        # New, or every trial so far failed (say the baseline was interrupted).
        study.enqueue_trial(space.baseline(cfg))
    if existing == 0:
        log.info("Created study %s in %s", name, cfg.study.storage)
    else:
        log.info("Continuing study %s (%d trials so far)", name, existing)
    return study
