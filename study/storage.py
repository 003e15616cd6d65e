"""Opening a study: its name, storage, sampler and pruner.

The storage is any Optuna storage URL; by default a SQLite file created in
the working directory before the first trial. Many workers, on many
machines, can share one study by pointing at the same RDB (PostgreSQL) or
journal storage.
"""

from __future__ import annotations

import logging

import optuna

from study import space
from study.config import StudyRunConfig

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

    A new study gets the config's baseline as its first (enqueued) trial.
    The TPE sampler is seeded with ``seed`` plus the number of trials the
    study already holds, so a continued study does not replay the random
    start-up suggestions of its first invocation.
    """
    name = study_name(cfg)
    study = optuna.create_study(
        study_name=name,
        storage=cfg.study.storage,
        direction="maximize",
        load_if_exists=True,
    )
    existing = len(study.trials)
    study.sampler = optuna.samplers.TPESampler(
        seed=cfg.seed + existing, n_startup_trials=cfg.study.n_startup_trials
    )
    study.pruner = optuna.pruners.MedianPruner(
        n_startup_trials=cfg.study.n_startup_trials,
        n_warmup_steps=cfg.study.pruner_warmup_epochs,
    )
    if existing == 0:
        study.enqueue_trial(space.baseline(cfg))
        log.info("Created study %s in %s", name, cfg.study.storage)
    else:
        log.info("Continuing study %s (%d trials so far)", name, existing)
    return study
