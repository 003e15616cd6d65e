"""``python -m analysis.compare [analysis.experiment=<name>]``: the tables,
figures and HTML report of an optimizer comparison, read back from MLflow.

:func:`load_comparison` turns the FINISHED runs of a comparison's MLflow
experiment (``study.comparison`` writes them) into the ``runs`` and
``history`` tables of :mod:`analysis.stats`; where a (setting, energy,
optimizer, seed) was run more than once, the latest run counts.
:func:`export` writes into one folder:

- ``accuracy.{md,tex,csv}``: test accuracy, mean and standard deviation over
  seeds, (setting, energy) x optimizer (after Chen et al. 2025, Table 3);
- ``accuracy_differences.{md,tex,csv}``: each optimizer's mean accuracy minus
  the baseline's, with a bootstrap 95% interval;
- ``stability.{md,tex,csv}``: divergence rate, coefficient of variation and
  spikes of the gradient norms, epochs until the loss stops rising;
- ``figures/``: ``update_ratio`` (Fig 2a), ``loss`` (Fig 2b, 2c),
  ``grad_norm_layer_<k>`` (Fig 6), ``state_grad_norm`` (the depth view of
  Fig 4, from these runs), ``stability``, each as PNG, SVG and PDF;
- ``optuna/<study>/``: the plots of each Optuna study named;
- ``depth/<experiment>/``: the plots of the depth experiments
  (``depth-recurrent``, ``depth-mlp``) that exist in the store;
- ``report.html``: all of it in one self-contained page.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import hydra
import numpy as np
import optuna
import pandas as pd
from mlflow import MlflowClient
from omegaconf import DictConfig

from analysis import figures, optuna_plots, report, stats
from analysis.load import StudyNotFoundError
from study.comparison import ENERGY, OPTIMIZER, RUN_SECONDS, SEED, SETTING
from trainers import metrics as m

log = logging.getLogger(__name__)

PARAMS = {
    "model": "model.name",
    "hidden_sizes": "model.hidden_sizes",
    "width": "model.width",
    "train_size": "dataset.train_size",
    "epochs": "trainer.epochs",
    "batch_size": "trainer.batch_size",
    "inference_steps": "trainer.inference_steps",
    "state_lr": "trainer.state_lr",
    "lr": "optimizer.lr",
    "momentum": "optimizer.momentum",
    "beta": "energy.beta",
    "log_every": "trainer.log_every",
}


class Comparison(NamedTuple):
    runs: pd.DataFrame
    history: pd.DataFrame


def load_comparison(client: MlflowClient, experiment: str) -> Comparison:
    """The FINISHED runs of ``experiment`` and their metric histories."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise StudyNotFoundError(
            f"experiment={experiment!r} is not in the store: run "
            "`python -m study +experiment=optimizer_comparison` first."
        )
    listed = client.search_runs(
        [found.experiment_id],
        f"attributes.status = 'FINISHED' and tags.`{SETTING}` LIKE '%'",
        order_by=["attributes.start_time DESC"],
        max_results=50000,
    )
    rows = [_run_row(run) for run in listed]
    if not rows:
        raise StudyNotFoundError(f"experiment={experiment!r} has no finished runs.")
    runs = pd.DataFrame(rows).drop_duplicates([*stats.GROUP, "seed"], keep="first")
    runs = runs.sort_values([*stats.GROUP, "seed"]).reset_index(drop=True)
    keys = {r.info.run_id: list(r.data.metrics) for r in listed}
    points = [
        (run_id, key, p.step, p.value)
        for run_id in runs["run_id"]
        for key in keys[run_id]
        for p in client.get_metric_history(run_id, key)
    ]
    history = pd.DataFrame(points, columns=["run_id", "key", "step", "value"])
    return Comparison(runs, history)


def _run_row(run) -> dict[str, object]:
    tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
    row = {
        "run_id": run.info.run_id,
        "setting": tags[SETTING],
        "energy": tags[ENERGY],
        "optimizer": tags[OPTIMIZER],
        "seed": int(tags[SEED]),
        "status": run.info.status,
        "diverged": bool(metrics.get(m.DIVERGED, 0.0)),
        "divergence_step": int(metrics.get(m.DIVERGENCE_STEP, -1)),
        m.TEST_ACCURACY: metrics.get(m.TEST_ACCURACY, np.nan),
        m.VAL_ACCURACY: metrics.get(m.VAL_ACCURACY, np.nan),
        m.TRAIN_LOSS: metrics.get(m.TRAIN_LOSS, np.nan),
        RUN_SECONDS: metrics.get(RUN_SECONDS, np.nan),
    }
    return row | {column: params.get(key) for column, key in PARAMS.items()}


