"""MLflow tracking: the one module that writes runs.

One experiment per study (or ``tracking.experiment`` for single runs), one
parent run per invocation, one child run per trial. Runs are written with
:class:`mlflow.MlflowClient` against an explicit tracking URI, so nothing
depends on MLflow's process-global active run.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from trainers.config import ConfigError, TrackingConfig

# MLflow's limits on one log_batch call.
_MAX_PARAMS_PER_BATCH = 100
_MAX_METRICS_PER_BATCH = 1000
_MAX_PARAM_LENGTH = 6000

TRIAL_NUMBER = "optuna.trial_number"
TRIAL_STATE = "optuna.trial_state"
STUDY_NAME = "optuna.study_name"
DIVERGENCE = "divergence"


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


class Tracker:
    """Writes runs to the store ``cfg.uri``, artifacts under
    ``cfg.artifact_location``."""

    def __init__(self, cfg: TrackingConfig):
        self.uri = cfg.uri
        self.artifact_root = Path(cfg.artifact_location).resolve()
        self.client = MlflowClient(tracking_uri=cfg.uri)

    def experiment(self, name: str) -> str:
        """The id of experiment ``name``, created if it does not exist."""
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = (self.artifact_root / name).as_uri()
        return self.client.create_experiment(name, artifact_location=location)

    def start_run(
        self,
        experiment_id: str,
        name: str,
        parent_id: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> str:
        all_tags = {k: str(v) for k, v in (tags or {}).items()}
        if parent_id is not None:
            all_tags[MLFLOW_PARENT_RUN_ID] = parent_id
        run = self.client.create_run(experiment_id, run_name=name, tags=all_tags)
        return run.info.run_id

    def log_config(self, run_id: str, config: Mapping[str, Any]) -> None:
        """The config flattened as params, and whole as ``config.yaml``."""
        params = [
            Param(k, str(v)[:_MAX_PARAM_LENGTH]) for k, v in flatten(config).items()
        ]
        for i in range(0, len(params), _MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=params[i : i + _MAX_PARAMS_PER_BATCH])
        self.client.log_dict(run_id, dict(config), "config.yaml")

    def log_metrics(self, run_id: str, values: Mapping[str, float], step: int) -> None:
        """All ``values`` at ``step`` in as few calls as MLflow allows.

        Non-finite values are logged as they are: a NaN energy is what a
        diverged run should show.
        """
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in values.items()]
        for i in range(0, len(metrics), _MAX_METRICS_PER_BATCH):
            self.client.log_batch(
                run_id, metrics=metrics[i : i + _MAX_METRICS_PER_BATCH]
            )

    def log_series(
        self, run_id: str, series: Mapping[str, Sequence[float]], steps: Sequence[int]
    ) -> None:
        """Several points of each metric, ``series[name][j]`` at ``steps[j]``,
        in batches of MLflow's largest size (one call per 1000 points)."""
        now = int(time.time() * 1000)
        metrics = [
            Metric(name, float(value), now, int(step))
            for name, values in series.items()
            for value, step in zip(values, steps)
        ]
        for i in range(0, len(metrics), _MAX_METRICS_PER_BATCH):
            self.client.log_batch(
                run_id, metrics=metrics[i : i + _MAX_METRICS_PER_BATCH]
            )

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        """``status`` is one of MLflow's FINISHED, FAILED or KILLED."""
        self.client.set_terminated(run_id, status=status)


def check_sqlite_url(option: str, url: str) -> None:
    """A SQLite URL must name a file in an existing, writable folder."""
    if not url.startswith("sqlite:///"):
        return
    folder = Path(url.removeprefix("sqlite:///")).resolve().parent
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ConfigError(
            f"{option}={url!r}: the folder {folder} does not exist or is not writable."
        ) from err
