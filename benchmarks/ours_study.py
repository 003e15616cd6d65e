"""The platform's Optuna study on the space ``fabricpc_tuner.py`` searches,
timed in trials per hour, with the share of MLflow logging in train time.

The HPC MLP (784-512-512-10, tanh, cross-entropy output, as FabricPC's tuner
needs), one epoch per trial at exactly 20 inference steps (convergence
threshold 0), batch 128, Adam; the study samples eta_v log-uniform in
[0.003, 0.05] and eta_theta log-uniform in [3e-4, 2e-3]. Beta stays 1 and
the optimizer stays Adam: FabricPC's tuner has neither. The Optuna store
and the MLflow store are fresh SQLite files in a temporary folder:

    .venv/bin/python benchmarks/ours_study.py --trials 6

The clock starts before the data is loaded and stops after the last trial.
Every method of the MLflow tracker is timed; its share of train time is
that time over the time in ``train_and_evaluate`` less the logging done
inside it (the per-epoch callback).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

import study.objective
import study.tracking
from study.config import register_schemas
from study.runner import run_study
from trainers.config import register_schemas as register_run_schema

import cli

CONF = str(Path(__file__).resolve().parent.parent / "conf")
SPACE = {"state_lr": (0.003, 0.05), "lr": (3e-4, 2e-3)}


def overrides(trials: int, folder: str, max_batches: int | None) -> list[str]:
    (v_low, v_high), (lr_low, lr_high) = SPACE["state_lr"], SPACE["lr"]
    out = [
        "energy=hpc",
        "energy.loss=cross_entropy",
        "optimizer=adam",
        "study.space.beta=null",
        "study.space.inference_steps=null",
        f"study.space.state_lr={{low: {v_low}, high: {v_high}, log: true}}",
        f"study.space.optimizer_lr={{adam: {{low: {lr_low}, high: {lr_high}, "
        "log: true}}",
        "study.baseline.inference_steps=20",
        "trainer.epochs=1",
        "trainer.inference_steps=20",
        "trainer.convergence_threshold=0",
        "trainer.batch_size=128",
        f"study.n_trials={trials}",
        "study.name=bench",
        f"study.storage=sqlite:///{folder}/optuna.db",
        f"tracking.uri=sqlite:///{folder}/mlflow.db",
        f"tracking.artifact_location={folder}/mlruns",
    ]
    if max_batches is not None:
        out.append(f"dataset.train_size={max_batches * 128}")
    return out


class Clock:
    """Seconds spent in the wrapped callables, and in logging while
    training."""

    def __init__(self):
        self.logging = self.training = self.logging_in_training = 0.0
        self.in_training = False

    def tracker_method(self, method):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                spent = time.perf_counter() - start
                self.logging += spent
                if self.in_training:
                    self.logging_in_training += spent

        return timed

    def train(self, fn):
        def timed(*args, **kwargs):
            self.in_training = True
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.training += time.perf_counter() - start
                self.in_training = False

        return timed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--max-batches", type=int, default=None, help="smoke tests")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    register_schemas()
    register_run_schema()

    clock = Clock()
    tracker = study.tracking.Tracker
    for name in ("experiment", "start_run", "log_config", "log_metrics"):
        setattr(tracker, name, clock.tracker_method(getattr(tracker, name)))
    for name in ("log_series", "set_tags", "end_run"):
        setattr(tracker, name, clock.tracker_method(getattr(tracker, name)))
    study.objective.train_and_evaluate = clock.train(study.objective.train_and_evaluate)

    with tempfile.TemporaryDirectory() as folder:
        with initialize_config_dir(config_dir=CONF, version_base="1.3"):
            cfg = compose(
                "study", overrides=overrides(args.trials, folder, args.max_batches)
            )
        start = time.perf_counter()
        summary = run_study(cfg)
        seconds = time.perf_counter() - start
    trials = sum(summary.counts.values())
    cli.emit(
        library="ebll-studies",
        event="study",
        trials=trials,
        states=summary.counts,
        seconds=round(seconds, 3),
        trials_per_hour=round(3600 * trials / seconds, 2),
        train_seconds=round(clock.training - clock.logging_in_training, 3),
        logging_seconds=round(clock.logging, 3),
        logging_share=round(
            clock.logging / max(clock.training - clock.logging_in_training, 1e-9), 5
        ),
    )


if __name__ == "__main__":
    main()
