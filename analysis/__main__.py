"""``python -m analysis [analysis.study=<name>]``: export a study's plots and
table."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from mlflow import MlflowClient
from omegaconf import DictConfig

from analysis import load, plots
from analysis.tables import write_tables
from trainers import metrics as m

log = logging.getLogger(__name__)


def export(client: MlflowClient, study: str, out_dir: Path) -> list[Path]:
    """Writes the plots and tables of ``study`` into ``out_dir``."""
    table = load.trials(client, study)
    out_dir.mkdir(parents=True, exist_ok=True)
    layer_keys = load.metric_keys(
        client, table["run_id"].iloc[0], m.PARAM_GRAD_NORM.split("{")[0]
    )
    history = load.histories(
        client, list(table["run_id"]), [m.VAL_ACCURACY, *layer_keys]
    )
    written = write_tables(table, out_dir)
    written.append(
        plots.validation_curves(table, history, study, out_dir / "val_accuracy.png")
    )
    if layer_keys:
        written.append(
            plots.gradient_norms(
                table, history, layer_keys, study, out_dir / "param_grad_norms.png"
            )
        )
    return written


def main_body(cfg: DictConfig) -> list[Path]:
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    study = cfg.analysis.study or load.latest_study(client)
    return export(client, study, Path(cfg.analysis.out_dir) / study)


@hydra.main(version_base="1.3", config_path="../conf", config_name="analysis")
def main(cfg: DictConfig) -> None:
    try:
        written = main_body(cfg)
    except load.StudyNotFoundError as err:
        sys.exit(f"error: {err}")
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