def setup_text(runs: pd.DataFrame) -> str:
    """What was run, per setting, read from the runs' own parameters."""
    parts = []
    for setting, group in runs.groupby("setting", sort=False):
        first = group.iloc[0]
        if first["model"] == "mlp":
            model = f"MLP with hidden layers {first['hidden_sizes']}"
        else:
            model = f"{first['model']} network at width {first['width']}"
        rates = ", ".join(
            f"{o} {_values(g['lr'])}" for o, g in group.groupby("optimizer")
        )
        parts.append(
            f"{setting}: {model}; {_values(group['train_size'])} training images, "
            f"{_values(group['epochs'])} epochs of batch "
            f"{_values(group['batch_size'])}; {_values(group['inference_steps'])} "
            f"inference steps at eta_v {_values(group['state_lr'])}, beta "
            f"{_values(group['beta'])}; eta_theta {rates}; energies "
            f"{', '.join(sorted(group['energy'].unique()))}; seeds "
            f"{', '.join(str(s) for s in sorted(group['seed'].unique()))}."
        )
    total = runs[RUN_SECONDS].sum()
    parts.append(
        f"{len(runs)} runs, {total / 60:.1f} minutes of training in all (on the "
        "machine that ran them). Accuracy is that of a forward pass, with no "
        "inference at test time."
    )
    return " ".join(parts)


def _values(column: pd.Series) -> str:
    return "/".join(sorted({str(v) for v in column}))


class Exported(NamedTuple):
    report: Path
    written: list[Path]
    notes: list[str]


def export(
    comparison: Comparison,
    out_dir: Path,
    title: str,
    baseline: str = "adam",
    block: int = 1,
    studies: dict[str, optuna.Study] | None = None,
    extra_figures: Sequence[Path] = (),
    notes: Sequence[str] = (),
) -> Exported:
    """Writes every table, figure and the report of ``comparison`` into
    ``out_dir``; ``studies`` are Optuna studies to plot, ``extra_figures``
    PNG files (another analysis's) to show in the report as they are."""
    runs, history = comparison
    out_dir = Path(out_dir)
    written: list[Path] = []
    notes = list(notes)

    # Tables.
    accuracy = stats.mean_std_table(runs)
    differences = stats.accuracy_differences(runs, baseline=baseline)
    stability = stats.stability_table(runs, history)
    written += report.write_tables(accuracy, out_dir, "accuracy")
    written += report.write_tables(differences, out_dir, "accuracy_differences")
    written += report.write_tables(stability, out_dir, "stability")

    # Figures.
    drawn = {
        "update_ratio": figures.update_ratio_figure(runs, history),
        "loss": figures.loss_curves_figure(runs, history),
        f"grad_norm_layer_{block}": figures.gradient_norm_figure(runs, history, block),
        "state_grad_norm": figures.state_grad_norm_figure(runs, history),
        "stability": figures.stability_bars(stability),
    }
    for stem, plot in drawn.items():
        if plot.figure is not None:
            written += figures.save_figure(plot.figure, out_dir / "figures", stem)
        if plot.note:
            notes.append(f"{stem}: {plot.note}")
    study_plots = {}
    for name, study in (studies or {}).items():
        paths, study_notes = optuna_plots.save_study_plots(
            study, out_dir / "optuna" / name
        )
        written += paths
        notes += [f"study {name}, {note}" for note in study_notes]
        study_plots[name] = [p for p in paths if p.suffix == ".png"]

    sections = _sections(runs, accuracy, differences, stability, drawn, baseline, block)
    sections.append(_study_section(study_plots, studies or {}, extra_figures))
    sections.append(report.Section("Notes", notes=notes))
    listed = [p.relative_to(out_dir).as_posix() for p in written]
    sections.append(
        report.Section(
            "Files",
            text=f"Written next to this report, in {out_dir}:",
            tables={"files": pd.DataFrame({"file": [*listed, "report.html"]})},
        )
    )
    page = report.write_report(out_dir, title, sections, setup_text(runs))
    return Exported(page, [*written, page], notes)


