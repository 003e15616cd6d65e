"""``python -m study [overrides]``: run or continue an Optuna study, or, with
``+experiment=optimizer_comparison``, run or continue a comparison of
optimizers (``study.comparison``)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from study.comparison import Outcome, run_comparison
from study.config import register_schemas
from study.runner import run_study
from trainers import metrics as m
from trainers.config import ConfigError
from trainers.data.base import DatasetMissingError

register_schemas()


def _print_summary(summary, cfg: DictConfig) -> None:
    counts = ", ".join(f"{n} {state.lower()}" for state, n in summary.counts.items())
    print(f"\nStudy {summary.study_name}: {counts or 'no trials'}.")
    if summary.interrupted:
        print("Interrupted; run the same command again to continue the study.")
    best = summary.best
    if best is None:
        print("No trial has completed yet.")
    else:
        print(f"Best trial #{best['number']}:")
        for name, value in best["params"].items():
            print(f"  {name} = {value}")
        print(f"  validation accuracy = {best[m.VAL_ACCURACY]:.4f}")
        test = best[m.TEST_ACCURACY]
        print(f"  test accuracy       = {test:.4f} (forward pass, full test split)")
    print(
        f"\nBrowse it: make ui (MLflow store {cfg.tracking.uri}, experiment "
        f"'{summary.study_name}'); plots: make plots STUDY={summary.study_name}"
    )


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _print_outcome(outcome: Outcome, cfg: DictConfig) -> None:
    c = cfg.comparison
    print(
        f"\nComparison {c.experiment}: {outcome.ran} runs trained in "
        f"{outcome.seconds / 60:.1f} min, {outcome.skipped} finished before, "
        f"{outcome.diverged} diverged."
    )
    if outcome.interrupted:
        print("Interrupted; run the same command again to continue.")
    elif outcome.written:
        page = Path(c.out_dir) / "report.html"
        print(f"Report: {page} ({len(outcome.written)} files in {c.out_dir})")
    print(f"Runs: MLflow store {cfg.tracking.uri}, experiment '{c.experiment}'.")


def _compare(cfg: DictConfig) -> None:
    try:
        outcome = run_comparison(cfg)
    except (ConfigError, DatasetMissingError) as err:
        sys.exit(f"error: {err}")
    _print_outcome(outcome, cfg)
    if outcome.interrupted:
        sys.exit(130)


@hydra.main(version_base="1.3", config_path="../conf", config_name="study")
def main(cfg: DictConfig) -> None:
    # A plain `kill` stops the study as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    if cfg.comparison is not None:
        return _compare(cfg)
    try:
        summary = run_study(cfg)
    except (ConfigError, DatasetMissingError) as err:
        sys.exit(f"error: {err}")
    _print_summary(summary, cfg)
    if summary.interrupted:
        sys.exit(130)


if __name__ == "__main__":
    main()
