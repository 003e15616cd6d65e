"""Studies and trials read back from MLflow, as tables.

Only reads: runs are found by the tags the study writes and their metrics
by the fixed names in ``trainers.metrics``.
"""

from __future__ import annotations

import pandas as pd
from mlflow import MlflowClient

from study.tracking import DIVERGENCE, STUDY_NAME, TRIAL_NUMBER, TRIAL_STATE
from trainers import metrics as m

_STUDY_RUNS = f"tags.`{STUDY_NAME}` LIKE '%'"


class StudyNotFoundError(LookupError):
    """No study of that name (or none at all) in the tracking store."""


def latest_study(client: MlflowClient) -> str:
    """The name of the study whose most recent run started last."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments, _STUDY_RUNS, order_by=["attributes.start_time DESC"], max_results=1
    )
    if not runs:
        raise StudyNotFoundError(
            "The tracking store holds no study yet: run `make study` first."
        )
    return runs[0].data.tags[STUDY_NAME]


def trials(client: MlflowClient, study: str) -> pd.DataFrame:
    """One row per trial run of ``study``: its number, state, searched
    settings, final metrics and divergence reason, sorted by trial number."""
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        names = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise StudyNotFoundError(
            f"study={study!r} is not in the store; it has: {names}."
        )
    runs = client.search_runs(
        [experiment.experiment_id], f"tags.`{TRIAL_NUMBER}` LIKE '%'"
    )
    rows = []
    for run in runs:
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        rows.append(
            {
                "trial": int(tags[TRIAL_NUMBER]),
                "state": tags.get(TRIAL_STATE, "RUNNING"),
                "optimizer": params.get("optimizer.name"),
                "lr": _number(params.get("optimizer.lr")),
                "state_lr": _number(params.get("trainer.state_lr")),
                "beta": _number(params.get("energy.beta")),
                "inference_steps": _number(params.get("trainer.inference_steps")),
                m.VAL_ACCURACY: metrics.get(m.VAL_ACCURACY),
                m.TEST_ACCURACY: metrics.get(m.TEST_ACCURACY),
                m.TRAIN_LOSS: metrics.get(m.TRAIN_LOSS),
                "diverged": bool(metrics.get(m.DIVERGED, 0.0)),
                DIVERGENCE: tags.get(DIVERGENCE, ""),
                "run_id": run.info.run_id,
            }
        )
    if not rows:
        raise StudyNotFoundError(f"study={study!r} has no trial runs yet.")
    return pd.DataFrame(rows).sort_values("trial").reset_index(drop=True)


def histories(
    client: MlflowClient, run_ids: list[str], keys: list[str]
) -> pd.DataFrame:
    """Long table (run_id, key, step, value) of the metrics ``keys``."""
    rows = [
        (run_id, key, point.step, point.value)
        for run_id in run_ids
        for key in keys
        for point in client.get_metric_history(run_id, key)
    ]
    return pd.DataFrame(rows, columns=["run_id", "key", "step", "value"])


def metric_keys(client: MlflowClient, run_id: str, prefix: str) -> list[str]:
    """The metric names of a run that start with ``prefix``, sorted."""
    keys = client.get_run(run_id).data.metrics
    return sorted((k for k in keys if k.startswith(prefix)), key=_natural)


def _natural(key: str) -> tuple[str, int]:
    head, _, tail = key.rpartition("_")
    return (head, int(tail)) if tail.isdigit() else (key, -1)


def _number(value: str | None) -> float | None:
    return None if value in (None, "None") else float(value)