def _sections(
    runs, accuracy, differences, stability, drawn, baseline, block
) -> list[report.Section]:
    diverged = runs[runs["diverged"]]
    if diverged.empty:
        divergence = (
            f"None of the {len(runs)} runs diverged: the stability differences "
            "show, if at all, in the gradient-norm statistics below."
        )
    else:
        cells = ", ".join(
            f"{r.setting}/{r.energy}/{r.optimizer} seed {r.seed} "
            f"(batch {r.divergence_step})"
            for r in diverged.itertuples()
        )
        divergence = f"{len(diverged)} of {len(runs)} runs diverged: {cells}."
    return [
        report.Section(
            "Accuracy (after Table 3)",
            text="Test accuracy, mean ± standard deviation over seeds (number of "
            f"seeds); differences from {baseline} with bootstrap 95% intervals "
            "(BCa, percentile where BCa has no spread to work with; with 3 to 5 "
            "seeds read them as a description of the seeds, not as a test).",
            tables={
                "accuracy": report.mean_std_text(accuracy),
                f"difference from {baseline}": differences,
            },
        ),
        report.Section(
            "Training loss (after Fig 2b and 2c)",
            figures={"training loss per epoch": drawn["loss"]},
        ),
        report.Section(
            "Update ratios (after Fig 2a)",
            figures={"||w|| / (eta ||dw||) per layer": drawn["update_ratio"]},
        ),
        report.Section(
            f"Weight-gradient norm of layer {block} (after Fig 6)",
            figures={f"layer {block} over training": drawn[f"grad_norm_layer_{block}"]},
        ),
        report.Section(
            "Inference-gradient norm by node (after Fig 4)",
            figures={"mean ||dF/dv|| per hidden node": drawn["state_grad_norm"]},
        ),
        report.Section(
            "Stability",
            text=divergence
            + " Coefficient of variation: std / mean of each layer's gradient "
            "norm over training, averaged over layers and runs. Spikes: points "
            "above ten times the running median, summed over layers and runs. "
            "Loss stops rising: the last epoch at which the training loss rose "
            "(0 if it never did), averaged over runs.",
            tables={"stability per optimizer": stability},
            figures={"stability per optimizer": drawn["stability"]},
        ),
    ]


def _study_section(
    study_plots: dict[str, list[Path]],
    studies: dict[str, optuna.Study],
    extra: Sequence[Path],
) -> report.Section:
    images = {
        f"{name}: {path.stem}": path
        for name, paths in study_plots.items()
        for path in paths
    }
    images |= {f"{path.parent.name}: {path.name}": path for path in extra}
    text = (
        f"Optuna studies plotted: {', '.join(studies)}."
        if studies
        else "No Optuna study was named: the hyperparameters were given."
    )
    return report.Section("Studies and other experiments", text=text, figures=images)


def export_comparison(cfg: DictConfig) -> list[Path]:
    """The export of ``cfg.comparison`` from the store ``cfg.tracking.uri``,
    with the Optuna studies it took hyperparameters from."""
    c = cfg.comparison
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    studies = {
        name: optuna.load_study(study_name=name, storage=cfg.study.storage)
        for name in dict.fromkeys(c.from_study.values())
    }
    missing = []
    for name in c.studies:
        if name in studies:
            continue
        try:
            studies[name] = optuna.load_study(
                study_name=name, storage=cfg.study.storage
            )
        except KeyError:
            missing.append(name)
    out_dir = Path(c.out_dir)
    extra, notes = _depth_figures(client, out_dir / "depth")
    notes += [
        f"Optuna study {name!r} (comparison.studies) is not in "
        f"{cfg.study.storage}: run it first (the default study: make study)."
        for name in missing
    ]
    exported = export(
        load_comparison(client, c.experiment),
        out_dir,
        f"Optimizer comparison: {c.experiment}",
        baseline=c.baseline,
        block=c.block,
        studies=studies,
        extra_figures=extra,
        notes=notes,
    )
    return exported.written


DEPTH_EXPERIMENTS = ("depth-recurrent", "depth-mlp")


def _depth_figures(
    client: MlflowClient, out_dir: Path, experiments: Sequence[str] = DEPTH_EXPERIMENTS
) -> tuple[list[Path], list[str]]:
    """The plots of the depth experiments (``analysis.depth``) that were run,
    each into ``out_dir/<experiment>``; a note for each that was not."""
    from analysis import depth

    figures_, notes = [], []
    for experiment in experiments:
        try:
            written = depth.export(client, experiment, out_dir / experiment)
        except StudyNotFoundError as err:
            notes.append(f"Fig 4 depth experiment not shown: {err}")
            continue
        figures_ += [p for p in written if p.suffix == ".png"]
    return figures_, notes


@hydra.main(version_base="1.3", config_path="../conf", config_name="compare")
def main(cfg: DictConfig) -> None:
    a = cfg.analysis
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    out_dir = Path(a.out_dir) / a.experiment
    studies = {
        name: optuna.load_study(study_name=name, storage=a.storage)
        for name in a.studies
    }
    try:
        comparison = load_comparison(client, a.experiment)
    except StudyNotFoundError as err:
        sys.exit(f"error: {err}")
    extra, notes = _depth_figures(client, out_dir / "depth")
    exported = export(
        comparison,
        out_dir,
        f"Optimizer comparison: {a.experiment}",
        baseline=a.baseline,
        block=a.block,
        studies=studies,
        extra_figures=extra,
        notes=notes,
    )
    for path in exported.written:
        print(path)


if __name__ == "__main__":
    main()
